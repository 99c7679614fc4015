package natsjobs_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
	"github.com/stretchr/testify/require"
)

// TestServerRestart restarts the server (same store, same port) while jobs
// run: no job is lost, every future resolves in the submitting process, and
// a job that ran twice (its ack lost in the restart) still has one outcome.
func TestServerRestart(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	var mu sync.Mutex
	runs := map[string]int{}
	slow := natsjobs.Register(reg, "slow", func(ctx context.Context, id string) (string, error) {
		mu.Lock()
		runs[id]++
		mu.Unlock()
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		return id, nil
	})
	newWorker(t, ts.connect(t), reg, ns, natsjobs.WithConcurrency(4), natsjobs.WithAckWait(time.Second))
	c := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 40*time.Second)
	const n = 40
	futs := make([]*qpool.Future[string], n)
	for i := range futs {
		id := fmt.Sprint("r", i)
		futs[i] = slow.Submit(ctx, c, id, id)
	}
	_, err := futs[0].Wait(ctx) // some have run
	require.NoError(t, err)
	ts.restart()
	// A watchdog shorter than the twenty seconds a plain KV watcher took
	// to notice the restart (every future waited that long before the
	// feed restarted its watcher on reconnection).
	after := wctx(t, 15*time.Second)
	for i, f := range futs {
		v, err := f.Wait(after)
		require.NoError(t, err, "r%d", i)
		require.Equal(t, fmt.Sprint("r", i), v)
	}
	// Submits after the restart work too.
	v, err := slow.Submit(ctx, c, "after", "after").Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, "after", v)
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for _, k := range runs {
		dups += k - 1
	}
	t.Logf("duplicate executions across the restart: %d", dups)
}
