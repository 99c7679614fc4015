package qpool

import (
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"
)

// The tests of this file check that a submitter never waits for a worker
// or a slot that is there: each sets up the moment where a wake-up is due,
// with the pool's own counters telling when a goroutine is waiting, and
// fails by a watchdog (or the test timeout) if the wake-up never comes.

// waitUntil yields until cond holds.
func waitUntil(cond func() bool) {
	for !cond() {
		runtime.Gosched()
	}
}

// mustHappen fails t unless done closes within a generous watchdog.
func mustHappen(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("watchdog: %s", what)
	}
}

// TestRoomWakesWaitingSubmitter checks that a submitter waiting for room
// gets in as soon as a worker takes a task from the full queue, not only
// once the worker has nothing left to do: the worker is held in the task it
// took while the submitter must get in.
func TestRoomWakesWaitingSubmitter(t *testing.T) {
	p := NewPool(WithWorkers(1), WithQueueSize(1))
	defer p.Close()
	first, second := make(chan struct{}), make(chan struct{})
	defer close(second)
	started, taken := make(chan struct{}), make(chan struct{})
	p.Go(func() { close(started); <-first })
	<-started
	p.Go(func() { close(taken); <-second }) // fills the queue
	submitted := make(chan error, 1)
	go func() { submitted <- p.Go(func() {}) }()
	for p.roomWait.Load() == 0 { // until the submitter waits for room
		runtime.Gosched()
	}
	close(first)
	<-taken // the worker took the queued task and is held in it
	select {
	case err := <-submitted:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watchdog: the waiting submitter was not let in while the worker was busy")
	}
}

// A pool with no queue and no idle timeout: the worker that finishes while
// a submitter waits for it exits rather than wait for a task, so the
// submitter must start a worker in its place.
func TestNoQueueWaiterStartsWorkerWhenOneExits(t *testing.T) {
	p := NewPool(WithWorkers(1), WithQueueSize(0), WithIdleTimeout(0))
	defer p.Close()
	release := make(chan struct{})
	waiterGetsIn(t, p, func() { <-release }, func() { close(release) },
		"the waiting submitter's job never ran after the only worker exited")
}

// waiterGetsIn runs busy on p's only worker, has a second submission wait
// for room, calls act, and checks that the second job then runs.
func waiterGetsIn(t *testing.T, p *Pool, busy, act func(), what string) {
	t.Helper()
	ran := make(chan struct{})
	if err := p.Go(busy); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.Go(func() { close(ran) }) }()
	waitUntil(func() bool { return p.roomWait.Load() == 1 })
	act()
	mustHappen(t, ran, what)
}

// The same for a dependent job, queued by the goroutine that waits for
// room on its behalf: before the fix, Close hung on it.
func TestNoQueueDependentStartsWorker(t *testing.T) {
	p := NewPool(WithWorkers(1), WithQueueSize(0), WithIdleTimeout(0))
	defer p.Close()
	p.Schedule("a", func() (any, error) { return nil, nil })
	// The worker resolving a finds no room for b (no queue, and itself still
	// counted), so a goroutine waits for room for b; then the worker exits.
	b := p.Schedule("b", func() (any, error) { return "b", nil }, WithDependencies("a"))
	mustHappen(t, b.Done(), "the dependent job never ran")
}

// An idle worker handed the idle reaper's exit token while a submitter,
// which saw it idle, waits to hand it a job: the worker's exit must let the
// submitter start a replacement.
func TestNoQueueWaiterSurvivesExitToken(t *testing.T) {
	for range 50 {
		p := NewPool(WithWorkers(1), WithQueueSize(0), WithIdleTimeout(time.Hour))
		if err := p.Go(func() {}); err != nil {
			t.Fatal(err)
		}
		waitUntil(func() bool { return p.handTo(task{}) }) // the reaper's token
		ran := make(chan struct{})
		go func() { _ = p.Go(func() { close(ran) }) }()
		mustHappen(t, ran, "the job waited for a worker that had exited")
		p.Close()
	}
}

// A job that ends its worker with runtime.Goexit while a submitter waits
// for that worker: the replacement must come.
func TestNoQueueWaiterSurvivesGoexit(t *testing.T) {
	p := NewPool(WithWorkers(1), WithQueueSize(0), WithIdleTimeout(time.Hour), WithLogger(slog.New(slog.DiscardHandler)))
	defer p.Close()
	release := make(chan struct{})
	waiterGetsIn(t, p, func() { <-release; runtime.Goexit() }, func() { close(release) },
		"the job waited for a worker that had called Goexit")
}

// Growing a pool with no queue lets a waiting submitter start a worker.
func TestResizeLetsNoQueueWaiterIn(t *testing.T) {
	p := NewPool(WithWorkers(1), WithQueueSize(0))
	defer p.Close()
	release := make(chan struct{})
	defer close(release)
	waiterGetsIn(t, p, func() { <-release }, func() { p.Resize(2) },
		"Resize did not let the waiting submitter in")
}

// oneIdleWorker returns, on one processor for the rest of the test, a pool
// of up to four workers with one of them idle, a channel for tasks to
// block on, and the function that closes it. The test's end closes it too,
// so that the pool can close after a failure.
func oneIdleWorker(t *testing.T) (p *Pool, release <-chan struct{}, unblock func()) {
	procs := runtime.GOMAXPROCS(1)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs) })
	p = NewPool(WithWorkers(4))
	t.Cleanup(func() { p.Close() })
	p.Go(func() {})
	waitUntil(func() bool { return p.idle.Load() == 1 })
	ch := make(chan struct{})
	var once sync.Once
	unblock = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(unblock)
	return p, ch, unblock
}

// TestJobQueuedBehindAHandOffGetsAWorker hands a job to the pool's one
// idle worker and submits a second before that worker has run: the second
// finds the worker still counted idle, so it is queued and rings the bell
// for it, but the worker is taken by the first job. With room for more
// workers the second must get one: here the first job waits for the
// second, so a second left in the queue would never run. One processor
// makes the moment certain: the worker cannot run between the two
// submissions.
func TestJobQueuedBehindAHandOffGetsAWorker(t *testing.T) {
	p, release, unblock := oneIdleWorker(t)
	p.Schedule("first", func() (any, error) { <-release; return nil, nil })
	second := p.Schedule("second", func() (any, error) { unblock(); return nil, nil })
	mustHappen(t, second.Done(), "the second job waited behind the first, which waits for it")
}

// TestJobQueuedBehindAWokenWorkerGetsAWorker is the same moment on the
// other way in: two tasks are queued without a hand-off (as a finishing
// job queues its dependents), the first wakes the one idle worker through
// the bell, and the second, finding that worker still counted idle, rings
// the bell again. The woken worker takes the first, which waits for the
// second: the second must get a worker of its own.
func TestJobQueuedBehindAWokenWorkerGetsAWorker(t *testing.T) {
	p, release, unblock := oneIdleWorker(t)
	second := make(chan struct{})
	queue := func(fn func()) {
		if !p.accept() {
			t.Fatal("pool closed")
		}
		p.stats.submitted.Add(1)
		if !p.tryQueue(task{fn: fn}) {
			t.Fatal("queue full")
		}
	}
	queue(func() { <-release })
	queue(func() { unblock(); close(second) })
	mustHappen(t, second, "the second task waited behind the first, which waits for it")
}
