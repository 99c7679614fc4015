package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain fails the tests if any goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const wantRounds = `round 1: cpu 35% -> 1 worker(s)
round 2: cpu 72% -> 2 worker(s)
round 3: cpu 91% -> 4 worker(s)
round 4: cpu 64% -> 2 worker(s)
round 5: cpu 18% -> 1 worker(s)
`

func TestRunScalesEveryRoundThenStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		require.NoError(t, run(context.Background(), &out))
		require.Equal(t, wantRounds+"monitor stopped; scaler done\n", out.String())
	})
}

func TestRunRealClock(t *testing.T) {
	// The same run without synctest, as `go run` does it: the scaler must
	// see every round, in order, however the goroutines interleave.
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), &out))
	require.Equal(t, wantRounds+"monitor stopped; scaler done\n", out.String())
}

func TestRunEndsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Rounds at 0, 20ms and 40ms; the context ends at 50ms.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		var out bytes.Buffer
		err := run(ctx, &out)
		require.Error(t, err)
		require.True(t, errors.Is(err, context.DeadlineExceeded) || errors.Is(err, qpool.ErrPoolClosed), "got %v", err)
		lines := strings.SplitAfter(wantRounds, "\n")
		require.Equal(t, strings.Join(lines[:3], ""), out.String())
	})
}

func TestMonitorLoopStopsOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := qpool.NewEntanglement("m", nil, 0)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		var n int
		var err error
		go func() {
			defer close(done)
			n, err = monitorLoop(ctx, e)
		}()
		time.Sleep(3*interval + interval/2)
		cancel()
		<-done
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, 4, n) // rounds at 0, 1, 2 and 3 intervals
		require.Len(t, e.GetStateHistory(0), 4)
		require.NoError(t, e.Close())
	})
}

func TestAdjustScale(t *testing.T) {
	for _, tc := range []struct{ cpu, want int }{
		{0, 1}, {49, 1}, {50, 2}, {79, 2}, {80, 4}, {100, 4},
	} {
		require.Equal(t, tc.want, adjustScale(Metrics{CPU: tc.cpu}), "cpu %d", tc.cpu)
	}
}
