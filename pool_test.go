package qpool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newTestPool returns a pool that is closed when the test ends, and then
// checks that its counters add up.
func newTestPool(t *testing.T, opts ...qpool.Option) *qpool.Pool {
	t.Helper()
	p := qpool.NewPool(opts...)
	t.Cleanup(func() {
		require.NoError(t, p.Close())
		s := p.Stats()
		assert.Equal(t, s.Submitted, s.Succeeded+s.Failed, "stats: %+v", s)
		assert.Zero(t, s.Workers, "workers left after Close")
	})
	return p
}

func wait[T any](t *testing.T, f *qpool.Future[T]) (T, error) {
	t.Helper()
	ctx, cancel := context.WithTimeoutCause(context.Background(), 10*time.Second, errWatchdog)
	defer cancel()
	v, err := f.Wait(ctx)
	require.NotErrorIs(t, err, errWatchdog, "future %q never resolved", f.ID())
	return v, err
}

var errWatchdog = errors.New("watchdog: the test would have hung")

func ok() (any, error) { return "ok", nil }

// gate blocks jobs until it is opened.
type gate chan struct{}

func (g gate) job() (any, error) { <-g; return nil, nil }
func (g gate) open()             { close(g) }

func TestBadInput(t *testing.T) {
	p := newTestPool(t)
	g := make(gate)
	running := p.Schedule("running", g.job)
	defer func() { g.open(); wait(t, running) }()

	tests := []struct {
		name string
		fut  *qpool.Future[any]
		want []error
	}{
		{"empty id", p.Schedule("", ok), []error{qpool.ErrInvalidJob}},
		{"nil function", p.Schedule("nil", nil), []error{qpool.ErrInvalidJob, qpool.ErrNilFunc}},
		{"duplicate of a running job", p.Schedule("running", ok), []error{qpool.ErrDuplicateJob}},
		{"depends on itself", p.Schedule("self", ok, qpool.WithDependencies("self")), []error{qpool.ErrInvalidJob}},
		{"unknown dependency", p.Schedule("orphan", ok, qpool.WithDependencies("nope")), []error{qpool.ErrUnknownDependency}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := wait(t, tt.fut)
			for _, w := range tt.want {
				assert.ErrorIs(t, err, w)
			}
		})
	}
	t.Run("nil Go function", func(t *testing.T) {
		assert.ErrorIs(t, p.Go(nil), qpool.ErrInvalidJob)
	})
	t.Run("nil Submit function", func(t *testing.T) {
		_, err := wait(t, qpool.Submit[int](p, "nil-submit", nil))
		assert.ErrorIs(t, err, qpool.ErrNilFunc)
	})
}

func TestSizesAreClamped(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(-3), qpool.WithQueueSize(-1))
	assert.Equal(t, 1, p.Stats().MaxWorkers)
	v, err := wait(t, p.Schedule("a", ok))
	require.NoError(t, err)
	assert.Equal(t, "ok", v)
	p.Resize(0)
	assert.Equal(t, 1, p.Stats().MaxWorkers)
}

func TestClosedPool(t *testing.T) {
	p := qpool.NewPool()
	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "Close is idempotent")
	_, err := wait(t, p.Schedule("late", ok))
	assert.ErrorIs(t, err, qpool.ErrPoolClosed)
	assert.ErrorIs(t, p.Go(func() {}), qpool.ErrPoolClosed)
	s := p.Stats()
	assert.Equal(t, uint64(1), s.Submitted)
	assert.Equal(t, uint64(1), s.Failed)
}

// TestDoneRacesResolution asks for Done, and waits with a cancellable
// context, while workers resolve the jobs: a Done channel made at the
// moment its job resolves must still be closed (the two sides meet on the
// job's flags and state without a lock). A missed close hangs the test.
func TestDoneRacesResolution(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(2), qpool.WithResultTTL(0))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for i := range 20_000 {
		f := p.Schedule(fmt.Sprint("job-", i), func() (any, error) { return i, nil })
		if i%2 == 0 {
			<-f.Done()
		}
		v, err := f.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, i, v)
	}
}

// TestConcurrentDoneCallers has several goroutines ask one job for its
// Done channel at once, as the job resolves: one of them makes the channel
// while the others wait for it, and every channel any of them gets must be
// closed. A missed close hangs the test.
func TestConcurrentDoneCallers(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(2), qpool.WithResultTTL(0))
	for i := range 2_000 {
		f := p.Schedule(fmt.Sprint("job-", i), func() (any, error) { return nil, nil })
		var callers sync.WaitGroup
		for range 4 {
			callers.Go(func() { <-f.Done() })
		}
		callers.Wait()
	}
}

func TestSubmitTyped(t *testing.T) {
	p := newTestPool(t, qpool.WithResultTTL(time.Minute))
	f := qpool.Submit(p, "n", func(ctx context.Context) (int, error) { return 42, nil })
	n, err := wait(t, f)
	require.NoError(t, err)
	assert.Equal(t, 42, n)
	assert.Equal(t, "n", f.ID())
	select {
	case <-f.Done():
	default:
		t.Fatal("Done not closed after Wait")
	}
	r, found := p.Result("n")
	require.True(t, found)
	v, err := wait(t, r)
	require.NoError(t, err)
	assert.Equal(t, 42, v, "Result gives the typed job's value as any")
}

func TestPanic(t *testing.T) {
	p := newTestPool(t)
	var runs atomic.Int32
	f := p.Schedule("boom", func() (any, error) {
		runs.Add(1)
		panic(io.EOF)
	}, qpool.WithRetry(3, 0))
	_, err := wait(t, f)
	var pe *qpool.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, io.EOF, pe.Value)
	assert.Contains(t, string(pe.Stack), "TestPanic")
	assert.ErrorIs(t, err, io.EOF, "PanicError unwraps an error value")
	assert.Equal(t, int32(1), runs.Load(), "panics are never retried")
	p.Wait()
	assert.Equal(t, uint64(1), p.Stats().Panicked)
}

func TestGoPanicIsRecoveredAndCounted(t *testing.T) {
	p := newTestPool(t, qpool.WithLogger(discardLogger()))
	require.NoError(t, p.Go(func() { panic("go") }))
	var ran atomic.Bool
	require.NoError(t, p.Go(func() { ran.Store(true) }))
	p.Wait()
	assert.True(t, ran.Load())
	s := p.Stats()
	assert.Equal(t, uint64(1), s.Panicked)
	assert.Equal(t, uint64(1), s.Succeeded)
}

func TestTimeoutPerAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newTestPool(t)
		var attempts atomic.Int32
		f := p.Schedule("slow", func() (any, error) { return nil, nil }) // warm-up, unrelated
		wait(t, f)
		g := qpool.Submit(p, "ctx", func(ctx context.Context) (int, error) {
			attempts.Add(1)
			dl, ok := ctx.Deadline()
			if !ok {
				return 0, errors.New("no deadline")
			}
			if time.Until(dl) != time.Second {
				return 0, errors.New("deadline is not one second away")
			}
			<-ctx.Done()
			return 0, ctx.Err()
		}, qpool.WithTimeout(time.Second), qpool.WithRetry(2, 0))
		_, err := wait(t, g)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, int32(2), attempts.Load(), "a timed-out attempt is retried")
	})
}

func TestRetryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newTestPool(t)
		var starts []time.Time
		boom := errors.New("boom")
		f := p.Schedule("flaky", func() (any, error) {
			starts = append(starts, time.Now())
			if len(starts) < 3 {
				return nil, boom
			}
			return "done", nil
		}, qpool.WithRetry(5, 100*time.Millisecond))
		v, err := wait(t, f)
		require.NoError(t, err)
		assert.Equal(t, "done", v)
		require.Len(t, starts, 3)
		// Exponential backoff with up to 50% jitter, on the fake clock.
		gap1, gap2 := starts[1].Sub(starts[0]), starts[2].Sub(starts[1])
		assert.GreaterOrEqual(t, gap1, 100*time.Millisecond)
		assert.LessOrEqual(t, gap1, 150*time.Millisecond)
		assert.GreaterOrEqual(t, gap2, 200*time.Millisecond)
		assert.LessOrEqual(t, gap2, 300*time.Millisecond)
		p.Wait()
		assert.Equal(t, uint64(2), p.Stats().Retried)

		g := p.Schedule("hopeless", func() (any, error) { return nil, boom }, qpool.WithRetry(3, time.Millisecond))
		_, err = wait(t, g)
		assert.ErrorIs(t, err, boom)
	})
}

func TestCancelQueuedJobNeverRuns(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(1))
	g := make(gate)
	first := p.Schedule("first", g.job)
	var ran atomic.Bool
	queued := p.Schedule("queued", func() (any, error) { ran.Store(true); return nil, nil })
	queued.Cancel()
	_, err := wait(t, queued)
	assert.ErrorIs(t, err, context.Canceled)
	g.open()
	wait(t, first)
	p.Wait()
	assert.False(t, ran.Load(), "a job cancelled while queued ran")
}

func TestCancelRunningJob(t *testing.T) {
	p := newTestPool(t)
	started := make(chan struct{})
	var attempts atomic.Int32
	f := p.Schedule("long", nil) // rejected; keeps the ID free
	wait(t, f)
	g := qpool.Submit(p, "long", func(ctx context.Context) (any, error) {
		attempts.Add(1)
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}, qpool.WithRetry(3, 0))
	<-started
	g.Cancel()
	_, err := wait(t, g)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, int32(1), attempts.Load(), "a cancelled job is not retried")
	g.Cancel() // no effect once resolved
}

func TestDependencies(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(4))
	var mu sync.Mutex
	var order []string
	step := func(name string) func() (any, error) {
		return func() (any, error) {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return name, nil
		}
	}
	g := make(gate)
	a := p.Schedule("a", func() (any, error) { <-g; return step("a")() })
	b := p.Schedule("b", step("b"), qpool.WithDependencies("a"))
	c := p.Schedule("c", step("c"), qpool.WithDependencies("a", "b"))
	assert.Equal(t, 2, p.Stats().Waiting)
	g.open()
	for _, f := range []*qpool.Future[any]{a, b, c} {
		_, err := wait(t, f)
		require.NoError(t, err)
	}
	assert.Equal(t, []string{"a", "b", "c"}, order)

	// A finished dependency counts by its retained result.
	d, err := wait(t, p.Schedule("d", step("d"), qpool.WithDependencies("a")))
	require.NoError(t, err)
	assert.Equal(t, "d", d)
}

func TestDependencyFailureCascades(t *testing.T) {
	p := newTestPool(t)
	boom := errors.New("boom")
	g := make(gate)
	a := p.Schedule("a", func() (any, error) { <-g; return nil, boom })
	var ran atomic.Int32
	never := func() (any, error) { ran.Add(1); return nil, nil }
	b := p.Schedule("b", never, qpool.WithDependencies("a"))
	c := p.Schedule("c", never, qpool.WithDependencies("b"))
	g.open()
	_, err := wait(t, a)
	require.ErrorIs(t, err, boom)
	for _, f := range []*qpool.Future[any]{b, c} {
		_, err := wait(t, f)
		assert.ErrorIs(t, err, qpool.ErrDependencyFailed)
		assert.ErrorIs(t, err, boom, "the dependency's error is wrapped")
	}
	_, err = wait(t, b)
	assert.Contains(t, err.Error(), `"a"`, "the error names the failed dependency")

	// A dependency that already failed fails the new job at once.
	late := p.Schedule("late", never, qpool.WithDependencies("a"))
	_, err = wait(t, late)
	assert.ErrorIs(t, err, qpool.ErrDependencyFailed)
	p.Wait()
	assert.Zero(t, ran.Load())
}

func TestCancelWaitingJobFailsItsDependents(t *testing.T) {
	p := newTestPool(t)
	g := make(gate)
	a := p.Schedule("a", g.job)
	b := p.Schedule("b", ok, qpool.WithDependencies("a"))
	c := p.Schedule("c", ok, qpool.WithDependencies("b"))
	b.Cancel()
	_, err := wait(t, b)
	assert.ErrorIs(t, err, context.Canceled)
	_, err = wait(t, c)
	assert.ErrorIs(t, err, qpool.ErrDependencyFailed)
	g.open()
	wait(t, a)
	p.Wait()
	assert.Zero(t, p.Stats().Waiting)
}

func TestResultRetention(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newTestPool(t, qpool.WithResultTTL(time.Minute))
		wait(t, p.Schedule("a", ok))
		r, found := p.Result("a")
		require.True(t, found)
		v, err := wait(t, r)
		require.NoError(t, err)
		assert.Equal(t, "ok", v)

		time.Sleep(time.Minute + time.Second)
		_, found = p.Result("a")
		assert.False(t, found, "result outlived its TTL")
		_, err = wait(t, p.Schedule("b", ok, qpool.WithDependencies("a")))
		assert.ErrorIs(t, err, qpool.ErrUnknownDependency, "an expired dependency is unknown")

		// A finished ID can be reused.
		v, err = wait(t, p.Schedule("a", func() (any, error) { return "again", nil }))
		require.NoError(t, err)
		assert.Equal(t, "again", v)
	})
}

// TestReusedIDOutlivesTheFirstJobsTTL reuses a finished job's ID before
// the first job's result expires: the first job's expiry must not drop
// the second, which is kept for its own TTL.
func TestReusedIDOutlivesTheFirstJobsTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newTestPool(t, qpool.WithResultTTL(time.Minute))
		wait(t, p.Schedule("a", func() (any, error) { return 1, nil }))
		time.Sleep(30 * time.Second)
		wait(t, p.Schedule("a", func() (any, error) { return 2, nil }))
		time.Sleep(45 * time.Second) // the first job's TTL has passed
		r, found := p.Result("a")
		require.True(t, found, "the second job's result was dropped with the first's")
		v, err := wait(t, r)
		require.NoError(t, err)
		assert.Equal(t, 2, v)
		time.Sleep(20 * time.Second)
		_, found = p.Result("a")
		assert.False(t, found, "the second job's result outlived its TTL")
	})
}

func TestNoRetention(t *testing.T) {
	p := newTestPool(t, qpool.WithResultTTL(0))
	wait(t, p.Schedule("a", ok))
	p.Wait()
	_, found := p.Result("a")
	assert.False(t, found)
}

func TestConcurrencyNeverExceedsWorkers(t *testing.T) {
	const workers = 3
	p := newTestPool(t, qpool.WithWorkers(workers))
	var now, peak atomic.Int32
	for i := range 300 {
		fn := func() {
			n := now.Add(1)
			for {
				m := peak.Load()
				if n <= m || peak.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(10 * time.Microsecond)
			now.Add(-1)
		}
		if i%2 == 0 {
			require.NoError(t, p.Go(fn))
		} else {
			p.Schedule(jobID(i), func() (any, error) { fn(); return nil, nil })
		}
	}
	p.Wait()
	assert.LessOrEqual(t, peak.Load(), int32(workers))
	assert.Positive(t, peak.Load())
}

func TestIdlePoolHoldsNoGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newTestPool(t, qpool.WithWorkers(4))
		for range 100 {
			require.NoError(t, p.Go(func() {}))
		}
		p.Wait()
		assert.Positive(t, p.Stats().Workers)
		time.Sleep(2*qpool.DefaultIdleTimeout + time.Millisecond)
		synctest.Wait()
		assert.Zero(t, p.Stats().Workers, "workers outlived two idle timeouts")
		// And they come back on demand.
		v, err := wait(t, p.Schedule("again", ok))
		require.NoError(t, err)
		assert.Equal(t, "ok", v)
	})
}

func TestNonBlockingQueueFull(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(1), qpool.WithQueueSize(1), qpool.WithNonBlocking())
	g := make(gate)
	running := p.Schedule("running", g.job)
	waitFor(t, func() bool { return p.Stats().Running == 1 })
	queued := p.Schedule("queued", ok)
	full := p.Schedule("full", ok)
	_, err := wait(t, full)
	assert.ErrorIs(t, err, qpool.ErrQueueFull)
	assert.ErrorIs(t, p.Go(func() {}), qpool.ErrQueueFull)
	g.open()
	wait(t, running)
	_, err = wait(t, queued)
	assert.NoError(t, err)
}

func TestShutdownDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := qpool.NewPool(qpool.WithWorkers(1))
		running := qpool.Submit(p, "running", func(ctx context.Context) (any, error) {
			<-ctx.Done()
			return nil, context.Cause(ctx)
		})
		synctest.Wait()
		queued := p.Schedule("queued", ok)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := p.Shutdown(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		_, err = queued.Wait(context.Background())
		assert.ErrorIs(t, err, qpool.ErrPoolClosed)
		_, err = running.Wait(context.Background())
		assert.ErrorIs(t, err, qpool.ErrPoolClosed, "the running job's context carries the cause")
		require.NoError(t, p.Close())
	})
}

func TestShutdownInTime(t *testing.T) {
	p := qpool.NewPool()
	f := p.Schedule("quick", ok)
	require.NoError(t, p.Shutdown(context.Background()))
	_, err := f.Wait(context.Background())
	assert.NoError(t, err)
	assert.Zero(t, p.Stats().Workers)
}

func TestWaitCoversJobsSubmittedByJobs(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(2))
	var done atomic.Int32
	p.Schedule("parent", func() (any, error) {
		for i := range 10 {
			p.Schedule(jobID(i), func() (any, error) { done.Add(1); return nil, nil })
		}
		return nil, nil
	})
	p.Wait()
	assert.Equal(t, int32(10), done.Load())
}

func TestEntanglementInJobContext(t *testing.T) {
	p := newTestPool(t)
	e := qpool.NewEntanglement("shared", nil, 0)
	defer e.Close()
	f := qpool.Submit(p, "writer", func(ctx context.Context) (bool, error) {
		got, ok := qpool.EntanglementFrom(ctx)
		if !ok {
			return false, errors.New("no entanglement in context")
		}
		return got == e, got.UpdateState("by", "writer")
	}, qpool.WithEntanglement(e))
	same, err := wait(t, f)
	require.NoError(t, err)
	assert.True(t, same)
	assert.Equal(t, []qpool.Job{{ID: "writer"}}, e.Jobs())
	v, _ := e.GetState("by")
	assert.Equal(t, "writer", v)
	_, ok := qpool.EntanglementFrom(context.Background())
	assert.False(t, ok)
}

func TestContextValuesReachJobs(t *testing.T) {
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "v")
	p := newTestPool(t, qpool.WithContext(ctx))
	v, err := wait(t, qpool.Submit(p, "a", func(ctx context.Context) (any, error) { return ctx.Value(key{}), nil }))
	require.NoError(t, err)
	assert.Equal(t, "v", v)
}

// TestJobContextEndsWithTheJob: a job's context is done once the job has
// ended, whether it was first looked at while the function ran or only
// afterwards (by a goroutine the function started), and printing it shows
// the job rather than its fields.
func TestJobContextEndsWithTheJob(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(1))
	var early, late context.Context
	_, err := wait(t, qpool.Submit(p, "early", func(ctx context.Context) (int, error) {
		early = ctx
		select {
		case <-ctx.Done(): // built while the job runs
			return 0, errors.New("done while the job runs")
		default:
			return 0, nil
		}
	}))
	require.NoError(t, err)
	_, err = wait(t, qpool.Submit(p, "late", func(ctx context.Context) (int, error) {
		late = ctx
		return 0, ctx.Err() // not ended while the job runs
	}))
	require.NoError(t, err)
	for name, ctx := range map[string]context.Context{"early": early, "late": late} {
		<-ctx.Done() // hangs the test if the context never ends
		require.ErrorIs(t, ctx.Err(), context.Canceled, name)
		require.Contains(t, fmt.Sprint(ctx), `"`+name+`"`)
	}
}

func TestFutureWaitContext(t *testing.T) {
	p := newTestPool(t)
	g := make(gate)
	f := p.Schedule("blocked", g.job)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.Wait(ctx)
	assert.ErrorIs(t, err, context.Canceled)
	g.open()
	_, err = wait(t, f)
	assert.NoError(t, err, "a Wait that gave up leaves the job alone")
}
