package qpool

// isShared reports whether other processes append to ledger.
func isShared(ledger Ledger) bool {
	sl, ok := ledger.(SharedLedger)
	return ok && sl.Shared()
}

// follow delivers to the callbacks the changes that other processes record
// in a shared ledger, as the ledger applies them. Owner: the entanglement
// (started when it opens on a SharedLedger); ends on Close or expiry and
// closes followDone. Close waits for it unless it is delivering: a
// callback it runs may call Close, which must not wait for itself.
func (e *Entanglement) follow() {
	defer close(e.followDone)
	for e.usable() == nil {
		changed := e.ledger.Changed()
		if e.hooked() {
			e.delivery.prepare(e)
			if _, next := e.ledger.Bounds(); next > 0 {
				e.delivery.deliverTo(e, next, nil)
			}
		}
		select {
		case <-changed:
		case <-e.done:
			return
		}
	}
}

// waitFollower waits for the follower to end, unless it was running a
// change's callbacks when the entanglement ended: one of them may be the
// caller. The follower then ends once they return, running no other.
func (e *Entanglement) waitFollower() {
	if e.followDone == nil {
		return
	}
	e.lifeMu.Lock()
	busy := e.following
	e.lifeMu.Unlock()
	if !busy {
		<-e.followDone
	}
}

// enterCallbacks reports whether a change's callbacks may run: not once
// the entanglement has ended (lifeReaping is not an end). Only the
// deliverer calls it, before each change: see the invariant on delivery,
// by which Close waits for the callbacks it lets through. On the follower
// it also marks them running, under lifeMu, which end takes too, so that
// Close knows whether its caller may be the follower, which it must then
// not wait for. Updaters' goroutines are the user's: Close waits for
// their callbacks, never for the goroutines.
func (e *Entanglement) enterCallbacks(follower bool) bool {
	if !follower {
		return !e.ended()
	}
	e.lifeMu.Lock()
	defer e.lifeMu.Unlock()
	e.following = !e.ended()
	return e.following
}

// leaveCallbacks undoes enterCallbacks once the callbacks have returned.
func (e *Entanglement) leaveCallbacks(follower bool) {
	if follower {
		e.lifeMu.Lock()
		e.following = false
		e.lifeMu.Unlock()
	}
}
