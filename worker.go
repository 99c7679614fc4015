package qpool

import (
	"context"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"time"
)

// enqueue hands t to a worker: straight to an idle one, to a new one while
// the pool is below its worker limit, else through the queue. It blocks on
// a full queue unless the pool is non-blocking.
func (p *Pool) enqueue(t task) error {
	if p.idle.Load() == 0 {
		if p.spawn(t) {
			return nil
		}
	} else if p.handTo(t) {
		return nil
	}
	if p.tryQueue(t) {
		return nil
	}
	if p.spawn(t) {
		return nil
	}
	if p.cfg.nonBlocking {
		if p.freeMode == freeIdle && p.handToFreed(t) {
			return nil
		}
		return ErrQueueFull
	}
	if p.closed.Load() {
		return p.closedErr() // Close began: do not wait for room
	}
	if p.workers.Load() > int64(p.procs) && p.yieldForRoom(t) {
		return nil
	}
	if !p.waitForRoom(t, p.closing) {
		return p.closedErr()
	}
	return nil
}

// handTo gives t to a worker waiting for a task, if one is: cheaper than
// queueing it and waking the worker to fetch it.
func (p *Pool) handTo(t task) bool {
	select {
	case p.handoff <- t:
		return true
	default:
		return false
	}
}

// handToFreed hands t to a worker that counts itself idle but is not yet
// waiting for a hand-off. In a pool with no queue a worker counts itself
// idle before the outcome of its task is published (see workerState.free),
// so a submitter that has seen the outcome finds it counted, perhaps still
// on its way. Such a worker runs only pool code until it waits for a task
// or leaves the count (a Resize, an exit token, the pool quitting), so the
// wait is short: it ends once the hand-off succeeds or no worker counts
// itself idle: another submitter took it (then the pool is full), or it
// took the idle reaper's exit token, and then it stopped counting itself as
// a worker before it left the idle count (see receive), so the last try to
// start a worker finds its place.
func (p *Pool) handToFreed(t task) bool {
	for p.idle.Load() > 0 {
		if p.handTo(t) {
			return true
		}
		runtime.Gosched()
	}
	return p.spawn(t)
}

// yieldForRoom lets other goroutines run once, then queues t if that made
// room. A pool with more workers than processors runs functions that
// block, so workers that have just woken are often waiting for a processor
// while the submitter holds one: yielding lets one of them take a task,
// which costs the submitter less than parking until a slot frees up and
// being woken. A pool with no more workers than processors has them running
// already; there a yield only puts the submitter behind them, so it parks
// at once.
func (p *Pool) yieldForRoom(t task) bool {
	runtime.Gosched()
	return p.tryQueue(t)
}

// tryQueue queues t, if the queue has room, and makes sure a worker is
// coming for it.
func (p *Pool) tryQueue(t task) bool {
	if !p.queue.push(t) {
		return false
	}
	p.ensureWorker()
	return true
}

// waitForRoom queues t once there is room, starts a worker for it once the
// pool has fewer than its limit, or hands it to a worker that waits for a
// task (with no queue, the only way in), and reports false if stop closes
// first. While a submitter waits, workers signal p.room after each task
// they take from the queue and whenever one of them stops counting itself,
// and Resize signals it when the limit grows; the count of waiters is
// raised before the last try, so that either the try finds the room or
// worker, or the goroutine that made it signals.
//
// It also reports false once the pool has finished (quit): no worker can
// start then, and none is left to take t. Close finishes the pool only once
// no accepted job is pending, so a task still waiting here then belongs to
// a job resolved already (cancelled while a retiring worker, or a finishing
// dependency, was passing it on), which nothing needs to run.
func (p *Pool) waitForRoom(t task, stop <-chan struct{}) bool {
	p.roomWait.Add(1)
	defer p.roomWait.Add(-1)
	for {
		if p.tryQueue(t) {
			p.passRoom()
			return true
		}
		if p.spawn(t) {
			p.passRoom()
			return true
		}
		select {
		case p.handoff <- t:
			return true
		case <-p.room:
		case <-stop:
			return false
		case <-p.quit:
			return false
		}
	}
}

// passRoom wakes another waiting submitter, if there is one, after this one
// found room: there may be more than one slot or worker free.
func (p *Pool) passRoom() {
	if p.roomWait.Load() > 1 {
		p.signal(p.room)
	}
}

// roomMade wakes a waiting submitter, if there is one, after a slot or a
// worker place has freed up.
func (p *Pool) roomMade() {
	if p.roomWait.Load() > 0 {
		p.signal(p.room)
	}
}

// signal wakes one goroutine waiting on bell, or leaves the bell rung for
// the next one to wait. It reports false when the bell was rung already:
// a wake-up is pending that nobody has taken yet.
func (p *Pool) signal(bell chan struct{}) bool {
	select {
	case bell <- struct{}{}:
		return true
	default:
		return false
	}
}

// The wake-up protocol (hand-off and bell). Invariant: a queued task
// always has a worker that will look at the queue (running, woken or
// starting), and a task sent on handoff is received by a worker that
// counts itself idle. It rests on:
//   - two Dekker pairs of sequentially consistent atomics: a submitter
//     pushes, then reads idle (ensureWorker), while a worker adds itself to
//     idle, then looks at the queue once more (receive); and a worker that
//     leaves the idle count last, or stops counting itself a worker while
//     the pool is within its limit, looks at the queue afterwards and
//     starts a worker for what it finds (lastIdleLeft, next's re-check,
//     exit's Goexit path), while a submitter that pushed reads the counts
//     after its push;
//   - the bell, which holds one wake-up: a push that finds it rung already
//     starts a worker instead, as the pending wake-up may be spoken for,
//     and a woken worker takes a task or looks again;
//   - handoff, unbuffered: a send succeeds only into a worker parked in
//     receive, which leaves the idle count as it takes the task.
//
// Who may break it: a push not followed by ensureWorker; a worker that
// stops counting itself idle, or a worker, without that last look (one
// that retires above the limit leaves at least the limit counted, each
// running or about to look); a woken worker that goes back to sleep
// without looking. Counting itself idle before it waits (free, in a pool
// with no queue) keeps it: such a worker looks after counting itself.
//
// ensureWorker makes sure that a task just queued has a worker coming: it
// wakes an idle worker, or starts one when none is idle, or when a wake-up
// is already pending for an earlier task. Idle workers count themselves
// before they last look at the queue, so either that look finds the task
// or this call sees them. Together with the re-check in a worker's exit
// path it guarantees that no queued task is left without a worker.
func (p *Pool) ensureWorker() {
	if p.idle.Load() > 0 && p.signal(p.bell) {
		return
	}
	p.spawn(task{})
}

// spawn starts a worker with t as its first task (none if t is empty),
// unless the pool already runs its limit of workers.
func (p *Pool) spawn(t task) bool {
	if !p.reserveWorker() {
		return false
	}
	if !p.addWorker() {
		p.workers.Add(-1) // the pool has finished
		return false
	}
	// Owner: the pool. Ends when the idle reaper retires it, when Resize
	// shrinks the pool, or at Close; waited in Close.
	go p.worker(t)
	return true
}

// reserveWorker counts one more worker if the limit allows it.
func (p *Pool) reserveWorker() bool {
	for {
		n := p.workers.Load()
		if n >= p.maxWorkers.Load() {
			return false
		}
		if p.workers.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// worker runs t, then tasks from the queue, until it has been idle for the
// idle timeout or the pool shrinks or finishes.
func (p *Pool) worker(t task) {
	w := workerState{pool: p}
	defer w.exit()
	for {
		if t.j != nil || t.fn != nil {
			w.run(t)
		}
		var ok bool
		if t, ok = w.next(); !ok {
			w.normal = true
			return
		}
	}
}

// workerState is one worker's own bookkeeping.
type workerState struct {
	pool      *Pool
	current   *job // the job being run, for runtime.Goexit
	normal    bool // the worker returned rather than Goexit
	idle      bool // counted in pool.idle already, by free
	uncounted bool // no longer counted in pool.workers: it must exit
	leaving   bool // took an exit token and stopped counting itself in receive
}

// How a worker makes itself available again once its task has ended (see
// workerState.free).
const (
	freeLate uint8 = iota // a pool with a queue: when it finds the queue empty
	freeIdle              // no queue: it counts itself idle before the task's outcome is published
	freeExit              // no queue and no idle timeout: it stops counting itself first
)

// free runs when the worker's task has ended, just before its outcome is
// published (the future resolved, or the job counted finished for Wait),
// in a pool with no queue. There a worker whose task has ended always goes
// on to wait for a hand-off (or exits, with no idle timeout) and takes
// nothing else first, so counting itself now costs nothing more, and
// whoever sees the outcome sees the worker free: a submitter that waited
// for a job can hand it the next one (handToFreed) or start a worker in
// its place, and is never refused with ErrQueueFull by a worker that is
// only on its way back.
func (w *workerState) free() {
	p := w.pool
	switch p.freeMode {
	case freeIdle:
		p.idle.Add(1)
		w.idle = true
	case freeExit:
		p.workers.Add(-1)
		w.uncounted = true
		p.roomMade() // a waiting submitter may start a worker in its place
	}
}

// overLimit reports whether the pool runs more workers than its limit,
// which only a Resize that lowered it leaves behind.
func (p *Pool) overLimit() bool {
	return p.workers.Load() > p.maxWorkers.Load()
}

// next returns the next task, or false when the worker should exit. A worker
// that decides to exit re-checks the queue after it stopped counting itself,
// so a task queued meanwhile is never stranded.
//
// The worker limit: at every moment a function runs, the worker running
// it is counted in pool.workers and found the count within the limit after
// it had its task in hand: spawn's reservation, for a worker's first task,
// and the check below, for every later one, however it came (queue,
// hand-off, bell). So after Resize(n) returns, a task taken later starts
// only on a worker that saw n, and the functions running number at most n
// once those that started before have ended. Only retire and exit lower
// the count, and only between tasks. A worker over the limit with a task
// in hand retires and passes the task on.
func (w *workerState) next() (task, bool) {
	p := w.pool
	if w.uncounted {
		return task{}, false // free stopped counting it: exit
	}
	for {
		t, ok := w.receive()
		if ok && (t.j != nil || t.fn != nil) {
			if p.overLimit() && w.retire() {
				// Resize may have raised the limit again since the
				// retire read it, and a submitter may have found no
				// place meanwhile.
				p.roomMade()
				p.pass(t)
				return task{}, false
			}
			return t, true
		}
		if w.uncounted {
			return task{}, false // retired in receive
		}
		// An exit token, the idle timeout of zero, or the pool quitting.
		if w.leaving {
			w.leaving = false // receive stopped counting it already
		} else {
			p.workers.Add(-1)
		}
		p.roomMade() // a waiting submitter may start a worker in its place
		if p.queue.len() == 0 || !p.reserveWorker() {
			return task{}, false
		}
	}
}

// pass finds another worker for a task that this worker took but retired
// instead of running: the pool was over its limit. The task was accepted,
// so it must run: pass waits for room as a blocked submitter does (queue,
// a new worker, an idle one) and fails the task only if the pool aborts.
func (p *Pool) pass(t task) {
	if p.waitForRoom(t, p.aborted) {
		return
	}
	if t.j != nil {
		p.resolve(t.j, jobError(t.j.id, p.closedErr()), false) // resolved already, unless aborted
		return
	}
	p.dropFunc(p.closedErr())
}

// receive takes the next task from the queue, waiting while the worker is
// idle, unless the pool has no idle timeout (then an empty queue ends the
// worker) or is quitting. A worker over the limit retires instead of
// waiting. A worker that waits counts itself idle first and
// then looks at the queue once more: a submitter queues first and then
// looks for idle workers to wake, so one of the two sees the other.
func (w *workerState) receive() (task, bool) {
	p := w.pool
	counted := w.idle // by free: a pool with no queue, nothing to take
	w.idle = false
	if !counted {
		if t, ok := p.take(); ok {
			return t, true
		}
	}
	if p.overLimit() && w.retire() {
		if counted {
			p.idle.Add(-1)
		}
		w.uncounted = true
		p.roomMade() // as in next: the limit may have grown again
		return task{}, false
	}
	if p.cfg.idleTimeout <= 0 {
		return task{}, false
	}
	if !counted {
		p.idle.Add(1)
	}
	for {
		if t, ok := p.take(); ok {
			if p.idle.Add(-1) > 0 {
				if p.queue.len() > 0 {
					p.signal(p.bell) // more queued, and others idle: pass it on
				}
			} else {
				p.lastIdleLeft()
			}
			return t, true
		}
		select {
		case t := <-p.handoff: // a task, or the idle reaper's exit token
			if t.j == nil && t.fn == nil {
				// The exit token: stop counting as a worker before
				// leaving the idle count, so that a submitter that
				// finds no idle worker finds room to start one
				// (handToFreed), and is not refused meanwhile.
				p.workers.Add(-1)
				w.leaving = true
			}
			if p.idle.Add(-1) == 0 {
				p.lastIdleLeft()
			}
			return t, true
		case <-p.bell:
		case <-p.quit:
			p.idle.Add(-1)
			return task{}, false
		}
	}
}

// lastIdleLeft starts a worker if a task is queued when the last idle
// worker has stopped counting itself idle. A submitter that queued it while
// this worker still counted itself idle, already handed a job or woken for
// one, rang the bell for it and started no worker, and no idle worker is
// left to answer: the task would wait for a busy one, though the pool may
// have room for more, and forever if the task this worker took waits for
// it. A submitter queues before it looks for idle workers, and this looks
// at the queue after the worker stopped counting itself, so one of the two
// sees the other.
func (p *Pool) lastIdleLeft() {
	if p.queue.len() > 0 {
		p.spawn(task{})
	}
}

// take pops the next queued task and, when a submitter waits for room,
// wakes it.
func (p *Pool) take() (task, bool) {
	t, ok := p.queue.pop()
	if ok && p.roomWait.Load() > 0 {
		p.signal(p.room)
	}
	return t, ok
}

// retire stops counting this worker if the pool has more than its limit.
func (w *workerState) retire() bool {
	p := w.pool
	for {
		n := p.workers.Load()
		if n <= p.maxWorkers.Load() {
			return false
		}
		if p.workers.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// exit runs when the worker goroutine ends. A worker that ends through
// runtime.Goexit in a job resolves that job and starts a replacement.
func (w *workerState) exit() {
	p := w.pool
	if !w.normal {
		if j := w.current; j != nil {
			p.running.Add(-1)
			p.resolve(j, jobError(j.id, ErrGoexit), false)
		} else {
			p.stats.failed.Add(1)
			p.cfg.logger.Error("qpool: function called runtime.Goexit")
			p.done()
		}
		p.workers.Add(-1)
		if p.queue.len() > 0 {
			p.spawn(task{})
		}
		p.roomMade()
	}
	if p.workers.Load() == 0 && p.ids.lazy() {
		// The last worker leaves: no job runs, so every job in the
		// registry that is not waiting or queued has finished. Without a
		// TTL, let them go now rather than at the next submission.
		p.ids.dropFinished()
	}
	p.wg.Done()
}

// run runs one task: a job, or a bare function from Go.
func (w *workerState) run(t task) {
	p := w.pool
	if t.j == nil {
		select {
		case <-p.aborted:
			p.dropFunc(p.abortErr) // its send raced with the drain
		default:
			w.runFunc(t.fn)
		}
		return
	}
	j := t.j
	select {
	case <-p.aborted:
		p.resolve(j, jobError(j.id, p.abortErr), false)
		return
	default:
	}
	if !j.state.CompareAndSwap(stateQueued, stateRunning) {
		return // cancelled or failed while queued; already resolved
	}
	w.current = j
	p.running.Add(1)
	err, panicked := p.attempts(j)
	j.r.forget()
	p.running.Add(-1)
	w.current = nil
	if p.freeMode != freeLate {
		w.free()
	}
	p.resolve(j, err, panicked)
}

// runFunc runs a function from Go, recovering and logging a panic. A
// function that calls runtime.Goexit is accounted for by the worker's exit.
func (w *workerState) runFunc(fn func()) {
	p := w.pool
	normal := false
	defer func() {
		if normal {
			p.stats.succeeded.Add(1)
			if p.freeMode != freeLate {
				w.free()
			}
			p.done()
			return
		}
		r := recover()
		if r == nil {
			return // runtime.Goexit: see workerState.exit
		}
		p.stats.panicked.Add(1)
		p.stats.failed.Add(1)
		p.cfg.logger.Error("qpool: recovered panic", "panic", r, "stack", string(debug.Stack()))
		if p.freeMode != freeLate {
			w.free()
		}
		p.done()
	}()
	fn()
	normal = true
}

// attempts runs j's function until it succeeds, panics, is cancelled or has
// used its attempts, sleeping the backoff in between.
func (p *Pool) attempts(j *job) (err error, panicked bool) {
	if j.wasCanceled() {
		return jobError(j.id, context.Canceled), false
	}
	ctx := j.asContext() // ended by resolve, however the attempts end
	for attempt := 1; ; attempt++ {
		err, panicked = p.attempt(ctx, j)
		if err == nil || panicked || attempt >= j.cfg.attempts || ctx.Err() != nil {
			return err, panicked
		}
		if ok, perr := j.cfg.retryable(j.id, err); !ok {
			if perr != nil {
				return perr, true
			}
			return err, false
		}
		if !sleep(ctx, backoff(j.cfg.backoff, attempt)) {
			return err, false // cancelled in the backoff: no attempt follows
		}
		p.stats.retried.Add(1) // counted once another attempt is certain
	}
}

// attempt runs j's function once under its timeout, turning a panic into a
// *PanicError.
func (p *Pool) attempt(ctx context.Context, j *job) (err error, panicked bool) {
	if j.cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, j.cfg.timeout)
		defer cancel()
	}
	defer func() {
		if r := recover(); r != nil {
			err, panicked = newPanicError(j.id, r), true
		}
	}()
	return j.r.run(ctx), false
}

// backoff returns the sleep before attempt+1: base doubled per attempt, plus
// up to half of that at random, so that retrying jobs do not move in step.
func backoff(base time.Duration, attempt int) time.Duration {
	if base <= 0 {
		return 0
	}
	d := base << min(attempt-1, 30)
	if d <= 0 { // overflow
		d = base
	}
	return d + rand.N(d/2+1)
}

// sleep waits d or until ctx ends, and reports whether the full d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
