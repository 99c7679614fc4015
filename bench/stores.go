package bench

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/qpool/qpool"
)

// Store is the adapter of the entanglement workloads: the floor
// ([PlainStore]) and qpool's entanglement in its configurations.
type Store interface {
	Update(key string, v any) error
	Get(key string) (any, bool)
	// Tail reads the changes from since on and returns how many it read.
	Tail(since uint64) int
	// Len is the number of recorded changes.
	Len() uint64
	// Close releases the store and ends every goroutine it started.
	Close()
}

// StoreCase names a Store constructor.
type StoreCase struct {
	Name string
	New  func() Store
}

// Stores lists every store, floor first. Only the first two are used by
// the workloads that need no callback.
func Stores() []StoreCase {
	return []StoreCase{
		{"floor", func() Store { return NewPlainStore() }},
		{"qpool", func() Store { return newEntStore(0) }},
		{"qpool-onstatechange", func() Store { return newEntStore(hookStateChange) }},
		{"qpool-onchange", func() Store { return newEntStore(hookOnChange) }},
		{"qpool-watch", func() Store { return newEntStore(hookWatch) }},
	}
}

type hook int

const (
	hookStateChange hook = iota + 1
	hookOnChange
	hookWatch
)

// EntStore adapts a *qpool.Entanglement (no TTL) to Store. With a hook it
// counts the changes the hook saw; Close waits until a watch has seen them
// all, so a benchmark that closes inside its timing pays for delivery.
type EntStore struct {
	E    *qpool.Entanglement
	seen atomic.Uint64

	cancel context.CancelFunc
	wg     sync.WaitGroup
	hook   hook
}

func newEntStore(h hook) *EntStore {
	s := &EntStore{hook: h}
	var opts []qpool.EntanglementOption
	if h == hookOnChange {
		opts = append(opts, qpool.WithOnChange(func(qpool.StateChange) { s.seen.Add(1) }))
	}
	s.E = qpool.NewEntanglement("bench", nil, 0, opts...)
	if h == hookWatch {
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		ch := s.E.Watch(ctx, 0)
		s.wg.Add(1)
		// Owner: the store; ends when Close cancels the watch.
		go func() {
			defer s.wg.Done()
			for range ch {
				s.seen.Add(1)
			}
		}()
	}
	return s
}

// Arm sets the OnStateChange callback of a store made for it. The
// benchmarks fill the state first: with the callback set, filling n keys
// would copy the state n times. Assigning the field between updates is the
// use the field's documentation allows.
func (s *EntStore) Arm() {
	if s.hook == hookStateChange && s.E.OnStateChange == nil {
		s.E.OnStateChange = func(_, _ map[string]any) { s.seen.Add(1) }
	}
}

// Update implements Store.
func (s *EntStore) Update(key string, v any) error { return s.E.UpdateState(key, v) }

// Get implements Store.
func (s *EntStore) Get(key string) (any, bool) { return s.E.GetState(key) }

// Tail implements Store.
func (s *EntStore) Tail(since uint64) int { return len(s.E.GetStateHistory(since)) }

// Len implements Store.
func (s *EntStore) Len() uint64 {
	h := s.E.GetStateHistory(0)
	if len(h) == 0 {
		return 0
	}
	return h[len(h)-1].Sequence + 1
}

// Seen is how many changes the store's hook has received.
func (s *EntStore) Seen() uint64 { return s.seen.Load() }

// WaitSeen spins until the hook has seen n changes: the watch catches up.
func (s *EntStore) WaitSeen(n uint64) {
	for s.seen.Load() < n {
		yield()
	}
}

// Close implements Store.
func (s *EntStore) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	_ = s.E.Close()
	s.wg.Wait()
}
