package natsledger_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
)

// TestRemoteChangesReachCallbacks: an entanglement's callbacks get the
// changes other connections (processes) make, in sequence order, with its
// own, exactly once.
func TestRemoteChangesReachCallbacks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := startServer(t)
	id := uniqueID(t)
	var mu sync.Mutex
	var seen []uint64
	var state map[string]any
	b, err := qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(open(t, connect(t, ts.url()), id)),
		qpool.WithOnChange(func(c qpool.StateChange) {
			mu.Lock()
			seen = append(seen, c.Sequence)
			mu.Unlock()
		}),
		qpool.WithOnStateChange(func(_, now map[string]any) {
			mu.Lock()
			state = now
			mu.Unlock()
		}))
	require.NoError(t, err)
	defer b.Close()
	a, err := qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(open(t, connect(t, ts.url()), id)))
	require.NoError(t, err)
	defer a.Close()

	const remote = 30
	for i := range remote {
		require.NoError(t, a.UpdateState(fmt.Sprintf("k%d", i%3), float64(i)))
	}
	require.NoError(t, b.UpdateState("own", true))
	deadline := time.Now().Add(20 * time.Second) // watchdog only
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= remote+1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "callbacks saw %d of %d changes", n, remote+1)
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, s := range seen {
		require.Equal(t, uint64(i), s, "out of order or repeated")
	}
	require.Equal(t, map[string]any{"k0": 27.0, "k1": 28.0, "k2": 29.0, "own": true}, state)
}
