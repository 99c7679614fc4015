package qpool_test

import (
	"errors"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
)

// TestSpecOf: SpecOf reports what the options set, the last one winning,
// with a pool's defaults for the rest.
func TestSpecOf(t *testing.T) {
	s := qpool.SpecOf()
	require.Equal(t, 1, s.Attempts)
	require.Zero(t, s.Timeout)
	require.Zero(t, s.Backoff)
	require.Nil(t, s.RetryIf)
	require.Empty(t, s.Dependencies)
	require.Nil(t, s.Entanglement)

	only := errors.New("only")
	opts := []qpool.JobOption{
		qpool.WithTimeout(time.Second), nil,
		qpool.WithRetry(5, 10*time.Millisecond),
		qpool.WithRetryIf(func(err error) bool { return errors.Is(err, only) }),
		qpool.WithDependencies("a", "b"), qpool.WithDependencies("c"),
		qpool.WithTimeout(2 * time.Second),
	}
	s = qpool.SpecOf(opts...)
	require.Equal(t, 2*time.Second, s.Timeout)
	require.Equal(t, 5, s.Attempts)
	require.Equal(t, 10*time.Millisecond, s.Backoff)
	require.Equal(t, []string{"a", "b", "c"}, s.Dependencies)
	ok, perr := s.Retryable("j", only)
	require.True(t, ok)
	require.NoError(t, perr)
	ok, _ = s.Retryable("j", errors.New("other"))
	require.False(t, ok)
	ok, _ = s.Retryable("j", qpool.Permanent(only))
	require.False(t, ok, "a permanent error is never retried")

	// The spec's slice is its own: changing it changes no later spec.
	s.Dependencies[0] = "x"
	require.Equal(t, []string{"a", "b", "c"}, qpool.SpecOf(opts...).Dependencies)

	require.Equal(t, 1, qpool.SpecOf(qpool.WithRetry(0, -1)).Attempts)
}

// TestSpecRetryIfPanics: a panicking RetryIf stops retries with a
// *PanicError, as in a pool.
func TestSpecRetryIfPanics(t *testing.T) {
	s := qpool.SpecOf(qpool.WithRetryIf(func(error) bool { panic("no") }))
	ok, perr := s.Retryable("j", errors.New("e"))
	require.False(t, ok)
	var pe *qpool.PanicError
	require.ErrorAs(t, perr, &pe)
}

// TestBackoff: the exported backoff doubles per attempt with at most half
// added as jitter.
func TestBackoff(t *testing.T) {
	require.Zero(t, qpool.Backoff(0, 3))
	for attempt := 1; attempt <= 4; attempt++ {
		base := 10 * time.Millisecond << (attempt - 1)
		for i := 0; i < 50; i++ {
			d := qpool.Backoff(10*time.Millisecond, attempt)
			require.GreaterOrEqual(t, d, base)
			require.LessOrEqual(t, d, base+base/2)
		}
	}
}
