package qpool

import (
	"context"
	"sync"
	"sync/atomic"
)

// Job names a unit of work. An [Entanglement] lists the jobs that share its
// state; the pool identifies each scheduled job by the same ID. The zero
// value is a job with no ID, which the pool rejects with [ErrInvalidJob].
type Job struct {
	// ID identifies the job within a pool and within an entanglement.
	ID string
}

// Job states. A job moves forward only: waiting → queued → running → done,
// and may jump to done from any earlier state (cancelled, failed dependency,
// pool shutdown).
const (
	stateWaiting int32 = iota // waiting for its dependencies
	stateQueued               // in the queue, not yet taken by a worker
	stateRunning              // a worker is running it
	stateDone                 // resolved: err and value are final
)

// runner is what a job runs. The typed call[T] that owns the job implements
// it, so a job needs no closure of its own.
type runner interface {
	// run calls the job's function once and records its value.
	run(ctx context.Context) error
	// anyFuture returns the job's future as a Future[any], for Pool.Result.
	anyFuture() *Future[any]
	// anyValue returns the recorded value, for a view made by anyFuture.
	anyValue() any
	// forget drops the function once it has run, so that a retained
	// result does not keep what the closure captured alive.
	forget()
}

// job is the untyped core of a submitted function: its ID, options, state
// and result. It is embedded in call[T], so one allocation holds both.
type job struct {
	id   string
	cfg  *jobConfig // shared and immutable; defaultJobConfig when no option was given
	r    runner
	pool *Pool

	state    atomic.Int32   // one of the state constants
	canceled atomic.Bool    // Future.Cancel was called
	resolved sync.WaitGroup // Done once at resolution: a wait that allocates nothing
	ctx      jobContext     // what the function gets

	hasDone       atomic.Bool   // done was made: wake must close it
	hasDependents atomic.Bool   // a job may depend on this one: release takes pool.mu
	mu            sync.Mutex    // guards err, done and ctx's lazy part
	err           error         // final error, set once with state done
	done          chan struct{} // made by the first Done or ctx-aware Wait

	deps *depState // guarded by pool.mu; nil for a job nobody waits on or for
}

// depState is a job's dependency bookkeeping, kept out of line because most
// jobs have none.
type depState struct {
	pending    int    // dependencies this job still waits for
	dependents []*job // jobs waiting for this one
}

// depState returns j's dependency bookkeeping, making it if needed. The
// pool's mutex must be held.
func (j *job) depState() *depState {
	if j.deps == nil {
		j.deps = new(depState)
	}
	return j.deps
}

// closedChan is the Done channel of every job that was resolved before
// anybody asked for one.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (j *job) isDone() bool { return j.state.Load() == stateDone }

// doneChan returns a channel closed when the job is resolved, allocating it
// only for the first caller that has to wait.
func (j *job) doneChan() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.state.Load() == stateDone {
		return closedChan
	}
	if j.done == nil {
		j.done = make(chan struct{})
		j.hasDone.Store(true)
	}
	return j.done
}

// result returns the final error. Once the state is done, err is final and
// was written before the state changed; before that, mu orders the read.
func (j *job) result() error {
	if j.isDone() {
		return j.err // written before the state became done, and final
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// tryResolve makes err the job's result unless it already has one, and
// reports whether it did. Only states in allowed may be left; pass nil to
// allow any unresolved state. Waiters are not woken yet: the caller calls
// wake once its own bookkeeping is done, so that a waiter that runs at once
// does not wait for the resolver's goroutine to get out of its way.
func (j *job) tryResolve(err error, allowed ...int32) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	for {
		s := j.state.Load()
		if s == stateDone || (allowed != nil && !contains(allowed, s)) {
			return false
		}
		j.err = err
		if j.state.CompareAndSwap(s, stateDone) {
			return true
		}
	}
}

// wake releases everyone waiting for a job that tryResolve resolved.
func (j *job) wake() {
	j.resolved.Done()
	if !j.hasDone.Load() {
		return // nobody asked for a channel before the job was resolved
	}
	j.mu.Lock()
	ch := j.done
	j.mu.Unlock()
	close(ch)
}

func contains(states []int32, s int32) bool {
	for _, x := range states {
		if x == s {
			return true
		}
	}
	return false
}

// wasCanceled reports whether Future.Cancel was called. A worker checks it
// after taking the job, so a job cancelled on its way to the worker never
// runs.
func (j *job) wasCanceled() bool { return j.canceled.Load() }
