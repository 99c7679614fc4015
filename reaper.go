package qpool

import (
	"context"
	"time"
)

// The reaper and the updates in flight.
//
// The reaper is a timer, not a polling goroutine: when it fires it checks
// the time of the last change and either re-arms for the rest of the TTL
// or expires the entanglement. Its check-then-expire must not run under an
// update in flight, whose change the ledger may hold (and whose caller may
// soon see nil) before lastMod shows it. So, with a TTL:
//
//   - an update counts itself in updating and then loads life; it appends
//     only if life is lifeOpen. After the append it raises lastMod to the
//     change's Timestamp (never lowers it: updates finish in any order) and
//     only then leaves updating (enterUpdate, leaveUpdate);
//   - the reaper, under lifeMu, moves life from lifeOpen to lifeReaping and
//     then loads updating and lastMod (expireIfIdle). It expires only if no
//     update is counted and the TTL since lastMod has run out; otherwise it
//     moves life back to lifeOpen and re-arms.
//
// Both sides write first and read second, with sequentially consistent
// atomics, so at least one sees the other: an update that found life open
// is seen in updating by the reaper, which then does not expire; an update
// the reaper did not see finds lifeReaping (it then waits on lifeMu for the
// decision and tries again) or lifeExpired (ErrExpired, nothing appended).
// A zero in updating means every update the reaper has not excluded has
// left, and each raised lastMod before it left, so lastMod is then the
// newest acknowledged change. Hence the invariant: the entanglement expires
// no earlier than TTL after the last change of an update that returned
// nil, and no update appends once the reaper has decided to expire.
//
// Who may break it: any path that appends to the ledger without
// enterUpdate/leaveUpdate (every local change goes through apply), any
// writer of life from lifeOpen that does not hold lifeMu, and a plain store
// to lastMod that could lower it. Another process's appends to a shared
// ledger are not ordered with this reaper; it counts from the last change
// it can read (refreshLastMod).

// startReaper arms the TTL timer.
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

// enterUpdate counts an update in flight, once the entanglement is open
// and the reaper is not deciding; it returns ErrClosed or ErrExpired once
// the entanglement has ended. See the protocol above.
func (e *Entanglement) enterUpdate() error {
	for {
		e.updating.Add(1)
		life := e.life.Load()
		if life == lifeOpen {
			return nil
		}
		e.updating.Add(-1)
		if life != lifeReaping {
			return e.usable()
		}
		// The reaper decides while it holds lifeMu: wait for it.
		e.lifeMu.Lock()
		e.lifeMu.Unlock() //nolint:staticcheck // an empty critical section: a wait
	}
}

// leaveUpdate ends what enterUpdate began: an appended change counts as
// activity before the update stops being in flight.
func (e *Entanglement) leaveUpdate(c StateChange, err error) {
	if err == nil {
		e.touch(c.Timestamp.UnixNano())
	}
	e.updating.Add(-1)
}

// touch raises lastMod to t, and never lowers it.
func (e *Entanglement) touch(t int64) {
	for cur := e.lastMod.Load(); t > cur; cur = e.lastMod.Load() {
		if e.lastMod.CompareAndSwap(cur, t) {
			return
		}
	}
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
	if !e.expireIfIdle() {
		e.wg.Done()
		return
	}
	e.release(e.wg.Done)
}

// expireIfIdle is the reaper's check-then-expire (see the protocol above).
// It ends the entanglement and reports true if no update is in flight and
// the TTL since the last change has run out; otherwise it re-arms the
// timer, unless Close came first.
func (e *Entanglement) expireIfIdle() bool {
	e.lifeMu.Lock()
	defer e.lifeMu.Unlock()
	if !e.life.CompareAndSwap(lifeOpen, lifeReaping) {
		return false // closed
	}
	if e.updating.Load() == 0 && e.remaining() <= 0 {
		e.finish(lifeExpired)
		return true
	}
	e.life.Store(lifeOpen)
	d := e.remaining()
	if d <= 0 {
		// An update is in flight with the TTL run out: look again soon,
		// since the update may yet fail and leave the entanglement idle.
		d = max(min(e.ttl/8, 10*time.Millisecond), time.Microsecond)
	}
	e.wg.Add(1)
	e.reaper.Reset(d)
	return false
}

// expire ends the entanglement and releases it, if Close has not come
// first. Only startReaper uses it, before any update can run.
func (e *Entanglement) expire(released func()) {
	if !e.end(lifeExpired) {
		released()
		return
	}
	e.release(released)
}

// release drops the data of an entanglement that has just expired, calls
// released, then runs the OnExpire hook.
func (e *Entanglement) release(released func()) {
	_ = e.ledger.Drop(context.Background()) // nothing to report it to
	released()
	if f := e.cfg.onExpire; f != nil {
		e.safely("OnExpire", func() { f(e.id) })
		close(e.hookDone) // made by finish, under lifeMu, before release ran
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
	e.touch(last[0].Timestamp.UnixNano())
}
