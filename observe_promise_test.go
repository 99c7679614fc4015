package qpool_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
)

// lifecycle checks the promises of Observer as events arrive: per Seq,
// Submitted first and once, then Started/Retried alternating with
// attempts counting up from 1, then Finished once, each call returned
// before the next began; and after the pool has closed, only refused
// submissions' events.
type lifecycle struct {
	mu       sync.Mutex
	jobs     map[uint64]*jobTrace
	errs     []string
	closed   atomic.Bool // Close (or a nil Shutdown) has returned
	late     []uint64    // Seqs with events after closed
	panicP   float64     // probability that an observer call panics after recording
	reenter  func(kind string, e qpool.JobEvent)
	calls    atomic.Int64
	finished atomic.Int64
}

type jobTrace struct {
	id        string
	submitted int
	started   int
	retried   int
	finished  int
	outcome   qpool.Outcome
	err       error
	inCall    bool
}

func newLifecycle() *lifecycle { return &lifecycle{jobs: map[uint64]*jobTrace{}} }

func (l *lifecycle) failf(format string, args ...any) {
	l.errs = append(l.errs, fmt.Sprintf(format, args...))
}

// enter records an event and checks it comes where it may. It returns
// a function to call when the observer call returns.
func (l *lifecycle) enter(kind string, e qpool.JobEvent) func() {
	l.calls.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		l.late = append(l.late, e.Seq)
	}
	j := l.jobs[e.Seq]
	if j == nil {
		j = &jobTrace{id: e.ID}
		l.jobs[e.Seq] = j
		if kind != "submitted" {
			l.failf("seq %d (%q): %s before Submitted", e.Seq, e.ID, kind)
		}
	}
	if j.inCall {
		l.failf("seq %d (%q): %s while another call for the job ran", e.Seq, e.ID, kind)
	}
	if j.finished > 0 {
		l.failf("seq %d (%q): %s after Finished", e.Seq, e.ID, kind)
	}
	if e.ID != j.id {
		l.failf("seq %d: ID %q, then %q", e.Seq, j.id, e.ID)
	}
	switch kind {
	case "submitted":
		j.submitted++
		if j.submitted > 1 {
			l.failf("seq %d (%q): Submitted twice", e.Seq, e.ID)
		}
		if e.Err != nil {
			j.err = e.Err
		}
	case "started":
		j.started++
		if e.Attempt != j.started || j.retried != j.started-1 {
			l.failf("seq %d (%q): Started attempt %d after %d starts and %d retries", e.Seq, e.ID, e.Attempt, j.started-1, j.retried)
		}
	case "retried":
		j.retried++
		if e.Attempt != j.started || j.retried != j.started || e.Err == nil {
			l.failf("seq %d (%q): Retried attempt %d (err %v) after %d starts", e.Seq, e.ID, e.Attempt, e.Err, j.started)
		}
	case "finished":
		j.finished++
		l.finished.Add(1)
		j.outcome, j.err = e.Outcome, e.Err
		if e.Attempt != j.started {
			l.failf("seq %d (%q): Finished attempt %d after %d starts", e.Seq, e.ID, e.Attempt, j.started)
		}
		if !(j.started == 0 && j.retried == 0) && j.retried != j.started-1 &&
			!(j.retried == j.started && e.Outcome == qpool.OutcomeCanceled) {
			l.failf("seq %d (%q): Finished after %d starts and %d retries (%v)", e.Seq, e.ID, j.started, j.retried, e.Outcome)
		}
		if (e.Outcome == qpool.OutcomeOK) != (e.Err == nil) {
			l.failf("seq %d (%q): outcome %v with error %v", e.Seq, e.ID, e.Outcome, e.Err)
		}
		if e.Outcome == qpool.OutcomePanic && !errors.As(e.Err, new(*qpool.PanicError)) {
			l.failf("seq %d (%q): panic outcome with %v", e.Seq, e.ID, e.Err)
		}
		if e.Outcome == qpool.OutcomeDependencyFailed && !errors.Is(e.Err, qpool.ErrDependencyFailed) {
			l.failf("seq %d (%q): dependency_failed with %v", e.Seq, e.ID, e.Err)
		}
		neverRan := e.Outcome == qpool.OutcomeRejected || e.Outcome == qpool.OutcomeDependencyFailed
		mayNotRun := neverRan || e.Outcome == qpool.OutcomeCanceled
		if (e.Attempt == 0 && !mayNotRun) || (e.Attempt > 0 && neverRan) {
			l.failf("seq %d (%q): outcome %v after %d attempts", e.Seq, e.ID, e.Outcome, e.Attempt)
		}
	}
	j.inCall = true
	return func() {
		l.mu.Lock()
		j.inCall = false
		l.mu.Unlock()
	}
}

func (l *lifecycle) maybePanic(kind string, e qpool.JobEvent) {
	if l.reenter != nil {
		l.reenter(kind, e)
	}
	if l.panicP > 0 && rand.Float64() < l.panicP {
		panic("observer " + kind)
	}
}

func (l *lifecycle) observer() qpool.Observer {
	return qpool.Observer{
		Submitted: func(ctx context.Context, e qpool.JobEvent) {
			defer l.enter("submitted", e)()
			l.maybePanic("submitted", e)
		},
		Started: func(ctx context.Context, e qpool.JobEvent) context.Context {
			defer l.enter("started", e)()
			if rand.IntN(8) == 0 {
				runtime.Gosched()
			}
			l.maybePanic("started", e)
			return nil
		},
		Retried: func(ctx context.Context, e qpool.JobEvent) {
			defer l.enter("retried", e)()
			l.maybePanic("retried", e)
		},
		Finished: func(ctx context.Context, e qpool.JobEvent) {
			defer l.enter("finished", e)()
			if rand.IntN(8) == 0 {
				time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond) // a slow observer
			}
			l.maybePanic("finished", e)
		},
	}
}

// checkTraces reports, through fail, every violation seen as events came,
// a job without exactly one Submitted and one Finished, and an event after
// Close for a job that was not refused. Call it once the pool has closed.
func (l *lifecycle) checkTraces(fail func(format string, args ...any)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		fail("%s", e)
	}
	for seq, j := range l.jobs {
		if j.submitted != 1 || j.finished != 1 {
			fail("seq %d (%q): %d Submitted, %d Finished", seq, j.id, j.submitted, j.finished)
		}
	}
	for _, seq := range l.late {
		if j := l.jobs[seq]; j.outcome != qpool.OutcomeRejected {
			fail("seq %d (%q): event after Close returned, for a job that ended %v (%v)", seq, j.id, j.outcome, j.err)
		}
	}
}

// check verifies the whole history once the pool has closed: every job
// submitted (submits of them) has exactly one Submitted and one Finished,
// and events after Close came only for refused submissions.
func (l *lifecycle) check(t *testing.T, submits int64) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		t.Error(e)
	}
	if int64(len(l.jobs)) != submits {
		t.Errorf("%d jobs observed, %d submitted", len(l.jobs), submits)
	}
	for seq, j := range l.jobs {
		if j.submitted != 1 || j.finished != 1 {
			t.Errorf("seq %d (%q): %d Submitted, %d Finished", seq, j.id, j.submitted, j.finished)
		}
	}
	for _, seq := range l.late {
		if j := l.jobs[seq]; j.outcome != qpool.OutcomeRejected {
			t.Errorf("seq %d (%q): event after Close returned, for a job that ended %v (%v)", seq, j.id, j.outcome, j.err)
		}
	}
	if len(l.errs) > 10 {
		t.FailNow()
	}
}

// TestObserverHammer: many submitters, every kind of job and ending
// (success, error, panic, retries, timeouts, dependencies that fail,
// duplicates, cancellations by future and by ID, Go functions, group
// jobs, a full non-blocking queue), ended by Close, by a Shutdown that
// may run out, or by the pool's context; the lifecycle checks every
// event as it comes and every job's count at the end.
func TestObserverHammer(t *testing.T) {
	rounds := 30
	if testing.Short() {
		rounds = 8
	}
	for round := range rounds {
		hammerRound(t, round, newLifecycle())
		if t.Failed() {
			t.Fatalf("round %d failed", round)
		}
	}
}

func hammerRound(t *testing.T, round int, l *lifecycle) {
	t.Helper()
	ctx, cancelPool := context.WithCancel(context.Background())
	defer cancelPool()
	opts := []qpool.Option{
		qpool.WithObserver(l.observer()), qpool.WithLogger(discardLogger()), qpool.WithContext(ctx),
		qpool.WithWorkers(1 + rand.IntN(4)), qpool.WithQueueSize([]int{0, 2, 64}[rand.IntN(3)]),
	}
	if rand.IntN(3) == 0 {
		opts = append(opts, qpool.WithNonBlocking())
	}
	if rand.IntN(3) == 0 {
		opts = append(opts, qpool.WithResultTTL(time.Minute))
	}
	p := qpool.NewPool(opts...)
	var submits atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	const submitters = 4
	for g := range submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hammerSubmitter(p, l, round, g, stop, &submits)
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		closedCleanly := false
		switch rand.IntN(3) {
		case 0:
			closedCleanly = p.Close() == nil
		case 1:
			sctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(500))*time.Microsecond)
			closedCleanly = p.Shutdown(sctx) == nil
			cancel()
		case 2:
			cancelPool()
		}
		if closedCleanly {
			l.closed.Store(true)
		}
		close(stop)
		wg.Wait()
		if !closedCleanly {
			_ = p.Close() // waits for what a Shutdown or the context left running
			l.closed.Store(true)
			// Submitters have stopped: nothing may come now.
			p.Go(func() {}) // refused: its events are allowed
			submits.Add(1)
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("watchdog: round %d hung (%d observer calls, %d finished); stacks:\n%s", round, l.calls.Load(), l.finished.Load(), buf)
	}
	l.check(t, submits.Load())
}

func hammerSubmitter(p *qpool.Pool, l *lifecycle, round, g int, stop <-chan struct{}, submits *atomic.Int64) {
	boom := errors.New("boom")
	var futs []*qpool.Future[any]
	var group *qpool.Group[int]
	if g == 0 {
		var gopts []qpool.GroupOption
		if rand.IntN(2) == 0 {
			gopts = append(gopts, qpool.WithCancelOnError()) // a failure fails the group's queued jobs
		}
		group = qpool.NewGroup[int](context.Background(), p, gopts...)
		defer func() { _, _ = group.Wait() }()
	}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		if i >= 200 {
			time.Sleep(50 * time.Microsecond) // keep submitting, slowly, until the pool is closed
		}
		id := fmt.Sprintf("r%d-g%d-%d", round, g, i)
		submits.Add(1)
		switch k := rand.IntN(12); k {
		case 0:
			_ = p.Go(func() {
				if rand.IntN(4) == 0 {
					panic("go")
				}
			})
		case 1:
			futs = append(futs, p.Schedule(id, func() (any, error) { return nil, boom }))
		case 2:
			futs = append(futs, p.Schedule(id, func() (any, error) { panic("job") }))
		case 3:
			n := 0
			futs = append(futs, p.Schedule(id, func() (any, error) {
				n++
				if n < 3 {
					return nil, boom
				}
				return n, nil
			}, qpool.WithRetry(1+rand.IntN(3), time.Duration(rand.IntN(2))*time.Microsecond)))
		case 4:
			// The timeout is at least 1µs: WithTimeout(0) means none, and
			// the job would then hold a graceful Close for ever.
			futs = append(futs, qpool.Submit(p, id, func(ctx context.Context) (any, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			}, qpool.WithTimeout(time.Duration(1+rand.IntN(200))*time.Microsecond), qpool.WithRetry(2, 0)))
		case 5:
			dep := fmt.Sprintf("r%d-g%d-%d", round, g, rand.IntN(i+1))
			futs = append(futs, p.Schedule(id, func() (any, error) { return nil, nil }, qpool.WithDependencies(dep)))
		case 6:
			dup := fmt.Sprintf("r%d-g%d-%d", round, g, max(i-1, 0))
			futs = append(futs, p.Schedule(dup, func() (any, error) { return nil, nil }))
		case 7:
			f := qpool.Submit(p, id, func(ctx context.Context) (any, error) {
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(rand.IntN(100)) * time.Microsecond):
				}
				return nil, ctx.Err()
			}, qpool.WithRetry(2, time.Microsecond))
			if rand.IntN(2) == 0 {
				f.Cancel()
			} else {
				p.Cancel(id)
			}
			futs = append(futs, f)
		case 8:
			if group != nil {
				group.Go(func(ctx context.Context) (int, error) {
					if rand.IntN(20) == 0 {
						return 0, boom
					}
					return 1, nil
				})
			} else {
				_ = p.Go(func() {})
			}
		case 9:
			futs = append(futs, p.Schedule("", func() (any, error) { return nil, nil })) // invalid
		default:
			futs = append(futs, p.Schedule(id, func() (any, error) {
				if rand.IntN(4) == 0 {
					time.Sleep(time.Duration(rand.IntN(100)) * time.Microsecond)
				}
				return nil, nil
			}))
		}
		if len(futs) > 0 && rand.IntN(5) == 0 {
			futs[rand.IntN(len(futs))].Cancel()
		}
	}
}

// TestObserverPanicsAndReentry: observers that panic in every kind of
// call, and that call back into the pool (Stats, Jobs, Job, Cancel and
// Submit) from each event, neither deadlock the pool nor lose an event.
func TestObserverPanicsAndReentry(t *testing.T) {
	for round := range 10 {
		l := newLifecycle()
		l.panicP = 0.3
		var p *qpool.Pool
		var extra atomic.Int64
		l.reenter = func(kind string, e qpool.JobEvent) {
			_ = p.Stats()
			_ = p.Jobs(0, 5)
			_, _ = p.Job(e.ID)
			if kind == "finished" && e.ID != "" && e.Attempt > 0 && extra.Add(1) <= 50 {
				p.Schedule(e.ID+"+", func() (any, error) { return nil, nil })
			}
			if kind == "started" && rand.IntN(10) == 0 {
				p.Cancel(e.ID)
			}
		}
		// Non-blocking: a Submit from a worker must not wait for a
		// worker to take its job.
		p = qpool.NewPool(qpool.WithObserver(l.observer()), qpool.WithLogger(discardLogger()),
			qpool.WithWorkers(2), qpool.WithNonBlocking(), qpool.WithQueueSize(16))
		var submits atomic.Int64
		var wg sync.WaitGroup
		for g := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 100 {
					submits.Add(1)
					id := fmt.Sprintf("p%d-%d-%d", round, g, i)
					if i%5 == 0 {
						_ = p.Go(func() {})
						continue
					}
					p.Schedule(id, func() (any, error) {
						if i%7 == 0 {
							panic("job")
						}
						return nil, nil
					}, qpool.WithRetry(2, 0))
				}
			}()
		}
		done := make(chan struct{})
		go func() {
			wg.Wait()
			_ = p.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("watchdog: round %d hung", round)
		}
		l.check(t, submits.Load()+min(extra.Load(), 50))
	}
}

// TestObserverSlowFinishedDoesNotDelayFuture: a Finished that blocks does
// not keep the job's future from resolving, and Close waits for it.
func TestObserverSlowFinishedDoesNotDelayFuture(t *testing.T) {
	release := make(chan struct{})
	var returned atomic.Bool
	p := qpool.NewPool(qpool.WithObserver(qpool.Observer{
		Finished: func(context.Context, qpool.JobEvent) { <-release; returned.Store(true) },
	}))
	f := p.Schedule("a", func() (any, error) { return 1, nil })
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.Wait(wctx); err != nil {
		t.Fatalf("future did not resolve while Finished blocked: %v", err)
	}
	closed := make(chan struct{})
	go func() { _ = p.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while Finished was running")
	case <-time.After(5 * time.Millisecond):
	}
	close(release)
	<-closed
	if !returned.Load() {
		t.Fatal("Close returned before Finished did")
	}
}

// TestLiveViewHammer: Jobs, Job, Cancel and Stats run against a busy pool
// (with and without an observer) without stopping it; every list
// respects its limit and filter, and lists only jobs that were submitted.
func TestLiveViewHammer(t *testing.T) {
	for _, observed := range []bool{false, true} {
		opts := []qpool.Option{qpool.WithWorkers(3), qpool.WithLogger(discardLogger())}
		if observed {
			opts = append(opts, qpool.WithObserver(qpool.Observer{}))
		}
		p := qpool.NewPool(opts...)
		var ids sync.Map
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 300; i++ {
					id := fmt.Sprintf("lv%d-%d", g, i)
					ids.Store(id, true)
					var deps []qpool.JobOption
					if i > 0 && rand.IntN(3) == 0 {
						deps = append(deps, qpool.WithDependencies(fmt.Sprintf("lv%d-%d", g, i-1)))
					}
					p.Schedule(id, func() (any, error) {
						time.Sleep(time.Duration(rand.IntN(30)) * time.Microsecond)
						if rand.IntN(4) == 0 {
							return nil, errors.New("x")
						}
						return nil, nil
					}, append(deps, qpool.WithRetry(2, 0))...)
				}
			}()
		}
		var readers sync.WaitGroup
		var bad atomic.Value
		for range 2 {
			readers.Add(1)
			go func() {
				defer readers.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					state := qpool.JobState(rand.IntN(4))
					limit := rand.IntN(20)
					list := p.Jobs(state, limit)
					if limit > 0 && len(list) > limit {
						bad.Store(fmt.Sprintf("Jobs(%v, %d) returned %d", state, limit, len(list)))
					}
					for _, ji := range list {
						if _, ok := ids.Load(ji.ID); !ok {
							bad.Store("unknown ID " + ji.ID)
						}
						if state != 0 && ji.State != state {
							bad.Store(fmt.Sprintf("Jobs(%v) returned a job %v", state, ji.State))
						}
						if ji.State == qpool.JobDone {
							bad.Store("Jobs returned a done job")
						}
						if ji.Attempt < 0 || ji.Attempt > 2 || (ji.State == qpool.JobRunning && ji.Attempt == 0) {
							bad.Store(fmt.Sprintf("%s: attempt %d in state %v", ji.ID, ji.Attempt, ji.State))
						}
						if observed && ji.Submitted.IsZero() {
							bad.Store("observed job without a submission time")
						}
						if rand.IntN(50) == 0 {
							p.Cancel(ji.ID)
						}
						_, _ = p.Job(ji.ID)
					}
					if s := p.Stats(); s.OldestQueued < 0 {
						bad.Store("negative OldestQueued")
					}
				}
			}()
		}
		done := make(chan struct{})
		go func() {
			wg.Wait()
			p.Wait()
			close(stop)
			readers.Wait()
			_ = p.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("watchdog: live view hammer hung")
		}
		if b := bad.Load(); b != nil {
			t.Fatalf("observed=%v: %v", observed, b)
		}
	}
}

// TestEntanglementObserverHammer: concurrent updaters; Changed gets every
// sequence exactly once and in order, Closed comes once, and nothing comes
// after Close returns.
func TestEntanglementObserverHammer(t *testing.T) {
	for round := range 20 {
		var mu sync.Mutex
		next := uint64(0)
		var errs []string
		var closedCalls atomic.Int32
		var after atomic.Bool
		var late atomic.Int32
		obs := qpool.EntanglementObserver{
			Changed: func(id string, c qpool.StateChange) {
				if after.Load() {
					late.Add(1)
				}
				mu.Lock()
				if c.Sequence != next {
					errs = append(errs, fmt.Sprintf("got sequence %d, want %d", c.Sequence, next))
				}
				next = c.Sequence + 1
				mu.Unlock()
				if rand.IntN(10) == 0 {
					panic("changed")
				}
			},
			Closed: func(string) {
				if after.Load() {
					late.Add(1)
				}
				closedCalls.Add(1)
			},
		}
		e := qpool.NewEntanglement(fmt.Sprintf("e%d", round), nil, 0, qpool.WithEntanglementObserver(obs), qpool.WithLogger(discardLogger()))
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					_ = e.UpdateState(fmt.Sprintf("k%d", (g+i)%5), i)
				}
			}()
		}
		closeDone := make(chan struct{})
		go func() {
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
			_ = e.Close()
			after.Store(true)
			wg.Wait()
			_ = e.Close()
			close(closeDone)
		}()
		select {
		case <-closeDone:
		case <-time.After(20 * time.Second):
			t.Fatalf("watchdog: round %d hung", round)
		}
		mu.Lock()
		for _, s := range errs {
			t.Error(s)
		}
		mu.Unlock()
		if n := closedCalls.Load(); n != 1 {
			t.Fatalf("Closed called %d times", n)
		}
		if n := late.Load(); n != 0 {
			t.Fatalf("%d observer calls after Close returned", n)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

// TestObserverFinishedBeforeCloseOffWorker: a Finished that runs on a
// goroutine that is not the pool's (one that cancelled a queued job) is
// waited for by Close all the same.
func TestObserverFinishedBeforeCloseOffWorker(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	var returned atomic.Bool
	p := qpool.NewPool(qpool.WithWorkers(1), qpool.WithObserver(qpool.Observer{
		Finished: func(_ context.Context, e qpool.JobEvent) {
			if e.ID == "queued" {
				close(entered)
				<-release
				returned.Store(true)
			}
		},
	}))
	gate := make(chan struct{})
	running := make(chan struct{})
	p.Schedule("blocker", func() (any, error) { close(running); <-gate; return nil, nil })
	<-running
	q := p.Schedule("queued", func() (any, error) { return nil, nil })
	go q.Cancel() // resolves the queued job, and calls Finished, on this goroutine
	<-entered
	close(gate)
	closed := make(chan struct{})
	go func() { _ = p.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a Finished was running")
	case <-time.After(5 * time.Millisecond):
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("watchdog: Close never returned")
	}
	if !returned.Load() {
		t.Fatal("Close returned before Finished did")
	}
}
