package qpool_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"weak"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
)

func valueFn(v int) func(context.Context) (int, error) {
	return func(context.Context) (int, error) { return v, nil }
}

// resultOf waits for the job registered under id and returns its value.
func resultOf(t *testing.T, p *qpool.Pool, id string) (any, bool) {
	t.Helper()
	f, ok := p.Result(id)
	if !ok {
		return nil, false
	}
	v, err := f.Wait(t.Context())
	require.NoError(t, err)
	return v, true
}

// TestReplacedJobSurvivesOldExpiry: a finished job retained for the
// TTL is replaced by a new job with the same ID; the old job's expiry must
// not unregister the new one, neither while it runs (a duplicate is still
// refused) nor after it finished (its own TTL counts).
func TestReplacedJobSurvivesOldExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := qpool.NewPool(qpool.WithWorkers(2), qpool.WithResultTTL(time.Minute))
		defer p.Close()
		_, err := qpool.Submit(p, "x", valueFn(1)).Wait(t.Context())
		require.NoError(t, err)
		time.Sleep(30 * time.Second)
		release := make(chan struct{})
		second := qpool.Submit(p, "x", func(context.Context) (int, error) { <-release; return 2, nil })
		synctest.Wait()
		time.Sleep(45 * time.Second) // the first job's TTL passed
		dup := qpool.Submit(p, "x", valueFn(3))
		_, err = dup.Wait(t.Context())
		require.ErrorIs(t, err, qpool.ErrDuplicateJob, "the running replacement must still hold the ID")
		close(release)
		v, err := second.Wait(t.Context())
		require.NoError(t, err)
		require.Equal(t, 2, v)
		time.Sleep(59 * time.Second)
		got, ok := resultOf(t, p, "x")
		require.True(t, ok)
		require.Equal(t, 2, got)
		time.Sleep(2 * time.Second)
		_, ok = p.Result("x")
		require.False(t, ok, "gone once its own TTL passed")
	})
}

// TestTTLZeroForgetsAndReuses: with no TTL and no dependency window, a
// finished ID is free at once and not reachable, and a dependency on it is
// unknown.
func TestTTLZeroForgetsAndReuses(t *testing.T) {
	p := qpool.NewPool(qpool.WithWorkers(4), qpool.WithResultTTL(0), qpool.WithDependencyWindow(0))
	defer p.Close()
	for i := range 200 {
		v, err := qpool.Submit(p, "same", valueFn(i)).Wait(t.Context())
		require.NoError(t, err)
		require.Equal(t, i, v)
		_, ok := p.Result("same")
		require.False(t, ok)
	}
	_, err := qpool.Submit(p, "dep", valueFn(0), qpool.WithDependencies("same")).Wait(t.Context())
	require.ErrorIs(t, err, qpool.ErrUnknownDependency)
}

// TestCancelWhileRegistering cancels each job through Pool.Result the
// moment its ID becomes visible, racing the submission that registers it:
// a job cancelled between its registration and its queueing must not be
// queued anyway (it would run and be resolved a second time, which
// panicked), and the counters must add up.
func TestCancelWhileRegistering(t *testing.T) {
	p := qpool.NewPool(qpool.WithWorkers(2), qpool.WithResultTTL(0))
	var target atomic.Pointer[string]
	target.Store(new(string))
	stop := make(chan struct{})
	oneProc := runtime.GOMAXPROCS(0) == 1
	var wg sync.WaitGroup
	wg.Go(func() { // the canceller
		for {
			select {
			case <-stop:
				return
			default:
			}
			if f, ok := p.Result(*target.Load()); ok {
				f.Cancel()
			}
			if oneProc {
				runtime.Gosched() // let the submitter and the worker run
			}
		}
	})
	var ran atomic.Int64
	const n = 100_000
	canceled := 0
	for i := range n {
		id := fmt.Sprint("r-", i)
		target.Store(&id)
		_, err := p.Schedule(id, func() (any, error) { ran.Add(1); return nil, nil }).Wait(t.Context())
		if err != nil {
			require.ErrorIs(t, err, context.Canceled)
			canceled++
		}
	}
	close(stop)
	wg.Wait()
	require.NoError(t, p.Close())
	s := p.Stats()
	require.Equal(t, uint64(n), s.Submitted)
	require.Equal(t, s.Submitted, s.Succeeded+s.Failed)
	require.Equal(t, uint64(canceled), s.Failed)
	require.Equal(t, int64(n-canceled), ran.Load(), "every job ran unless cancelled first")
	t.Logf("%d of %d cancelled", canceled, n)
}

// TestTTLZeroReleasesFinishedJobs: without a TTL or a dependency window
// the registry drops a finished job lazily (a later submission into its
// shard sweeps it out), so a job whose future is gone must still become
// garbage once enough other jobs have gone through.
func TestTTLZeroReleasesFinishedJobs(t *testing.T) {
	p := qpool.NewPool(qpool.WithWorkers(2), qpool.WithResultTTL(0), qpool.WithDependencyWindow(0))
	defer p.Close()
	f := qpool.Submit(p, "first", valueFn(1))
	_, err := f.Wait(t.Context())
	require.NoError(t, err)
	w := weak.Make(f)
	f = nil
	for i := range 20_000 {
		p.Schedule(fmt.Sprint("job-", i), func() (any, error) { return i, nil })
	}
	p.Wait()
	runtime.GC()
	require.Nil(t, w.Value(), "a finished job is still reachable")
	_, ok := p.Result("first")
	require.False(t, ok)
}

// runBigJobs runs n jobs one after another, each returning a fresh 64 KiB
// value that the caller drops, and returns a function that collects garbage
// and counts how many of those values are still reachable.
func runBigJobs(t *testing.T, p *qpool.Pool, n int) (alive func() int) {
	t.Helper()
	values := make([]weak.Pointer[[1 << 16]byte], n)
	for i := range n {
		v, err := qpool.Submit(p, fmt.Sprint("big-", i), func(context.Context) (*[1 << 16]byte, error) {
			return new([1 << 16]byte), nil
		}).Wait(t.Context())
		require.NoError(t, err)
		values[i] = weak.Make(v)
	}
	return func() (k int) {
		runtime.GC()
		for _, w := range values {
			if w.Value() != nil {
				k++
			}
		}
		return k
	}
}

// TestDefaultsKeepNoFinishedValue: under the default options the registry
// keeps a finished job's outcome, not the job: every value whose future was
// dropped is garbage at once, while the pool is still busy.
func TestDefaultsKeepNoFinishedValue(t *testing.T) {
	p := qpool.NewPool(qpool.WithWorkers(1))
	defer p.Close()
	alive := runBigJobs(t, p, 300)
	require.Zero(t, alive(), "finished values kept under the defaults")
}

// TestTTLZeroRetentionIsBounded: without a TTL or a dependency window,
// finished jobs (and the values they returned) wait in the registry for a
// sweep. With one job at a time no shard's table grows, so at most three
// per shard stay (96 in all); once the pool is idle, the idle reaper's
// sweep lets every one go.
func TestTTLZeroRetentionIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := qpool.NewPool(qpool.WithWorkers(1), qpool.WithResultTTL(0), qpool.WithDependencyWindow(0))
		defer p.Close()
		alive := runBigJobs(t, p, 300)
		require.LessOrEqual(t, alive(), 96, "finished values kept while the pool is busy")
		time.Sleep(2 * qpool.DefaultIdleTimeout) // the idle reaper fires
		synctest.Wait()
		require.Zero(t, alive(), "finished values kept by an idle pool")
	})
}

// TestIdlePoolDropsExpiredResults: with a result TTL, finished jobs stay
// reachable for the TTL and are then let go even if the pool goes idle and
// nothing touches it again: the idle reaper keeps firing while results are
// retained, after the last worker has left.
func TestIdlePoolDropsExpiredResults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := qpool.NewPool(qpool.WithWorkers(2), qpool.WithResultTTL(time.Minute))
		defer p.Close()
		const jobs = 100
		alive := runBigJobs(t, p, jobs)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		require.Equal(t, jobs, alive(), "results dropped before their TTL")
		require.Zero(t, p.Stats().Workers, "the workers have left")
		time.Sleep(time.Minute)
		synctest.Wait()
		require.Zero(t, alive(), "expired results kept by an idle pool")
		_, ok := p.Result("big-0")
		require.False(t, ok)
	})
}

// TestManyIDsRetainedAndExpired registers many IDs at once (tables
// grow with runs wrapping), checks each result and a dependency on each
// while retained, then that all expire, and that the IDs are reusable.
func TestManyIDsRetainedAndExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 3000
		p := qpool.NewPool(qpool.WithWorkers(4), qpool.WithResultTTL(time.Minute))
		defer p.Close()
		fs := make([]*qpool.Future[int], n)
		for i := range n {
			fs[i] = qpool.Submit(p, fmt.Sprint("id-", i), valueFn(i))
		}
		for i, f := range fs {
			v, err := f.Wait(t.Context())
			require.NoError(t, err)
			require.Equal(t, i, v)
		}
		for i := range n {
			got, ok := resultOf(t, p, fmt.Sprint("id-", i))
			require.True(t, ok, i)
			require.Equal(t, i, got)
		}
		for i := 0; i < n; i += 97 {
			_, err := qpool.Submit(p, fmt.Sprint("dep-", i), valueFn(0), qpool.WithDependencies(fmt.Sprint("id-", i))).Wait(t.Context())
			require.NoError(t, err)
		}
		time.Sleep(2 * time.Minute)
		for i := range n {
			_, ok := p.Result(fmt.Sprint("id-", i)) // each lookup expires its shard
			require.False(t, ok, i)
		}
		for i := range n {
			v, err := qpool.Submit(p, fmt.Sprint("id-", i), valueFn(-i)).Wait(t.Context())
			require.NoError(t, err)
			require.Equal(t, -i, v)
		}
	})
}

// TestConcurrentChurn hammers the registry from many goroutines:
// reused IDs, duplicates, results and dependencies, under -race, with a
// short real TTL so that expiry interleaves with replacement.
func TestConcurrentChurn(t *testing.T) {
	p := qpool.NewPool(qpool.WithWorkers(8), qpool.WithResultTTL(time.Millisecond))
	defer p.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 400 {
				id := fmt.Sprint("k", (g*7+i)%37)
				f := qpool.Submit(p, id, valueFn(i), qpool.WithRetry(1, 0))
				_, err := f.Wait(t.Context())
				if err != nil {
					require.ErrorIs(t, err, qpool.ErrDuplicateJob)
					continue
				}
				if r, ok := p.Result(id); ok {
					_, err := r.Wait(t.Context())
					require.NoError(t, err)
				}
				d := qpool.Submit(p, fmt.Sprint("d", g, "-", i), valueFn(0), qpool.WithDependencies(id))
				if _, err := d.Wait(t.Context()); err != nil {
					require.ErrorIs(t, err, qpool.ErrInvalidJob) // expired meanwhile
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, p.Close())
	s := p.Stats()
	require.Equal(t, s.Submitted, s.Succeeded+s.Failed)
}
