package boltledger

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/qpool/qpool"
	bbolt "go.etcd.io/bbolt"
)

// request is one Append waiting for the group committer.
type request struct {
	l     *Ledger
	m     qpool.Mutation
	raw   []byte // the codec's encoding of m.Value; nil for a deletion
	state atomic.Int32
	done  chan struct{} // closed when change and err are set

	change qpool.StateChange
	err    error
}

// A request moves from queued to taken (the committer owns it) or to
// cancelled (its caller's context ended first, and nothing is recorded).
const (
	reqQueued int32 = iota
	reqTaken
	reqCancelled
)

// Append implements [qpool.Ledger]. It encodes the value, hands the change
// to the group committer, and returns once the transaction holding it is
// fsync'd: a nil error means the change is on disk. If ctx ends before the
// committer takes the change, Append returns ctx's error and nothing is
// recorded; once taken, Append waits for the outcome, so that an error
// never hides a recorded change. Errors: [qpool.ErrInvalidKey] for an
// empty key or one over bbolt's limit, [ErrEncode], [qpool.ErrConflict],
// [qpool.ErrClosed] after Close, Drop or DB.Close, [ErrReadOnly],
// [ErrFull], or bbolt's I/O error. A failed transaction fails every change
// in it, and the cached state is left as the file is.
func (l *Ledger) Append(ctx context.Context, m qpool.Mutation) (qpool.StateChange, error) {
	r, err := l.newRequest(m)
	if err != nil {
		return qpool.StateChange{}, fmt.Errorf("boltledger: ledger %q: append %q: %w", l.id, m.Key, err)
	}
	if err := ctx.Err(); err != nil {
		return qpool.StateChange{}, err
	}
	fast, err := l.submit(r)
	if err != nil {
		return qpool.StateChange{}, fmt.Errorf("boltledger: ledger %q: append %q: %w", l.id, m.Key, err)
	}
	defer l.inflight.Done()
	if fast {
		l.db.commitFast(r)
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqCancelled) {
			return qpool.StateChange{}, ctx.Err()
		}
		<-r.done
	}
	if r.err != nil {
		return qpool.StateChange{}, fmt.Errorf("boltledger: ledger %q: append %q: %w", l.id, m.Key, r.err)
	}
	return r.change, nil
}

// newRequest validates and encodes m.
func (l *Ledger) newRequest(m qpool.Mutation) (*request, error) {
	if m.Key == "" || len(m.Key) > bbolt.MaxKeySize {
		return nil, fmt.Errorf("key of %d bytes: %w", len(m.Key), qpool.ErrInvalidKey)
	}
	r := &request{l: l, m: m, done: make(chan struct{})}
	if m.Delete {
		r.m.Value = nil
		return r, nil
	}
	raw, err := encode(l.db.cfg.codec, m.Value)
	if err != nil {
		return nil, fmt.Errorf("%w: %T: %w", ErrEncode, m.Value, err)
	}
	if len(raw)+len(m.Key)+recordHeader+10 > bbolt.MaxValueSize {
		return nil, fmt.Errorf("%w: value of %d bytes is over bbolt's limit", ErrEncode, len(raw))
	}
	// Append returns the value as Get will: decoded from the encoding.
	if jsonIdentity(l.db.cfg.codec, m.Value) {
		r.raw = raw
		return r, nil
	}
	if r.m.Value, err = l.decode(raw); err != nil {
		return nil, fmt.Errorf("%w: the codec cannot decode its own encoding of %T: %w", ErrEncode, m.Value, err)
	}
	r.raw = raw
	return r, nil
}

// jsonIdentity reports whether decoding v's JSON encoding gives v back,
// so that Append can skip the decode: true for nil, bool, float64 and
// valid UTF-8 strings under [qpool.JSONCodec] (encoding/json replaces
// invalid UTF-8, and turns every other number type into float64).
func jsonIdentity(c qpool.Codec, v any) bool {
	if _, ok := c.(qpool.JSONCodec); !ok {
		return false
	}
	switch v := v.(type) {
	case nil, bool, float64:
		return true
	case string:
		return utf8.ValidString(v)
	}
	return false
}

// submit hands r to the committer unless the ledger is closed, and
// reports whether the caller should commit r itself instead: when no other
// Append of the DB is waiting and no commit is running, the caller writes
// its change at once (the fast path), saving a lone writer two goroutine
// hand-offs. With other writers waiting, or just answered by a group
// commit of several changes (lastBatch), the change joins the next group
// commit instead, so that the fast path does not split a group. The
// check and the queueing share l.mu with shut, so that nothing is queued
// for a ledger after Drop began.
func (l *Ledger) submit(r *request) (fast bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false, qpool.ErrClosed
	}
	db := l.db
	db.pendMu.Lock()
	if db.stopping {
		db.pendMu.Unlock()
		return false, qpool.ErrClosed
	}
	l.inflight.Add(1)
	db.outstanding++
	if db.outstanding == 1 && db.lastBatch <= 1 && db.commitMu.TryLock() {
		db.fast.Add(1)
		db.pendMu.Unlock()
		r.state.Store(reqTaken)
		return true, nil
	}
	db.pending = append(db.pending, r)
	db.pendMu.Unlock()
	select {
	case db.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
	return false, nil
}

// commitFast commits r on the caller's goroutine; submit took commitMu.
func (db *DB) commitFast(r *request) {
	defer db.fast.Done()
	defer db.commitMu.Unlock()
	db.commit([]*request{r})
}

// commitLoop is the group committer: it commits whatever is pending in one
// transaction, and while that transaction is fsync'd, new requests gather
// for the next one. It ends after Close, once nothing is pending.
func (db *DB) commitLoop() {
	for {
		select {
		case <-db.wake:
		case <-db.quit:
			db.drain()
			return
		}
		db.drain()
	}
}

// drain commits batches until nothing is pending.
func (db *DB) drain() {
	for {
		db.gather()
		db.commitMu.Lock()
		batch := db.take()
		if len(batch) > 0 {
			db.commit(batch)
		}
		db.commitMu.Unlock()
		if len(batch) == 0 {
			return
		}
	}
}

// maxLinger caps how long gather waits for writers to rejoin in all, and
// maxGap how long it waits for the next one: writers that are coming back
// arrive microseconds apart, so a longer silence means they are not.
const (
	maxLinger = time.Millisecond
	maxGap    = 100 * time.Microsecond
)

// gather waits until as many changes are queued as there were writers at
// the end of the last commit (those it answered, now submitting their next
// change, and those already queued), so that they join this batch instead
// of forming a smaller one of their own. The wait ends after as long as
// the last commit took (at most maxLinger), or after maxGap without a new
// change. The whole commit time, not a fraction: on two cores, 64 writers
// answered at once need a good part of an fsync's time just to be
// scheduled and encode their next change, and a group cut short costs
// its share of the next fsync. A lone writer never waits: one change
// queued is all it expects.
//
// The bounds are timers, and in a process with nothing else to run a
// timer under a millisecond fires after about a millisecond (Go's poller
// sleeps in whole milliseconds): a few writers that pause between
// appends would wait that long, at every commit, for the ones that do not
// come back. So a wait that the writers do not repay makes the next
// gathers skip the wait (see missed); BenchmarkPausingWriters measures
// it, and docs/durability.md has the figures and what was tried first.
func (db *DB) gather() {
	if db.skips > 0 {
		db.skips--
		return
	}
	var deadline time.Time
	for {
		db.pendMu.Lock()
		n, want, linger := len(db.pending), min(db.active, db.cfg.maxBatch), db.linger
		db.pendMu.Unlock()
		if n >= want || linger <= 0 {
			db.misses = 0
			return
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(linger)
		}
		wait := min(time.Until(deadline), maxGap)
		if wait <= 0 || !db.waitSubmit(wait) {
			db.missed()
			return
		}
	}
}

// maxSkips bounds how many gathers in a row skip the wait after the
// answered writers failed to come back.
const maxSkips = 16

// missed notes a wait that ended without the writers it waited for, as
// when writers pause between appends: the next gathers skip the wait, more
// of them after each miss in a row, so that such writers do not pay a
// timer per commit, while a wait now and then notices when they are back.
func (db *DB) missed() {
	db.skips = min(1<<db.misses, maxSkips)
	db.misses = min(db.misses+1, 8)
}

// waitSubmit waits up to d for a change to be queued, and reports whether
// one was (or whether it should stop waiting: false on Close).
func (db *DB) waitSubmit(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-db.wake: // another change was queued
		return true
	case <-timer.C:
		return false
	case <-db.quit:
		return false
	}
}

// take removes up to maxBatch requests from the queue, skipping cancelled
// ones.
func (db *DB) take() []*request {
	db.pendMu.Lock()
	defer db.pendMu.Unlock()
	batch := make([]*request, 0, min(len(db.pending), db.cfg.maxBatch))
	n := 0
	for _, r := range db.pending {
		if len(batch) == db.cfg.maxBatch {
			break
		}
		n++
		if r.state.CompareAndSwap(reqQueued, reqTaken) {
			batch = append(batch, r)
		} else {
			db.outstanding-- // cancelled: its caller has returned
		}
	}
	db.pending = db.pending[n:]
	if len(db.pending) == 0 {
		db.pending = nil // let the backing array go
	}
	return batch
}

// commit writes batch in one transaction, then updates the caches and
// answers every request. On a failed commit every request fails and no
// cache changes.
func (db *DB) commit(batch []*request) {
	start := time.Now()
	err := db.write(batch)
	took := time.Since(start)
	if err == nil {
		db.commits.Add(1)
		for _, r := range batch {
			if r.err == nil { // a failed guard recorded nothing
				db.changes.Add(1)
			}
		}
		applyBatch(batch)
	}
	db.pendMu.Lock()
	db.outstanding -= len(batch)
	db.lastBatch = len(batch)
	db.active = len(batch) + len(db.pending)
	db.linger = min(took, maxLinger)
	db.pendMu.Unlock()
	for _, r := range batch {
		if err != nil {
			r.err = mapError(err)
		}
		close(r.done)
	}
}

// write runs the batch's transaction.
func (db *DB) write(batch []*request) (err error) {
	defer shield(&err)()
	now := time.Now().UnixNano()
	return db.bolt.Update(func(tx *bbolt.Tx) error {
		var open ledgerTxs
		for _, r := range batch {
			lt, err := open.get(tx, r.l)
			if err != nil {
				return err
			}
			if err := lt.put(r, now); err != nil {
				return err
			}
		}
		for _, lt := range open.list {
			if err := lt.saveMeta(); err != nil {
				return err
			}
		}
		return nil
	})
}

// applyBatch brings the caches up to the committed batch, one ledger at a
// time, in sequence order, and wakes their Changed channels.
func applyBatch(batch []*request) {
	var done []*Ledger // few: a batch rarely spans many ledgers
	for i, r := range batch {
		l := r.l
		if slices.Contains(done, l) {
			continue
		}
		done = append(done, l)
		l.mu.Lock()
		for _, r := range batch[i:] {
			if r.l == l && r.err == nil {
				l.applyLocked(r)
			}
		}
		if l.changed != nil {
			close(l.changed)
			l.changed = nil
		}
		l.mu.Unlock()
	}
}

// applyLocked applies r's committed change to the cache; l.mu is held.
func (l *Ledger) applyLocked(r *request) {
	c := r.change
	if l.state != nil { // nil once closed: the change is on disk, nobody reads the cache
		if c.Deleted {
			delete(l.state, c.Key)
		} else {
			e := entry{value: r.m.Value, revision: c.Sequence + 1}
			if !shareable(e.value) {
				e = entry{raw: r.raw, revision: c.Sequence + 1}
			}
			l.state[c.Key] = e
		}
	}
	l.next = c.Sequence + 1
	l.last = c.Timestamp.UnixNano()
}

// encode is c.Marshal(v), with a panic in it (a value's MarshalJSON, the
// codec itself: user code, run on the caller's goroutine) returned as an
// error, so that Append refuses the value with ErrEncode rather than
// unwind through the entanglement's update (TestPanickingEncoderIsErrEncode).
func encode(c qpool.Codec, v any) (raw []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			raw, err = nil, fmt.Errorf("the codec panicked: %v", r)
			if perr, ok := r.(error); ok {
				err = fmt.Errorf("the codec panicked: %w", perr)
			}
		}
	}()
	return c.Marshal(v)
}
