package natsledger_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsledger"
	"github.com/stretchr/testify/require"
)

// watcher follows one Entanglement.Watch, checking that it yields every
// sequence from its start, in order.
type watcher struct {
	since  uint64
	next   atomic.Uint64 // the sequence expected next
	closed chan struct{} // closed when the watch's channel closed
	cancel context.CancelFunc
}

// startWatcher watches e from since; the reading starts once gate is
// closed, so that a watcher can be made to fall behind.
func startWatcher(t *testing.T, wg *sync.WaitGroup, e *qpool.Entanglement, since uint64, gate <-chan struct{}) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{since: since, closed: make(chan struct{}), cancel: cancel}
	w.next.Store(since)
	ch := e.Watch(ctx, since)
	wg.Go(func() {
		defer close(w.closed)
		<-gate
		for c := range ch {
			if want := w.next.Load(); c.Sequence != want {
				t.Errorf("watch from %d: got sequence %d, want %d", since, c.Sequence, want)
			}
			w.next.Store(c.Sequence + 1)
		}
	})
	return w
}

// update records one change, retrying an unconfirmed one under its
// message ID until it is confirmed, so that it is stored exactly once.
func update(t *testing.T, e *qpool.Entanglement, key string, value any) {
	t.Helper()
	err := e.UpdateState(key, value)
	for attempt := 0; err != nil; attempt++ {
		var u *natsledger.UnconfirmedError
		require.ErrorAs(t, err, &u)
		require.ErrorIs(t, err, natsledger.ErrUnavailable)
		require.Less(t, attempt, 60, "never confirmed: %v", err)
		_, err = u.Retry(context.Background())
	}
}

// TestWatchAndHistoryThroughOutage stops the server while watchers are
// behind the replica's cache (WithCacheSize(10), 600 changes): History
// reports ErrUnavailable instead of an empty history, GetStateHistory
// returns nil as documented, and every watch, started before or during
// the outage, stays open and resumes where it was once the server is back
// (none missed, none repeated), closing only when its ctx ends.
func TestWatchAndHistoryThroughOutage(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 8))
	ts := startServer(t)
	id := uniqueID(t)
	l := open(t, connect(t, ts.url()), id, natsledger.WithCacheSize(10), natsledger.WithTimeout(time.Second))
	e, err := qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(l))
	require.NoError(t, err)
	defer func() { require.NoError(t, e.Close()) }()

	total := 0
	for ; total < 600; total++ {
		require.NoError(t, e.UpdateState(fmt.Sprintf("k%d", total%7), total))
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	gate := make(chan struct{})
	// Started before the outage but not read until during it: ~600 behind.
	watchers := []*watcher{startWatcher(t, &wg, e, 0, gate)}
	defer func() {
		for _, w := range watchers {
			w.cancel()
		}
	}()
	for round := range 2 {
		ts.stop()
		h, err := e.History(ctx, 0)
		require.ErrorIs(t, err, natsledger.ErrUnavailable, "round %d: a history read during the outage", round)
		require.Nil(t, h)
		require.Nil(t, e.GetStateHistory(0), "documented: nil when the ledger cannot be read")
		for range 3 {
			watchers = append(watchers, startWatcher(t, &wg, e, uint64(rng.IntN(total)), gate))
		}
		if round == 0 {
			close(gate)
		}
		time.Sleep(300 * time.Millisecond) // the outage: the watches try and fail
		for i, w := range watchers {
			select {
			case <-w.closed:
				t.Fatalf("round %d: watcher %d (from %d) closed at %d during the outage, its ctx live", round, i, w.since, w.next.Load())
			default:
			}
		}

		ts.start()
		update(t, e, "after", total)
		total++
		deadline := time.Now().Add(30 * time.Second)
		for i, w := range watchers {
			for w.next.Load() < uint64(total) {
				select {
				case <-w.closed:
					t.Fatalf("round %d: watcher %d (from %d) closed at %d of %d, its ctx live", round, i, w.since, w.next.Load(), total)
				case <-time.After(5 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("watchdog: round %d: watcher %d (from %d) stuck at %d of %d", round, i, w.since, w.next.Load(), total)
				}
			}
		}
	}
	for _, w := range watchers {
		w.cancel()
		select {
		case <-w.closed:
		case <-time.After(10 * time.Second):
			t.Fatal("watchdog: a watch did not close after its ctx ended")
		}
	}
	h, err := e.History(ctx, 0)
	require.NoError(t, err)
	require.Len(t, h, total)
	for i, c := range h {
		require.Equal(t, uint64(i), c.Sequence)
	}
}

// TestUnconfirmedRetryStoresOnce holds back everything the server sends
// while four writers update: their changes reach the server and are
// stored, but no acknowledgement or delivery comes back within the
// timeout, so UpdateState fails with ErrUnavailable although the change
// is stored. The error is an *UnconfirmedError whose Retry, under the
// same message ID, confirms the change without storing it twice: every
// change is in the history exactly once, in each writer's order.
func TestUnconfirmedRetryStoresOnce(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	ts := startServer(t)
	px := startProxy(t, ts.port)
	id := uniqueID(t)
	const timeout = 400 * time.Millisecond
	l := open(t, connect(t, px.url()), id, natsledger.WithTimeout(timeout))
	e, err := qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(l))
	require.NoError(t, err)
	defer func() { require.NoError(t, e.Close()) }()

	const writers, perWriter = 4, 30
	var (
		wg          sync.WaitGroup
		unconfirmed atomic.Int64
		done        = make(chan struct{})
	)
	for w := range writers {
		wg.Go(func() {
			key := fmt.Sprintf("w%d", w)
			for n := range perWriter {
				err := e.UpdateState(key, n)
				for attempt := 0; err != nil; attempt++ {
					var u *natsledger.UnconfirmedError
					if !errors.As(err, &u) || !errors.Is(err, natsledger.ErrUnavailable) || attempt == 60 {
						t.Errorf("writer %d, change %d: %v", w, n, err)
						return
					}
					unconfirmed.Add(1)
					_, err = u.Retry(ctx)
					if err == nil {
						if v, ok := e.GetState(key); !ok || v != float64(n) {
							t.Errorf("writer %d: read-your-own-writes after Retry: %v, %v", w, v, ok)
						}
					}
				}
				time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	watchdog := time.After(60 * time.Second)
	for round := 0; ; round++ {
		select {
		case <-done:
		case <-time.After(time.Duration(rng.IntN(50)) * time.Millisecond):
			if round < 4 {
				px.hold()
				time.Sleep(timeout + timeout/2)
				px.release()
			}
			continue
		case <-watchdog:
			t.Fatal("watchdog: writers stuck")
		}
		break
	}
	require.False(t, t.Failed())

	waitNext(t, l, writers*perWriter)
	h, err := e.History(ctx, 0)
	require.NoError(t, err)
	last := map[string]int{}
	for i, c := range h {
		require.Equal(t, uint64(i), c.Sequence)
		n := int(c.Value.(float64))
		prev, seen := last[c.Key]
		if !seen {
			prev = -1
		}
		require.Equal(t, prev+1, n, "%s: change %d after %d: stored twice or lost", c.Key, n, prev)
		last[c.Key] = n
	}
	require.Len(t, h, writers*perWriter, "every change stored exactly once")
	require.Positive(t, unconfirmed.Load(), "some updates went unconfirmed")
	t.Logf("%d unconfirmed errors", unconfirmed.Load())
}

// TestRetryFindsStoredChange retries unconfirmed changes that the replica
// has applied meanwhile, an unguarded one (UpdateState) and a guarded one
// (Update, whose retry the server rejects as a conflict before it checks
// duplicates): Retry returns the change as first stored, at its sequence,
// and stores nothing more.
func TestRetryFindsStoredChange(t *testing.T) {
	ctx := context.Background()
	ts := startServer(t)
	px := startProxy(t, ts.port)
	id := uniqueID(t)
	l := open(t, connect(t, px.url()), id, natsledger.WithTimeout(300*time.Millisecond))
	e, err := qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(l))
	require.NoError(t, err)
	defer func() { require.NoError(t, e.Close()) }()
	updateUntilStored(t, e, "n", 1.0)

	for i, change := range []func() error{
		func() error { return e.UpdateState("k", "v") },
		func() error {
			return e.Update("n", func(old any, _ bool) (any, error) { return old.(float64) + 1, nil })
		},
	} {
		_, next := l.Bounds()
		px.hold()
		err := change()
		px.release()
		var u *natsledger.UnconfirmedError
		require.ErrorAs(t, err, &u, "change %d", i)
		waitNext(t, l, next+1) // stored, and now applied
		c, err := u.Retry(ctx)
		require.NoError(t, err, "change %d", i)
		require.Equal(t, next, c.Sequence, "change %d: the first copy's sequence", i)
		h, err := e.History(ctx, next)
		require.NoError(t, err)
		require.Len(t, h, 1, "change %d stored once", i)
		require.Equal(t, h[0], c, "change %d as recorded", i)
	}
	v, _ := e.GetState("n")
	require.Equal(t, 2.0, v)
}
