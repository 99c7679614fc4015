package qpool_test

// Promise tests for the TTL reaper against updates in flight: many
// goroutines, real time, random timing, many rounds, a watchdog. They
// assert orderings, never a duration.

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
)

// dropSpy is a MemoryLedger that records, when the entanglement drops it
// on expiry, the whole history and the time of the drop. Half its appends
// return a little after the change is recorded, as a networked ledger's
// acknowledgement does.
type dropSpy struct {
	*qpool.MemoryLedger
	mu        sync.Mutex
	drops     int
	history   []qpool.StateChange
	droppedAt time.Time
}

func (d *dropSpy) Append(ctx context.Context, m qpool.Mutation) (qpool.StateChange, error) {
	c, err := d.MemoryLedger.Append(ctx, m)
	if rand.N(2) == 0 {
		time.Sleep(rand.N(200 * time.Microsecond))
	}
	return c, err
}

func (d *dropSpy) Drop(ctx context.Context) error {
	at := time.Now()
	h, _ := d.MemoryLedger.Read(ctx, 0, 0)
	d.mu.Lock()
	d.drops++
	d.history, d.droppedAt = h, at
	d.mu.Unlock()
	return d.MemoryLedger.Drop(ctx)
}

// acked is an update that returned nil: its value and when the call began.
// The change's time lies between the start and the return, so TTL after
// the start is the earliest the entanglement may expire.
type acked struct {
	value int
	start time.Time
}

// An acknowledged update must count as activity: expiry comes no earlier
// than TTL after it, and the change is in the ledger when expiry drops it.
// Each phase makes one update and then, from several goroutines, updates
// at TTL after it give or take some jitter, so that updates race the
// reaper's check at the edge. The reaper used to decide from a time that
// an update wrote only after its append, and to expire under an update in
// flight: the update returned nil and the entanglement expired
// microseconds later. The ledger's slow acknowledgements widen the time an
// update is in flight.
func TestAckedUpdateNeverLostToExpiry(t *testing.T) {
	const (
		ttl        = 2 * time.Millisecond
		updaters   = 6
		rounds     = 40
		maxPhases  = 12
		jitterSpan = 800 * time.Microsecond // updates land TTL-400µs … TTL+400µs after the phase's first
	)
	for round := range rounds {
		spy := &dropSpy{MemoryLedger: qpool.NewMemoryLedger()}
		expired := make(chan time.Time, 2)
		var seenMu sync.Mutex
		var seen []uint64
		e := qpool.NewEntanglement("edge", nil, ttl, qpool.WithLedger(spy),
			qpool.WithOnExpire(func(string) { expired <- time.Now() }),
			qpool.WithOnChange(func(c qpool.StateChange) {
				seenMu.Lock()
				seen = append(seen, c.Sequence)
				seenMu.Unlock()
			}))

		var mu sync.Mutex
		var acks []acked
		update := func(value int) error {
			start := time.Now()
			err := e.UpdateState("k", value)
			switch {
			case err == nil:
				mu.Lock()
				acks = append(acks, acked{value, start})
				mu.Unlock()
			case !errors.Is(err, qpool.ErrExpired):
				t.Errorf("round %d: update: %v, want nil or ErrExpired", round, err)
			}
			return err
		}
		for phase := 0; phase < maxPhases; phase++ {
			if update(round*10_000+phase*100) != nil {
				break
			}
			var wg sync.WaitGroup
			for g := range updaters {
				wg.Add(1)
				go func() {
					defer wg.Done()
					time.Sleep(ttl - jitterSpan/2 + rand.N(jitterSpan))
					_ = update(round*10_000 + phase*100 + 1 + g)
				}()
			}
			wg.Wait()
		}

		// An idle entanglement expires, however late.
		var at time.Time
		select {
		case at = <-expired:
		case <-time.After(10 * time.Second):
			t.Fatalf("watchdog: round %d: the entanglement never expired", round)
		}
		require.ErrorIs(t, e.UpdateState("k", -1), qpool.ErrExpired, "an update after expiry")
		require.NoError(t, e.Close())
		require.Empty(t, expired, "OnExpire ran twice")

		spy.mu.Lock()
		require.Equal(t, 1, spy.drops, "round %d", round)
		inHistory := make(map[any]bool, len(spy.history))
		for _, c := range spy.history {
			inHistory[c.Value] = true
		}
		droppedAt := spy.droppedAt
		spy.mu.Unlock()
		for _, a := range acks {
			require.GreaterOrEqual(t, droppedAt.Sub(a.start), ttl,
				"round %d: expired %v after an acknowledged update began, TTL is %v", round, droppedAt.Sub(a.start), ttl)
			require.GreaterOrEqual(t, at.Sub(a.start), ttl, "round %d: OnExpire", round)
			require.True(t, inHistory[a.value], "round %d: acknowledged update %d was not in the ledger at expiry", round, a.value)
		}
		seenMu.Lock()
		for i, s := range seen { // delivered once each, in order, from the first
			require.Equal(t, uint64(i), s, "round %d: callbacks lost, repeated or reordered a change", round)
		}
		require.LessOrEqual(t, len(seen), len(inHistory), "round %d: a callback got a change the ledger did not hold", round)
		seenMu.Unlock()
	}
}

// Callbacks get every change exactly once and in order while the reaper
// checks the entanglement again and again (updates every TTL or so, some a
// little late): a check that finds the entanglement busy must not cost a
// change its callbacks. A final update by one goroutine, if the
// entanglement is still open, delivers everything before it returns.
func TestCallbacksExactlyOnceAcrossReaperChecks(t *testing.T) {
	const (
		ttl      = 2 * time.Millisecond
		updaters = 4
		rounds   = 20
		per      = 15
	)
	completed := 0
	for round := range rounds {
		var mu sync.Mutex
		var seen []uint64
		var lastKey string
		var states int
		e := qpool.NewEntanglement("checks", nil, ttl,
			qpool.WithOnChange(func(c qpool.StateChange) {
				mu.Lock()
				seen = append(seen, c.Sequence)
				lastKey = c.Key
				mu.Unlock()
			}),
			qpool.WithOnStateChange(func(_, _ map[string]any) {
				mu.Lock()
				states++
				mu.Unlock()
			}))
		var wg sync.WaitGroup
		for g := range updaters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					time.Sleep(rand.N(ttl + ttl/4))
					err := e.UpdateState("k", g*1000+i)
					if errors.Is(err, qpool.ErrExpired) {
						return
					}
					if err != nil {
						t.Errorf("update: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		err := e.UpdateState("last", round)
		require.NoError(t, e.Close())
		mu.Lock()
		for i, s := range seen {
			require.Equal(t, uint64(i), s, "round %d: lost, repeated or out of order", round)
		}
		// OnStateChange runs first: expiry may fall between the two.
		require.Contains(t, []int{len(seen), len(seen) + 1}, states, "round %d: OnStateChange and OnChange saw different changes", round)
		if err == nil { // still open when the last update ran: nothing owed
			completed++
			require.Equal(t, len(seen), states, "round %d", round)
			require.Equal(t, "last", lastKey, "round %d: the last change was not delivered, or not last", round)
		} else {
			require.ErrorIs(t, err, qpool.ErrExpired)
		}
		mu.Unlock()
	}
	t.Logf("%d of %d rounds were still open at the end", completed, rounds)
}
