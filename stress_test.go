package qpool_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStress submits a mix of successes, errors, panics, timeouts, retries
// and cancellations from several goroutines, records what each future
// resolved to, and checks the history: every future resolved once, with
// the outcome its kind implies, and the counters add up.
func TestStress(t *testing.T) {
	const submitters, perSubmitter = 8, 2500
	p := qpool.NewPool(qpool.WithWorkers(8), qpool.WithQueueSize(64), qpool.WithResultTTL(0))
	boom := errors.New("boom")
	type record struct {
		kind int
		fut  *qpool.Future[int]
	}
	records := make([][]record, submitters)
	var wg sync.WaitGroup
	for s := range submitters {
		wg.Go(func() {
			for i := range perSubmitter {
				kind := (s*perSubmitter + i) % 6
				id := jobID(s*perSubmitter + i)
				var f *qpool.Future[int]
				switch kind {
				case 0: // success
					f = qpool.Submit(p, id, func(context.Context) (int, error) { return i, nil })
				case 1: // error
					f = qpool.Submit(p, id, func(context.Context) (int, error) { return 0, boom })
				case 2: // panic
					f = qpool.Submit(p, id, func(context.Context) (int, error) { panic(i) })
				case 3: // timeout
					f = qpool.Submit(p, id, func(ctx context.Context) (int, error) {
						<-ctx.Done()
						return 0, ctx.Err()
					}, qpool.WithTimeout(time.Microsecond))
				case 4: // succeeds on the second attempt
					var tries int
					f = qpool.Submit(p, id, func(context.Context) (int, error) {
						if tries++; tries < 2 {
							return 0, boom
						}
						return i, nil
					}, qpool.WithRetry(2, 0))
				case 5: // cancelled at some point
					f = qpool.Submit(p, id, func(ctx context.Context) (int, error) {
						<-ctx.Done()
						return 0, ctx.Err()
					})
					f.Cancel()
				}
				records[s] = append(records[s], record{kind, f})
			}
		})
	}
	wg.Wait()
	p.Wait()
	require.NoError(t, p.Close())

	var panics, retries, successes uint64
	for _, rs := range records {
		for _, r := range rs {
			select {
			case <-r.fut.Done():
			default:
				t.Fatalf("future %s not resolved after Wait", r.fut.ID())
			}
			v1, err1 := r.fut.Wait(context.Background())
			v2, err2 := r.fut.Wait(context.Background())
			require.Equal(t, v1, v2, "a future resolved twice")
			require.Equal(t, err1, err2, "a future resolved twice")
			var pe *qpool.PanicError
			switch r.kind {
			case 0, 4:
				assert.NoError(t, err1)
			case 1:
				assert.ErrorIs(t, err1, boom)
			case 2:
				assert.ErrorAs(t, err1, &pe)
			case 3:
				assert.ErrorIs(t, err1, context.DeadlineExceeded)
			case 5:
				assert.ErrorIs(t, err1, context.Canceled)
			}
			if r.kind == 2 {
				panics++
			}
			if r.kind == 4 {
				retries++
			}
			if r.kind == 0 || r.kind == 4 {
				successes++
			}
		}
	}
	s := p.Stats()
	assert.Equal(t, uint64(submitters*perSubmitter), s.Submitted)
	assert.Equal(t, s.Submitted, s.Succeeded+s.Failed)
	assert.Equal(t, successes, s.Succeeded)
	assert.Equal(t, panics, s.Panicked)
	assert.Equal(t, retries, s.Retried)
	assert.Zero(t, s.Workers)
}

// TestBurstsReachIdleWorkers sends bursts from several goroutines into
// pools whose workers have gone idle between bursts, with queues of no
// slot, one slot and an odd number of slots, so that submitters hand tasks
// to waiting workers, queue them and wake a worker, and wait for room. A
// task left in the queue with every worker asleep, or a submitter left
// waiting for room that was made, hangs Wait and fails the test by its
// timeout (the idle timeout is an hour, so that no reaper rescues a
// stranded task).
func TestBurstsReachIdleWorkers(t *testing.T) {
	for _, size := range []int{0, 1, 3} {
		for _, workers := range []int{1, 3} {
			p := qpool.NewPool(qpool.WithWorkers(workers), qpool.WithQueueSize(size), qpool.WithIdleTimeout(time.Hour))
			var ran atomic.Int64
			for round := range 300 {
				var wg sync.WaitGroup
				for range 3 {
					wg.Go(func() {
						for range 5 {
							require.NoError(t, p.Go(func() {
								runtime.Gosched()
								ran.Add(1)
							}))
						}
					})
				}
				wg.Wait()
				p.Wait()
				require.Equal(t, int64(15*(round+1)), ran.Load(), "queue %d, %d workers, round %d", size, workers, round)
			}
			require.NoError(t, p.Close())
		}
	}
}
