package qpool_test

// Tests of the pool's promises under adversarial interleavings (issue 13,
// defect 5): each hammers one sentence of the docs from many
// goroutines over many rounds, with a watchdog that reports a hang as a
// failure.

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
