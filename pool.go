package qpool

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// Pool runs functions on a bounded set of worker goroutines. Jobs are
// submitted by ID with [Submit] or [Pool.Schedule] and resolve a [Future];
// [Pool.Go] is the ID-less, future-less form for the hottest paths.
//
// Workers start on demand, up to the worker limit, and exit after
// [WithIdleTimeout] without work, so an idle pool holds no goroutines. A
// full queue blocks submitters (or fails them, with [WithNonBlocking]).
//
// All methods are safe for concurrent use. The zero value is not usable:
// build a pool with [NewPool] and end it with [Pool.Close] or
// [Pool.Shutdown]. The methods of a nil or zero Pool do not panic: they
// return [ErrInvalidPool], or do nothing where they return no error.
type Pool struct {
	cfg     poolConfig
	baseCtx context.Context // cfg.ctx's values without its cancellation
	procs   int             // GOMAXPROCS when the pool was built
	obs     *observerSet    // WithObserver; nil without one, the hot paths' only check

	jobDefaults jobConfig // of every job submitted without options

	queue   taskRing      // tasks waiting for a worker
	handoff chan task     // unbuffered: a task (or exit token) straight to an idle worker
	bell    chan struct{} // one slot: wakes an idle worker for a queued task
	room    chan struct{} // one slot: wakes a submitter waiting for room in the queue
	closing chan struct{} // closed when intake stops: wakes blocked submitters
	aborted chan struct{} // closed when queued jobs must fail instead of run
	quit    chan struct{} // closed when the pool is finished: idle workers exit

	closed     atomic.Bool
	freeMode   uint8 // how a worker makes itself available after a task (freeLate, freeIdle, freeExit); in closed's padding
	maxWorkers atomic.Int64
	workers    atomic.Int64 // live worker goroutines
	roomWait   atomic.Int64 // submitters waiting for room in the queue

	// idle is read by every submission and written each time a worker
	// starts or stops waiting: a line of its own keeps those writes from
	// taking the line of the fields above from the submitter.
	_    [64]byte
	idle atomic.Int64 // workers waiting for a task

	// The counters every job writes, kept apart by writer (a cache line of
	// padding between groups), so that a submitter and the workers do not
	// take a line from each other on every job. The jobs pending are
	// accepted minus finished: one counter written by both would move
	// between their cores twice per job.
	_        [64]byte
	accepted atomic.Int64 // jobs accepted; written by submitters
	stats    counters     // submitted by submitters, the rest by workers
	finished atomic.Int64 // accepted jobs resolved; written by workers
	running  atomic.Int64 // jobs in their function now; written by workers
	_        [64]byte
	drainers atomic.Int64 // goroutines in Wait or Shutdown: only they need to hear of zero

	wg sync.WaitGroup // workers, dependent hand-offs and the context watcher

	ids     idRegistry   // jobs by ID
	waiting atomic.Int64 // jobs waiting for dependencies

	mu      sync.Mutex // guards dependency links (jobExtra.deps); allDone's lock
	allDone *sync.Cond // signalled when no job is pending and a drainer waits

	abortErr error // why queued jobs fail; set once before aborted closes

	reaper idleReaper // retires idle workers and lets the registry drop finished jobs

	closeOnce, quitOnce, abortOnce sync.Once
	stopWatch                      func() bool // stops the WithContext watcher

	qstamps queueStamps // the queue's positions as Stats and Jobs saw them: see OldestQueued
}

// task is one entry of the queue: a job, or a bare function from Go.
type task struct {
	j  *job
	fn func()
}

// NewPool returns a pool configured by opts. It starts no goroutine: workers
// start with the first jobs. Out-of-range sizes are clamped as each option
// documents, so NewPool cannot fail.
func NewPool(opts ...Option) *Pool {
	cfg := newPoolConfig(opts)
	p := &Pool{
		cfg:     cfg,
		baseCtx: context.WithoutCancel(cfg.ctx),
		procs:   runtime.GOMAXPROCS(0),
		handoff: make(chan task),
		bell:    make(chan struct{}, 1),
		room:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		aborted: make(chan struct{}),
		quit:    make(chan struct{}),
	}
	p.jobDefaults = jobConfig{pool: p, attempts: 1}
	p.obs = newObserverSet(cfg.observers)
	if cfg.queueSize == 0 {
		p.freeMode = freeIdle
		if cfg.idleTimeout <= 0 {
			p.freeMode = freeExit
		}
	}
	p.queue.init(cfg.queueSize)
	p.ids.init(cfg.resultTTL, cfg.depWindow)
	p.allDone = sync.NewCond(&p.mu)
	p.maxWorkers.Store(int64(cfg.workers))
	if cfg.ctx.Done() != nil {
		// Owner: the pool. Runs once when the pool's context ends; Close
		// stops it if it has not run, and waits for it if it has.
		p.wg.Add(1)
		p.stopWatch = context.AfterFunc(cfg.ctx, p.contextDone)
	}
	return p
}

// Go runs fn on a worker, with no ID and no future: the cheapest way to run
// a function, with no allocation of its own. A panic in fn is recovered,
// counted in [Stats].Panicked and logged. Go blocks while the queue is full
// unless the pool was built with [WithNonBlocking], and returns
// [ErrPoolClosed] or [ErrQueueFull] when fn was not accepted, or
// [ErrInvalidJob] for a nil fn, or [ErrInvalidPool] for a pool NewPool
// did not make.
func (p *Pool) Go(fn func()) error {
	if !p.valid() {
		return ErrInvalidPool
	}
	if p.obs != nil {
		return p.goObserved(fn)
	}
	if fn == nil {
		return fmt.Errorf("%w: %w", ErrInvalidJob, ErrNilFunc)
	}
	if !p.accept() {
		return p.closedErr()
	}
	p.stats.submitted.Add(1) // before a worker can count its outcome
	if err := p.enqueue(task{fn: fn}); err != nil {
		p.stats.submitted.Add(^uint64(0)) // not accepted after all
		p.done()
		return err
	}
	return nil
}

// valid reports whether p was made by NewPool: not nil, and not a zero
// value (NewPool makes quit, which nothing else does).
func (p *Pool) valid() bool { return p != nil && p.quit != nil }

// accept counts a new job as pending unless intake has stopped. Counting
// before checking closes the race with Close: either Close sees the job
// pending and waits for it, or the job sees the pool closed. A submission
// that finds intake stopped already does not touch the counts: each
// refused count-then-check makes the jobs look pending for a moment, and
// submitters retrying in a loop could keep Close and Shutdown from ever
// seeing zero (once intake has stopped, each submitter can cause at most
// one such moment).
func (p *Pool) accept() bool {
	if p.closed.Load() {
		return false
	}
	p.accepted.Add(1)
	if p.closed.Load() {
		p.done()
		return false
	}
	return true
}

// closedErr is the error of a submission refused because intake stopped:
// ErrPoolClosed, with the cause when the pool's context ended or Shutdown's
// deadline passed.
func (p *Pool) closedErr() error {
	// The pool's context is looked at first, not only through abort: the
	// watcher stops intake before it publishes the cause, and a submission
	// refused in between, or after Close stopped intake, must still say
	// why the pool ended once its context has.
	if p.cfg.ctx.Err() != nil {
		return p.contextErr()
	}
	select {
	case <-p.aborted:
		return p.abortErr
	default:
		return ErrPoolClosed
	}
}

// contextErr is the error of jobs failed or refused because the pool's
// context ended.
func (p *Pool) contextErr() error {
	return fmt.Errorf("%w: %w", ErrPoolClosed, context.Cause(p.cfg.ctx))
}

// done marks one accepted job as finished and wakes Wait and Shutdown when
// none is left. A drainer counts itself before it looks at the counts, and
// done looks for drainers after it counted, so one of the two sees the
// other.
func (p *Pool) done() {
	f := p.finished.Add(1)
	if p.drainers.Load() > 0 && p.accepted.Load() == f {
		p.mu.Lock()
		p.allDone.Broadcast()
		p.mu.Unlock()
	}
}

// pending returns how many accepted jobs have not finished. It reads
// finished first: a job accepted and finished between the two reads then
// counts as pending, never a job pending as finished, so a result of zero
// means that at the first read no job was pending.
func (p *Pool) pending() int64 {
	f := p.finished.Load()
	return p.accepted.Load() - f
}

// Wait blocks until every accepted job has finished, including jobs
// submitted while it waits. It does not stop intake.
func (p *Pool) Wait() {
	if !p.valid() {
		return
	}
	p.mu.Lock()
	p.drainers.Add(1)
	for p.pending() > 0 {
		p.allDone.Wait()
	}
	p.drainers.Add(-1)
	p.mu.Unlock()
}

// Close stops intake, waits until every accepted job has finished, and ends
// every goroutine the pool started: when it returns, each of them has done
// its last work and is returning, touching nothing of the pool (a stack
// dump taken at that instant may still list one for a few microseconds, as
// with any goroutine a WaitGroup waits for; goleak's retries allow for it).
// Submissions after Close fail with
// [ErrPoolClosed]; so do submitters blocked on a full queue when it starts,
// unless room frees up for their job at the same moment, in which case the
// job is accepted and runs like any other. Close is
// idempotent and returns nil (or [ErrInvalidPool] for a pool NewPool did
// not make); it blocks for as long as the accepted jobs run. See
// [Pool.Shutdown] for a bounded wait.
func (p *Pool) Close() error {
	if !p.valid() {
		return ErrInvalidPool
	}
	p.stopIntake()
	p.Wait()
	p.finish()
	return nil
}

// Shutdown is Close with a deadline. It stops intake and waits for the
// accepted jobs until ctx ends. If ctx ends first it cancels the running
// jobs' contexts, fails the queued and waiting jobs with [ErrPoolClosed],
// and returns ctx's error without waiting for running functions that ignore
// their context; a later Close waits for those. A nil return means what
// Close's does: every accepted job has finished and every goroutine the
// pool started has ended.
func (p *Pool) Shutdown(ctx context.Context) error {
	if !p.valid() {
		return ErrInvalidPool
	}
	p.stopIntake()
	woken := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(woken)
		p.mu.Lock()
		p.allDone.Broadcast()
		p.mu.Unlock()
	})
	drained := p.drainUntil(ctx)
	if !stop() {
		<-woken // its goroutine is the pool's too: none may outlive a nil return
	}
	if drained {
		p.finish()
		return nil
	}
	p.abort(fmt.Errorf("%w: shutdown: %w", ErrPoolClosed, context.Cause(ctx)))
	p.quitOnce.Do(func() { close(p.quit) })
	return ctx.Err()
}

// drainUntil waits until no accepted job is pending, and reports true, or
// until ctx ends, and reports false. Intake has stopped, so a zero seen
// once is final: a later submission is counted as accepted only until it
// sees the pool closed, and reading the count again could catch it there
// (and then abort a pool that has finished, with ctx still live).
func (p *Pool) drainUntil(ctx context.Context) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drainers.Add(1)
	defer p.drainers.Add(-1)
	for {
		if p.pending() == 0 {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		p.allDone.Wait()
	}
}

// stopIntake makes every later submission fail and wakes blocked submitters.
func (p *Pool) stopIntake() {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		close(p.closing)
	})
}

// finish ends the workers once no job is pending, and drops retained jobs.
func (p *Pool) finish() {
	p.quitOnce.Do(func() { close(p.quit) })
	p.stopReaper()
	if p.stopWatch != nil && p.stopWatch() {
		p.wg.Done() // the watcher will never run; see contextDone
	}
	p.wg.Wait()
	// A task a retiring worker or a dependency's hand-off was passing on
	// when the pool finished may have reached the queue: its job was
	// resolved already (no job was pending), so nothing will run it.
	for {
		if _, ok := p.queue.pop(); !ok {
			break
		}
	}
	p.ids.clear()
}

// contextDone runs when the pool's context ends.
func (p *Pool) contextDone() {
	defer p.wg.Done()
	p.stopIntake()
	p.abort(p.contextErr())
}

// Resize sets the worker limit to n (clamped to at least 1). Growing starts
// workers for queued jobs at once, which also wakes submitters blocked on a
// full queue; shrinking lets running jobs finish and retires workers as they
// become free. Once Resize(n) has returned, no function starts while n or
// more run: idle workers above the limit retire instead of taking work.
func (p *Pool) Resize(n int) {
	if !p.valid() {
		return
	}
	p.maxWorkers.Store(int64(max(n, 1)))
	for range p.queue.len() {
		if !p.spawn(task{}) {
			break
		}
	}
	p.roomMade() // with no queue, a waiting submitter starts its own worker
}

// Result returns the future of the job with this ID while it is waiting,
// queued or running, and, with [WithResultTTL], for the result TTL after it
// ends. Without a result TTL (the default) a finished job's result belongs
// to its future alone.
func (p *Pool) Result(id string) (*Future[any], bool) {
	if !p.valid() {
		return nil, false
	}
	j := p.ids.get(id)
	if j == nil {
		return nil, false
	}
	return j.r.anyFuture(), true
}
