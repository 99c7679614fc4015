package qpool

import (
	"hash/maphash"
	"sync"
	"time"
)

// idShards is how many parts the registry of job IDs is split into, so that
// a submitter registering a job and the workers releasing finished ones
// rarely wait for the same lock. A shard is chosen by the top bits of the
// ID's hash; its table uses the low bits.
const (
	idShardBits = 5
	idShards    = 1 << idShardBits
)

// idRegistry maps job IDs to jobs while they wait, queue or run, and for the
// result TTL after they end.
//
// Without a TTL a finished job is not removed when it ends: its entry
// stays, ignored, until a sweep: by the submission that finds its shard's
// table full (see add), by the idle reaper, and by the last worker to exit
// (dropFinished). So the workers never touch the registry while they run
// jobs, and its locks and tables stay on the submitting goroutine's core.
// The cost is memory: a finished job, and the value it returned, stay
// allocated until that sweep, at most three quarters of each shard's table
// (3 jobs in a table that never grew, 96 in a pool; about three times the
// most jobs unresolved at once in a busier one), and no longer than the
// idle timeout once the pool is idle.
type idRegistry struct {
	seed   maphash.Seed
	ttl    time.Duration
	epoch  time.Time // with a monotonic reading, which expiries count from
	shards [idShards]idShard
}

type idShard struct {
	mu       sync.Mutex // guards the fields below
	jobs     idTable
	retained []retainedJob // finished jobs kept for the result TTL, oldest first
	_        [64]byte      // keep neighbouring shards' locks off one cache line
}

// retainedJob is a finished job kept for the result TTL.
type retainedJob struct {
	j       *job
	expires time.Duration // since the registry's epoch
}

func (r *idRegistry) init(ttl time.Duration) {
	r.seed, r.ttl, r.epoch = maphash.MakeSeed(), ttl, time.Now()
}

// now is the time since the registry's epoch. It reads only the monotonic
// clock, where time.Now reads the wall clock too: a worker reads it for
// every job it finishes.
func (r *idRegistry) now() time.Duration { return time.Since(r.epoch) }

// shard returns id's shard and hash.
func (r *idRegistry) shard(id string) (*idShard, uint64) {
	h := maphash.String(r.seed, id)
	return &r.shards[h>>(64-idShardBits)], h
}

// get returns the job registered under id, or nil.
func (r *idRegistry) get(id string) *job {
	s, h := r.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(r)
	j := s.jobs.find(h, id)
	if j != nil && r.ttl <= 0 && j.isDone() {
		return nil // finished, and not yet swept out
	}
	return j
}

// isLive reports whether j is unresolved: its ID is then taken.
func isLive(j *job) bool { return !j.isDone() }

// add registers j unless a job with its ID is still unresolved.
func (r *idRegistry) add(j *job) bool {
	s, h := r.shard(j.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(r)
	if r.ttl <= 0 && s.jobs.full() {
		s.jobs.tidy((*job).isDone)
	}
	return s.jobs.putUnless(h, j, isLive) == nil
}

// finished retains a resolved job for the TTL. Without a TTL it does
// nothing: sweeps drop finished jobs (see idRegistry). It does not look the
// job up in the table: a job with the same ID may have replaced it since
// it was resolved, and then expire leaves the replacement alone.
func (r *idRegistry) finished(j *job) {
	if r.ttl <= 0 {
		return
	}
	s, _ := r.shard(j.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retained = append(s.retained, retainedJob{j, r.now() + r.ttl})
}

// expire drops retained jobs whose result TTL has passed. s.mu must be held.
func (s *idShard) expire(r *idRegistry) {
	if len(s.retained) == 0 {
		return
	}
	now := r.now()
	i := 0
	for ; i < len(s.retained) && now > s.retained[i].expires; i++ {
		j := s.retained[i].j
		s.jobs.remove(maphash.String(r.seed, j.id), j) // unless replaced
		s.retained[i] = retainedJob{}
	}
	s.retained = s.retained[i:]
}

// dropFinished drops what the registry keeps only for finished jobs: without
// a TTL every finished job (what add's sweeps have not dropped yet), with
// one every job whose TTL has passed (what later submissions and lookups
// to its shard would drop). The idle reaper calls it, so that an idle pool
// lets finished jobs go; it reports whether jobs are still retained for
// their TTL, which keeps the reaper running.
func (r *idRegistry) dropFinished() (retaining bool) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		if r.ttl > 0 {
			s.expire(r)
			retaining = retaining || len(s.retained) > 0
		} else if s.jobs.n > 0 {
			s.jobs.sweep((*job).isDone)
			s.jobs.fit()
		}
		s.mu.Unlock()
	}
	return retaining
}

// unresolved returns every job that has not been resolved yet.
func (r *idRegistry) unresolved() []*job {
	var live []*job
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		s.jobs.each(func(j *job) {
			if !j.isDone() {
				live = append(live, j)
			}
		})
		s.mu.Unlock()
	}
	return live
}

// clear forgets every job.
func (r *idRegistry) clear() {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		s.jobs.reset()
		s.retained = nil
		s.mu.Unlock()
	}
}
