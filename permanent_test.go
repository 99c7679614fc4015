package qpool_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errNotFound = errors.New("404 not found")

// retried runs a job that fails with fail(attempt) under opts and returns
// how many attempts it made and its error.
func retried(t *testing.T, fail func(attempt int32) error, opts ...qpool.JobOption) (int32, error) {
	t.Helper()
	p := qpool.NewPool(qpool.WithWorkers(2), qpool.WithLogger(discardLogger()))
	defer p.Close()
	var n atomic.Int32
	f := qpool.Submit(p, "job", func(context.Context) (int, error) {
		return 0, fail(n.Add(1))
	}, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := f.Wait(ctx)
	require.NotErrorIs(t, err, context.DeadlineExceeded, "watchdog: the job did not resolve")
	return n.Load(), err
}

func TestPermanentErrorIsNotRetried(t *testing.T) {
	for name, wrap := range map[string]func(error) error{
		"bare":    qpool.Permanent,
		"wrapped": func(err error) error { return fmt.Errorf("fetch: %w", qpool.Permanent(err)) },
		"joined":  func(err error) error { return errors.Join(errors.New("other"), qpool.Permanent(err)) },
	} {
		t.Run(name, func(t *testing.T) {
			n, err := retried(t, func(int32) error { return wrap(errNotFound) }, qpool.WithRetry(5, 0))
			assert.EqualValues(t, 1, n, "a permanent error is not retried")
			assert.ErrorIs(t, err, errNotFound, "the cause stays reachable")
			var pe *qpool.PermanentError
			assert.ErrorAs(t, err, &pe, "the future's error keeps the marker")
			assert.True(t, qpool.IsPermanent(err))
		})
	}
}

func TestPermanentErrorAfterTransientOnes(t *testing.T) {
	n, err := retried(t, func(a int32) error {
		if a < 3 {
			return errors.New("transient")
		}
		return qpool.Permanent(errNotFound)
	}, qpool.WithRetry(10, 0))
	assert.EqualValues(t, 3, n, "transient errors are retried until the permanent one")
	assert.ErrorIs(t, err, errNotFound)
}

func TestPermanentNil(t *testing.T) {
	assert.NoError(t, qpool.Permanent(nil))
	assert.False(t, qpool.IsPermanent(nil))
	assert.False(t, qpool.IsPermanent(errNotFound))
	assert.Equal(t, errNotFound.Error(), qpool.Permanent(errNotFound).Error(), "the marker does not change the message")
}

func TestWithRetryIf(t *testing.T) {
	transient := errors.New("transient")
	onlyTransient := qpool.WithRetryIf(func(err error) bool { return errors.Is(err, transient) })
	t.Run("retries what it accepts, up to WithRetry", func(t *testing.T) {
		n, err := retried(t, func(int32) error { return transient }, qpool.WithRetry(4, 0), onlyTransient)
		assert.EqualValues(t, 4, n)
		assert.ErrorIs(t, err, transient)
	})
	t.Run("stops at what it refuses", func(t *testing.T) {
		n, err := retried(t, func(a int32) error {
			if a == 2 {
				return fs.ErrNotExist
			}
			return transient
		}, qpool.WithRetry(10, 0), onlyTransient)
		assert.EqualValues(t, 2, n)
		assert.ErrorIs(t, err, fs.ErrNotExist)
	})
	t.Run("permanent wins over the predicate", func(t *testing.T) {
		n, _ := retried(t, func(int32) error { return qpool.Permanent(transient) },
			qpool.WithRetry(10, 0), qpool.WithRetryIf(func(error) bool { return true }))
		assert.EqualValues(t, 1, n)
	})
	t.Run("sees the timeout", func(t *testing.T) {
		var sawDeadline atomic.Bool
		p := qpool.NewPool(qpool.WithWorkers(1))
		defer p.Close()
		f := qpool.Submit(p, "slow", func(ctx context.Context) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		}, qpool.WithRetry(3, 0), qpool.WithTimeout(time.Millisecond), qpool.WithRetryIf(func(err error) bool {
			sawDeadline.Store(errors.Is(err, context.DeadlineExceeded))
			return false
		}))
		_, err := f.Wait(context.Background())
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.True(t, sawDeadline.Load())
	})
	t.Run("a panicking predicate ends the job with a PanicError", func(t *testing.T) {
		n, err := retried(t, func(int32) error { return transient },
			qpool.WithRetry(10, 0), qpool.WithRetryIf(func(error) bool { panic("bad predicate") }))
		assert.EqualValues(t, 1, n)
		var pe *qpool.PanicError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, "bad predicate", pe.Value)
		assert.Equal(t, "job", pe.JobID)
	})
	t.Run("nil restores the default", func(t *testing.T) {
		n, _ := retried(t, func(int32) error { return transient }, qpool.WithRetry(3, 0), qpool.WithRetryIf(nil))
		assert.EqualValues(t, 3, n)
	})
}

func TestPanicErrorNamesTheJob(t *testing.T) {
	_, err := retried(t, func(int32) error { panic("boom") })
	var pe *qpool.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "job", pe.JobID)
	assert.Contains(t, err.Error(), `job "job" panicked: boom`)
}
