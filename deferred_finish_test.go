package qpool_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
)

// TestDeferredFinishHammer hammers the deferred-finish protocol
// (idRegistry.finishedBy): under the defaults a worker with more work
// queued leaves the move of a finished job from the registry to the
// outcomes to the next submission or lookup on its shard. Whoever has seen
// a job resolved finds it in the registry resolved alike, or moved: a
// dependency on it counts its outcome (runs after a success, fails with
// ErrDependencyFailed after a failure, never ErrUnknownDependency), and its
// ID is free again. Submitters keep the
// queue busy so that most jobs are deferred; rounds are bounded by count,
// timing is random, a watchdog reports a hang.
func TestDeferredFinishHammer(t *testing.T) {
	const rounds, submitters, batch = 6, 4, 60
	errBoom := errors.New("boom")
	for round := range rounds {
		p := qpool.NewPool(qpool.WithWorkers(1+rand.N(4)), qpool.WithLogger(discardLogger()))
		var wg sync.WaitGroup
		for s := range submitters {
			wg.Go(func() {
				ctx := context.Background()
				for k := range 4 {
					futs := make([]*qpool.Future[int], batch)
					for i := range futs {
						id := fmt.Sprintf("r%d-s%d-k%d-%d", round, s, k, i)
						spin, fail := rand.N(3000), rand.N(5) == 0
						futs[i] = qpool.Submit(p, id, func(context.Context) (int, error) {
							for range spin {
							}
							if fail {
								return 0, errBoom
							}
							return i, nil
						})
						if rand.N(8) == 0 {
							runtime.Gosched()
						}
					}
					for i, f := range futs {
						id := f.ID()
						_, err := f.Wait(ctx)
						// A waiter that finds its job done without waiting may
						// look a moment before the pool lets go of it (as
						// before the move was deferred): then Result finds
						// that job, resolved alike, and no other.
						if r, found := p.Result(id); found {
							select {
							case <-r.Done():
							default:
								t.Errorf("%s: Pool.Result found an unresolved job after the future resolved", id)
							}
							if _, rerr := r.Wait(ctx); !errors.Is(rerr, err) && (rerr != nil || err != nil) {
								t.Errorf("%s: Pool.Result's future got %v, the job's got %v", id, rerr, err)
							}
						}
						_, derr := qpool.Submit(p, id+"/child", func(context.Context) (int, error) { return 0, nil },
							qpool.WithDependencies(id)).Wait(ctx)
						switch {
						case err == nil && derr != nil:
							t.Errorf("%s: a dependency that succeeded before the dependent was submitted: %v", id, derr)
						case err != nil && !errors.Is(derr, qpool.ErrDependencyFailed):
							t.Errorf("%s: a dependency that failed before the dependent was submitted: got %v", id, derr)
						}
						if i%7 == 0 { // the ID is free again, and its newest job counts
							_, rerr := qpool.Submit(p, id, func(context.Context) (int, error) { return 0, nil }).Wait(ctx)
							if rerr != nil {
								t.Errorf("%s: reusing a finished job's ID: %v", id, rerr)
							}
							_, derr := qpool.Submit(p, id+"/child2", func(context.Context) (int, error) { return 0, nil },
								qpool.WithDependencies(id)).Wait(ctx)
							if derr != nil {
								t.Errorf("%s: a dependency on the reused ID's newest job, which succeeded: %v", id, derr)
							}
						}
					}
				}
			})
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("watchdog: round %d did not finish", round)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			return
		}
	}
}

// TestDeferredMoveIsSeenByLookups: a job its worker ended with more work
// queued, whose move nothing else has made (no submission follows), is
// moved by the lookups themselves: Pool.Result stops finding it, and a
// dependency on it runs. It fails (the watchdog) if a lookup does not
// make the move first.
func TestDeferredMoveIsSeenByLookups(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(1), qpool.WithIdleTimeout(time.Hour)) // no reaper's sweep
	start, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the pool's Close, on failure
	blocker := qpool.Submit(p, "blocker", func(context.Context) (int, error) { <-start; return 0, nil })
	a := qpool.Submit(p, "a", func(context.Context) (int, error) { return 1, nil })
	gate := qpool.Submit(p, "gate", func(context.Context) (int, error) { <-release; return 0, nil })
	close(start) // "a" ends with the gate queued behind it: its move is deferred
	if _, err := wait(t, a); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, found := p.Result("a"); return !found })
	b := qpool.Submit(p, "b", func(context.Context) (int, error) { return 2, nil }, qpool.WithDependencies("a"))
	once.Do(func() { close(release) }) // "b" is queued behind the gate
	if _, err := wait(t, b); err != nil {
		t.Fatalf("a dependency on a job whose move was deferred: %v", err)
	}
	wait(t, gate)
	wait(t, blocker)
}

// TestDeferredFinishIsBounded: a worker that keeps finding work queued,
// with no submission to move what it finished, lets go of finished jobs
// every few hundred (the registry then holds at most that many beyond
// their futures); and once it ends a job with nothing queued, the registry
// holds none: one collection after the futures are dropped takes the heap
// back to where it was. It fails without the bound (every finished job kept
// until the worker finds the queue empty), and without the flush before
// the wake of a job ended with nothing queued.
func TestDeferredFinishIsBounded(t *testing.T) {
	const jobs, size = 1000, 64 << 10 // 64 MB of results
	p := newTestPool(t, qpool.WithWorkers(1))
	start, release := make(chan struct{}), make(chan struct{})
	before := heapAfterGC()
	blocker := qpool.Submit(p, "blocker", func(context.Context) (int, error) { <-start; return 0, nil })
	futures := make([]*qpool.Future[[]byte], jobs)
	for i := range futures {
		futures[i] = qpool.Submit(p, fmt.Sprint("big-", i), func(context.Context) ([]byte, error) {
			return make([]byte, size), nil
		})
	}
	gate := qpool.Submit(p, "gate", func(context.Context) (int, error) { <-release; return 0, nil })
	close(start) // the worker runs the big jobs, each with the gate queued behind it
	for _, f := range futures {
		if _, err := wait(t, f); err != nil {
			t.Fatal(err)
		}
	}
	futures = nil
	total := uint64(jobs * size)
	if grew := heapGrowth(before); grew > total/2 {
		t.Errorf("while the gate job runs, the pool keeps %d of %d bytes of dropped results", grew, total)
	}
	close(release)
	if _, err := wait(t, gate); err != nil {
		t.Fatal(err)
	}
	if grew := heapGrowth(before); grew > total/20 {
		t.Errorf("once a job ended with nothing queued, the pool keeps %d of %d bytes of dropped results", grew, total)
	}
	if _, err := wait(t, blocker); err != nil {
		t.Fatal(err)
	}
}

// heapGrowth is how far the heap, after a collection, is above before.
func heapGrowth(before uint64) uint64 {
	if after := heapAfterGC(); after > before {
		return after - before
	}
	return 0
}
