package qpool

import (
	"context"
	"runtime"
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
// pool shutdown). Resolving lasts while the resolver writes the job's error:
// it keeps a second resolver out without a lock.
const (
	stateWaiting   int32 = iota // waiting for its dependencies
	stateQueued                 // in the queue, not yet taken by a worker
	stateRunning                // a worker is running it
	stateResolving              // being resolved: err is being written
	stateDone                   // resolved: err and value are final
)

// Job flags, set once and never cleared.
const (
	flagCanceled      uint32 = 1 << iota // Future.Cancel was called
	flagMakingDone                       // a doneChan caller is making done
	flagHasDone                          // done was made: wake must close it
	flagHasDependents                    // a job may depend on this one: release takes pool.mu
	flagCtxCanceled                      // the context was cancelled before it was built
	flagCtxBuilt                         // the context was built
	flagDepFailed                        // set just before a failed dependency resolves the job: see dependencyError
)

// runner is what a job runs. The typed call that owns the job implements
// it, so a job needs no closure of its own.
type runner interface {
	// run calls the job's function once and records its value.
	run(ctx context.Context) error
	// anyFuture returns the job's future as a Future[any], for Pool.Result.
	anyFuture() *Future[any]
	// anyValue returns the recorded value, for a Future[any] made by
	// anyFuture over a call of another type.
	anyValue() any
	// forget drops the function once it has run, so that a retained
	// result does not keep what the closure captured alive.
	forget()
}

// job is the untyped core of a submitted function: its ID, options, state
// and result. It is embedded in the typed call, so one allocation holds
// both. It is kept small (96 bytes, so that Schedule's call is 128)
// because every submission allocates one and a future keeps it alive: what
// few jobs need lives in extra, and the pool is found through cfg.
type job struct {
	id  string
	cfg *jobConfig // shared and immutable; the pool's jobDefaults when no option was given
	r   runner

	state    atomic.Int32   // one of the state constants
	flags    atomic.Uint32  // the flag constants
	resolved sync.WaitGroup // Done once at resolution: a wait that allocates nothing
	err      error          // final error: written once, before state becomes done
	done     chan struct{}  // made by the first Done or ctx-aware Wait; see doneChan

	extra atomic.Pointer[jobExtra] // made by the first dependency link or context build
}

// jobExtra is the part of a job that most jobs never need: dependency links
// and a built context.
type jobExtra struct {
	deps depState    // guarded by pool.mu
	mu   sync.Mutex  // guards ctx
	ctx  lazyContext // guarded by mu
}

// depState is a job's dependency bookkeeping.
type depState struct {
	pending    int    // dependencies this job still waits for
	dependents []*job // jobs waiting for this one
}

// more returns j's extra part, making it if needed. Two callers may race to
// make it: the first one's wins.
func (j *job) more() *jobExtra {
	if x := j.extra.Load(); x != nil {
		return x
	}
	x := new(jobExtra)
	if j.extra.CompareAndSwap(nil, x) {
		return x
	}
	return j.extra.Load()
}

// depState returns j's dependency bookkeeping, making it if needed. The
// pool's mutex must be held.
func (j *job) depState() *depState { return &j.more().deps }

func (j *job) has(f uint32) bool { return j.flags.Load()&f != 0 }
func (j *job) set(f uint32)      { j.flags.Or(f) }

// closedChan is the Done channel of every job that was resolved before
// anybody asked for one.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (j *job) isDone() bool { return j.state.Load() == stateDone }

// The Done protocol. Invariant: a job is resolved exactly once, and once
// it is, every channel doneChan has returned or will return is closed and
// every resolved.Wait returns. tryResolve admits one resolver (the CAS to
// stateResolving) and writes err before it stores stateDone, so a reader
// that sees stateDone sees the final err; that resolver then calls wake
// exactly once, which releases resolved and closes done if flagHasDone is
// set. j.done is written only by the caller that set flagMakingDone, and
// only before it sets flagHasDone; nobody reads it before seeing that flag.
// Who may break it: a resolution that skips wake or calls it twice (every
// successful tryResolve is followed by one wake: resolve, reject), a
// state store of stateDone outside tryResolve, or a write of j.done after
// flagHasDone is set.
//
// doneChan returns a channel closed when the job is resolved, allocating it
// only for the first caller that has to wait, without a lock: the caller
// that sets flagMakingDone makes the channel and then sets flagHasDone,
// which publishes it; others wait for that flag. Every caller looks at the
// state after it has seen flagHasDone, and wake looks at the flag after
// the state became done, so one of the two sees the other: either this
// call finds the job done, or wake closes the channel.
func (j *job) doneChan() <-chan struct{} {
	if j.isDone() {
		return closedChan
	}
	if !j.has(flagHasDone) {
		if j.flags.Or(flagMakingDone)&flagMakingDone == 0 {
			j.done = make(chan struct{})
			j.set(flagHasDone)
		}
		for !j.has(flagHasDone) {
			runtime.Gosched() // another caller is between the two flags
		}
	}
	if j.isDone() {
		return closedChan // wake may not have seen the flag
	}
	return j.done
}

// result returns the final error. Only call it once the job is done: the
// error was written before the state became done.
func (j *job) result() error { return j.err }

// tryResolve makes err the job's result unless it already has one, and
// reports whether it did. Only states in allowed may be left; pass nil to
// allow any unresolved state. Waiters are not woken yet: the caller calls
// wake once its own bookkeeping is done, so that a waiter that runs at once
// does not wait for the resolver's goroutine to get out of its way.
func (j *job) tryResolve(err error, allowed ...int32) bool {
	for {
		s := j.state.Load()
		if s >= stateResolving || (allowed != nil && !contains(allowed, s)) {
			return false
		}
		if j.state.CompareAndSwap(s, stateResolving) {
			j.err = err
			j.state.Store(stateDone)
			return true
		}
	}
}

// wake releases everyone waiting for a job that tryResolve resolved.
func (j *job) wake() {
	j.resolved.Done()
	if !j.has(flagHasDone) {
		return // nobody asked for a channel before the job was resolved
	}
	close(j.done)
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
func (j *job) wasCanceled() bool { return j.has(flagCanceled) }
