package qpool_test

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
	"github.com/stretchr/testify/require"
)

// errUnreachable is what flakyLedger's reads fail with while it is down.
var errUnreachable = errors.New("test: ledger unreachable")

// flakyLedger is a MemoryLedger whose Read fails while down is set, as a
// distributed ledger's does while its server is unreachable. Appends and
// the replica (Get, Bounds, Changed) keep working, as natsledger's do for
// changes already applied.
type flakyLedger struct {
	*qpool.MemoryLedger
	down  atomic.Bool
	fails atomic.Int64
}

func (l *flakyLedger) Read(ctx context.Context, since uint64, limit int) ([]qpool.StateChange, error) {
	if l.down.Load() {
		l.fails.Add(1)
		return nil, errUnreachable
	}
	return l.MemoryLedger.Read(ctx, since, limit)
}

// TestWatchSurvivesUnreadableLedger has watchers follow an entanglement
// whose ledger reads fail at random moments: every watch delivers every
// change from its start, in order, none missed or repeated, and closes
// only when its ctx ends or the entanglement closes, never because a read
// failed. History reports the failed reads, which GetStateHistory turns
// into nil, as documented.
func TestWatchSurvivesUnreadableLedger(t *testing.T) {
	for round := range 4 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			watchSurvivesUnreadableLedger(t, rand.New(rand.NewPCG(uint64(round), uint64(time.Now().UnixNano()))))
		})
	}
}

func watchSurvivesUnreadableLedger(t *testing.T, rng *rand.Rand) {
	const changes, watchers = 1500, 8
	l := &flakyLedger{MemoryLedger: qpool.NewMemoryLedger()}
	e := qpool.NewEntanglement(t.Name(), nil, 0, qpool.WithLedger(l))
	defer func() { _ = e.Close() }()

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []error
		cancels []context.CancelFunc
		next    = make([]atomic.Uint64, watchers) // sequence each watcher expects next
		closed  = make([]chan struct{}, watchers)
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	l.down.Store(rng.IntN(2) == 0) // some watchers start while reads fail
	for w := range watchers {
		since := uint64(rng.IntN(changes))
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		closed[w] = make(chan struct{})
		next[w].Store(since)
		ch := e.Watch(ctx, since)
		wg.Go(func() {
			defer close(closed[w])
			want := since
			for c := range ch {
				if c.Sequence != want {
					fail(fmt.Errorf("watcher %d: got sequence %d, want %d", w, c.Sequence, want))
				}
				want = c.Sequence + 1
				next[w].Store(want)
			}
			if ctx.Err() == nil && want < changes {
				fail(fmt.Errorf("watcher %d closed at %d of %d with its ctx live and the entanglement open", w, want, changes))
			}
		})
	}

	chaosDone := make(chan struct{})
	stopChaos := make(chan struct{})
	go func() { // toggles the ledger's reads on and off until stopChaos
		defer close(chaosDone)
		for {
			select {
			case <-stopChaos:
				return
			case <-time.After(time.Duration(rng.IntN(3000)) * time.Microsecond):
				l.down.Store(!l.down.Load())
			}
		}
	}()
	for i := range changes {
		require.NoError(t, e.UpdateState(fmt.Sprintf("k%d", i%5), i))
	}
	close(stopChaos)
	<-chaosDone

	l.down.Store(true)
	_, err := e.History(context.Background(), 0)
	require.ErrorIs(t, err, errUnreachable, "a failed read is reported")
	require.Nil(t, e.GetStateHistory(0), "GetStateHistory returns nil on a failed read")
	l.down.Store(false)
	h, err := e.History(context.Background(), 0)
	require.NoError(t, err)
	require.Len(t, h, changes)

	// Every watcher catches up once reads work.
	deadline := time.Now().Add(20 * time.Second)
	for w := range watchers {
		for next[w].Load() < changes {
			select {
			case <-closed[w]:
				mu.Lock()
				report := errors.Join(errs...)
				mu.Unlock()
				t.Fatalf("watcher %d closed early: %v", w, report)
			case <-time.After(time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("watchdog: watcher %d stuck at %d of %d", w, next[w].Load(), changes)
			}
		}
	}
	mu.Lock()
	require.Empty(t, errs)
	mu.Unlock()

	// With reads failing, ending one watcher's ctx closes it, and only it.
	l.down.Store(true)
	cancels[0]()
	<-closed[0]
	for w := 1; w < watchers; w++ {
		select {
		case <-closed[w]:
			t.Fatalf("watcher %d closed with its ctx live", w)
		default:
		}
	}
	require.NoError(t, e.Close())
	wg.Wait() // Close ends the rest
	_, err = e.History(context.Background(), 0)
	require.ErrorIs(t, err, qpool.ErrClosed)
	for _, c := range cancels {
		c()
	}
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, errs)
	require.Positive(t, l.fails.Load(), "the ledger's reads did fail")
}
