package qpool

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// chunkSize is how many changes one block of the in-memory history holds.
// Fixed-size blocks mean an append never copies the history, and Compact
// frees memory a block at a time.
const chunkSize = 1024

// memEntry is one change as the in-memory ledger keeps it: 48 bytes, with a
// deletion marked by the tombstone value. Once written, an entry never
// changes, so readers may hold pointers to it without a lock.
type memEntry struct {
	key   string
	value any
	nanos int64 // Timestamp as Unix nanoseconds
	seq   uint64
}

func (e *memEntry) change() StateChange {
	var c StateChange
	e.fill(&c)
	return c
}

// fill writes e into c field by field. Reads fill a freshly allocated
// slice in place this way: assigning a whole StateChange to an element
// would build it on the stack and copy it with a bulk write barrier.
func (e *memEntry) fill(c *StateChange) {
	c.Sequence = e.seq
	c.Timestamp = time.Unix(0, e.nanos)
	c.Key = e.key
	c.Value, c.Deleted = e.value, e.value == tombstone
	if c.Deleted {
		c.Value = nil
	}
}

// memCell holds a key's latest change: a pointer into the history, so that
// applying a change to the state allocates nothing and reading it takes no
// lock.
type memCell struct {
	latest atomic.Pointer[memEntry]
}

// tombstone marks a deletion in a memEntry.
var tombstone = &struct{ byte }{}

// MemoryLedger is the in-memory [Ledger]: the default of every entanglement
// and the reference implementation of the ledger semantics.
//
// Appends cost the same whatever the number of keys and allocate nothing
// for a key that exists: the history lives in fixed-size blocks that are
// never copied, and the state maps each key to a cell pointing at the
// key's latest entry in the history. Reads of the state take no lock, so
// they scale with the number of readers.
//
// Revisions are the sequence of the change that set the value, plus one;
// an absent key has revision 0. Values are stored as given, not copied.
type MemoryLedger struct {
	// state maps keys to cells; Get reads it without a lock. Cells
	// change, and keys come and go, only under mu.
	state stateMap

	mu      sync.Mutex // guards the fields below, and every change to state
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
func NewMemoryLedger() *MemoryLedger { return &MemoryLedger{} }

// Append implements [Ledger].
func (l *MemoryLedger) Append(_ context.Context, m Mutation) (StateChange, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return StateChange{}, ErrClosed
	}
	cell := l.cell(m.Key)
	if m.Guarded {
		if cur := revision(cell); cur != m.Revision {
			l.mu.Unlock()
			return StateChange{}, fmt.Errorf("%w: key %q is at revision %d, not %d", ErrConflict, m.Key, cur, m.Revision)
		}
	}
	l.last = max(time.Now().UnixNano(), l.last)
	e := l.put(memEntry{key: m.Key, value: m.Value, nanos: l.last, seq: l.next})
	l.next++
	switch {
	case m.Delete:
		e.value = tombstone
		if cell != nil {
			cell.latest.Store(nil)
		}
	case cell == nil:
		cell = new(memCell)
		cell.latest.Store(e)
		l.state.add(m.Key, cell)
	default:
		deleted := cell.latest.Swap(e) == nil
		if deleted {
			l.state.revive(m.Key, cell)
		}
	}
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	c := e.change()
	l.mu.Unlock()
	return c, nil
}

// cell returns key's cell, or nil when key never had one. A deleted key
// may keep its cell, with a nil latest entry.
func (l *MemoryLedger) cell(key string) *memCell { return l.state.get(key) }

func revision(c *memCell) uint64 {
	if c == nil {
		return 0
	}
	if e := c.latest.Load(); e != nil {
		return e.seq + 1
	}
	return 0
}

// put stores e at its sequence, adding a block when needed, and returns
// where it lives.
func (l *MemoryLedger) put(e memEntry) *memEntry {
	i := e.seq - l.base
	c := int(i / chunkSize)
	if c == len(l.chunks) {
		l.chunks = append(l.chunks, new([chunkSize]memEntry))
	}
	p := &l.chunks[c][i%chunkSize]
	*p = e
	return p
}

func (l *MemoryLedger) entry(seq uint64) *memEntry {
	i := seq - l.base
	return &l.chunks[i/chunkSize][i%chunkSize]
}

// Get implements [Ledger] without taking a lock.
func (l *MemoryLedger) Get(key string) (any, uint64, bool) {
	c := l.cell(key)
	if c == nil {
		return nil, 0, false
	}
	e := c.latest.Load()
	if e == nil {
		return nil, 0, false
	}
	return e.value, e.seq + 1, true
}

// Snapshot implements [Ledger].
func (l *MemoryLedger) Snapshot() (map[string]any, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[string]any)
	l.state.each(func(k string, e *memEntry) { m[k] = e.value })
	return m, l.next
}

// Read implements [Ledger].
func (l *MemoryLedger) Read(_ context.Context, since uint64, limit int) ([]StateChange, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
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
		l.entry(since + uint64(i)).fill(&out[i])
	}
	return out, nil
}

// Bounds implements [Ledger].
func (l *MemoryLedger) Bounds() (first, next uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
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
		l.rehome(l.chunks[i])
		l.chunks[i] = nil
	}
	l.chunks = l.chunks[drop:]
	l.base += uint64(drop) * chunkSize
	return nil
}

// rehome moves the entries of a block about to be freed that are still
// some key's latest change, so that the state does not keep the block
// alive.
func (l *MemoryLedger) rehome(chunk *[chunkSize]memEntry) {
	for i := range chunk {
		e := &chunk[i]
		c := l.cell(e.key)
		if c != nil && c.latest.Load() == e {
			moved := *e
			c.latest.Store(&moved)
		}
	}
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
	l.state.clear()
	l.chunks = nil
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return nil
}
