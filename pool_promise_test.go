package qpool_test

// Tests of the pool's promises under adversarial interleavings (issue 13,
// defects 2 and 5): each hammers one sentence of the docs from many
// goroutines over many rounds, with a watchdog that reports a hang as a
// failure.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
)

// watchdog fails t if done does not close within a generous bound.
func watchdog(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("watchdog: %s\n%s", what, buf[:runtime.Stack(buf, true)])
	}
}

// poolGoroutines lists the goroutines of the pool's own making that are
// alive: workers, dependent hand-offs, the idle reaper's and the context
// watchers' runs. It tells them from the test's goroutines by where they
// were created and what they run.
func poolGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		i := strings.LastIndex(g, "\ncreated by ")
		if i < 0 {
			continue
		}
		created := g[i:]
		if strings.Contains(created, "qpool_test.") || strings.Contains(created, "testing.") {
			continue // the test's own goroutines (submitters, the test itself)
		}
		if strings.Contains(g, "github.com/qpool/qpool.(") {
			found = append(found, g)
		}
	}
	return found
}

// poolGoroutinesAfterExit is poolGoroutines once those that have signalled
// their end have had a moment to return, as goleak allows: a goroutine is
// listed until it has returned from the function that signalled it.
func poolGoroutinesAfterExit() []string {
	alive := poolGoroutines()
	for i := 0; len(alive) > 0 && i < 50; i++ {
		if i < 20 {
			runtime.Gosched()
		} else {
			time.Sleep(time.Millisecond)
		}
		alive = poolGoroutines()
	}
	return alive
}

// TestShutdownNilMeansEverythingEnded races submitters (some of them
// rejected as intake stops) against Shutdown with a deadline far away:
// Shutdown must return nil, and nil means every accepted job has resolved
// and every goroutine of the pool has ended by the time it returns.
func TestShutdownNilMeansEverythingEnded(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for round := range 150 {
			p := qpool.NewPool(qpool.WithWorkers(1+round%4), qpool.WithQueueSize(round%3), qpool.WithIdleTimeout(time.Hour))
			var stop atomic.Bool
			var submissions atomic.Int64
			var submitters sync.WaitGroup
			var mu sync.Mutex
			var futs []*qpool.Future[any]
			for s := range 3 {
				submitters.Add(1)
				go func() { // not wg.Go: poolGoroutines tells the test's goroutines by their creator
					defer submitters.Done()
					for i := 0; !stop.Load(); i++ {
						if submissions.Add(1)%16 == 0 {
							runtime.Gosched() // spinning submitters would starve the rest on a busy machine
						}
						if i%2 == 0 {
							if err := p.Go(func() {}); err != nil && !errors.Is(err, qpool.ErrPoolClosed) {
								t.Error(err)
							}
							continue
						}
						f := p.Schedule(fmt.Sprintf("%d-%d", s, i), ok)
						mu.Lock()
						futs = append(futs, f)
						mu.Unlock()
					}
				}()
			}
			for n := int64(rand.IntN(40)); submissions.Load() < n; {
				runtime.Gosched()
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := p.Shutdown(ctx)
			workers := p.Stats().Workers // at once: a worker stops counting itself before it signals its end
			alive := poolGoroutinesAfterExit()
			cancel()
			stop.Store(true)
			submitters.Wait()
			if err != nil {
				t.Errorf("round %d: Shutdown with a minute to go returned %v", round, err)
				return
			}
			if len(alive) > 0 || workers != 0 {
				t.Errorf("round %d: Shutdown returned nil with %d workers counted and these goroutines of the pool alive:\n%s",
					round, workers, strings.Join(alive, "\n\n"))
				return
			}
			for _, f := range futs {
				select {
				case <-f.Done():
				default:
					t.Errorf("round %d: future %s unresolved after Shutdown returned nil", round, f.ID())
					return
				}
				if _, err := f.Wait(context.Background()); err != nil && !errors.Is(err, qpool.ErrPoolClosed) {
					t.Errorf("round %d: future %s: %v", round, f.ID(), err)
				}
			}
			s := p.Stats()
			if s.Submitted != s.Succeeded+s.Failed {
				t.Errorf("round %d: stats do not add up: %+v", round, s)
			}
		}
	}()
	watchdog(t, done, "Shutdown or a submitter hung")
}

// TestPoolContextCauseReachesRacingSubmitters cancels the pool's context
// with a cause while several goroutines submit: every rejection, and every
// accepted job the end of the context fails, must carry the cause as well
// as ErrPoolClosed.
func TestPoolContextCauseReachesRacingSubmitters(t *testing.T) {
	cause := errors.New("operator said stop")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for round := range 200 {
			ctx, cancel := context.WithCancelCause(context.Background())
			p := qpool.NewPool(qpool.WithContext(ctx), qpool.WithWorkers(2), qpool.WithQueueSize(round%3), qpool.WithLogger(discardLogger()))
			var submitters sync.WaitGroup
			errs := make(chan error, 1024)
			for s := range 4 {
				submitters.Go(func() {
					rejected := 0
					for i := 0; rejected < 3; i++ {
						var err error
						if i%2 == 0 {
							err = p.Go(func() {})
						} else {
							_, err = p.Schedule(fmt.Sprintf("%d-%d", s, i), ok).Wait(context.Background())
						}
						if err != nil {
							rejected++
							select {
							case errs <- err:
							default:
							}
						}
					}
				})
			}
			for range rand.IntN(100) {
				runtime.Gosched()
			}
			cancel(cause)
			submitters.Wait()
			if err := p.Close(); err != nil {
				t.Error(err)
			}
			close(errs)
			for err := range errs {
				if !errors.Is(err, qpool.ErrPoolClosed) || !errors.Is(err, cause) {
					t.Errorf("round %d: a submission racing the end of the pool's context got %q: want ErrPoolClosed and the cause", round, err)
					return
				}
			}
		}
	}()
	watchdog(t, done, "a submitter hung")
}
