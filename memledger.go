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

// memEntry is one change as the in-memory ledger keeps it: 40 bytes, with a
// deletion marked by the tombstone value. It names its key by an index in
// the ledger's key table rather than holding the string, so that the only
// pointers in the history are the values': the garbage collector scans the
// whole history in every cycle, and a key's string pointed into the heap
// once per change. Once written, an entry never changes, so readers may
// hold pointers to it without a lock.
type memEntry struct {
	value any
	seq   uint64
	stamp stamp  // Timestamp
	key   uint32 // index of the key's cell in MemoryLedger.keys
	moved bool   // a copy rehome made of an entry in a freed block
}

// stamp is a wall-clock time packed into one word: whole seconds since
// 1970 above 30 bits of nanoseconds. Unpacking it takes two shifts where
// Unix nanoseconds would take a division, and Read unpacks one per change
// it returns (a tenth of a short read's time). Stamps order as the times
// they stand for; the seconds have 34 bits, for the years 1698 to 2242
// (UnixNano's were 1678 to 2262). A clock beyond 2242 would wrap to a
// negative stamp, and the ledger's timestamps would stay at the last one
// before it, since they never decrease.
type stamp int64

func stampOf(t time.Time) stamp { return stamp(t.Unix()<<30 | int64(t.Nanosecond())) }

func (s stamp) time() time.Time { return time.Unix(int64(s>>30), int64(s&(1<<30-1))) }

func (e *memEntry) change(key string) StateChange {
	var c StateChange
	e.fill(&c, key)
	return c
}

// fill writes e into c field by field. Reads fill a freshly allocated
// slice in place this way: assigning a whole StateChange to an element
// would build it on the stack and copy it with a bulk write barrier.
func (e *memEntry) fill(c *StateChange, key string) {
	c.Sequence = e.seq
	c.Timestamp = e.stamp.time()
	c.Key = key
	c.Value, c.Deleted = e.value, e.value == tombstone
	if c.Deleted {
		c.Value = nil
	}
}

// memCell is a key's record. It holds the key's latest change, a pointer
// into the history, so that applying a change to the state allocates
// nothing and reading it takes no lock; and the key's index in the key
// table, by which entries name it, kept while any entry does. Only latest
// is read without the ledger's mutex.
type memCell struct {
	latest atomic.Pointer[memEntry]
	key    string
	index  uint32 // in MemoryLedger.keys, or noIndex
	refs   int    // entries naming the key: in the history, or moved out of it
}

// noIndex is the index of a cell that no entry names.
const noIndex = ^uint32(0)

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
	last    stamp // of the newest change: the wall clock may step back
	// keys is the key table: the cells that entries name by index. A
	// cell keeps its index while an entry names it; a released index is
	// reused, so that the table does not grow with keys long gone.
	keys []*memCell
	free []uint32 // released indices in keys
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
	added := cell == nil
	if added {
		cell = &memCell{key: m.Key, index: noIndex}
	}
	l.last = max(stampOf(time.Now()), l.last)
	e := l.put(memEntry{key: l.name(cell), value: m.Value, stamp: l.last, seq: l.next})
	l.next++
	switch {
	case added:
		if m.Delete {
			e.value = tombstone
		} else {
			cell.latest.Store(e)
		}
		// A deletion's cell goes into the state too, as a deleted key's:
		// the key's next changes find it and name the same index.
		l.state.add(m.Key, cell)
	case m.Delete:
		e.value = tombstone
		l.supersede(cell, nil)
	case l.supersede(cell, e):
		l.state.revive(m.Key, cell)
	}
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	c := e.change(m.Key)
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

// supersede makes e (nil for a deletion) the latest change of cell's key
// and reports whether the key was deleted before. A superseded entry that
// rehome moved out of a freed block no longer names the key.
func (l *MemoryLedger) supersede(cell *memCell, e *memEntry) (wasDeleted bool) {
	old := cell.latest.Swap(e)
	if old != nil && old.moved {
		l.unname(cell)
	}
	return old == nil
}

// name counts one more entry naming cell's key and returns the key's
// index, giving the cell one if it has none. The table holds the cells
// that retained changes name: one per key, except that a deleted key whose
// cell the state dropped at a promotion gets a new cell when it changes
// again, while changes still name the old one. Far below 2³² on any
// machine.
func (l *MemoryLedger) name(cell *memCell) uint32 {
	if cell.index == noIndex {
		if n := len(l.free); n > 0 {
			cell.index, l.free = l.free[n-1], l.free[:n-1]
			l.keys[cell.index] = cell
		} else {
			cell.index = uint32(len(l.keys))
			l.keys = append(l.keys, cell)
		}
	}
	cell.refs++
	return cell.index
}

// unname counts one entry fewer naming cell's key, and releases the key's
// index when none is left. A key whose latest change is retained keeps
// its index: that entry names it.
func (l *MemoryLedger) unname(cell *memCell) {
	if cell.refs--; cell.refs == 0 {
		l.keys[cell.index] = nil
		l.free = append(l.free, cell.index)
		cell.index = noIndex
	}
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
		e := l.entry(since + uint64(i))
		e.fill(&out[i], l.keys[e.key].key)
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
// alive; the moved copy names its key in the entry's place. The other
// entries stop naming theirs.
func (l *MemoryLedger) rehome(chunk *[chunkSize]memEntry) {
	for i := range chunk {
		e := &chunk[i]
		c := l.keys[e.key]
		if c.latest.Load() == e {
			moved := *e
			moved.moved = true
			c.latest.Store(&moved)
		} else {
			l.unname(c)
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
	l.keys, l.free = nil, nil
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return nil
}
