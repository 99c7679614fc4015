package qpool_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sharedLedger stands in for a ledger that other processes append to: two
// entanglements over one MemoryLedger, each seeing the other's changes as
// remote ones. Close and Drop are left to the test.
type sharedLedger struct{ *qpool.MemoryLedger }

func (sharedLedger) Shared() bool                   { return true }
func (sharedLedger) Close() error                   { return nil }
func (sharedLedger) Drop(ctx context.Context) error { return nil }

// sharedPair returns two entanglements over one shared MemoryLedger, as two
// processes would open one distributed entanglement: e, with ttl and opts,
// and other, plain. Both and the ledger are closed in t.Cleanup.
func sharedPair(t *testing.T, ttl time.Duration, opts ...qpool.EntanglementOption) (e, other *qpool.Entanglement) {
	mem := qpool.NewMemoryLedger()
	t.Cleanup(func() { _ = mem.Close() })
	e = qpool.NewEntanglement("shared", nil, ttl, append([]qpool.EntanglementOption{qpool.WithLedger(sharedLedger{mem})}, opts...)...)
	t.Cleanup(func() { _ = e.Close() })
	other = qpool.NewEntanglement("shared", nil, 0, qpool.WithLedger(sharedLedger{mem}))
	t.Cleanup(func() { _ = other.Close() })
	return e, other
}

func TestRemoteChangesReachCallbacks(t *testing.T) {
	var mu sync.Mutex
	var seen []uint64
	var lastState map[string]any
	follower, writer := sharedPair(t, 0,
		qpool.WithOnChange(func(c qpool.StateChange) {
			mu.Lock()
			seen = append(seen, c.Sequence)
			mu.Unlock()
		}),
		qpool.WithOnStateChange(func(_, now map[string]any) {
			mu.Lock()
			lastState = now
			mu.Unlock()
		}))

	for i := range 50 {
		require.NoError(t, writer.UpdateState("k", i))
	}
	require.NoError(t, follower.UpdateState("own", true)) // its own change, in the same order
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) >= 51 })
	mu.Lock()
	defer mu.Unlock()
	for i, s := range seen {
		require.Equal(t, uint64(i), s, "remote changes out of order")
	}
	assert.Equal(t, map[string]any{"k": 49, "own": true}, lastState)
}

func TestSharedTTLCountsFromAnyProcessesChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		follower, writer := sharedPair(t, time.Minute)
		for i := range 6 { // three minutes of remote activity
			time.Sleep(30 * time.Second)
			require.NoError(t, writer.UpdateState("k", i))
		}
		synctest.Wait()
		assert.False(t, follower.IsExpired(), "expired while another process kept writing")
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		assert.True(t, follower.IsExpired())
	})
}
