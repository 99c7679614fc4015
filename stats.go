package qpool

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a pool's counters, from [Pool.Stats]. Every job
// submitted with [Submit] or [Pool.Schedule], and every function accepted by
// [Pool.Go], counts once in Submitted and, once it has ended, once in
// Succeeded or Failed; so after [Pool.Wait] Submitted == Succeeded + Failed,
// provided no submission was still in progress (a submission that has not
// returned may be counted as submitted before Wait can see it).
type Stats struct {
	Workers    int // live worker goroutines
	MaxWorkers int // the worker limit
	Running    int // jobs in their function now
	Queued     int // jobs in the queue
	Waiting    int // jobs waiting for their dependencies

	Submitted uint64 // jobs submitted, including rejected ones
	Succeeded uint64 // jobs that returned a nil error
	Failed    uint64 // jobs that ended with an error, rejected ones included
	Panicked  uint64 // failed jobs whose function panicked
	Retried   uint64 // attempts that were followed by another attempt

	// OldestQueued is the age of the oldest job in the queue (0 when it is
	// empty). The queue does not timestamp jobs: each call of Stats (and
	// of [Pool.Jobs]) notes the queue's position with the time, and so
	// does the pool itself once per idle timeout ([WithIdleTimeout],
	// default 1 s) while jobs are queued; the age is counted from the
	// first note that saw the oldest job queued. So it is never more than
	// the job's true age, and short of it by at most the time between that
	// note and the one before: within the idle timeout, or within the
	// interval at which Stats is polled if that is shorter. With no idle
	// timeout and nobody polling, the first call reports 0.
	OldestQueued time.Duration
}

// counters are the pool's cumulative counts. submitted is written by
// submitters, the others by workers: a line of padding keeps them apart.
type counters struct {
	submitted                            atomic.Uint64
	_                                    [64]byte
	succeeded, failed, panicked, retried atomic.Uint64
}

// Stats returns the pool's counters. The fields are read one by one, so a
// snapshot taken while jobs run need not add up exactly. A pool NewPool did
// not make has zero stats.
func (p *Pool) Stats() Stats {
	if !p.valid() {
		return Stats{}
	}
	return Stats{
		Workers:    int(p.workers.Load()),
		MaxWorkers: int(p.maxWorkers.Load()),
		Running:    int(p.running.Load()),
		Queued:     p.queue.len(),
		Waiting:    int(p.waiting.Load()),
		Submitted:  p.stats.submitted.Load(),
		Succeeded:  p.stats.succeeded.Load(),
		Failed:     p.stats.failed.Load(),
		Panicked:   p.stats.panicked.Load(),
		Retried:    p.stats.retried.Load(),

		OldestQueued: p.stampQueue(),
	}
}
