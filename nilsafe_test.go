package qpool_test

import (
	"context"
	"testing"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInvalidFuture: the methods of a nil future and of a zero one do not
// panic: Wait fails with ErrInvalidFuture, Done is closed, Cancel does
// nothing, ID is empty.
func TestInvalidFuture(t *testing.T) {
	for name, f := range map[string]*qpool.Future[int]{"nil": nil, "zero": {}} {
		t.Run(name, func(t *testing.T) {
			require.NotPanics(t, func() {
				v, err := f.Wait(context.Background())
				assert.ErrorIs(t, err, qpool.ErrInvalidFuture)
				assert.Zero(t, v)
				_, err = f.Wait(nil) //nolint:staticcheck // a nil ctx is documented
				assert.ErrorIs(t, err, qpool.ErrInvalidFuture)
				f.Cancel()
				assert.Empty(t, f.ID())
				select {
				case <-f.Done():
				default:
					t.Error("Done of an invalid future is not closed")
				}
			})
		})
	}
}

// TestInvalidPool: a nil pool and a zero one refuse everything with
// ErrInvalidPool, through every method and through Submit, and never
// panic.
func TestInvalidPool(t *testing.T) {
	for name, p := range map[string]*qpool.Pool{"nil": nil, "zero": {}} {
		t.Run(name, func(t *testing.T) {
			require.NotPanics(t, func() {
				assert.ErrorIs(t, p.Go(func() {}), qpool.ErrInvalidPool)
				_, err := qpool.Submit(p, "a", func(context.Context) (int, error) { return 1, nil }).Wait(context.Background())
				assert.ErrorIs(t, err, qpool.ErrInvalidPool)
				f := p.Schedule("b", ok, qpool.WithRetry(3, 0))
				_, err = f.Wait(context.Background())
				assert.ErrorIs(t, err, qpool.ErrInvalidPool)
				assert.Equal(t, "b", f.ID())
				f.Cancel()
				<-f.Done()
				p.Wait()
				p.Resize(4)
				_, found := p.Result("a")
				assert.False(t, found)
				assert.Equal(t, qpool.Stats{}, p.Stats())
				assert.ErrorIs(t, p.Shutdown(context.Background()), qpool.ErrInvalidPool)
				assert.ErrorIs(t, p.Close(), qpool.ErrInvalidPool)
			})
		})
	}
}
