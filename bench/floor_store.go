package bench

import (
	"sync"
	"time"
)

// plainEntry is one change of the floor store, as the issue describes it.
type plainEntry struct {
	seq   uint64
	time  time.Time
	key   string
	value any
}

// PlainStore is the floor for entanglements: one mutex, a map for the
// state and an append-only slice for the history. It has no callbacks, no
// watches and no TTL; reading history copies the tail under the lock.
type PlainStore struct {
	mu    sync.Mutex
	state map[string]any
	log   []plainEntry
}

// NewPlainStore returns an empty store.
func NewPlainStore() *PlainStore { return &PlainStore{state: make(map[string]any)} }

// Update sets key and appends the change.
func (s *PlainStore) Update(key string, v any) error {
	s.mu.Lock()
	s.state[key] = v
	s.log = append(s.log, plainEntry{uint64(len(s.log)), time.Now(), key, v})
	s.mu.Unlock()
	return nil
}

// Get returns key's value.
func (s *PlainStore) Get(key string) (any, bool) {
	s.mu.Lock()
	v, ok := s.state[key]
	s.mu.Unlock()
	return v, ok
}

// Tail copies the changes from since on and returns how many there were.
func (s *PlainStore) Tail(since uint64) int {
	s.mu.Lock()
	var out []plainEntry
	if since < uint64(len(s.log)) {
		out = append([]plainEntry(nil), s.log[since:]...)
	}
	s.mu.Unlock()
	return len(out)
}

// Len returns the number of recorded changes.
func (s *PlainStore) Len() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.log))
}

// Close does nothing: the store owns no goroutine.
func (s *PlainStore) Close() {}
