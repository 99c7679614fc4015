package qpool

import (
	"sync"
	"sync/atomic"
)

// stateMap maps the keys of a MemoryLedger to their cells. It is built for
// a state that is read far more often than keys are added: a read of a key
// that has been there a while looks it up in an immutable Go map behind an
// atomic pointer, taking no lock and writing no shared memory, so readers
// scale with cores and never slow the writer. Keys added since the last
// promotion live in a dirty map that readers consult under a lock; after
// as many such misses as the dirty map has keys, it is promoted to be the
// read map, which makes the copying amortised O(1) per miss. This is the
// algorithm of sync.Map before Go 1.24, specialised: the ledger's mutex
// serialises all writers, and a deleted key keeps its cell (with a nil
// latest entry) until the next promotion drops it.
type stateMap struct {
	read atomic.Pointer[readMap]

	mu     sync.Mutex          // guards dirty and misses; readers take it on a miss
	dirty  map[string]*memCell // every live key, when read.amended; else nil
	misses int
}

type readMap struct {
	m       map[string]*memCell
	amended bool // dirty holds keys that m lacks
}

var emptyReadMap = &readMap{}

func (s *stateMap) load() *readMap {
	if r := s.read.Load(); r != nil {
		return r
	}
	return emptyReadMap
}

// get returns key's cell, or nil. Safe from any goroutine.
func (s *stateMap) get(key string) *memCell {
	r := s.load()
	if c, ok := r.m[key]; ok || !r.amended {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r = s.load()
	if c, ok := r.m[key]; ok || !r.amended {
		return c
	}
	c := s.dirty[key]
	if s.misses++; s.misses >= len(s.dirty) {
		s.read.Store(&readMap{m: s.dirty})
		s.dirty, s.misses = nil, 0
	}
	return c
}

// add makes c the cell of a key that has none. The ledger's mutex must be
// held.
func (s *stateMap) add(key string, c *memCell) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addLocked(key, c)
}

func (s *stateMap) addLocked(key string, c *memCell) {
	r := s.load()
	if !r.amended {
		s.dirty = make(map[string]*memCell, len(r.m)+1)
		for k, x := range r.m {
			if x.latest.Load() != nil { // drop deleted keys
				s.dirty[k] = x
			}
		}
		s.read.Store(&readMap{m: r.m, amended: true})
	}
	s.dirty[key] = c
}

// revive is called when a deleted key is set again through its old cell,
// found in the read map: the dirty map may have dropped that cell, and a
// promotion may since have made that dirty map the read map. The cell must
// stay reachable in whichever map is current. The ledger's mutex must be
// held.
func (s *stateMap) revive(key string, c *memCell) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.load()
	if r.amended {
		if _, ok := s.dirty[key]; !ok {
			s.dirty[key] = c
		}
		return
	}
	if _, ok := r.m[key]; !ok {
		s.addLocked(key, c)
	}
}

// each calls fn for every live key. The ledger's mutex must be held.
func (s *stateMap) each(fn func(key string, e *memEntry)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.load().m
	if s.load().amended {
		m = s.dirty
	}
	for k, c := range m {
		if e := c.latest.Load(); e != nil {
			fn(k, e)
		}
	}
}

// clear forgets every key. The ledger's mutex must be held.
func (s *stateMap) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.read.Store(emptyReadMap)
	s.dirty, s.misses = nil, 0
}
