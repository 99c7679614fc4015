package qpool_test

// Regression tests for failures users have reported in other pools.

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCloseReleasesSubmittersBlockedOnFullQueue(t *testing.T) {
	p := qpool.NewPool(qpool.WithWorkers(1), qpool.WithQueueSize(1))
	g := make(gate)
	running := p.Schedule("running", g.job)
	waitFor(t, func() bool { return p.Stats().Running == 1 })
	queued := p.Schedule("queued", ok)

	const blocked = 5
	errs := make(chan error, blocked)
	for range blocked {
		go func() { errs <- p.Go(func() {}) }()
	}
	closed := make(chan struct{})
	go func() { _ = p.Close(); close(closed) }()
	for range blocked {
		assert.ErrorIs(t, <-errs, qpool.ErrPoolClosed) // while the worker is still busy
	}
	g.open()
	<-closed
	_, err := wait(t, running)
	assert.NoError(t, err)
	_, err = wait(t, queued)
	assert.NoError(t, err, "Close runs everything accepted")
}

// TestSubmittersBlockedOnFullQueueAllRun floods small queues (and no
// queue) from one and from many goroutines, with fewer and with more
// workers than processors: every task of a submitter that blocked on a full
// queue must still run.
func TestSubmittersBlockedOnFullQueueAllRun(t *testing.T) {
	for _, c := range []struct{ size, workers, submitters int }{
		{0, 1, 1}, {0, 1, 16}, {1, 2, 16}, {2, 1, 1}, {7, 2, 16}, {64, 2, 16},
		{2, 4 * runtime.GOMAXPROCS(0), 4}, // more workers than processors: submitters yield first
	} {
		p := newTestPool(t, qpool.WithWorkers(c.workers), qpool.WithQueueSize(c.size))
		submitters, each := c.submitters, 8000/c.submitters
		var ran atomic.Int64
		var wg sync.WaitGroup
		for range submitters {
			wg.Go(func() {
				for range each {
					if err := p.Go(func() { ran.Add(1) }); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		p.Wait()
		require.Equal(t, int64(submitters*each), ran.Load(), "%+v", c)
	}
}

func TestEveryWorkerPanicsAtOnce(t *testing.T) {
	const workers = 4
	p := newTestPool(t, qpool.WithWorkers(workers))
	g := make(gate)
	var panics []*qpool.Future[any]
	for i := range workers {
		panics = append(panics, p.Schedule(jobID(i), func() (any, error) { <-g; panic("all at once") }))
	}
	var rest []*qpool.Future[any]
	for i := range 100 {
		rest = append(rest, p.Schedule(jobID(workers+i), ok))
	}
	g.open()
	for _, f := range panics {
		_, err := wait(t, f)
		var pe *qpool.PanicError
		assert.ErrorAs(t, err, &pe)
	}
	for _, f := range rest {
		_, err := wait(t, f)
		assert.NoError(t, err)
	}
	assert.Equal(t, uint64(workers), p.Stats().Panicked)
}

func TestJobCallingGoexit(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(1), qpool.WithLogger(discardLogger()))
	f := p.Schedule("exit", func() (any, error) { runtime.Goexit(); return nil, nil })
	after := p.Schedule("after", ok)
	_, err := wait(t, f)
	assert.ErrorIs(t, err, qpool.ErrGoexit)
	_, err = wait(t, after)
	assert.NoError(t, err, "the pool goes on with a replacement worker")
	require.NoError(t, p.Go(func() { runtime.Goexit() }))
	p.Wait()
	assert.Equal(t, uint64(2), p.Stats().Failed)
}

func TestResizeUpWakesBlockedSubmitters(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(1), qpool.WithQueueSize(1))
	g := make(gate)
	running := p.Schedule("running", g.job)
	waitFor(t, func() bool { return p.Stats().Running == 1 })
	queued := p.Schedule("queued", ok)
	submitted := make(chan *qpool.Future[any])
	go func() { submitted <- p.Schedule("blocked", ok) }()
	waitFor(t, func() bool { return p.Stats().Queued == 1 }) // still full
	p.Resize(3)
	blocked := <-submitted
	_, err := wait(t, queued)
	assert.NoError(t, err)
	_, err = wait(t, blocked)
	assert.NoError(t, err)
	g.open()
	_, err = wait(t, running)
	assert.NoError(t, err)
}

// A job that schedules into its own saturated pool and waits deadlocks
// until Close: Close fails the blocked submission, so the job ends.
func TestJobSchedulingIntoItsOwnFullPoolDoesNotHangClose(t *testing.T) {
	p := qpool.NewPool(qpool.WithWorkers(1), qpool.WithQueueSize(0))
	started := make(chan struct{})
	outer := p.Schedule("outer", func() (any, error) {
		close(started)
		inner := p.Schedule("inner", ok) // no worker, no queue: blocks
		return inner.Wait(context.Background())
	})
	<-started
	require.NoError(t, p.Close())
	_, err := wait(t, outer)
	assert.ErrorIs(t, err, qpool.ErrPoolClosed)
}

func TestPoolContextCancelledWithThousandQueued(t *testing.T) {
	cause := errors.New("operator said stop")
	ctx, cancel := context.WithCancelCause(context.Background())
	p := qpool.NewPool(qpool.WithContext(ctx), qpool.WithWorkers(1), qpool.WithQueueSize(2000))
	started := make(chan struct{})
	running := qpool.Submit(p, "running", func(ctx context.Context) (any, error) {
		close(started)
		<-ctx.Done()
		return nil, context.Cause(ctx)
	})
	<-started
	var queued []*qpool.Future[any]
	for i := range 1000 {
		queued = append(queued, p.Schedule(jobID(i), ok))
	}
	cancel(cause)
	for _, f := range append(queued, running) {
		_, err := wait(t, f)
		assert.ErrorIs(t, err, cause)
		assert.ErrorIs(t, err, qpool.ErrPoolClosed)
	}
	_, err := wait(t, p.Schedule("late", ok))
	assert.ErrorIs(t, err, qpool.ErrPoolClosed)
	require.NoError(t, p.Close())
	s := p.Stats()
	assert.Equal(t, s.Submitted, s.Failed)
}

func TestConcurrentCloseAndShutdown(t *testing.T) {
	p := qpool.NewPool(qpool.WithWorkers(2))
	for i := range 100 {
		p.Schedule(jobID(i), ok)
	}
	var wg sync.WaitGroup
	var nilErrs atomic.Int32
	for i := range 4 {
		wg.Go(func() {
			var err error
			if i%2 == 0 {
				err = p.Close()
			} else {
				err = p.Shutdown(context.Background())
			}
			if err == nil {
				nilErrs.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int32(4), nilErrs.Load())
	assert.Equal(t, uint64(100), p.Stats().Succeeded)
}

// A dependency finishing while its dependent registers must neither be
// missed (the dependent would wait forever) nor counted twice.
func TestDependencyFinishingDuringRegistration(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(4))
	boom := errors.New("boom")
	const n = 2000
	var futs []*qpool.Future[any]
	for i := range n {
		dep := jobID(i)
		fail := i%3 == 0
		p.Schedule(dep, func() (any, error) {
			if fail {
				return nil, boom
			}
			return nil, nil
		})
		futs = append(futs, p.Schedule(dep+"-after", ok, qpool.WithDependencies(dep)))
	}
	for i, f := range futs {
		_, err := wait(t, f)
		if i%3 == 0 {
			assert.ErrorIs(t, err, qpool.ErrDependencyFailed)
		} else {
			assert.NoError(t, err)
		}
	}
	p.Wait()
	assert.Zero(t, p.Stats().Waiting)
}

// Go counts a function as submitted before a worker can count its outcome,
// so the stats add up as soon as Wait returns (found in review).
func TestGoStatsAddUpAfterWait(t *testing.T) {
	for i := range 500 {
		p := qpool.NewPool(qpool.WithWorkers(2))
		ran := make(chan struct{})
		go func() { _ = p.Go(func() { close(ran) }) }()
		<-ran
		p.Wait()
		s := p.Stats()
		require.Equal(t, s.Submitted, s.Succeeded+s.Failed, "iteration %d: %+v", i, s)
		require.NoError(t, p.Close())
	}
}
