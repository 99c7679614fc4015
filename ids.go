package qpool

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
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
//     default), a finished job is unregistered and only its outcome (ID and
//     error) kept for the window, in its shard's outcome ring: by its
//     worker, or, when that worker has more work queued, by whoever next
//     takes the shard's lock (see finishedBy). The job, and the value it
//     returned, then belong to its future alone: a dropped future frees its
//     result at the next collection.
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

	// fin is a stack of finished jobs whose move from jobs to outcomes is
	// owed, linked through job.finNext: see the deferred-finish protocol
	// at finishedBy. Pushed by workers without the lock, taken whole under
	// it; on a line of its own, so that a push does not take the line of
	// the lock and the table from the submitter.
	fin atomic.Pointer[job]
	_   [56]byte
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
	s.drain(r)
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
	s.drain(r)
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
func (r *idRegistry) finished(j *job) { r.finishedBy(j, nil) }

// finishedBy is finished for a job that the worker owning b ran, or, with
// a nil b, for any job. With a dependency window and no TTL, a worker that
// has more work queued (b.deferring) pushes the job on its shard's fin
// stack instead of moving it to the outcomes itself: the submitter, which
// takes the shard's lock for its next job there anyway, moves it, so the
// worker's next job does not wait for the lock, the table and the ring, all
// last written on the submitter's core. A worker with nothing queued moves
// the job itself, having moved what it deferred before it resolved the job.
//
// The deferred-finish protocol. Invariant: under a shard's lock, once
// drain has run, the table and the outcome ring are exactly what they would
// be had every pushed job been moved (unregistered, its outcome recorded)
// at its push; and the registry lets a pushed job go within a bound. It
// rests on:
//   - every reader or writer of jobs or outcomes (add, lookup, dropFinished)
//     drains the stack first, under the lock, so a pushed job is moved
//     before anyone under the lock looks. unresolved, which skips finished
//     jobs, and clear, which drops everything, need not;
//   - a push happens before the job's waiters are woken (release runs
//     before wake in settle), so a woken waiter finds the job moved:
//     Pool.Result no longer finds it, a dependency on it finds its outcome.
//     One that saw the job done without waiting may look a moment before
//     the push, as it could before the move was deferred: it then finds the
//     job itself, resolved, which a dependency counts as its outcome;
//   - only the job's worker pushes it, once; and at most one job per ID is
//     on a stack, since add drains before it registers another under the
//     same ID;
//   - drain takes the whole stack with one Swap, so a push (a CAS on the
//     head) needs no lock and nothing is popped singly (no ABA);
//   - the worker notes in b the shards it pushed to, and flushes them (each
//     drained under its lock): before it resolves a job it ends with
//     nothing queued (resolveRan), when it finds the queue empty, when it
//     exits, and after maxDeferred pushes. So beyond their futures the registry holds at
//     most maxDeferred finished jobs per worker, and only while that worker
//     keeps finding work queued: none, once the workers have found the
//     queue empty.
//
// Who may break it: code that reads or changes jobs or outcomes under the
// lock without drain; a push after the wake; a worker that waits for work
// or exits with shards noted in b; a drain that leaves finNext set (a
// drained job still held by its future would keep the rest of its batch
// alive).
func (r *idRegistry) finishedBy(j *job, b *finBatch) {
	switch {
	case r.ttl > 0:
		s, _ := r.shard(j.id)
		s.mu.Lock()
		s.retained = append(s.retained, retainedJob{j, r.now() + r.ttl})
		s.mu.Unlock()
	case r.window > 0:
		s, h := r.shard(j.id)
		if b != nil && b.deferring {
			for {
				top := s.fin.Load()
				j.finNext = top
				if s.fin.CompareAndSwap(top, j) {
					break
				}
			}
			b.shards |= 1 << (h >> (64 - idShardBits))
			if b.n++; b.n >= maxDeferred {
				r.flush(b)
			}
			return
		}
		s.mu.Lock()
		s.drain(r)
		if s.jobs.remove(h, j) {
			s.outcomes.put(h, outcomeOf(j, r.now()+r.window))
		}
		s.mu.Unlock()
	}
}

// maxDeferred is how many finished jobs a worker pushes on the shards'
// stacks before it drains them itself: it bounds what the registry holds
// beyond the jobs' futures while the worker keeps finding work queued and
// no submission comes to drain them.
const maxDeferred = 256

// finBatch is a worker's note of the shards it pushed finished jobs to
// since it last flushed (see finishedBy). It is the worker's own.
type finBatch struct {
	shards    uint32 // a bit per shard
	n         int    // jobs pushed
	deferring bool   // set per job: more work was queued when it ended
}

// flush drains the stacks of the shards noted in b. A stack found empty is
// left alone: whoever took it drains it under the lock.
func (r *idRegistry) flush(b *finBatch) {
	for m := b.shards; m != 0; m &= m - 1 {
		s := &r.shards[bits.TrailingZeros32(m)]
		if s.fin.Load() == nil {
			continue
		}
		s.mu.Lock()
		s.drain(r)
		s.mu.Unlock()
	}
	*b = finBatch{}
}

// drain moves the jobs pushed on s's stack from the table to the outcomes
// (see finishedBy). s.mu must be held.
func (s *idShard) drain(r *idRegistry) {
	if s.fin.Load() == nil {
		return
	}
	j := s.fin.Swap(nil)
	expires := r.now() + r.window
	for j != nil {
		next := j.finNext
		j.finNext = nil
		h := maphash.String(r.seed, j.id)
		if s.jobs.remove(h, j) {
			s.outcomes.put(h, outcomeOf(j, expires))
		}
		j = next
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
			s.outcomes.put(h, outcomeOf(rj.j, rj.expires-r.ttl+r.window))
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
			s.drain(r)
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
		s.drain(r) // nothing is pushed after the workers have ended: unlinks
		s.retained = nil
		s.outcomes = outcomeRing{}
		s.mu.Unlock()
	}
}
