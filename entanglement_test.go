package qpool_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestEntanglement(t *testing.T, ttl time.Duration, opts ...qpool.EntanglementOption) *qpool.Entanglement {
	t.Helper()
	e := qpool.NewEntanglement(t.Name(), nil, ttl, opts...)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	return e
}

func TestEntanglementBadInput(t *testing.T) {
	e := newTestEntanglement(t, 0)
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"UpdateState empty key", e.UpdateState("", 1), qpool.ErrInvalidKey},
		{"DeleteState empty key", e.DeleteState(""), qpool.ErrInvalidKey},
		{"Update empty key", e.Update("", func(any, bool) (any, error) { return 1, nil }), qpool.ErrInvalidKey},
		{"Update nil function", e.Update("k", nil), qpool.ErrNilFunc},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.ErrorIs(t, tt.err, tt.want) })
	}
	_, err := e.Await(context.Background(), "")
	assert.ErrorIs(t, err, qpool.ErrInvalidKey)
	assert.Empty(t, e.GetStateHistory(0), "bad input recorded something")
}

func TestEntanglementAfterClose(t *testing.T) {
	e := qpool.NewEntanglement("closed", nil, 0)
	require.NoError(t, e.UpdateState("k", 1))
	require.NoError(t, e.Close())
	require.NoError(t, e.Close(), "Close is idempotent")
	assert.ErrorIs(t, e.UpdateState("k", 2), qpool.ErrClosed)
	assert.ErrorIs(t, e.DeleteState("k"), qpool.ErrClosed)
	assert.ErrorIs(t, e.Update("k", func(any, bool) (any, error) { return 3, nil }), qpool.ErrClosed)
	_, err := e.Await(context.Background(), "k")
	assert.ErrorIs(t, err, qpool.ErrClosed)
	_, found := e.GetState("k")
	assert.False(t, found, "Close releases the state")
	assert.Empty(t, e.GetStateHistory(0))
	_, open := <-e.Watch(context.Background(), 0)
	assert.False(t, open, "Watch on a closed entanglement returns a closed channel")
	assert.False(t, e.IsExpired())
}

func TestSequencesGapFreeUnderContention(t *testing.T) {
	const writers, each = 8, 500
	var mu sync.Mutex
	var delivered []uint64
	var snapshots int
	e := newTestEntanglement(t, 0, qpool.WithOnChange(func(c qpool.StateChange) {
		mu.Lock()
		delivered = append(delivered, c.Sequence)
		mu.Unlock()
	}))
	e.SetOnStateChange(func(old, now map[string]any) {
		snapshots++ // one deliverer at a time: no lock needed, -race checks it
	})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				require.NoError(t, e.UpdateState(fmt.Sprintf("w%d", w), i))
			}
		})
	}
	wg.Wait()
	history := e.GetStateHistory(0)
	require.Len(t, history, writers*each)
	last := map[string]any{}
	for i, c := range history {
		require.Equal(t, uint64(i), c.Sequence)
		if i > 0 {
			require.False(t, c.Timestamp.Before(history[i-1].Timestamp), "timestamps go back")
		}
		last[c.Key] = c.Value
	}
	assert.Equal(t, last, e.Snapshot(), "state is the replay of the history")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, delivered, writers*each, "every change delivered exactly once")
	for i, s := range delivered {
		require.Equal(t, uint64(i), s, "delivery out of order")
	}
	assert.Equal(t, writers*each, snapshots)
}

func TestReentrantCallback(t *testing.T) {
	e := newTestEntanglement(t, 0)
	var seen []string
	e.OnStateChange = func(old, now map[string]any) {
		if n, _ := now["count"].(int); n < 3 && len(now) > 0 {
			_ = e.UpdateState("count", n+1) // from inside the callback
		}
		_, _ = e.GetState("count")
		_ = e.GetStateHistory(0)
		seen = append(seen, fmt.Sprint(now["count"]))
	}
	require.NoError(t, e.UpdateState("count", 1))
	assert.Equal(t, []string{"1", "2", "3"}, seen, "nested changes delivered after, in order")
	v, _ := e.GetState("count")
	assert.Equal(t, 3, v)
}

func TestCallbackPanicIsRecovered(t *testing.T) {
	e := newTestEntanglement(t, 0, qpool.WithLogger(discardLogger()))
	calls := 0
	e.OnStateChange = func(old, now map[string]any) {
		calls++
		if calls == 1 {
			panic("callback")
		}
	}
	require.NoError(t, e.UpdateState("a", 1))
	require.NoError(t, e.UpdateState("a", 2))
	assert.Equal(t, 2, calls)
}

func TestCallbackSetLaterSeesOnlyLaterChanges(t *testing.T) {
	e := newTestEntanglement(t, 0)
	require.NoError(t, e.UpdateState("a", 1))
	var got [][2]map[string]any
	e.OnStateChange = func(old, now map[string]any) { got = append(got, [2]map[string]any{old, now}) }
	require.NoError(t, e.UpdateState("b", 2))
	require.NoError(t, e.DeleteState("a"))
	assert.Equal(t, [][2]map[string]any{
		{{"a": 1}, {"a": 1, "b": 2}},
		{{"a": 1, "b": 2}, {"b": 2}},
	}, got)
	e.OnStateChange = nil
	require.NoError(t, e.UpdateState("c", 3))
	e.SetOnStateChange(func(old, now map[string]any) { got = append(got, [2]map[string]any{old, now}) })
	require.NoError(t, e.UpdateState("d", 4))
	assert.Equal(t, [2]map[string]any{{"b": 2, "c": 3}, {"b": 2, "c": 3, "d": 4}}, got[2])
}

func TestHistoryBelongsToCaller(t *testing.T) {
	e := newTestEntanglement(t, 0)
	for i := range 10 {
		require.NoError(t, e.UpdateState("k", i))
	}
	h := e.GetStateHistory(0)
	h[0].Value = "scribbled"
	h[0].Key = "other"
	h = append(h[:1], h[5:]...)
	_ = h
	again := e.GetStateHistory(0)
	require.Len(t, again, 10)
	assert.Equal(t, "k", again[0].Key)
	assert.Equal(t, 0, again[0].Value)
	snap := e.Snapshot()
	snap["k"] = "scribbled"
	v, _ := e.GetState("k")
	assert.Equal(t, 9, v)
	assert.Len(t, e.GetStateHistory(5), 5)
	assert.Equal(t, uint64(5), e.GetStateHistory(5)[0].Sequence)
	assert.Empty(t, e.GetStateHistory(10))
	assert.Empty(t, e.GetStateHistory(1<<40))
}

func TestStoredValuesAreNotCopiedUnlessAsked(t *testing.T) {
	plain := newTestEntanglement(t, 0)
	m := map[string]int{"n": 1}
	require.NoError(t, plain.UpdateState("m", m))
	m["n"] = 2
	v, _ := plain.GetState("m")
	assert.Equal(t, 2, v.(map[string]int)["n"], "documented: a stored map is shared")

	copied := qpool.NewEntanglement("copied", nil, 0, qpool.WithValueCopy(func(v any) any {
		if m, ok := v.(map[string]int); ok {
			c := make(map[string]int, len(m))
			for k, x := range m {
				c[k] = x
			}
			return c
		}
		return v
	}))
	defer copied.Close()
	m2 := map[string]int{"n": 1}
	require.NoError(t, copied.UpdateState("m", m2))
	m2["n"] = 2
	v, _ = copied.GetState("m")
	assert.Equal(t, 1, v.(map[string]int)["n"])
}

func TestUpdateIsAtomic(t *testing.T) {
	e := newTestEntanglement(t, 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				require.NoError(t, e.Update("counter", func(old any, exists bool) (any, error) {
					n, _ := old.(int)
					return n + 1, nil
				}))
			}
		})
	}
	wg.Wait()
	v, _ := e.GetState("counter")
	assert.Equal(t, 1600, v)
	assert.Len(t, e.GetStateHistory(0), 1600, "one change per successful Update")

	boom := errors.New("boom")
	err := e.Update("counter", func(any, bool) (any, error) { return nil, boom })
	assert.ErrorIs(t, err, boom)
	assert.Len(t, e.GetStateHistory(0), 1600, "fn's error records nothing")
}

func TestDeleteIsRecorded(t *testing.T) {
	e := newTestEntanglement(t, 0)
	require.NoError(t, e.UpdateState("k", 1))
	require.NoError(t, e.DeleteState("k"))
	_, found := e.GetState("k")
	assert.False(t, found)
	h := e.GetStateHistory(1)
	require.Len(t, h, 1)
	assert.True(t, h[0].Deleted)
	assert.Nil(t, h[0].Value)
	assert.Equal(t, "k", h[0].Key)
}

func TestWatchReplaysThenFollows(t *testing.T) {
	e := newTestEntanglement(t, 0)
	for i := range 5 {
		require.NoError(t, e.UpdateState("k", i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := e.Watch(ctx, 2)
	for want := uint64(2); want < 5; want++ {
		c := <-ch
		require.Equal(t, want, c.Sequence)
	}
	go func() {
		for i := 5; i < 300; i++ {
			_ = e.UpdateState("k", i)
		}
	}()
	for want := uint64(5); want < 300; want++ {
		c := <-ch
		require.Equal(t, want, c.Sequence, "missed or repeated a change")
		require.Equal(t, int(want), c.Value)
	}
	cancel()
	for range ch { // closes once ctx has ended
	}
}

func TestSlowWatcherDoesNotBlockUpdaters(t *testing.T) {
	e := newTestEntanglement(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := e.Watch(ctx, 0) // never read until all updates are done
	for i := range 10_000 {
		require.NoError(t, e.UpdateState("k", i))
	}
	n := 0
	for c := range ch {
		require.Equal(t, uint64(n), c.Sequence)
		if n++; n == 10_000 {
			break
		}
	}
}

func TestWatchEndsOnClose(t *testing.T) {
	e := qpool.NewEntanglement("w", nil, 0)
	ch := e.Watch(context.Background(), 0)
	require.NoError(t, e.UpdateState("k", 1))
	<-ch
	require.NoError(t, e.Close())
	_, open := <-ch
	assert.False(t, open)
}

func TestAwait(t *testing.T) {
	e := newTestEntanglement(t, 0)
	got := make(chan any)
	go func() {
		v, err := e.Await(context.Background(), "ready")
		if err != nil {
			v = err
		}
		got <- v
	}()
	require.NoError(t, e.UpdateState("other", 1))
	require.NoError(t, e.UpdateState("ready", "yes"))
	assert.Equal(t, "yes", <-got)

	v, err := e.Await(context.Background(), "ready")
	require.NoError(t, err, "a key that exists returns at once")
	assert.Equal(t, "yes", v)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = e.Await(ctx, "never")
	assert.ErrorIs(t, err, context.Canceled)
}

func TestTTLExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		expired := make(chan string, 1)
		e := qpool.NewEntanglement("ttl", nil, time.Minute, qpool.WithOnExpire(func(id string) { expired <- id }))
		defer e.Close()
		require.NoError(t, e.UpdateState("k", 1))
		watch := e.Watch(context.Background(), 0)
		<-watch
		awaited := make(chan error, 1)
		go func() { _, err := e.Await(context.Background(), "never"); awaited <- err }()

		time.Sleep(50 * time.Second)
		require.NoError(t, e.UpdateState("k", 2), "an update restarts the TTL")
		<-watch
		time.Sleep(50 * time.Second)
		synctest.Wait()
		assert.False(t, e.IsExpired(), "expired 50s after the last change, TTL is 1m")

		time.Sleep(11 * time.Second)
		synctest.Wait()
		assert.True(t, e.IsExpired())
		assert.Equal(t, "ttl", <-expired)
		_, found := e.GetState("k")
		assert.False(t, found)
		assert.Empty(t, e.GetStateHistory(0))
		assert.ErrorIs(t, e.UpdateState("k", 3), qpool.ErrExpired)
		_, open := <-watch
		assert.False(t, open, "expiry closes watches")
		assert.ErrorIs(t, <-awaited, qpool.ErrExpired)
	})
}

func TestNoTTLNeverExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := qpool.NewEntanglement("forever", nil, 0)
		defer e.Close()
		require.NoError(t, e.UpdateState("k", 1))
		time.Sleep(1000 * time.Hour)
		synctest.Wait()
		assert.False(t, e.IsExpired())
		v, _ := e.GetState("k")
		assert.Equal(t, 1, v)
	})
}

func TestCloseStopsReaper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		called := false
		e := qpool.NewEntanglement("closed-early", nil, time.Minute, qpool.WithOnExpire(func(string) { called = true }))
		require.NoError(t, e.Close())
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		assert.False(t, called)
		assert.False(t, e.IsExpired())
	})
}

func TestRetention(t *testing.T) {
	e := newTestEntanglement(t, 0, qpool.WithRetention(100))
	require.NoError(t, e.UpdateState("old", "kept")) // its change is compacted away below
	for i := 1; i < 1000; i++ {
		require.NoError(t, e.UpdateState(fmt.Sprintf("k%d", i%10), i))
	}
	h := e.GetStateHistory(0)
	assert.GreaterOrEqual(t, len(h), 100)
	assert.LessOrEqual(t, len(h), 125)
	assert.Equal(t, uint64(999), h[len(h)-1].Sequence)
	assert.Len(t, e.Snapshot(), 11, "the state stays whole")
	v, ok := e.GetState("old")
	assert.True(t, ok)
	assert.Equal(t, "kept", v)
	for i := 1000; i < 5000; i++ { // past several blocks of history
		require.NoError(t, e.UpdateState("k0", i))
	}
	v, _ = e.GetState("old")
	assert.Equal(t, "kept", v, "a key whose change was compacted keeps its value")
	h = e.GetStateHistory(0)
	for i, c := range h[1:] {
		assert.Equal(t, h[i].Sequence+1, c.Sequence)
	}
	assert.Equal(t, uint64(4999), h[len(h)-1].Sequence)
	// A watch from 0 starts at the oldest retained change: a visible jump.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := <-e.Watch(ctx, 0)
	assert.Equal(t, h[0].Sequence, first.Sequence)
}

func TestJobsList(t *testing.T) {
	e := newTestEntanglement(t, 0)
	e.AddJob(qpool.Job{ID: "a"})
	e.AddJob(qpool.Job{ID: "b"})
	e.AddJob(qpool.Job{ID: "a"})
	jobs := e.Jobs()
	assert.Equal(t, []qpool.Job{{ID: "a"}, {ID: "b"}}, jobs)
	jobs[0].ID = "scribbled"
	assert.Equal(t, "a", e.Jobs()[0].ID)
	assert.True(t, e.RemoveJob("a"))
	assert.False(t, e.RemoveJob("a"))
	assert.Equal(t, []qpool.Job{{ID: "b"}}, e.Jobs())
}
