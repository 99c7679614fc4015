package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain fails the tests if any goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRunPrintsPartialSumsAndTotal(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), &out))
	require.Equal(t, `partition-1: sum(1..25) = 325
partition-2: sum(26..50) = 950
partition-3: sum(51..75) = 1575
partition-4: sum(76..100) = 2200
aggregate of 4 partitions: 5050 (n(n+1)/2 = 5050)
`, out.String())
}

func TestSumPartitionsAnySplit(t *testing.T) {
	for _, tc := range []struct{ parts, n int }{
		{1, 10}, {3, 10}, {7, 1000}, {16, 5}, {5, 0},
	} {
		t.Run(fmt.Sprintf("%dOf%d", tc.parts, tc.n), func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, sumPartitions(t.Context(), &out, tc.parts, tc.n))
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			require.Len(t, lines, tc.parts+1)
			want := tc.n * (tc.n + 1) / 2
			require.Equal(t, fmt.Sprintf("aggregate of %d partitions: %d (n(n+1)/2 = %d)", tc.parts, want, want), lines[tc.parts])
		})
	}
}

func TestSplitCoversEveryNumberOnce(t *testing.T) {
	spans := split(7, 100)
	next := 1
	for _, s := range spans {
		require.Equal(t, next, s.from)
		require.GreaterOrEqual(t, s.to-s.from, 13) // 100/7 = 14 or 15 numbers each
		next = s.to + 1
	}
	require.Equal(t, 101, next)
}

func TestSumPartitionsRejectsNoPartition(t *testing.T) {
	for _, parts := range []int{0, -1} {
		err := sumPartitions(t.Context(), &bytes.Buffer{}, parts, 10)
		require.ErrorIs(t, err, errBadSplit)
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := run(ctx, &bytes.Buffer{})
	// Depending on whether the pool has seen ctx end when the jobs are
	// submitted, they are refused (ErrPoolClosed) or the wait ends with ctx.
	require.Error(t, err)
	require.True(t, errors.Is(err, context.Canceled) || errors.Is(err, qpool.ErrPoolClosed), "got %v", err)
}
