package qpool_test

// Callbacks on a shared ledger, where the follower delivers other
// processes' changes: each test failed before the fix it describes.

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A callback set with SetOnStateChange gets every change another process
// records afterwards. The follower used to prepare delivery only once the
// next remote change woke it, and skipped that change.
func TestSetOnStateChangeGetsNextRemoteChange(t *testing.T) {
	for _, withOnChange := range []bool{false, true} {
		t.Run(fmt.Sprintf("WithOnChange=%v", withOnChange), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var opts []qpool.EntanglementOption
				if withOnChange {
					opts = append(opts, qpool.WithOnChange(func(qpool.StateChange) {}))
				}
				e, other := sharedPair(t, 0, opts...)

				synctest.Wait() // the follower has started and sleeps, unhooked
				record, got := recordK()
				e.SetOnStateChange(record)
				synctest.Wait() // the follower sleeps until the next change
				for i := 1; i <= 3; i++ {
					require.NoError(t, other.UpdateState("k", i))
					synctest.Wait() // the follower has delivered it
				}
				assert.Equal(t, []any{1, 2, 3}, got(), "remote changes recorded after SetOnStateChange returned were not delivered")
			})
		})
	}
}

// Changes recorded while no callback is set are never delivered, remote
// ones included. Removing the callback used to leave delivery live, so the
// next callback got the backlog of remote changes.
func TestRemoteChangesWithoutCallbackAreNotDelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, other := sharedPair(t, 0)

		e.SetOnStateChange(func(_, _ map[string]any) {})
		require.NoError(t, e.UpdateState("k", 0)) // delivery is live
		synctest.Wait()
		e.SetOnStateChange(nil)
		for i := 1; i <= 3; i++ { // recorded while no callback is set
			require.NoError(t, other.UpdateState("k", i))
			synctest.Wait()
		}
		record, got := recordK()
		e.SetOnStateChange(record)
		synctest.Wait()
		require.NoError(t, other.UpdateState("k", 4))
		synctest.Wait()
		assert.Equal(t, []any{4}, got(), "changes recorded while no callback was set were delivered")
	})
}

// gatedShared is a shared ledger whose next Read, once armed, waits for
// release: it holds the follower in the ledger, not in a callback.
type gatedShared struct {
	sharedLedger
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (g *gatedShared) Read(ctx context.Context, since uint64, limit int) ([]qpool.StateChange, error) {
	if g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.release
	}
	return g.MemoryLedger.Read(ctx, since, limit)
}

// Close waits for the follower unless the follower is running callbacks.
// It used to skip the wait for the whole of a delivery, ledger reads
// included, so the follower outlived Close.
func TestCloseWaitsForFollowerOutsideCallbacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := qpool.NewMemoryLedger()
		defer mem.Close()
		g := &gatedShared{sharedLedger: sharedLedger{mem}, entered: make(chan struct{}), release: make(chan struct{})}
		var calls atomic.Int64
		e := qpool.NewEntanglement("s", nil, 0, qpool.WithLedger(g),
			qpool.WithOnChange(func(qpool.StateChange) { calls.Add(1) }))
		other := qpool.NewEntanglement("s", nil, 0, qpool.WithLedger(sharedLedger{mem}))
		defer other.Close()

		g.armed.Store(true)
		require.NoError(t, other.UpdateState("k", 1))
		<-g.entered // the follower is in Read, in no callback

		closed := make(chan struct{})
		go func() {
			assert.NoError(t, e.Close())
			close(closed)
		}()
		synctest.Wait()
		var early bool
		select {
		case <-closed:
			early = true
		default:
		}
		close(g.release)
		<-closed
		synctest.Wait()
		assert.False(t, early, "Close returned while the follower, running no callback, was still in the ledger")
		assert.Zero(t, calls.Load(), "a callback ran after Close")
	})
}

// No callback starts once the entanglement has ended: when OnStateChange
// called Close, OnChange used to run for the same change all the same.
func TestNoCallbackAfterCloseFromCallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var self atomic.Pointer[qpool.Entanglement]
		var closedAt atomic.Bool
		var after atomic.Int64
		e, other := sharedPair(t, 0,
			qpool.WithOnStateChange(func(_, _ map[string]any) {
				assert.NoError(t, self.Load().Close())
				closedAt.Store(true)
			}),
			qpool.WithOnChange(func(qpool.StateChange) {
				if closedAt.Load() {
					after.Add(1)
				}
			}))
		self.Store(e)
		require.NoError(t, other.UpdateState("k", 1))
		synctest.Wait()
		require.True(t, closedAt.Load())
		assert.Zero(t, after.Load(), "OnChange ran after OnStateChange closed the entanglement")
	})
}

// The core guarantee under contention: with WithOnChange set from the
// start, every change (local updaters, another process, retention
// compacting) reaches OnChange exactly once, in sequence order; and every
// OnStateChange call (switched on and off meanwhile) sees one key change,
// forward. Run with -race for the mirror's ownership.
func TestCallbacksExactlyOnceInOrderUnderContention(t *testing.T) {
	var mu sync.Mutex
	var seen []uint64
	e, other := sharedPair(t, 0, qpool.WithRetention(8),
		qpool.WithOnChange(func(c qpool.StateChange) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, c.Sequence)
		}))

	stateCB := func(old, now map[string]any) {
		diff := 0
		for k, v := range now {
			if o, ok := old[k]; !ok || o != v {
				diff++
				if ok {
					assert.Greater(t, v.(int), o.(int), "key %s went back", k)
				}
			}
		}
		assert.Equal(t, 1, diff, "OnStateChange: %v -> %v", old, now)
	}
	const writers, per = 4, 300
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			target, key := e, fmt.Sprintf("local%d", w)
			if w == 0 {
				target, key = other, "remote"
			}
			for i := range per {
				assert.NoError(t, target.UpdateState(key, i))
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			if i%2 == 0 {
				e.SetOnStateChange(stateCB)
			} else {
				e.SetOnStateChange(nil)
			}
		}
	}()
	wg.Wait()
	require.NoError(t, e.UpdateState("last", 0)) // drains anything queued
	const total = writers*per + 1
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) >= total })
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, total)
	for i, s := range seen {
		require.Equal(t, uint64(i), s, "lost, duplicated or out of order")
	}
}

// recordK returns an OnStateChange callback that records the value of "k"
// in each new state, and a function returning what it has recorded.
func recordK() (record func(_, now map[string]any), got func() []any) {
	var mu sync.Mutex
	var seen []any
	record = func(_, now map[string]any) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, now["k"])
	}
	got = func() []any {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
	return record, got
}
