package qpool_test

import (
	"context"
	"errors"
	"sync"
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
