package qpool

import (
	"context"
	"maps"
	"reflect"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// delivery runs an entanglement's callbacks in sequence order without
// holding a lock while they run. Each updater asks for delivery up to its
// own change; one of them at a time becomes the deliverer and drains every
// change asked for, including those recorded while it delivered. An
// uncontended updater therefore delivers its own change before it returns.
//
// Changes recorded while no callback was set are never delivered; a
// callback set or cleared while other goroutines update may miss the
// changes recorded during the switch, but never sees one twice or out of
// order.
//
// The end of the entanglement. Invariant: a change callback starts only on
// the deliverer (the goroutine that set delivering), only after a check,
// made while it is the deliverer, that the entanglement has not ended
// (enterCallbacks, before each change, on every path: the own-change fast
// path included); and when Close returns, no deliverer that could have
// passed that check is still running, unless Close was called from a
// callback. Close ends the entanglement (life, under lifeMu) before it
// looks at delivering under mu (busy): a deliverer that set delivering
// after that look took mu after Close's end and sees the entanglement
// ended; one that had set it before, Close waits for (idle). Who may break
// it: a callback run outside deliverTo or without enterCallbacks, a
// deliverer that clears delivering without closing idle, or a check made
// before becoming the deliverer.
type delivery struct {
	live     atomic.Bool // next is valid: no update went undelivered since
	mirrorOK atomic.Bool // mirror is valid, for OnStateChange

	mu         sync.Mutex    // guards the fields below, not the callbacks
	delivering bool          // a deliverer is draining
	idle       chan struct{} // closed when the deliverer stops; made by busy
	next       uint64        // sequence of the next change to deliver
	target     uint64        // deliver every change below this

	// mirror is the state before change mirrorSeq. It is private: each
	// OnStateChange call gets two fresh copies, so a callback that keeps or
	// modifies its maps cannot change what later calls see. Only the
	// deliverer, or prepare while none runs, touches it.
	mirror    map[string]any
	mirrorSeq uint64
}

// hooked reports whether any callback is set, so that the hot path of an
// entanglement without callbacks skips delivery entirely.
func (e *Entanglement) hooked() bool {
	return e.cfg.onChange != nil || e.stateCallback() != nil
}

// stateCallback returns the OnStateChange callback in force.
func (e *Entanglement) stateCallback() func(oldState, newState map[string]any) {
	if f := e.stateField(); f != nil {
		return f
	}
	if f := e.onStateChange.Load(); f != nil {
		return *f
	}
	return nil
}

// stateField returns the OnStateChange field. On a shared ledger the
// follower delivers too, and it must not read a field that the user may
// assign between updates, so there every reader uses the copy that
// updates keep.
func (e *Entanglement) stateField() func(oldState, newState map[string]any) {
	if !e.shared {
		return e.OnStateChange
	}
	if f := e.field.Load(); f != nil {
		return *f
	}
	return nil
}

// keepField copies the OnStateChange field for stateField; updates on a
// shared ledger call it, on the goroutine the field belongs to.
func (e *Entanglement) keepField() {
	if f := e.OnStateChange; f != nil {
		e.field.Store(&f)
	} else if e.field.Load() != nil {
		e.field.Store(nil)
	}
}

// SetOnStateChange sets the OnStateChange callback in a way that is safe
// while updates run; nil removes it. The field, when set, takes precedence.
// On a shared ledger the callback gets every change recorded after
// SetOnStateChange returns, by this process or another.
func (e *Entanglement) SetOnStateChange(fn func(oldState, newState map[string]any)) {
	e = e.or()
	if fn == nil {
		e.onStateChange.Store(nil)
		if !e.hooked() {
			e.delivery.skip() // changes from here on go undelivered
		}
		return
	}
	e.onStateChange.Store(&fn)
	if e.shared && e.usable() == nil {
		// The follower prepares only once a remote change woke it, too
		// late for that change: prepare now. prepare runs no callback.
		e.delivery.prepare(e)
	}
}

// prepare runs before a hooked update is recorded. The first time, and
// after updates that went undelivered, it starts delivery at the next
// change; when OnStateChange needs a mirror of the state it takes one.
func (d *delivery) prepare(e *Entanglement) {
	wantMirror := e.stateCallback() != nil
	if d.live.Load() && (!wantMirror || d.mirrorOK.Load()) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.delivering {
		return // the deliverer owns the mirror; this change may be missed
	}
	if !d.live.Load() {
		_, d.next = e.ledger.Bounds()
		d.target = d.next
		d.mirrorOK.Store(false) // missed changes: the mirror is stale too
		d.live.Store(true)
	}
	if wantMirror && !d.mirrorOK.Load() {
		d.mirror, d.mirrorSeq = e.ledger.Snapshot()
		d.mirrorOK.Store(true)
	}
}

// skip notes an update recorded with no callback set: delivery restarts
// from scratch when a callback appears.
func (d *delivery) skip() {
	if d.live.Load() {
		d.live.Store(false)
	}
}

// deliver asks for delivery of every change up to c and, unless another
// goroutine is delivering already, delivers them.
func (d *delivery) deliver(e *Entanglement, c StateChange) { d.deliverTo(e, c.Sequence+1, &c) }

// deliverTo asks for delivery of every change below target; own, if not
// nil, is the caller's own change, delivered without a read of the ledger.
func (d *delivery) deliverTo(e *Entanglement, target uint64, own *StateChange) {
	d.mu.Lock()
	if own == nil && !d.live.Load() {
		d.mu.Unlock()
		return // no callback was prepared for
	}
	d.target = max(d.target, target)
	if d.delivering {
		d.mu.Unlock()
		return // the current deliverer will reach target
	}
	d.delivering = true
	for d.next < d.target {
		from, to := d.next, d.target
		d.mu.Unlock()
		d.mirrorFor(e)
		next := d.drain(e, own, from, to)
		d.mu.Lock()
		d.next = next
	}
	d.delivering = false
	if d.idle != nil { // Close waits for this deliverer
		close(d.idle)
		d.idle = nil
	}
	d.mu.Unlock()
}

// busy returns a channel that is closed when the current deliverer stops,
// or nil when none runs.
func (d *delivery) busy() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.delivering {
		return nil
	}
	if d.idle == nil {
		d.idle = make(chan struct{})
	}
	return d.idle
}

// mirrorFor takes the mirror that OnStateChange needs, if it has none. The
// deliverer owns the mirror, so while one runs prepare leaves this to it:
// under continuous contention prepare would never get the chance.
func (d *delivery) mirrorFor(e *Entanglement) {
	if !d.mirrorOK.Load() && e.stateCallback() != nil {
		d.mirror, d.mirrorSeq = e.ledger.Snapshot()
		d.mirrorOK.Store(true)
	}
}

// undelivered returns the lower of before and the first change the
// callbacks have yet to get, so that retention never compacts it away.
func (d *delivery) undelivered(before uint64) uint64 {
	if !d.live.Load() {
		return before // no callbacks: nothing is owed
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return min(before, d.next)
}

// drain delivers the changes from..to-1 and returns the sequence after the
// last one handled. The common case, an updater delivering its own change,
// needs no read of the ledger.
func (d *delivery) drain(e *Entanglement, own *StateChange, from, to uint64) uint64 {
	if own != nil && from == own.Sequence && to == from+1 {
		if e.enterCallbacks(false) { // this path too: see the invariant on delivery
			d.emit(e, *own)
		}
		return to
	}
	// A failed read (a remote ledger in an outage) is retried until the
	// ledger answers or the entanglement ends, so that no callback
	// silently misses a change.
	changes, ok := e.readRetrying(context.Background(), from, int(to-from))
	if !ok || len(changes) == 0 {
		return to // ended, or compacted away: nothing left to deliver
	}
	follower := own == nil // only the follower delivers with no change of its own
	for _, c := range changes {
		if !e.enterCallbacks(follower) {
			return to // Close or expiry: a batch read before it ends here
		}
		d.emit(e, c)
		e.leaveCallbacks(follower)
	}
	return changes[len(changes)-1].Sequence + 1
}

// emit runs the callbacks for one change.
func (d *delivery) emit(e *Entanglement, c StateChange) {
	cb := e.stateCallback()
	switch {
	case cb == nil:
		d.mirror = nil
		d.mirrorOK.Store(false)
	case d.mirror != nil && c.Sequence == d.mirrorSeq:
		old := maps.Clone(d.mirror)
		if c.Deleted {
			delete(d.mirror, c.Key)
		} else {
			d.mirror[c.Key] = c.Value
		}
		d.mirrorSeq = c.Sequence + 1
		now := maps.Clone(d.mirror)
		e.safely("OnStateChange", func() { cb(old, now) })
	case c.Sequence > d.mirrorSeq:
		// A gap (compaction, or a mirror never taken): the mirror is
		// stale, and the next update takes a new one.
		d.mirror = nil
		d.mirrorOK.Store(false)
	}
	if f := e.cfg.onChange; f != nil && !e.ended() { // OnStateChange may have closed it
		e.safely("OnChange", func() { f(c) })
	}
}

// safely runs a callback, recovering and logging a panic so that the
// entanglement keeps working. Every callback runs under it: inCallback
// looks for its frame.
func (e *Entanglement) safely(name string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			e.cfg.logger.Error("qpool: recovered panic in entanglement callback",
				"entanglement", e.id, "callback", name, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	fn()
}

// callbackRunner is the name of the function every callback runs under.
var callbackRunner = runtime.FuncForPC(reflect.ValueOf((*Entanglement).safely).Pointer()).Name()

// inCallback reports whether the calling goroutine is running a callback
// of some entanglement: Close must not wait for callbacks then, since it
// may be called from one of them. Go has no goroutine identity to ask, so
// it looks for the runner in the caller's stack; only Close calls it, and
// only when there is something to wait for.
func inCallback() bool {
	pcs := make([]uintptr, 64)
	for {
		n := runtime.Callers(2, pcs)
		frames := runtime.CallersFrames(pcs[:n])
		for {
			f, more := frames.Next()
			if f.Function == callbackRunner {
				return true
			}
			if !more {
				break
			}
		}
		if n < len(pcs) {
			return false
		}
		pcs = make([]uintptr, 2*len(pcs)) // the stack may go deeper
	}
}
