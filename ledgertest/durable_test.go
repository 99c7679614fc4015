package ledgertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/qpool/qpool"
)

// jsonLedger is a small durable ledger for the suite's own tests: it keeps
// values as JSON, as the bbolt and NATS ledgers do, and saves everything
// into its store on Close, so the durability checks have a real subject.
type jsonLedger struct {
	store *store
	// forgets makes Close drop the data and keepsOnDrop makes Drop keep
	// it: the two defects the durability checks must catch.
	forgets, keepsOnDrop bool

	mu      sync.Mutex // guards the fields below
	data    jsonData
	changed chan struct{}
	closed  bool
}

// store is what survives Close: the encoded data, nil when empty.
type store struct {
	mu    sync.Mutex // guards saved
	saved []byte
}

type jsonData struct {
	First, Next uint64
	History     []jsonChange // from First
	State       map[string]jsonValue
}

type jsonChange struct {
	Timestamp time.Time
	Key       string
	Value     json.RawMessage
	Deleted   bool
}

type jsonValue struct {
	Value    json.RawMessage
	Revision uint64
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// openJSON opens the ledger saved in s, or an empty one.
func openJSON(s *store, forgets, keepsOnDrop bool) (*jsonLedger, error) {
	l := &jsonLedger{store: s, forgets: forgets, keepsOnDrop: keepsOnDrop, data: jsonData{State: map[string]jsonValue{}}}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.saved != nil {
		if err := json.Unmarshal(s.saved, &l.data); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Reopen implements ledgertest.Reopener.
func (l *jsonLedger) Reopen() (qpool.Ledger, error) {
	return openJSON(l.store, l.forgets, l.keepsOnDrop)
}

func decode(raw json.RawMessage) any {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		panic(err) // we encoded it ourselves
	}
	return v
}

func (l *jsonLedger) Append(_ context.Context, m qpool.Mutation) (qpool.StateChange, error) {
	raw, err := json.Marshal(m.Value)
	if err != nil {
		return qpool.StateChange{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return qpool.StateChange{}, qpool.ErrClosed
	}
	if cur := l.data.State[m.Key].Revision; m.Guarded && cur != m.Revision {
		return qpool.StateChange{}, fmt.Errorf("%w: %q", qpool.ErrConflict, m.Key)
	}
	seq := l.data.Next
	c := jsonChange{Timestamp: time.Now(), Key: m.Key, Value: raw, Deleted: m.Delete}
	if m.Delete {
		c.Value = json.RawMessage("null")
		delete(l.data.State, m.Key)
	} else {
		l.data.State[m.Key] = jsonValue{raw, seq + 1}
	}
	l.data.History = append(l.data.History, c)
	l.data.Next++
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return l.change(seq, c), nil
}

func (l *jsonLedger) change(seq uint64, c jsonChange) qpool.StateChange {
	return qpool.StateChange{Sequence: seq, Timestamp: c.Timestamp, Key: c.Key, Value: decode(c.Value), Deleted: c.Deleted}
}

func (l *jsonLedger) Get(key string) (any, uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.data.State[key]
	if !ok {
		return nil, 0, false
	}
	return decode(v.Value), v.Revision, true
}

func (l *jsonLedger) Snapshot() (map[string]any, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[string]any, len(l.data.State))
	for k, v := range l.data.State {
		m[k] = decode(v.Value)
	}
	return m, l.data.Next
}

func (l *jsonLedger) Read(_ context.Context, since uint64, limit int) ([]qpool.StateChange, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []qpool.StateChange
	for seq := max(since, l.data.First); seq < l.data.Next && (limit <= 0 || len(out) < limit); seq++ {
		out = append(out, l.change(seq, l.data.History[seq-l.data.First]))
	}
	return out, nil
}

func (l *jsonLedger) Bounds() (first, next uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.data.First, l.data.Next
}

func (l *jsonLedger) Changed() <-chan struct{} {
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

func (l *jsonLedger) Compact(_ context.Context, before uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if before = min(before, l.data.Next); before > l.data.First {
		l.data.History = l.data.History[before-l.data.First:]
		l.data.First = before
	}
	return nil
}

func (l *jsonLedger) Drop(context.Context) error { return l.end(!l.keepsOnDrop) }

func (l *jsonLedger) Close() error { return l.end(l.forgets) }

// end closes the ledger, saving its data unless erase is set.
func (l *jsonLedger) end(erase bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	saved, err := json.Marshal(l.data)
	if erase {
		saved, err = nil, nil
	}
	l.store.mu.Lock()
	l.store.saved = saved
	l.store.mu.Unlock()
	return err
}
