package qpool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Entanglement is a named state shared by related jobs: a key/value map
// behind an append-only, sequenced ledger of [StateChange] records. A job
// that starts late, or on another worker, still sees every change, in
// order, through [Entanglement.GetStateHistory] and [Entanglement.Watch].
//
// All methods are safe for concurrent use. No callback runs while a lock of
// the entanglement or its ledger is held, so callbacks may call any method,
// UpdateState included. The zero value is not usable; build one with
// [NewEntanglement] or [OpenEntanglement].
type Entanglement struct {
	// OnStateChange, if set, is called once per change, in sequence order,
	// with the state before and after the change. Both maps are fresh
	// copies that belong to the callback: they never change later, and
	// changing them changes nothing else. Building them costs two copies of
	// the state per change, so prefer [WithOnChange] (one StateChange per
	// call, O(1)) when the state is large.
	//
	// When one goroutine updates with no other update in flight, the
	// callback has returned before UpdateState returns. Under contention a
	// change may be delivered by another updater's goroutine, still in
	// order. A panic in the callback is recovered and logged.
	//
	// Assign the field only while no update runs (before the first, as the
	// reference document does, or between updates); use
	// [Entanglement.SetOnStateChange] to change it while updates run. When
	// both are set, the field wins. On a shared ledger (see [SharedLedger])
	// the field takes effect at the next local update; SetOnStateChange
	// takes effect at once, for other processes' changes too. There, if a
	// callback updates the entanglement, use SetOnStateChange: the
	// goroutine that delivers other processes' changes may run that update,
	// which reads the field.
	OnStateChange func(oldState, newState map[string]any)

	id      string
	ttl     time.Duration
	cfg     entConfig
	ledger  Ledger
	invalid error // why the ID or the ledger was refused; set once, at construction

	life atomic.Int32  // lifeOpen, lifeReaping, lifeClosed or lifeExpired
	done chan struct{} // closed on Close or expiry
	// lastMod and updating are the reaper's view of the activity; with
	// no TTL nothing reads them, and updates leave them alone. See
	// reaper.go for the protocol.
	lastMod  atomic.Int64 // Unix nanoseconds of the newest acknowledged change
	updating atomic.Int64 // updates between enterUpdate and leaveUpdate

	onStateChange atomic.Pointer[func(oldState, newState map[string]any)]
	// field is the OnStateChange field as the last update saw it, kept on
	// a shared ledger for the follower, which must not read the field.
	field       atomic.Pointer[func(oldState, newState map[string]any)]
	compactedTo atomic.Uint64 // retention: history below this is gone

	lifeMu sync.Mutex     // guards reaper, wg.Add and the move out of lifeOpen
	reaper *time.Timer    // the TTL timer; nil without a TTL
	wg     sync.WaitGroup // watch feeds and reaper runs

	jobsMu sync.Mutex // guards jobs and jobIDs
	jobs   []Job
	jobIDs map[string]struct{} // the IDs in jobs, so that AddJob is O(1)

	delivery delivery

	shared     bool          // other processes append to the ledger
	followDone chan struct{} // closed when the follower ends; nil without one
	following  bool          // the follower runs callbacks; guarded by lifeMu
	// hookDone is closed when the OnExpire hook has returned; made, under
	// lifeMu, when the entanglement expires with a hook to run.
	hookDone chan struct{}
}

const (
	lifeOpen int32 = iota
	lifeClosed
	lifeExpired
	// lifeReaping: the reaper, holding lifeMu, decides whether the TTL
	// has run out. The entanglement is open meanwhile, except that an
	// update waits for the decision before it appends (see reaper.go).
	lifeReaping
)

// ended reports whether the entanglement was closed or has expired.
func (e *Entanglement) ended() bool {
	l := e.life.Load()
	return l == lifeClosed || l == lifeExpired
}

// NewEntanglement returns an entanglement named id, listing jobs, that
// expires ttl after its last change (never, if ttl ≤ 0). An update that
// returns nil counts: expiry comes no earlier than ttl after its change.
// An update racing expiry returns nil on those terms or [ErrExpired],
// never nil for a change that expiry drops. Its ledger is a new
// [MemoryLedger] unless opts give one with [WithLedger]; NewEntanglement
// cannot fail, so a ledger that needs opening belongs with
// [OpenEntanglement].
//
// An empty id, or a ledger opened for another entanglement (one whose ID
// method, as boltledger's and natsledger's have, names another), gives an
// entanglement that refuses everything: its updates, Await and History
// return an error wrapping [ErrInvalidEntanglement], its state is empty,
// its watches are closed, and it never touches the ledger, which stays
// open for the caller.
func NewEntanglement(id string, jobs []Job, ttl time.Duration, opts ...EntanglementOption) *Entanglement {
	e := newEntanglement(id, jobs, ttl, opts)
	if e.invalid != nil {
		return e
	}
	if err := e.resume(context.Background()); err != nil {
		e.lastMod.Store(time.Now().UnixNano()) // unreadable: the TTL starts now
	}
	e.start()
	return e
}

// OpenEntanglement is NewEntanglement for ledgers that hold data already: it
// resumes the ledger's state, history and sequence, and restarts the TTL
// from the last recorded change, so an entanglement that expired while
// nobody had it open is expired (and its data dropped) on open. It returns
// an error when the ledger cannot be read, and one wrapping
// [ErrInvalidEntanglement] for an empty id or a ledger opened for another
// entanglement; the ledger is then left open for the caller.
func OpenEntanglement(ctx context.Context, id string, jobs []Job, ttl time.Duration, opts ...EntanglementOption) (*Entanglement, error) {
	e := newEntanglement(id, jobs, ttl, opts)
	if e.invalid != nil {
		return nil, e.invalid
	}
	if err := e.resume(ctx); err != nil {
		return nil, fmt.Errorf("qpool: open entanglement %q: %w", id, err)
	}
	e.start()
	return e, nil
}

// start arms the reaper and, on a shared ledger, the follower. Callbacks
// given as options get every change from here on, remote ones included.
func (e *Entanglement) start() {
	if e.hooked() {
		e.delivery.prepare(e)
	}
	e.startReaper()
	if e.shared && e.usable() == nil {
		e.followDone = make(chan struct{})
		// Owner: the entanglement; see follow. Nothing can end the
		// entanglement yet, so this needs no lifeMu.
		go e.follow()
	}
}

func newEntanglement(id string, jobs []Job, ttl time.Duration, opts []EntanglementOption) *Entanglement {
	cfg := newEntConfig(opts)
	e := &Entanglement{
		id:     id,
		ttl:    ttl,
		cfg:    cfg,
		ledger: cfg.ledger,
		shared: isShared(cfg.ledger),
		done:   make(chan struct{}),
		jobIDs: make(map[string]struct{}, len(jobs)),
	}
	for _, j := range jobs {
		e.AddJob(j)
	}
	if cfg.onStateChange != nil {
		e.onStateChange.Store(&cfg.onStateChange)
	}
	if len(cfg.observers) > 0 {
		e.observe()
	}
	if err := checkLedger(id, cfg.ledger); err != nil {
		e.refuse(err)
	}
	return e
}

// refuse makes e an entanglement born ended, that reports err from every
// call, on a closed ledger of its own: the one it was given belongs to
// another entanglement, or to the caller, and is never touched.
func (e *Entanglement) refuse(err error) {
	e.invalid = err
	e.ledger, e.shared = NewMemoryLedger(), false
	_ = e.ledger.Close()
	e.life.Store(lifeClosed)
	close(e.done)
}

// noEntanglement stands in for a nil *Entanglement, or one that
// NewEntanglement did not make (a zero value), so that their methods
// refuse with ErrInvalidEntanglement instead of panicking.
var noEntanglement = func() *Entanglement {
	e := &Entanglement{done: make(chan struct{}), jobIDs: map[string]struct{}{}}
	e.refuse(fmt.Errorf("%w: nil, or not made by NewEntanglement", ErrInvalidEntanglement))
	return e
}()

// or returns e, or noEntanglement for a nil or zero e: every exported
// method starts with it.
func (e *Entanglement) or() *Entanglement {
	if e == nil || e.ledger == nil {
		return noEntanglement
	}
	return e
}

// checkLedger refuses an empty entanglement ID, and a ledger opened for
// another entanglement.
func checkLedger(id string, l Ledger) error {
	if id == "" {
		return fmt.Errorf("%w: empty id", ErrInvalidEntanglement)
	}
	if n, ok := l.(interface{ ID() string }); ok && n.ID() != id {
		return fmt.Errorf("%w: entanglement %q on a ledger opened for %q", ErrInvalidEntanglement, id, n.ID())
	}
	return nil
}

// resume takes the retention mark and the time of the last change from the
// ledger; an empty ledger's TTL starts now.
func (e *Entanglement) resume(ctx context.Context) error {
	last := time.Now()
	first, next := e.ledger.Bounds()
	e.compactedTo.Store(first)
	if next > first {
		recent, err := e.ledger.Read(ctx, next-1, 1)
		if err != nil {
			return err
		}
		if len(recent) == 1 {
			last = recent[0].Timestamp
		}
	}
	e.lastMod.Store(last.UnixNano())
	return nil
}

// ID returns the entanglement's name.
func (e *Entanglement) ID() string { return e.or().id }

// UpdateState sets key to value and records the change. It returns
// [ErrInvalidKey] for an empty key, [ErrClosed] after Close, [ErrExpired]
// after the TTL ran out, or the ledger's error. On error nothing is
// recorded, with one exception that [Ledger.Append] allows: a ledger on a
// remote store that lost the store's answer (natsledger's ErrUnavailable
// and *natsledger.UnconfirmedError) may have recorded the change; if so it
// appears in the state and history, and reaches the callbacks, like
// another process's change, and the ledger's error offers a retry that
// does not record it twice. The value is stored as given, not copied (see
// [WithValueCopy]).
//
// Only the in-memory ledger hands the value back as given. A ledger that
// encodes values (a [CodecLedger]: boltledger, natsledger) hands back, from
// GetState, Update, Snapshot, the history and watches, what its codec
// decodes into an any: with [JSONCodec], a float64 for every number, a
// map[string]any for a struct or a map, a []any for a slice, a string for
// a time. To read a value as the type that was stored on every ledger,
// declare a [Key] for it (or use [GetStateAs]).
func (e *Entanglement) UpdateState(key string, value any) error {
	e = e.or()
	return e.apply(Mutation{Key: key, Value: value})
}

// DeleteState removes key and records the deletion, even when key was
// absent. Errors are those of UpdateState.
func (e *Entanglement) DeleteState(key string) error {
	e = e.or()
	return e.apply(Mutation{Key: key, Delete: true})
}

// Update atomically replaces key's value with fn's result, recorded as one
// change. fn gets the current value and whether it exists; if another
// change to key lands between the read and the write, fn runs again with
// the newer value, so fn must be free of side effects. An error from fn is
// returned as is and records nothing. A nil fn gets [ErrNilFunc].
//
// old is the value as the ledger hands it back (see UpdateState): on a
// ledger that encodes values, the codec's generic form, so old.(int) fails
// there for an int that was stored, and a counter written that way starts
// again from zero on every update. [Key.Update] gives fn the value as its
// type on every ledger.
func (e *Entanglement) Update(key string, fn func(old any, exists bool) (any, error)) error {
	e = e.or()
	if fn == nil {
		return fmt.Errorf("qpool: update %q: %w", key, ErrNilFunc)
	}
	if err := e.check(key); err != nil {
		return err
	}
	for {
		old, rev, ok := e.ledger.Get(key)
		v, err := fn(old, ok)
		if err != nil {
			return err
		}
		err = e.apply(Mutation{Key: key, Value: v, Guarded: true, Revision: rev})
		if !errors.Is(err, ErrConflict) {
			return err
		}
	}
}

// check rejects an empty key and a closed or expired entanglement.
func (e *Entanglement) check(key string) error {
	if key == "" {
		return fmt.Errorf("qpool: entanglement %q: %w", e.id, ErrInvalidKey)
	}
	return e.usable()
}

// usable returns ErrClosed or ErrExpired once the entanglement has ended.
func (e *Entanglement) usable() error {
	if e.invalid != nil {
		return e.invalid
	}
	switch e.life.Load() {
	case lifeClosed:
		return fmt.Errorf("qpool: entanglement %q: %w", e.id, ErrClosed)
	case lifeExpired:
		return fmt.Errorf("qpool: entanglement %q: %w", e.id, ErrExpired)
	}
	return nil
}

// apply records m and delivers it to the callbacks.
func (e *Entanglement) apply(m Mutation) error {
	if err := e.check(m.Key); err != nil {
		return err
	}
	if e.cfg.check != nil && !m.Delete {
		if err := encodes(e.cfg.check, m.Value); err != nil {
			return fmt.Errorf("qpool: entanglement %q: key %q: %w: %T: %w", e.id, m.Key, ErrEncode, m.Value, err)
		}
	}
	if e.cfg.copy != nil && !m.Delete {
		m.Value = e.cfg.copy(m.Value)
	}
	if e.shared {
		e.keepField()
	}
	hooked := e.hooked()
	if hooked {
		e.delivery.prepare(e)
	} else {
		e.delivery.skip()
	}
	if e.ttl > 0 {
		if err := e.enterUpdate(); err != nil {
			return err
		}
	}
	c, err := e.ledger.Append(context.Background(), m)
	if e.ttl > 0 {
		e.leaveUpdate(c, err)
	}
	if err != nil {
		if errors.Is(err, ErrClosed) {
			if uerr := e.usable(); uerr != nil {
				return uerr
			}
		}
		return fmt.Errorf("qpool: entanglement %q: update %q: %w", e.id, m.Key, err)
	}
	e.retain(c.Sequence + 1)
	if hooked {
		e.delivery.deliver(e, c)
	}
	return nil
}

// retain compacts the history when it exceeds the retention limit by a
// quarter, so the cost is amortised over many updates. It keeps the
// changes the callbacks have yet to get, however many.
func (e *Entanglement) retain(next uint64) {
	n := uint64(e.cfg.retention)
	if n == 0 || next-e.compactedTo.Load() <= n+n/4 {
		return
	}
	before := e.delivery.undelivered(next - n)
	if before <= e.compactedTo.Load() {
		return
	}
	if err := e.ledger.Compact(context.Background(), before); err != nil {
		return
	}
	for cur := e.compactedTo.Load(); before > cur; cur = e.compactedTo.Load() {
		if e.compactedTo.CompareAndSwap(cur, before) {
			return // the mark only moves up, whatever the order of updaters
		}
	}
}

// GetState returns key's current value and whether it exists. After Close
// or expiry every key is absent.
//
// The value is the one stored only on the in-memory ledger. A ledger that
// encodes values (a [CodecLedger]: boltledger, natsledger) returns what its
// codec decodes into an any, with [JSONCodec] a float64, string, bool, nil,
// map[string]any or []any, so a type assertion to the stored type fails
// there. [Key.Get] and [GetStateAs] return the stored type on every ledger.
func (e *Entanglement) GetState(key string) (any, bool) {
	e = e.or()
	v, _, ok := e.ledger.Get(key)
	return v, ok
}

// Snapshot returns a copy of the whole state, which the caller owns. It is
// O(number of keys).
func (e *Entanglement) Snapshot() map[string]any {
	e = e.or()
	m, _ := e.ledger.Snapshot()
	return m
}

// GetStateHistory returns every recorded change whose Sequence is at least
// since, oldest first, in a slice the caller owns: 0 gives the whole
// history, a sequence past the end gives none. With [WithRetention], changes
// older than the retained ones are gone, and the first change returned has
// a Sequence above since. After Close or expiry the history is empty.
//
// If the ledger cannot be read (natsledger while its server is
// unreachable and since is older than its cache), GetStateHistory returns
// nil, as for no history: use [Entanglement.History] to learn the error.
func (e *Entanglement) GetStateHistory(since uint64) []StateChange {
	e = e.or()
	h, err := e.ledger.Read(context.Background(), since, 0)
	if err != nil {
		return nil
	}
	return h
}

// AddJob lists job as related to the entanglement; a job whose ID is
// listed already is not added twice.
func (e *Entanglement) AddJob(job Job) {
	if e.or() == noEntanglement {
		return // nothing to list it in
	}
	e.jobsMu.Lock()
	defer e.jobsMu.Unlock()
	if _, ok := e.jobIDs[job.ID]; !ok {
		e.jobIDs[job.ID] = struct{}{}
		e.jobs = append(e.jobs, job)
	}
}

// RemoveJob removes the job with this ID from the list and reports whether
// it was there.
func (e *Entanglement) RemoveJob(id string) bool {
	if e.or() == noEntanglement {
		return false
	}
	e.jobsMu.Lock()
	defer e.jobsMu.Unlock()
	if _, ok := e.jobIDs[id]; !ok {
		return false
	}
	delete(e.jobIDs, id)
	e.jobs = slices.DeleteFunc(e.jobs, func(j Job) bool { return j.ID == id })
	return true
}

// Jobs returns a copy of the related jobs, in the order they were added.
func (e *Entanglement) Jobs() []Job {
	e = e.or()
	e.jobsMu.Lock()
	defer e.jobsMu.Unlock()
	return slices.Clone(e.jobs)
}

// IsExpired reports whether the TTL ran out and the state was released.
func (e *Entanglement) IsExpired() bool { return e.or().life.Load() == lifeExpired }

// Close releases the state and history early (a durable ledger keeps its
// data), ends every watch and await, stops the reaper, and waits for the
// goroutines the entanglement started. Later updates fail with [ErrClosed].
// Close is idempotent; it returns the ledger's Close error.
//
// No change's delivery begins once the entanglement has ended, so a change
// not yet delivered then is never delivered (expiry does not wait for a
// delivery already under way: its callback may be entered while or after
// OnExpire runs); and Close waits for the callbacks already under way
// (OnStateChange, OnChange, OnExpire, on whatever goroutine) to return. So after Close returns no callback of any kind
// runs or starts, and what the callbacks use may be released.
//
// Callbacks may call Close. So that it never waits for itself, Close
// called from inside a callback (of this entanglement or any other) does
// not wait for callbacks under way, nor for the follower of a shared
// ledger while it runs a change's callbacks; they end once they return. A
// callback must therefore not wait for another goroutine that calls Close.
func (e *Entanglement) Close() error {
	e = e.or()
	var err error
	closed := e.end(lifeClosed)
	if closed {
		err = e.ledger.Close()
	}
	e.wg.Wait()
	e.waitCallbacks()
	e.waitFollower()
	if closed && len(e.cfg.observers) > 0 {
		e.observeClosed()
	}
	return err
}

// waitCallbacks waits for the callbacks under way when the entanglement
// ended to return: the deliverer's and the OnExpire hook. No other can
// start by then (see delivery). It does not wait when its caller is inside
// a callback, which may be one of those.
func (e *Entanglement) waitCallbacks() {
	delivering := e.delivery.busy()
	e.lifeMu.Lock()
	hook := e.hookDone
	e.lifeMu.Unlock()
	if hook != nil {
		select {
		case <-hook:
			hook = nil
		default:
		}
	}
	if (delivering == nil && hook == nil) || inCallback() {
		return
	}
	if delivering != nil {
		<-delivering
	}
	if hook != nil {
		<-hook
	}
}

// end moves the entanglement out of lifeOpen to to, once, and wakes every
// watcher. It reports whether this call did it.
func (e *Entanglement) end(to int32) bool {
	e.lifeMu.Lock()
	defer e.lifeMu.Unlock()
	if e.life.Load() != lifeOpen { // lifeReaping is never seen under lifeMu
		return false
	}
	e.finish(to)
	return true
}

// finish moves the entanglement, open, to to. lifeMu must be held.
func (e *Entanglement) finish(to int32) {
	e.life.Store(to)
	if to == lifeExpired && e.cfg.onExpire != nil {
		e.hookDone = make(chan struct{}) // release closes it
	}
	if e.reaper != nil && e.reaper.Stop() {
		e.wg.Done() // the armed run that will not happen
	}
	close(e.done)
}

type entanglementKey struct{}

// EntanglementFrom returns the entanglement of a job submitted with
// [WithEntanglement], from the job's context.
func EntanglementFrom(ctx context.Context) (*Entanglement, bool) {
	if ctx == nil {
		return nil, false
	}
	e, ok := ctx.Value(entanglementKey{}).(*Entanglement)
	return e, ok
}
