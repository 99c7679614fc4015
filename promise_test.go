package qpool_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
)

// TestPromiseResolves: a promise's future gives what resolve got, once.
func TestPromiseResolves(t *testing.T) {
	f, resolve := qpool.NewPromise[int]("p1")
	require.Equal(t, "p1", f.ID())
	select {
	case <-f.Done():
		t.Fatal("done before resolve")
	default:
	}
	boom := errors.New("boom")
	require.True(t, resolve(7, boom))
	require.False(t, resolve(8, nil), "second resolve must lose")
	<-f.Done()
	v, err := f.Wait(context.Background())
	require.Equal(t, 7, v)
	require.ErrorIs(t, err, boom)
	v, err = f.Wait(nil) //nolint:staticcheck // a nil ctx waits without limit
	require.Equal(t, 7, v)
	require.ErrorIs(t, err, boom)
}

// TestPromiseCancelIsNoop: Cancel on a promise's future neither panics nor
// resolves it; resolve still decides the outcome.
func TestPromiseCancelIsNoop(t *testing.T) {
	f, resolve := qpool.NewPromise[string]("p2")
	f.Cancel()
	f.Cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err := f.Wait(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "Cancel must not resolve a promise")
	require.True(t, resolve("ok", nil))
	f.Cancel() // resolved: still nothing
	v, err := f.Wait(context.Background())
	require.NoError(t, err)
	require.Equal(t, "ok", v)
}

// TestPromiseWaitCtx: Wait returns ctx's cause and leaves the promise alone.
func TestPromiseWaitCtx(t *testing.T) {
	f, resolve := qpool.NewPromise[int]("p3")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.Wait(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.True(t, resolve(1, nil))
}

// TestPromiseHammer races resolvers, cancellers and waiters (with and
// without a context, through Done) on many promises: exactly one resolver
// wins each, and every waiter sees the winner's value.
func TestPromiseHammer(t *testing.T) {
	const rounds, resolvers, waiters = 300, 4, 4
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r := 0; r < rounds; r++ {
			f, resolve := qpool.NewPromise[int]("h")
			var wins atomic.Int32
			var winner atomic.Int64
			var wg sync.WaitGroup
			seen := make([]int, waiters)
			for w := 0; w < waiters; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					switch w % 3 {
					case 0:
						seen[w], _ = f.Wait(context.Background())
					case 1:
						seen[w], _ = f.Wait(nil) //nolint:staticcheck
					default:
						<-f.Done()
						seen[w], _ = f.Wait(context.Background())
					}
				}()
			}
			for i := 0; i < resolvers; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if rand.IntN(2) == 0 {
						time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
					}
					f.Cancel()
					if resolve(i+1, nil) {
						wins.Add(1)
						winner.Store(int64(i + 1))
					}
				}()
			}
			wg.Wait()
			if wins.Load() != 1 {
				t.Errorf("round %d: %d winners", r, wins.Load())
				return
			}
			for w, v := range seen {
				if v != int(winner.Load()) {
					t.Errorf("round %d: waiter %d saw %d, winner %d", r, w, v, winner.Load())
					return
				}
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("promise hammer hung")
	}
}
