package qpool

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// chunkSize is how many changes one block of the in-memory history holds.
// Fixed-size blocks mean an append never copies the history, and Compact
// frees memory a block at a time.
const chunkSize = 1024

// memEntry is one change as the in-memory ledger keeps it: 40 bytes, with
// the sequence implied by the position and a deletion marked by the
// tombstone value.
type memEntry struct {
	key   string
	value any
	nanos int64 // Timestamp as Unix nanoseconds
}

type memValue struct {
	value    any
	revision uint64 // sequence+1 of the change that set value
}

// tombstone marks a deletion in a memEntry.
var tombstone = &struct{ byte }{}

// MemoryLedger is the in-memory [Ledger]: the default of every entanglement
// and the reference implementation of the ledger semantics. Appends cost
// the same whatever the number of keys, and history is kept in fixed-size
// blocks so it is never copied as it grows.
//
// Revisions are the sequence of the change that set the value, plus one;
// an absent key has revision 0. Values are stored as given, not copied.
type MemoryLedger struct {
	mu      sync.RWMutex // guards the fields below
	state   map[string]memValue
	chunks  []*[chunkSize]memEntry
	base    uint64 // sequence of chunks[0][0]
	first   uint64 // oldest sequence still readable
	next    uint64 // sequence of the next change
	changed chan struct{}
	closed  bool
	last    int64 // Unix nanoseconds of the newest change: the wall clock may step back
}

var _ Ledger = (*MemoryLedger)(nil)

// NewMemoryLedger returns an empty in-memory ledger.
func NewMemoryLedger() *MemoryLedger {
	return &MemoryLedger{state: make(map[string]memValue)}
}

// Append implements [Ledger].
func (l *MemoryLedger) Append(_ context.Context, m Mutation) (StateChange, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return StateChange{}, ErrClosed
	}
	if m.Guarded {
		if cur := l.state[m.Key].revision; cur != m.Revision {
			l.mu.Unlock()
			return StateChange{}, fmt.Errorf("%w: key %q is at revision %d, not %d", ErrConflict, m.Key, cur, m.Revision)
		}
	}
	seq := l.next
	l.last = max(time.Now().UnixNano(), l.last)
	now := time.Unix(0, l.last)
	e := memEntry{key: m.Key, value: m.Value, nanos: l.last}
	if m.Delete {
		e.value = tombstone
		delete(l.state, m.Key)
	} else {
		l.state[m.Key] = memValue{m.Value, seq + 1}
	}
	l.put(seq, e)
	l.next++
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	l.mu.Unlock()
	return StateChange{Sequence: seq, Timestamp: now, Key: m.Key, Value: valueOf(e.value), Deleted: m.Delete}, nil
}

// put stores the entry of sequence seq, adding a block when needed.
func (l *MemoryLedger) put(seq uint64, e memEntry) {
	i := seq - l.base
	c := int(i / chunkSize)
	if c == len(l.chunks) {
		l.chunks = append(l.chunks, new([chunkSize]memEntry))
	}
	l.chunks[c][i%chunkSize] = e
}

func (l *MemoryLedger) entry(seq uint64) *memEntry {
	i := seq - l.base
	return &l.chunks[i/chunkSize][i%chunkSize]
}

func valueOf(v any) any {
	if v == tombstone {
		return nil
	}
	return v
}

// Get implements [Ledger].
func (l *MemoryLedger) Get(key string) (any, uint64, bool) {
	l.mu.RLock()
	v, ok := l.state[key]
	l.mu.RUnlock()
	return v.value, v.revision, ok
}

// Snapshot implements [Ledger].
func (l *MemoryLedger) Snapshot() (map[string]any, uint64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	m := make(map[string]any, len(l.state))
	for k, v := range l.state {
		m[k] = v.value
	}
	return m, l.next
}

// Read implements [Ledger].
func (l *MemoryLedger) Read(_ context.Context, since uint64, limit int) ([]StateChange, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	since = max(since, l.first)
	if since >= l.next {
		return nil, nil
	}
	n := l.next - since
	if limit > 0 {
		n = min(n, uint64(limit))
	}
	out := make([]StateChange, n)
	for i := range out {
		seq := since + uint64(i)
		e := l.entry(seq)
		out[i] = StateChange{
			Sequence:  seq,
			Timestamp: time.Unix(0, e.nanos),
			Key:       e.key,
			Value:     valueOf(e.value),
			Deleted:   e.value == tombstone,
		}
	}
	return out, nil
}

// Bounds implements [Ledger].
func (l *MemoryLedger) Bounds() (first, next uint64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.first, l.next
}

// Changed implements [Ledger].
func (l *MemoryLedger) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return closedChan
	}
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	return l.changed
}

// Compact implements [Ledger]. Memory is freed a block of 1024 changes at a
// time; the changes below before are unreadable at once.
func (l *MemoryLedger) Compact(_ context.Context, before uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.first = max(l.first, min(before, l.next))
	drop := int((l.first - l.base) / chunkSize)
	for i := range drop {
		l.chunks[i] = nil
	}
	l.chunks = l.chunks[drop:]
	l.base += uint64(drop) * chunkSize
	return nil
}

// Drop implements [Ledger]; for the in-memory ledger it is Close.
func (l *MemoryLedger) Drop(context.Context) error { return l.Close() }

// Close implements [Ledger]: it releases the state and history, and wakes
// every channel from Changed. Later calls fail with [ErrClosed], and Get
// finds nothing. Close is idempotent.
func (l *MemoryLedger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	l.state = nil
	l.chunks = nil
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return nil
}
