package natsledger_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsledger"
	"github.com/stretchr/testify/require"
)

// waitNext waits until l's replica has applied every change below next.
func waitNext(t testing.TB, l qpool.Ledger, next uint64) {
	t.Helper()
	watchdog := time.After(30 * time.Second)
	for {
		ch := l.Changed()
		if _, n := l.Bounds(); n >= next {
			return
		}
		select {
		case <-ch:
		case <-watchdog:
			_, n := l.Bounds()
			t.Fatalf("replica stuck at %d, want %d", n, next)
		}
	}
}

// TestTwoConnectionsOneOrder has two ledgers on two connections append to
// one entanglement at once, including atomic increments of one key: both
// must end with the same history, in one total order, and the same state.
func TestTwoConnectionsOneOrder(t *testing.T) {
	ctx := context.Background()
	ts := startServer(t)
	id := uniqueID(t)
	ledgers := []*natsledger.Ledger{
		open(t, connect(t, ts.url()), id),
		open(t, connect(t, ts.url()), id),
	}
	const perWriter = 50
	var wg sync.WaitGroup
	for i, l := range ledgers {
		for w := range 2 {
			wg.Go(func() {
				for n := range perWriter {
					_, err := l.Append(ctx, qpool.Mutation{Key: fmt.Sprintf("l%d-w%d", i, w), Value: float64(n)})
					require.NoError(t, err)
					require.NoError(t, increment(ctx, l, "counter"))
				}
			})
		}
	}
	wg.Wait()
	const total = 2 * 2 * perWriter * 2
	for _, l := range ledgers {
		waitNext(t, l, total)
	}
	h0, err := ledgers[0].Read(ctx, 0, 0)
	require.NoError(t, err)
	h1, err := ledgers[1].Read(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, h0, total)
	require.Equal(t, h0, h1)
	for i, c := range h0 {
		require.Equal(t, uint64(i), c.Sequence)
	}
	s0, _ := ledgers[0].Snapshot()
	s1, _ := ledgers[1].Snapshot()
	require.Equal(t, s0, s1)
	require.Equal(t, float64(2*2*perWriter), s0["counter"])
}

// increment adds one to key with a guarded append, as Entanglement.Update
// does.
func increment(ctx context.Context, l qpool.Ledger, key string) error {
	for {
		old, rev, _ := l.Get(key)
		n, _ := old.(float64)
		_, err := l.Append(ctx, qpool.Mutation{Key: key, Value: n + 1, Guarded: true, Revision: rev})
		if err == nil || !errorsIsConflict(err) {
			return err
		}
	}
}

// TestEntanglementAcrossConnections runs the qpool API over two ledgers:
// Await, Watch and OnChange-free reads see the other process's changes.
func TestEntanglementAcrossConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := startServer(t)
	id := uniqueID(t)
	a, err := qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(open(t, connect(t, ts.url()), id)))
	require.NoError(t, err)
	defer a.Close()
	b, err := qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(open(t, connect(t, ts.url()), id)))
	require.NoError(t, err)
	defer b.Close()

	watch := b.Watch(ctx, 0)
	awaited := make(chan any, 1)
	go func() {
		v, err := b.Await(ctx, "raw")
		require.NoError(t, err)
		awaited <- v
	}()
	type point struct{ X, Y int }
	require.NoError(t, a.UpdateState("raw", point{1, 2}))
	require.Equal(t, map[string]any{"X": 1.0, "Y": 2.0}, <-awaited)
	p, ok, err := qpool.GetStateAs[point](b, "raw")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, point{1, 2}, p)

	require.NoError(t, b.Update("raw", func(old any, ok bool) (any, error) { return "replaced", nil }))
	require.NoError(t, a.DeleteState("raw"))
	var seen []qpool.StateChange
	for c := range watch {
		seen = append(seen, c)
		if len(seen) == 3 {
			break
		}
	}
	require.Equal(t, []uint64{0, 1, 2}, []uint64{seen[0].Sequence, seen[1].Sequence, seen[2].Sequence})
	require.Equal(t, "replaced", seen[1].Value)
	require.True(t, seen[2].Deleted)
	require.Equal(t, b.GetStateHistory(0), a.GetStateHistory(0))
}

// TestConflictCatchesUp: a guarded append from a replica that has not seen
// another connection's write conflicts, and when the conflict returns, the
// replica holds that write, so the retry of a read-modify-write reads it.
func TestConflictCatchesUp(t *testing.T) {
	ctx := context.Background()
	ts := startServer(t)
	id := uniqueID(t)
	a := open(t, connect(t, ts.url()), id)
	b := open(t, connect(t, ts.url()), id)
	for i := range 20 {
		key := fmt.Sprintf("k%d", i)
		_, rev, _ := b.Get(key) // before a writes: absent, revision 0
		_, err := a.Append(ctx, qpool.Mutation{Key: key, Value: "from a"})
		require.NoError(t, err)
		_, err = b.Append(ctx, qpool.Mutation{Key: key, Value: "from b", Guarded: true, Revision: rev})
		require.ErrorIs(t, err, qpool.ErrConflict)
		v, rev2, ok := b.Get(key)
		require.True(t, ok)
		require.Equal(t, "from a", v)
		_, err = b.Append(ctx, qpool.Mutation{Key: key, Value: "from b", Guarded: true, Revision: rev2})
		require.NoError(t, err)
	}
}

// TestReadCanceled reads history from the stream with a context that has
// ended: the read stops with the context's error.
func TestReadCanceled(t *testing.T) {
	ts := startServer(t)
	l := open(t, connect(t, ts.url()), uniqueID(t), natsledger.WithCacheSize(1))
	for i := range 4 {
		_, err := l.Append(context.Background(), qpool.Mutation{Key: "k", Value: float64(i)})
		require.NoError(t, err)
	}
	h, err := l.Read(context.Background(), 0, 0)
	require.NoError(t, err)
	require.Len(t, h, 4)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = l.Read(ctx, 0, 0)
	require.ErrorIs(t, err, context.Canceled)
}
