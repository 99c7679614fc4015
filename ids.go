package qpool

import (
	"hash/maphash"
	"math"
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

// idRegistry maps job IDs to jobs while they wait, queue or run, and
// remembers finished ones in one of three ways, by the pool's options:
//
//   - With a result TTL ([WithResultTTL]) a finished job stays registered,
//     value and all, for the TTL: [Pool.Result] finds it, and so do jobs
//     that depend on it.
//   - Without one but with a dependency window ([WithDependencyWindow], the
//     default), the worker that finishes a job unregisters it and keeps
//     only its outcome (ID and error) for the window, in its shard's
//     outcome ring. The job, and the value it returned, belong to its
//     future alone from then on: a dropped future frees its result at the
//     next collection.
//   - With neither, a finished job is not removed when it ends: its entry
//     stays, ignored, until a sweep: by the submission that finds its
//     shard's table full (see add), by the idle reaper, and by the last
//     worker to exit (dropFinished). So the workers never touch the
//     registry while they run jobs, and its locks and tables stay on the
//     submitting goroutine's core: the cheapest mode, for throughput
//     workloads. The cost is memory: a finished job, and the value it
//     returned, stay allocated until that sweep, at most three quarters
//     of each shard's table (3 jobs in a table that never grew, 96 in a
//     pool; about three times the most jobs unresolved at once in a busier
//     one), and no longer than the idle timeout once the pool is idle.
type idRegistry struct {
	seed   maphash.Seed
	ttl    time.Duration // result TTL: finished jobs kept whole
	window time.Duration // dependency window: outcomes kept, when ttl is 0
	epoch  time.Time     // with a monotonic reading, which expiries count from
	shards [idShards]idShard
}

type idShard struct {
	mu       sync.Mutex // guards the fields below
	jobs     idTable
	retained []retainedJob // finished jobs kept for the result TTL, oldest first
	outcomes outcomeRing   // finished jobs' outcomes, for the dependency window
	_        [64]byte      // keep neighbouring shards' locks off one cache line
}

// retainedJob is a finished job kept for the result TTL.
type retainedJob struct {
	j       *job
	expires time.Duration // since the registry's epoch
}

func (r *idRegistry) init(ttl, window time.Duration) {
	r.seed, r.ttl, r.window, r.epoch = maphash.MakeSeed(), ttl, window, time.Now()
}

// lazy reports whether finished jobs stay in the tables, ignored, until a
// sweep: neither a result TTL nor a dependency window.
func (r *idRegistry) lazy() bool { return r.ttl <= 0 && r.window <= 0 }

// now is the time since the registry's epoch. It reads only the monotonic
// clock, where time.Now reads the wall clock too: a worker reads it for
// every job it finishes.
func (r *idRegistry) now() time.Duration { return time.Since(r.epoch) }

// later returns now+d, or the latest time there is when that overflows: a
// TTL or window of math.MaxInt64 means "forever", not an expiry in the
// past. now is not negative (it counts from the registry's epoch).
func later(now, d time.Duration) time.Duration {
	if t := now + d; t >= now {
		return t
	}
	return math.MaxInt64
}

// shard returns id's shard and hash.
func (r *idRegistry) shard(id string) (*idShard, uint64) {
	h := maphash.String(r.seed, id)
	return &r.shards[h>>(64-idShardBits)], h
}

// get returns the job registered under id, or nil.
func (r *idRegistry) get(id string) *job {
	j, _, _ := r.lookup(id)
	return j
}

// lookup returns the job registered under id or, when the registry has
// let it go, the outcome it remembers of the latest job with that ID. One
// lock covers both looks, and a finishing job moves from the table to the
// outcomes under the same lock, so a job that finishes meanwhile is found
// in one place or the other.
func (r *idRegistry) lookup(id string) (*job, outcome, bool) {
	s, h := r.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(r)
	j := s.jobs.find(h, id)
	if j != nil && r.lazy() && j.isDone() {
		return nil, outcome{}, false // finished, and not yet swept out
	}
	if j != nil {
		return j, outcome{}, false
	}
	o, ok := s.outcomes.find(h, id)
	if ok && r.now() > o.expires {
		// The newest outcome under id is past its window, and so is
		// every older one: the ID is unknown.
		return nil, outcome{}, false
	}
	return nil, o, ok
}

// isLive reports whether j is unresolved: its ID is then taken.
func isLive(j *job) bool { return !j.isDone() }

// add registers j unless a job with its ID is still unresolved.
func (r *idRegistry) add(j *job) bool {
	s, h := r.shard(j.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(r)
	if r.lazy() && s.jobs.full() {
		s.jobs.tidy((*job).isDone)
	}
	return s.jobs.putUnless(h, j, isLive) == nil
}

// finished retains a resolved job for the TTL or, with a dependency window
// and no TTL, replaces it by its outcome. In the lazy mode it does nothing:
// sweeps drop finished jobs (see idRegistry). With a TTL it does not look
// the job up in the table: a job with the same ID may have replaced it
// since it was resolved, and then expire leaves the replacement alone.
// Keeping outcomes, it records one only for the job it unregisters: a job
// that replaced this one under its ID is newer and will record its own.
func (r *idRegistry) finished(j *job) {
	switch {
	case r.ttl > 0:
		s, _ := r.shard(j.id)
		s.mu.Lock()
		s.retained = append(s.retained, retainedJob{j, later(r.now(), r.ttl)})
		s.mu.Unlock()
	case r.window > 0:
		s, h := r.shard(j.id)
		s.mu.Lock()
		if s.jobs.remove(h, j) {
			s.outcomes.put(h, outcomeOf(j, later(r.now(), r.window)))
		}
		s.mu.Unlock()
	}
}

// outcomeOf is what the registry keeps of a finished job j until expires.
func outcomeOf(j *job, expires time.Duration) outcome {
	return outcome{id: j.id, err: j.result(), expires: expires, depFailed: j.has(flagDepFailed)}
}

// expire drops retained jobs whose result TTL has passed, keeping their
// outcome when the dependency window outlasts the TTL. s.mu must be held.
//
// Outcomes are not expired here, on every submission's path: the ring is
// bounded whatever their windows, and lookup checks the window of the one
// it finds. The idle reaper (dropFinished) lets expired ones go.
func (s *idShard) expire(r *idRegistry) {
	if len(s.retained) == 0 {
		return
	}
	now := r.now()
	i := 0
	for ; i < len(s.retained) && now > s.retained[i].expires; i++ {
		rj := s.retained[i]
		h := maphash.String(r.seed, rj.j.id)
		if s.jobs.remove(h, rj.j) && r.window > r.ttl { // unless replaced
			s.outcomes.put(h, outcomeOf(rj.j, later(rj.expires-r.ttl, r.window)))
		}
		s.retained[i] = retainedJob{}
	}
	s.retained = s.retained[i:]
}

// dropFinished drops what the registry keeps only for finished jobs: in
// the lazy mode every finished job (what add's sweeps have not dropped
// yet), otherwise every retained job whose TTL has passed (what later
// submissions and lookups to its shard would drop) and every outcome whose
// window has passed (which only this drops; lookups ignore them). The idle
// reaper calls it, so that an idle pool lets finished jobs go; it reports
// whether jobs or outcomes are still kept for their time, which keeps the
// reaper running.
func (r *idRegistry) dropFinished() (retaining bool) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		if r.lazy() {
			if s.jobs.n > 0 {
				s.jobs.sweep((*job).isDone)
				s.jobs.fit()
			}
		} else {
			s.expire(r)
			s.outcomes.expire(r.now())
			s.jobs.fit()
			retaining = retaining || len(s.retained) > 0 || s.outcomes.n > 0
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
		s.outcomes = outcomeRing{}
		s.mu.Unlock()
	}
}
