package boltledger

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"

	"github.com/qpool/qpool"
	bbolt "go.etcd.io/bbolt"
)

// Ledger is the durable [qpool.Ledger] of one entanglement in a [DB]. Its
// current state is cached in memory (decoded); its history stays in the
// file and is read in batches. Append returns only after its change is
// fsync'd, in a transaction it may share with concurrent Appends (group
// commit). Values come back as the codec decodes them into an any: with
// JSON, numbers are float64 and structs map[string]any (see
// [qpool.GetStateAs]).
//
// Revisions are the sequence of the change that set a key, plus one; an
// absent key has revision 0, as in [qpool.MemoryLedger]. All methods are
// safe for concurrent use. After Close, Get finds nothing and Snapshot is
// empty.
type Ledger struct {
	db *DB
	id string

	mu       sync.RWMutex // guards the fields below
	state    map[string]entry
	first    uint64 // oldest sequence Read can return
	next     uint64 // sequence of the next change
	last     int64  // Unix nanoseconds of the last change; timestamps never go below it
	changed  chan struct{}
	closed   bool
	inflight sync.WaitGroup // Appends submitted and not yet answered; Add only under mu while open
}

// entry is one key of the cached state. A value that callers could change
// (a map, a slice) is kept encoded in raw and decoded afresh for each
// caller, so that what Get returns belongs to the caller.
type entry struct {
	value    any
	raw      []byte
	revision uint64
}

var (
	_ qpool.Ledger      = (*Ledger)(nil)
	_ qpool.CodecLedger = (*Ledger)(nil)
)

// Codec implements [qpool.CodecLedger].
func (l *Ledger) Codec() qpool.Codec { return l.db.cfg.codec }

// ID returns the entanglement ID the ledger belongs to.
func (l *Ledger) ID() string { return l.id }

// load reads id's meta and state from the file.
func (db *DB) load(id string) (l *Ledger, err error) {
	defer shield(&err)()
	l = &Ledger{db: db, id: id, state: make(map[string]entry)}
	err = db.bolt.View(func(tx *bbolt.Tx) error {
		b, ok, err := lookup(tx, id)
		if !ok || err != nil {
			return err
		}
		if err := l.loadMeta(b); err != nil {
			return err
		}
		return l.loadState(b)
	})
	return l, mapError(err)
}

// loadMeta reads the bounds and checks them against the log.
func (l *Ledger) loadMeta(b buckets) error {
	var err error
	if l.next, err = decodeUint64(b.meta.Get(nextKey), "next sequence"); err != nil {
		return err
	}
	if v := b.meta.Get(firstKey); v != nil {
		if l.first, err = decodeUint64(v, "first sequence"); err != nil {
			return err
		}
	}
	last, err := decodeUint64(b.meta.Get(lastKey), "last timestamp")
	l.last = int64(last)
	if err != nil {
		return err
	}
	if l.first > l.next {
		return fmt.Errorf("%w: first sequence %d is past next %d", ErrCorrupt, l.first, l.next)
	}
	if k, _ := b.log.Cursor().Last(); k != nil {
		if seq, err := decodeUint64(k, "log key"); err != nil || seq >= l.next {
			return fmt.Errorf("%w: log holds sequence %d at or past next %d", ErrCorrupt, seq, l.next)
		}
	}
	return nil
}

// loadState decodes the state bucket into the cache.
func (l *Ledger) loadState(b buckets) error {
	return b.state.ForEach(func(k, v []byte) error {
		rev, raw, err := decodeStateEntry(v)
		if err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		if rev > l.next {
			return fmt.Errorf("%w: key %q has revision %d past next %d", ErrCorrupt, k, rev, l.next)
		}
		e, err := l.newEntry(raw, rev)
		if err != nil {
			return fmt.Errorf("%w: key %q: %w", ErrCorrupt, k, err)
		}
		l.state[string(k)] = e
		return nil
	})
}

// newEntry decodes raw (which may alias bbolt's memory) into a cache entry.
func (l *Ledger) newEntry(raw []byte, rev uint64) (entry, error) {
	v, err := l.decode(raw)
	if err != nil {
		return entry{}, err
	}
	if shareable(v) {
		return entry{value: v, revision: rev}, nil
	}
	return entry{raw: append([]byte(nil), raw...), revision: rev}, nil
}

// decode decodes one value with the codec.
func (l *Ledger) decode(raw []byte) (any, error) {
	var v any
	err := l.db.cfg.codec.Unmarshal(raw, &v)
	return v, err
}

// get returns the value of e for a caller to own.
func (l *Ledger) get(e entry) any {
	if e.raw == nil {
		return e.value
	}
	v, err := l.decode(e.raw)
	if err != nil {
		return nil // decoded once already when cached, so the codec is broken
	}
	return v
}

// shareable reports whether v is immutable, so one copy serves every caller.
func shareable(v any) bool {
	switch v.(type) {
	case nil, bool, string, float64, float32, json.Number,
		int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return true
	}
	return false
}

// Get implements [qpool.Ledger].
func (l *Ledger) Get(key string) (any, uint64, bool) {
	l.mu.RLock()
	e, ok := l.state[key]
	l.mu.RUnlock()
	if !ok {
		return nil, 0, false
	}
	return l.get(e), e.revision, true
}

// Snapshot implements [qpool.Ledger].
func (l *Ledger) Snapshot() (map[string]any, uint64) {
	l.mu.RLock()
	entries := maps.Clone(l.state)
	next := l.next
	l.mu.RUnlock()
	m := make(map[string]any, len(entries))
	for k, e := range entries {
		m[k] = l.get(e)
	}
	return m, next
}

// Bounds implements [qpool.Ledger].
func (l *Ledger) Bounds() (first, next uint64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.first, l.next
}

// closedChan is returned by Changed after Close.
var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// Changed implements [qpool.Ledger].
func (l *Ledger) Changed() <-chan struct{} {
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

// shut marks the ledger closed and wakes Changed's channels. It reports
// whether this call did it.
func (l *Ledger) shut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.closed = true
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return true
}

// release drops the cache once no Append of the ledger is in flight.
func (l *Ledger) release() {
	l.inflight.Wait()
	l.mu.Lock()
	l.state = nil
	l.mu.Unlock()
	l.db.forget(l)
}

// Close implements [qpool.Ledger]: it keeps the data in the file for a
// later [DB.Ledger], waits for this ledger's Appends in flight, releases
// the cache and frees the ID. Later calls fail with [qpool.ErrClosed].
// Close is idempotent and does not close the DB.
func (l *Ledger) Close() error {
	if l.shut() {
		l.release()
	}
	return nil
}

// Drop implements [qpool.Ledger]: it closes the ledger and deletes its
// state and history from the file, in one fsync'd transaction. The pages
// freed are reused by later writes.
func (l *Ledger) Drop(_ context.Context) (err error) {
	if !l.shut() {
		return fmt.Errorf("boltledger: drop %q: %w", l.id, qpool.ErrClosed)
	}
	defer l.release()
	l.inflight.Wait()
	defer shield(&err)()
	err = l.db.bolt.Update(func(tx *bbolt.Tx) error { return drop(tx, l.id) })
	if err != nil {
		return fmt.Errorf("boltledger: drop %q: %w", l.id, mapError(err))
	}
	return nil
}
