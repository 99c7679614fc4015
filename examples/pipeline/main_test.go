package main

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain fails the tests if any goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRunPrintsResultsAndLedger(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), &out))
	require.Equal(t, `data-fetch: fetched 5 records [1 2 3 4 5]
data-process: processed 5 records [1 4 9 16 25]
ledger of "data-pipeline":
  #0 status = fetching
  #1 raw-data = [1 2 3 4 5]
  #2 status = processing
  #3 processed-data = [1 4 9 16 25]
  #4 status = done
`, out.String())
}

func TestRunIsRepeatable(t *testing.T) {
	var first, second bytes.Buffer
	require.NoError(t, run(t.Context(), &first))
	require.NoError(t, run(t.Context(), &second))
	require.Equal(t, first.String(), second.String())
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var out bytes.Buffer
	err := run(ctx, &out)
	// Depending on whether the pool has seen ctx end when the jobs are
	// submitted, they are refused (ErrPoolClosed) or the wait ends with ctx.
	require.Error(t, err)
	require.True(t, errors.Is(err, context.Canceled) || errors.Is(err, qpool.ErrPoolClosed), "got %v", err)
	require.NotContains(t, out.String(), "ledger")
}
