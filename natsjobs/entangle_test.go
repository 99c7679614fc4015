package natsjobs_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
	"github.com/stretchr/testify/require"
)

// TestHandlerEntanglement: handlers on a worker made WithEntanglements
// share one entanglement per ID, opened once (by many jobs at once); a
// failed open is retried by the next call; Shutdown closes the
// entanglements; elsewhere Entanglement fails with ErrNoEntanglements.
func TestHandlerEntanglement(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	var opens, fails atomic.Int32
	var mu sync.Mutex
	var opened []*qpool.Entanglement
	open := func(ctx context.Context, id string) (*qpool.Entanglement, error) {
		if id == "flaky" && fails.Add(1) == 1 {
			return nil, fmt.Errorf("flaky opener")
		}
		opens.Add(1)
		time.Sleep(20 * time.Millisecond) // let the other jobs wait for it
		e := qpool.NewEntanglement(id, nil, 0)
		mu.Lock()
		opened = append(opened, e)
		mu.Unlock()
		return e, nil
	}
	reg := natsjobs.NewRegistry()
	add := natsjobs.Register(reg, "add", func(ctx context.Context, ent string) (int, error) {
		e, err := natsjobs.Entanglement(ctx, ent)
		if err != nil {
			return 0, err
		}
		var n int
		err = e.Update("n", func(old any, _ bool) (any, error) {
			v, _ := old.(int)
			n = v + 1
			return n, nil
		})
		return n, err
	})
	w := newWorker(t, ts.connect(t), reg, ns, natsjobs.WithEntanglements(open), natsjobs.WithConcurrency(8))
	c := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 20*time.Second)
	const n = 40
	futs := make([]*qpool.Future[int], n)
	for i := range futs {
		futs[i] = add.Submit(ctx, c, fmt.Sprint("a", i), "counter")
	}
	seen := map[int]bool{}
	for _, f := range futs {
		v, err := f.Wait(ctx)
		require.NoError(t, err)
		seen[v] = true
	}
	require.Len(t, seen, n, "every job saw the others' updates: one entanglement")
	require.Equal(t, int32(1), opens.Load(), "opened once")

	_, err := add.Submit(ctx, c, "f1", "flaky").Wait(ctx)
	require.ErrorContains(t, err, "flaky opener")
	v, err := add.Submit(ctx, c, "f2", "flaky").Wait(ctx)
	require.NoError(t, err, "a failed open is tried again")
	require.Equal(t, 1, v)

	_, err = natsjobs.Entanglement(ctx, "counter")
	require.ErrorIs(t, err, natsjobs.ErrNoEntanglements)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, w.Shutdown(sctx))
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, opened, 2)
	for _, e := range opened {
		require.Error(t, e.UpdateState("n", 0), "closed by Shutdown")
	}

	// A worker without WithEntanglements.
	reg2 := natsjobs.NewRegistry()
	natsjobs.Register(reg2, "add", func(ctx context.Context, ent string) (int, error) {
		_, err := natsjobs.Entanglement(ctx, ent)
		return 0, qpool.Permanent(err)
	})
	newWorker(t, ts.connect(t), reg2, ns)
	_, err = add.Submit(ctx, c, "none", "counter").Wait(ctx)
	require.ErrorContains(t, err, natsjobs.ErrNoEntanglements.Error())
}
