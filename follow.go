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
				e.following.Store(true)
				e.delivery.deliverTo(e, next, nil)
				e.following.Store(false)
			}
		}
		select {
		case <-changed:
		case <-e.done:
			return
		}
	}
}

// waitFollower waits for the follower to end, unless it is running
// callbacks (one of which may be the caller); it ends as soon as they
// return, since the entanglement has ended.
func (e *Entanglement) waitFollower() {
	if e.followDone == nil || e.following.Load() {
		return
	}
	<-e.followDone
}
