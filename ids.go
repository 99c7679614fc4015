package qpool

import (
	"hash/maphash"
	"sync"
	"time"
)

// idShards is how many parts the registry of job IDs is split into, so that
// a submitter registering a job and the workers releasing finished ones
// rarely wait for the same lock.
const idShards = 32

// idRegistry maps job IDs to jobs while they wait, queue or run, and for the
// result TTL after they end.
type idRegistry struct {
	seed   maphash.Seed
	ttl    time.Duration
	shards [idShards]idShard
}

type idShard struct {
	mu       sync.Mutex // guards the fields below
	jobs     map[string]*job
	retained []retainedJob // finished jobs kept for the result TTL, oldest first
	_        [64]byte      // keep neighbouring shards' locks off one cache line
}

// retainedJob is a finished job kept for the result TTL.
type retainedJob struct {
	j       *job
	expires time.Time
}

func (r *idRegistry) init(ttl time.Duration) {
	r.seed, r.ttl = maphash.MakeSeed(), ttl
	for i := range r.shards {
		r.shards[i].jobs = make(map[string]*job)
	}
}

func (r *idRegistry) shard(id string) *idShard {
	return &r.shards[maphash.String(r.seed, id)%idShards]
}

// get returns the job registered under id, or nil.
func (r *idRegistry) get(id string) *job {
	s := r.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	return s.jobs[id]
}

// add registers j unless a job with its ID is still unresolved.
func (r *idRegistry) add(j *job) bool {
	s := r.shard(j.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire()
	if old := s.jobs[j.id]; old != nil && !old.isDone() {
		return false
	}
	s.jobs[j.id] = j
	return true
}

// finished retains a resolved job for the TTL, or forgets it.
func (r *idRegistry) finished(j *job) {
	s := r.shard(j.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobs[j.id] != j {
		return // replaced, or dropped by Close
	}
	if r.ttl > 0 {
		s.retained = append(s.retained, retainedJob{j, time.Now().Add(r.ttl)})
	} else {
		delete(s.jobs, j.id)
	}
}

// expire drops retained jobs whose result TTL has passed. s.mu must be held.
func (s *idShard) expire() {
	if len(s.retained) == 0 {
		return
	}
	now := time.Now()
	i := 0
	for ; i < len(s.retained) && now.After(s.retained[i].expires); i++ {
		if j := s.retained[i].j; s.jobs[j.id] == j {
			delete(s.jobs, j.id)
		}
		s.retained[i] = retainedJob{}
	}
	s.retained = s.retained[i:]
}

// unresolved returns every job that has not been resolved yet.
func (r *idRegistry) unresolved() []*job {
	var live []*job
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		for _, j := range s.jobs {
			if !j.isDone() {
				live = append(live, j)
			}
		}
		s.mu.Unlock()
	}
	return live
}

// clear forgets every job.
func (r *idRegistry) clear() {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		clear(s.jobs)
		s.retained = nil
		s.mu.Unlock()
	}
}
