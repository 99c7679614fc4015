package ledgertest_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qpool/qpool"
)

// The ledgers below each break one documented promise of qpool.Ledger, by
// wrapping the reference MemoryLedger. The suite must fail each of them.

// dropsFifth loses every 5th change from Read.
type dropsFifth struct{ *qpool.MemoryLedger }

func (l dropsFifth) Read(ctx context.Context, since uint64, limit int) ([]qpool.StateChange, error) {
	cs, err := l.MemoryLedger.Read(ctx, since, limit)
	return slices.DeleteFunc(cs, func(c qpool.StateChange) bool { return c.Sequence%5 == 4 }), err
}

// reorders returns Read's changes with each pair swapped.
type reorders struct{ *qpool.MemoryLedger }

func (l reorders) Read(ctx context.Context, since uint64, limit int) ([]qpool.StateChange, error) {
	cs, err := l.MemoryLedger.Read(ctx, since, limit)
	for i := 1; i < len(cs); i += 2 {
		cs[i-1], cs[i] = cs[i], cs[i-1]
	}
	return cs, err
}

// duplicates hands out every even sequence twice from Append.
type duplicates struct{ *qpool.MemoryLedger }

func (l duplicates) Append(ctx context.Context, m qpool.Mutation) (qpool.StateChange, error) {
	c, err := l.MemoryLedger.Append(ctx, m)
	c.Sequence -= c.Sequence % 2
	return c, err
}

// aliasesRead returns the same slice again while the history is unchanged,
// so a caller's change to it shows in later reads.
type aliasesRead struct {
	*qpool.MemoryLedger
	mu    sync.Mutex // guards last
	last  []qpool.StateChange
	since uint64
}

func (l *aliasesRead) Read(ctx context.Context, since uint64, limit int) ([]qpool.StateChange, error) {
	cs, err := l.MemoryLedger.Read(ctx, since, limit)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last != nil && l.since == since && len(l.last) == len(cs) {
		return l.last, err
	}
	l.last, l.since = cs, since
	return cs, err
}

// aliasesSnapshot returns the same map again while the state is unchanged.
type aliasesSnapshot struct {
	*qpool.MemoryLedger
	mu   sync.Mutex // guards last and next
	last map[string]any
	next uint64
}

func (l *aliasesSnapshot) Snapshot() (map[string]any, uint64) {
	state, next := l.MemoryLedger.Snapshot()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last != nil && l.next == next {
		return l.last, next
	}
	l.last, l.next = state, next
	return state, next
}

// ignoresGuard records guarded mutations whatever their revision.
type ignoresGuard struct{ *qpool.MemoryLedger }

func (l ignoresGuard) Append(ctx context.Context, m qpool.Mutation) (qpool.StateChange, error) {
	m.Guarded = false
	return l.MemoryLedger.Append(ctx, m)
}

// wrongConflictError refuses stale guards with an error that does not wrap
// qpool.ErrConflict.
type wrongConflictError struct{ *qpool.MemoryLedger }

func (l wrongConflictError) Append(ctx context.Context, m qpool.Mutation) (qpool.StateChange, error) {
	c, err := l.MemoryLedger.Append(ctx, m)
	if errors.Is(err, qpool.ErrConflict) {
		err = errors.New("revision mismatch")
	}
	return c, err
}

// neverChanged returns channels from Changed that never close.
type neverChanged struct{ *qpool.MemoryLedger }

func (neverChanged) Changed() <-chan struct{} { return make(chan struct{}) }

// wrongClosedError fails Append after Close or Drop with an error that does
// not wrap qpool.ErrClosed.
type wrongClosedError struct {
	*qpool.MemoryLedger
	closed atomic.Bool
}

func (l *wrongClosedError) Append(ctx context.Context, m qpool.Mutation) (qpool.StateChange, error) {
	if l.closed.Load() {
		return qpool.StateChange{}, errors.New("ledger is closed")
	}
	return l.MemoryLedger.Append(ctx, m)
}

func (l *wrongClosedError) Close() error {
	l.closed.Store(true)
	return l.MemoryLedger.Close()
}

func (l *wrongClosedError) Drop(ctx context.Context) error {
	l.closed.Store(true)
	return l.MemoryLedger.Drop(ctx)
}

// compactsPastNext remembers a Compact beyond the next sequence, so that it
// hides changes appended afterwards.
type compactsPastNext struct {
	*qpool.MemoryLedger
	first atomic.Uint64
}

func (l *compactsPastNext) Compact(ctx context.Context, before uint64) error {
	if before > l.first.Load() {
		l.first.Store(before)
	}
	return l.MemoryLedger.Compact(ctx, before)
}

func (l *compactsPastNext) Read(ctx context.Context, since uint64, limit int) ([]qpool.StateChange, error) {
	return l.MemoryLedger.Read(ctx, max(since, l.first.Load()), limit)
}

func (l *compactsPastNext) Bounds() (first, next uint64) {
	_, next = l.MemoryLedger.Bounds()
	return l.first.Load(), next
}

// zeroTimestamps loses the timestamps of the changes Read returns.
type zeroTimestamps struct{ *qpool.MemoryLedger }

func (l zeroTimestamps) Read(ctx context.Context, since uint64, limit int) ([]qpool.StateChange, error) {
	cs, err := l.MemoryLedger.Read(ctx, since, limit)
	for i := range cs {
		cs[i].Timestamp = time.Time{}
	}
	return cs, err
}

// hangsAppend blocks every Append until the ledger is closed: a deadlock
// the watchdog must turn into a failure.
type hangsAppend struct {
	*qpool.MemoryLedger
	once sync.Once
	done chan struct{}
}

func (l *hangsAppend) Append(context.Context, qpool.Mutation) (qpool.StateChange, error) {
	<-l.done
	return qpool.StateChange{}, qpool.ErrClosed
}

func (l *hangsAppend) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.MemoryLedger.Close()
}

func (l *hangsAppend) Drop(context.Context) error { return l.Close() }

// nextOffByOne reports a next sequence one too high from Bounds.
type nextOffByOne struct{ *qpool.MemoryLedger }

func (l nextOffByOne) Bounds() (first, next uint64) {
	first, next = l.MemoryLedger.Bounds()
	return first, next + 1
}

// staleGet keeps returning the first value and revision it saw for a key.
type staleGet struct {
	*qpool.MemoryLedger
	seen sync.Map // key → staleEntry
}

type staleEntry struct {
	value any
	rev   uint64
}

func (l *staleGet) Get(key string) (any, uint64, bool) {
	if e, ok := l.seen.Load(key); ok {
		return e.(staleEntry).value, e.(staleEntry).rev, true
	}
	v, rev, ok := l.MemoryLedger.Get(key)
	if ok {
		l.seen.Store(key, staleEntry{v, rev})
	}
	return v, rev, ok
}

// recordsRefused records a guarded change even when it refuses it.
type recordsRefused struct{ *qpool.MemoryLedger }

func (l recordsRefused) Append(ctx context.Context, m qpool.Mutation) (qpool.StateChange, error) {
	c, err := l.MemoryLedger.Append(ctx, m)
	if errors.Is(err, qpool.ErrConflict) {
		m.Guarded = false
		_, _ = l.MemoryLedger.Append(ctx, m)
	}
	return c, err
}
