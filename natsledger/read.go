package natsledger

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/qpool/qpool"
)

// closedChan is what Changed returns after Close.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Get implements qpool.Ledger from the local replica. The revision is the
// stream sequence of the key's last message (its deletion, for a deleted
// key), 0 for a key never written: what a guarded Append must name.
func (l *Ledger) Get(key string) (any, uint64, bool) {
	l.mu.Lock()
	s, ok := l.state[key]
	if !ok {
		l.mu.Unlock()
		return nil, 0, false
	}
	data, rev, deleted := s.data, s.rev, s.deleted
	l.mu.Unlock()
	if deleted {
		return nil, rev, false
	}
	return l.decode(data), rev, true
}

// Snapshot implements qpool.Ledger from the local replica; every value is
// decoded afresh, so the map and its values belong to the caller.
func (l *Ledger) Snapshot() (map[string]any, uint64) {
	l.mu.Lock()
	enc := make(map[string][]byte, len(l.state))
	for k, s := range l.state {
		if !s.deleted {
			enc[k] = s.data
		}
	}
	next := l.applied
	l.mu.Unlock()
	out := make(map[string]any, len(enc))
	for k, data := range enc {
		out[k] = l.decode(data)
	}
	return out, next
}

// Bounds implements qpool.Ledger from the local replica.
func (l *Ledger) Bounds() (first, next uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.floor, l.applied
}

// Changed implements qpool.Ledger. The channel closes when the replica
// applies a change, whichever process made it, and on Close.
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

// Read implements qpool.Ledger. It returns changes up to what the replica
// has applied: recent ones from the replica's cache, older ones from the
// stream through an ordered consumer. Values are decoded afresh for each
// call.
func (l *Ledger) Read(ctx context.Context, since uint64, limit int) ([]qpool.StateChange, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("natsledger: read: %w", qpool.ErrClosed)
	}
	since = max(since, l.floor)
	next := l.applied
	if since >= next {
		l.mu.Unlock()
		return nil, nil
	}
	if since < l.cacheFrom {
		l.mu.Unlock()
		return l.readStream(ctx, since, next, limit)
	}
	i := sort.Search(len(l.recent), func(i int) bool { return l.recent[i].seq >= since })
	recs := l.recent[i:]
	if limit > 0 && len(recs) > limit {
		recs = recs[:limit]
	}
	recs = slices.Clone(recs)
	l.mu.Unlock()
	out := make([]qpool.StateChange, len(recs))
	for i, r := range recs {
		out[i] = l.change(r)
	}
	return out, nil
}

// change turns a record into the StateChange callers get.
func (l *Ledger) change(r record) qpool.StateChange {
	c := qpool.StateChange{Sequence: r.seq, Timestamp: time.Unix(0, r.nanos), Key: r.key, Deleted: r.deleted}
	if !r.deleted {
		c.Value = l.decode(r.data)
	}
	return c
}

// decode returns a fresh decoded value. Data the codec cannot decode
// (a message some other writer put on the stream) comes back as a copy of
// the raw bytes, so that it stays visible.
func (l *Ledger) decode(data []byte) any {
	if _, ok := l.cfg.codec.(qpool.JSONCodec); ok {
		if v, ok := decodeScalar(data); ok {
			return v
		}
	}
	var v any
	if err := l.cfg.codec.Unmarshal(data, &v); err != nil {
		return slices.Clone(data)
	}
	return v
}
