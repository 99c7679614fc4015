package qpool

import (
	"context"
	"time"
)

// startReaper arms the TTL timer. The reaper is a timer, not a polling
// goroutine: when it fires it checks the time of the last change and
// either re-arms for the rest of the TTL or expires the entanglement.
func (e *Entanglement) startReaper() {
	if e.ttl <= 0 {
		return
	}
	d := e.remaining()
	if d <= 0 {
		e.expire(func() {}) // expired while nobody had it open
		return
	}
	e.lifeMu.Lock()
	defer e.lifeMu.Unlock()
	e.wg.Add(1) // for the run the timer will make; see end
	// Owner: the entanglement. Runs once per arming; Close stops it.
	e.reaper = time.AfterFunc(d, e.reap)
}

// remaining returns how long until the TTL since the last change ends.
func (e *Entanglement) remaining() time.Duration {
	return time.Until(time.Unix(0, e.lastMod.Load()).Add(e.ttl))
}

// reap runs when the TTL timer fires. Close waits for it, except for the
// OnExpire hook: the hook may call Close, which must not wait for itself.
func (e *Entanglement) reap() {
	if e.shared {
		e.refreshLastMod()
	}
	if d := e.remaining(); d > 0 {
		e.rearm(d)
		e.wg.Done()
		return
	}
	e.expire(e.wg.Done)
}

// expire ends the entanglement and drops its data, calls released, then
// runs the OnExpire hook.
func (e *Entanglement) expire(released func()) {
	if !e.end(lifeExpired) {
		released()
		return
	}
	_ = e.ledger.Drop(context.Background()) // nothing to report it to
	released()
	if f := e.cfg.onExpire; f != nil {
		e.safely("OnExpire", func() { f(e.id) })
	}
}

// rearm sets the timer again, unless the entanglement has ended.
func (e *Entanglement) rearm(d time.Duration) {
	e.lifeMu.Lock()
	defer e.lifeMu.Unlock()
	if e.life.Load() == lifeOpen {
		e.wg.Add(1)
		e.reaper.Reset(d)
	}
}

// refreshLastMod advances lastMod to the time of the ledger's last change,
// which a shared ledger may have received from another process, so that
// every process counts the TTL from the same last change.
func (e *Entanglement) refreshLastMod() {
	_, next := e.ledger.Bounds()
	if next == 0 {
		return
	}
	last, err := e.ledger.Read(context.Background(), next-1, 1)
	if err != nil || len(last) != 1 {
		return
	}
	if t := last[0].Timestamp.UnixNano(); t > e.lastMod.Load() {
		e.lastMod.Store(t)
	}
}
