package qpool_test

// Callbacks that call back into the entanglement, and callbacks under
// contention: each test here failed before the fix it is named for.

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Close from an OnExpire hook used to wait for the reaper run that was
// running the hook.
func TestOnExpireMayClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var self atomic.Pointer[qpool.Entanglement]
		var closed atomic.Bool
		e := qpool.NewEntanglement("x", nil, time.Minute, qpool.WithOnExpire(func(string) {
			assert.NoError(t, self.Load().Close())
			closed.Store(true)
		}))
		self.Store(e)
		time.Sleep(2 * time.Minute)
		synctest.Wait() // a deadlock fails the test here
		assert.True(t, closed.Load(), "Close from OnExpire did not return")
		assert.True(t, e.IsExpired())
	})
}

// Close from a callback that the follower runs (another process's change)
// used to wait for the follower itself.
func TestFollowerCallbackMayClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var self atomic.Pointer[qpool.Entanglement]
		var closed atomic.Bool
		e, other := sharedPair(t, 0,
			qpool.WithOnChange(func(c qpool.StateChange) {
				if c.Key == "stop" {
					assert.NoError(t, self.Load().Close())
					closed.Store(true)
				}
			}))
		self.Store(e)
		require.NoError(t, other.UpdateState("stop", true))
		synctest.Wait()
		assert.True(t, closed.Load(), "Close from a follower callback did not return")
		assert.NoError(t, e.Close(), "Close again, from outside")
	})
}

// Assigning the OnStateChange field between updates, as documented, used
// to race with the follower of a shared ledger, which read the field while
// other processes' changes arrived. It fails under -race only; without it,
// the assertions still check that the field gets local and remote changes.
func TestFieldOnSharedLedger(t *testing.T) {
	e, other := sharedPair(t, 0)

	const remote = 500
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // another process writes while this one sets its callback
		defer wg.Done()
		for i := range remote {
			assert.NoError(t, other.UpdateState("remote", i))
		}
	}()
	var mu sync.Mutex
	var states []map[string]any
	e.OnStateChange = func(_, now map[string]any) {
		mu.Lock()
		defer mu.Unlock()
		states = append(states, now)
	}
	wg.Wait()
	require.NoError(t, e.UpdateState("local", 1)) // the field takes effect
	require.NoError(t, other.UpdateState("remote", remote))
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(states) == 2 })
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]any{"remote": remote - 1, "local": 1}, states[0])
	assert.Equal(t, map[string]any{"remote": remote, "local": 1}, states[1])
}

// blockFirst returns an OnChange callback that holds the deliverer in the
// change with Sequence 0 until release is closed, so that the updates made
// meanwhile queue up behind it; then it calls after for every change.
func blockFirst(release <-chan struct{}, after func(qpool.StateChange)) (func(qpool.StateChange), <-chan struct{}) {
	blocked := make(chan struct{})
	return func(c qpool.StateChange) {
		if c.Sequence == 0 {
			close(blocked)
			<-release
		}
		after(c)
	}, blocked
}

// Retention used to compact changes that the deliverer had yet to deliver,
// so callbacks missed them under contention.
func TestRetentionKeepsUndeliveredChanges(t *testing.T) {
	release := make(chan struct{})
	var seen []uint64 // only the deliverer appends, one at a time
	onChange, blocked := blockFirst(release, func(c qpool.StateChange) { seen = append(seen, c.Sequence) })
	const retain = 4
	e := newTestEntanglement(t, 0, qpool.WithRetention(retain), qpool.WithOnChange(onChange))

	first := make(chan error)
	go func() { first <- e.UpdateState("k", 0) }()
	<-blocked
	const later = 100
	for i := 1; i <= later; i++ {
		require.NoError(t, e.UpdateState("k", i)) // queued behind the deliverer
	}
	close(release)
	require.NoError(t, <-first)

	require.Len(t, seen, later+1, "callbacks missed changes")
	for i, s := range seen {
		require.Equal(t, uint64(i), s)
	}
	// Once delivered, the history is trimmed to the limit again.
	require.NoError(t, e.UpdateState("k", later+1))
	assert.LessOrEqual(t, len(e.GetStateHistory(0)), retain+retain/4)
}

// SetOnStateChange while a deliverer is always busy used to starve the
// callback: only prepare took the mirror it needs, and prepare leaves the
// mirror alone while a deliverer runs.
func TestStateCallbackSetUnderContention(t *testing.T) {
	release := make(chan struct{})
	var e *qpool.Entanglement
	var calls atomic.Int64
	onChange, blocked := blockFirst(release, func(c qpool.StateChange) {
		if c.Sequence == 5 { // keep the contention going: one more update
			done := make(chan error)
			go func() { done <- e.UpdateState("k", 99) }()
			assert.NoError(t, <-done)
		}
	})
	e = newTestEntanglement(t, 0, qpool.WithOnChange(onChange))
	first := make(chan error)
	go func() { first <- e.UpdateState("k", 0) }()
	<-blocked
	e.SetOnStateChange(func(old, now map[string]any) {
		calls.Add(1)
		assert.Equal(t, 99, now["k"])
	})
	for i := 1; i <= 10; i++ {
		require.NoError(t, e.UpdateState("k", i))
	}
	close(release)
	require.NoError(t, <-first)
	assert.Equal(t, int64(1), calls.Load(), "OnStateChange missed the change made under contention")
}
