package qpool_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDAGInOrderUnderDefaults: with the default options, a job that
// depends on one that has already finished (quick, or waited for) runs
// when that job succeeded and fails with ErrDependencyFailed, naming the
// root cause, when it failed.
func TestDAGInOrderUnderDefaults(t *testing.T) {
	p := newTestPool(t)
	errBoom := errors.New("boom")
	_, err := wait(t, p.Schedule("fetch", ok))
	require.NoError(t, err)
	_, err = wait(t, p.Schedule("broken", func() (any, error) { return nil, errBoom }))
	require.ErrorIs(t, err, errBoom)

	v, err := wait(t, p.Schedule("process", func() (any, error) { return "processed", nil },
		qpool.WithDependencies("fetch")))
	require.NoError(t, err, "a dependency that succeeded earlier counts")
	assert.Equal(t, "processed", v)

	_, err = wait(t, p.Schedule("after-broken", ok, qpool.WithDependencies("broken")))
	assert.ErrorIs(t, err, qpool.ErrDependencyFailed)
	assert.ErrorIs(t, err, errBoom)

	_, found := p.Result("fetch")
	assert.False(t, found, "no result is kept by default")

	// A chain through outcomes keeps its origin: the dependent of a job
	// that failed for a dependency names that job and the root cause.
	_, err = wait(t, p.Schedule("after-after", ok, qpool.WithDependencies("after-broken")))
	var de *qpool.DependencyError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, "after-broken", de.Dependency)
	assert.Equal(t, "broken", de.Origin)
	assert.ErrorIs(t, err, errBoom)
}

// TestDependencyWindow: a finished job's outcome counts for the window and
// not after it, on the fake clock; the newest job of a reused ID counts.
func TestDependencyWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newTestPool(t, qpool.WithDependencyWindow(time.Minute))
		wait(t, p.Schedule("a", func() (any, error) { return nil, errors.New("first a fails") }))
		wait(t, p.Schedule("a", ok)) // the ID is free again: reuse it
		time.Sleep(59 * time.Second)
		_, err := wait(t, p.Schedule("b", ok, qpool.WithDependencies("a")))
		require.NoError(t, err, "the newest job under the ID counts, within the window")

		time.Sleep(2 * time.Second)
		_, err = wait(t, p.Schedule("c", ok, qpool.WithDependencies("a")))
		assert.ErrorIs(t, err, qpool.ErrUnknownDependency, "the window has passed")
		assert.NotErrorIs(t, err, qpool.ErrInvalidJob)
	})
}

// TestResultTTLOutlivedByTheWindow: with a result TTL shorter than the
// dependency window, the outcome stays known for the window once the
// retained result has gone.
func TestResultTTLOutlivedByTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newTestPool(t, qpool.WithResultTTL(time.Second), qpool.WithDependencyWindow(time.Minute))
		wait(t, p.Schedule("a", ok))
		time.Sleep(30 * time.Second)
		_, found := p.Result("a")
		assert.False(t, found, "the result outlived its TTL")
		_, err := wait(t, p.Schedule("b", ok, qpool.WithDependencies("a")))
		require.NoError(t, err, "the outcome outlives the result, for the window")
		time.Sleep(31 * time.Second)
		_, err = wait(t, p.Schedule("c", ok, qpool.WithDependencies("a")))
		assert.ErrorIs(t, err, qpool.ErrUnknownDependency)
	})
}

// TestDependencyOnAJobFinishingNow: a dependency submitted while the job it
// names is finishing finds it, in the registry or among the outcomes, never
// neither (the move from one to the other is atomic). Many rounds of
// randomised timing, under the defaults.
func TestDependencyOnAJobFinishingNow(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(4))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				id := fmt.Sprintf("dep-%d-%d", g, i)
				spin := rand.N(2000)
				p.Schedule(id, func() (any, error) {
					for range spin {
					}
					return nil, nil
				})
				if rand.N(2) == 0 {
					runtime.Gosched()
				}
				_, err := qpool.Submit(p, id+"-child", func(context.Context) (int, error) { return 0, nil },
					qpool.WithDependencies(id)).Wait(context.Background())
				if err != nil {
					t.Errorf("%s: %v", id, err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("watchdog: dependents did not resolve")
	}
}

// TestDroppedFuturesFreeTheirResults: under the default options, once the
// futures of finished jobs are dropped, one collection takes the heap back
// to where it was: the pool keeps no job's value. The same test with a
// result TTL keeps them (the check can fail).
func TestDroppedFuturesFreeTheirResults(t *testing.T) {
	const jobs, size = 1000, 64 << 10 // 64 MB of results in all
	run := func(opts ...qpool.Option) (grew uint64) {
		p := qpool.NewPool(append([]qpool.Option{qpool.WithWorkers(4)}, opts...)...)
		defer p.Close()
		before := heapAfterGC()
		futures := make([]*qpool.Future[[]byte], jobs)
		for i := range futures {
			futures[i] = qpool.Submit(p, fmt.Sprint("big-", i), func(context.Context) ([]byte, error) {
				return make([]byte, size), nil
			})
		}
		for _, f := range futures {
			if _, err := f.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		futures = nil
		after := heapAfterGC()
		if after < before {
			return 0
		}
		return after - before
	}
	total := uint64(jobs * size)
	grew := run()
	assert.Less(t, grew, total/20, "the pool kept %d of %d bytes of dropped results under the defaults", grew, total)
	kept := run(qpool.WithResultTTL(time.Hour))
	assert.Greater(t, kept, total/2, "with a result TTL the results are kept (the measure works)")
}

func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestJobFailedForItsDependenciesCountsUnderItsID: a job that fails at
// submission because a dependency is unknown, or failed already, is the
// newest job under its ID: a reused ID's older success no longer counts,
// under the defaults and with a result TTL (found by an adversarial
// review: the unknown-dependency case was not registered, and a dependent
// ran on the older success).
func TestJobFailedForItsDependenciesCountsUnderItsID(t *testing.T) {
	for name, opts := range map[string][]qpool.Option{"defaults": nil, "ttl": {qpool.WithResultTTL(time.Hour)}} {
		t.Run(name, func(t *testing.T) {
			p := newTestPool(t, opts...)
			errBoom := errors.New("boom")
			wait(t, p.Schedule("broken", func() (any, error) { return nil, errBoom }))
			for dep, want := range map[string]error{"never-submitted": qpool.ErrUnknownDependency, "broken": errBoom} {
				id := "x-after-" + dep
				_, err := wait(t, p.Schedule(id, ok)) // an older success under the ID
				require.NoError(t, err)
				_, err = wait(t, p.Schedule(id, ok, qpool.WithDependencies(dep)))
				require.ErrorIs(t, err, want)
				_, err = wait(t, p.Schedule("y-"+id, ok, qpool.WithDependencies(id)))
				assert.ErrorIs(t, err, qpool.ErrDependencyFailed, "the older success under %q counted", id)
				assert.ErrorIs(t, err, want)
				if r, found := p.Result(id); found {
					_, err := r.Wait(context.Background())
					assert.Error(t, err, "Result found the older success")
				}
			}
		})
	}
}

// TestDependencyWindowForever: a window or a TTL too long to add to the
// clock (math.MaxInt64, "forever") keeps outcomes and results, rather than
// overflowing into an expiry in the past.
func TestDependencyWindowForever(t *testing.T) {
	for name, opt := range map[string]qpool.Option{
		"window": qpool.WithDependencyWindow(math.MaxInt64),
		"ttl":    qpool.WithResultTTL(math.MaxInt64),
	} {
		t.Run(name, func(t *testing.T) {
			p := newTestPool(t, opt)
			_, err := wait(t, p.Schedule("a", ok))
			require.NoError(t, err)
			_, err = wait(t, p.Schedule("b", ok, qpool.WithDependencies("a")))
			assert.NoError(t, err, "the finished dependency was forgotten at once")
		})
	}
}

// TestOutcomeRingHammer: under the defaults, while several
// goroutines finish jobs (a quarter failing), each outcome among the last
// 1,500 to finish is found by a dependent submitted meanwhile, with the
// right verdict: fewer than any shard's 2,048, so none may be forgotten,
// while each shard's ring grows, reaches its bound and wraps (12,000 jobs
// and their dependents). A dependency lies some 50 records deep in its
// shard's ring on average (1,500 over 32 shards): a lookup that stopped
// after the newest 32 fails this test; the full depth, to the bound, is
// TestOutcomeRingModel's.
func TestOutcomeRingHammer(t *testing.T) {
	const goroutines, perGoroutine, recent = 4, 3000, 1500
	p := newTestPool(t, qpool.WithWorkers(4))
	errBoom := errors.New("boom")
	type done struct {
		id     string
		failed bool
	}
	var mu sync.Mutex
	var finished []done
	record := func(id string, err error) {
		mu.Lock()
		finished = append(finished, done{id, err != nil})
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			ctx := context.Background()
			for i := range perGoroutine {
				id := fmt.Sprintf("h-%d-%d", g, i)
				fail := rand.N(4) == 0
				_, err := p.Schedule(id, func() (any, error) {
					if fail {
						return nil, errBoom
					}
					return nil, nil
				}).Wait(ctx)
				record(id, err)
				if rand.N(2) == 0 {
					continue
				}
				mu.Lock()
				dep := finished[len(finished)-1-rand.N(min(len(finished), recent))]
				mu.Unlock()
				child := id + "-child"
				_, err = p.Schedule(child, ok, qpool.WithDependencies(dep.id)).Wait(ctx)
				switch {
				case errors.Is(err, qpool.ErrUnknownDependency):
					t.Errorf("%s: the outcome of %s was forgotten: %v", child, dep.id, err)
					return
				case dep.failed && !(errors.Is(err, qpool.ErrDependencyFailed) && errors.Is(err, errBoom)):
					t.Errorf("%s: %s failed, got %v", child, dep.id, err)
					return
				case !dep.failed && err != nil:
					t.Errorf("%s: %s succeeded, got %v", child, dep.id, err)
					return
				}
				record(child, err)
			}
		})
	}
	stop := make(chan struct{})
	go func() { wg.Wait(); close(stop) }()
	select {
	case <-stop:
	case <-time.After(60 * time.Second):
		t.Fatal("watchdog: the hammer did not finish")
	}
}
