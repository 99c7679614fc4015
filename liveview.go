package qpool

import (
	"fmt"
	"runtime"
	"sync"
	"time"
)

// JobState is where a job is in its life, as [Pool.Jobs] and [Pool.Job]
// report it.
type JobState uint8

// Job states, in the order a job moves through them (it may skip to
// JobDone from any of them).
const (
	JobWaiting JobState = iota + 1 // waiting for its dependencies
	JobQueued                      // accepted, waiting for a worker
	JobRunning                     // a worker runs it (or sleeps its retry backoff)
	JobDone                        // resolved
)

var jobStateNames = [...]string{"", "waiting", "queued", "running", "done"}

// String returns "waiting", "queued", "running" or "done".
func (s JobState) String() string {
	if s != 0 && int(s) < len(jobStateNames) {
		return jobStateNames[s]
	}
	return fmt.Sprintf("JobState(%d)", uint8(s))
}

// JobInfo describes one job, as [Pool.Jobs] and [Pool.Job] see it.
type JobInfo struct {
	ID    string
	State JobState
	// Attempt is the number of attempts started so far: 0 while the job
	// waits or queues before its first, and for a job that ended without
	// running.
	Attempt int
	// Submitted and Started (the start of the current or last attempt) are
	// recorded only by a pool with an observer ([WithObserver]; an empty
	// Observer{} will do): they cost a clock read per event, which a pool
	// without one does not pay. Without one they are zero. Started is
	// also zero for a job just moved to running whose worker has not yet
	// recorded the attempt's start (usually nanoseconds; longer if that
	// goroutine is descheduled).
	Submitted time.Time
	Started   time.Time
	// Err is the job's error once it is done (nil for a success).
	Err error
}

// DefaultJobsLimit is the most jobs [Pool.Jobs] returns when its limit is
// zero or less.
const DefaultJobsLimit = 1000

// jobState maps the pool's internal state to a JobState.
func jobState(s int32) JobState {
	switch s {
	case stateWaiting:
		return JobWaiting
	case stateQueued:
		return JobQueued
	case stateRunning:
		return JobRunning
	}
	return JobDone
}

// info describes j now, without stopping it. Its fields are read one by
// one, so it reads the state before and after them and tries again when
// the job moved on meanwhile (a few times: a job that keeps moving is
// described as it was at some point of the last try). A running job whose
// worker has not yet recorded the attempt's start (it moves the job to
// running first: a few instructions, longer if its goroutine is
// descheduled) shows a zero Started.
func info(j *job) JobInfo {
	var ji JobInfo
	for try := 0; try < 8; try++ {
		s := j.state.Load()
		ji = JobInfo{ID: j.id, State: jobState(s)}
		if o := j.obsOf(); o != nil {
			ji.Attempt = int(o.attempt.Load())
			if obs := j.cfg.pool.obs; obs != nil { // times are recorded only then
				if o.submitted != 0 {
					ji.Submitted = obs.at(o.submitted)
				}
				if st := o.started.Load(); st != 0 {
					ji.Started = obs.at(st)
				}
			}
		}
		switch {
		case s == stateDone:
			ji.Err = j.result()
			if ji.Attempt == 0 && j.r.ran() {
				ji.Attempt = 1
			}
		case s == stateRunning && ji.Attempt == 0:
			ji.Attempt = 1 // the first attempt: only later ones are recorded without an observer
		}
		if j.state.Load() == s {
			break
		}
		runtime.Gosched()
	}
	return ji
}

// Jobs returns at most limit of the pool's live jobs: those submitted with
// an ID ([Submit], [Pool.Schedule], [Group]) and not yet resolved, in no
// particular order. A non-zero state keeps only the jobs in that state
// (JobDone finds none: see [Pool.Job] for a finished one). A limit of zero
// or less means [DefaultJobsLimit].
//
// Jobs does not stop the pool: it visits the pool's registry one part at
// a time, each under that part's lock (the lock a submission with an ID
// takes, held while Jobs walks that part's table), so the list is not one
// instant's: a job may end, or start, while it is being made, and one
// found ended is left out. Functions given to [Pool.Go] have no ID and
// are not listed.
func (p *Pool) Jobs(state JobState, limit int) []JobInfo {
	if !p.valid() {
		return nil
	}
	if limit <= 0 {
		limit = DefaultJobsLimit
	}
	p.stampQueue()
	var list []*job
	for i := range p.ids.shards {
		s := &p.ids.shards[i]
		s.mu.Lock()
		s.jobs.each(func(j *job) {
			if len(list) >= limit {
				return
			}
			st := j.state.Load()
			if st >= stateResolving || (state != 0 && jobState(st) != state) {
				return
			}
			list = append(list, j)
		})
		s.mu.Unlock()
		if len(list) >= limit {
			break
		}
	}
	out := make([]JobInfo, 0, len(list))
	for _, j := range list {
		ji := info(j)
		if ji.State == JobDone || (state != 0 && ji.State != state) {
			continue // moved on since it was picked
		}
		out = append(out, ji)
	}
	return out
}

// Entanglements returns at most limit distinct entanglements that the
// pool's live jobs were given with [WithEntanglement] and that are still
// open (neither closed nor expired), in no particular order; limit <= 0
// means [DefaultJobsLimit]. It walks the registry as [Pool.Jobs] does,
// without stopping the pool, so it is a snapshot. An entanglement no live
// job names is not the pool's to know of: pass those to the inspector
// yourself.
func (p *Pool) Entanglements(limit int) []*Entanglement {
	if !p.valid() {
		return nil
	}
	if limit <= 0 {
		limit = DefaultJobsLimit
	}
	seen := make(map[*Entanglement]bool)
	var out []*Entanglement
	for i := range p.ids.shards {
		s := &p.ids.shards[i]
		s.mu.Lock()
		s.jobs.each(func(j *job) {
			e := j.cfg.entanglement
			if len(out) >= limit || e == nil || seen[e] || j.state.Load() >= stateResolving {
				return
			}
			seen[e] = true
			// Closed ones are left out here, not after the walk, so that
			// they do not take places the limit counts
			// (TestPoolEntanglements). usable's checks, without the
			// error: atomics only, no lock of the entanglement's under
			// the registry's.
			if e = e.or(); e.invalid == nil && !e.ended() {
				out = append(out, e)
			}
		})
		s.mu.Unlock()
		if len(out) >= limit {
			break
		}
	}
	return out
}

// Job returns the job with this ID: a live one, or a finished one the
// pool still remembers, with State JobDone and Err set: whole for the
// result TTL ([WithResultTTL]), or only its outcome for the dependency
// window ([WithDependencyWindow]), when Attempt, Submitted and Started are
// zero. ok is false for an ID the pool does not know.
func (p *Pool) Job(id string) (JobInfo, bool) {
	if !p.valid() {
		return JobInfo{}, false
	}
	j, o, ok := p.ids.lookup(id)
	switch {
	case j != nil:
		return info(j), true
	case ok:
		return JobInfo{ID: id, State: JobDone, Err: o.err}, true
	}
	return JobInfo{}, false
}

// Cancel cancels the live job with this ID, as its [Future.Cancel] would,
// and reports whether it found one: a job waiting or queued never runs
// and resolves with [context.Canceled]; a running job's context is
// cancelled. It reports false for an unknown ID and for a job that has
// ended already (one that ends at the same moment keeps its own outcome).
func (p *Pool) Cancel(id string) bool {
	if !p.valid() {
		return false
	}
	j := p.ids.get(id)
	if j == nil || j.isDone() {
		return false
	}
	p.cancelJob(j)
	return true
}

// The age of the oldest queued job.
//
// The queue does not timestamp its tasks: a clock read per submission
// would cost the hot path more than everything else it does (see
// docs/observability.md). It is a ring whose positions only grow, and the
// task at its head is the oldest queued. So each reader (Stats, Jobs)
// records the queue's tail position with the time it read it: a stamp
// (tail, at) says that every task at a position below tail was queued by
// at. The oldest task is at position head; the first stamp with a tail
// above head says it was queued no later than that stamp's time, and the
// stamp before says no earlier. OldestQueued reports the age from the
// former: never more than the truth, and short of it by at most the
// interval between the two reads around the task's submission. The idle
// reaper takes a stamp too, each idle timeout while tasks are queued, so
// the age is known to within the idle timeout even when nobody polls.
//
// Invariant: stamps are in the order they were taken, with growing tail
// and time; only stampQueue, under mu, changes them.
type queueStamps struct {
	mu     sync.Mutex
	stamps []queueStamp // oldest first; at most maxStamps
}

type queueStamp struct {
	tail uint64
	at   time.Time
}

// maxStamps bounds the stamps kept. When it is reached every other stamp
// but the first is dropped, which halves the precision of old ages but
// keeps the oldest bound.
const maxStamps = 64

// stampQueue records the queue's position now and returns the age of the
// oldest queued task by the stamps (zero when the queue is empty).
func (p *Pool) stampQueue() time.Duration {
	if p.queue.len() == 0 {
		// Nothing queued: the age is 0, and a note now would never
		// bound a later task (its tail is at most the head from now
		// on), so Stats on a pool that keeps up takes no lock and reads
		// no clock.
		return 0
	}
	q := &p.qstamps
	q.mu.Lock()
	defer q.mu.Unlock()
	head := p.queue.head.Load()
	tail := p.queue.tail.Load()
	now := time.Now()
	// Stamps with tail <= head say nothing about tasks still queued but
	// the last of them, which bounds the head's task from below.
	drop := 0
	for drop+1 < len(q.stamps) && q.stamps[drop+1].tail <= head {
		drop++
	}
	q.stamps = append(q.stamps[:0], q.stamps[drop:]...)
	var age time.Duration
	if tail > head {
		for _, s := range q.stamps {
			if s.tail > head {
				age = now.Sub(s.at)
				break
			}
		}
	}
	if n := len(q.stamps); n == 0 || q.stamps[n-1].tail != tail {
		if n == maxStamps {
			k := 1
			for i := 2; i < n; i += 2 {
				q.stamps[k] = q.stamps[i]
				k++
			}
			q.stamps = q.stamps[:k]
		}
		q.stamps = append(q.stamps, queueStamp{tail, now})
	}
	return age
}
