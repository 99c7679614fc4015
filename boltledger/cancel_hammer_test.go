package boltledger_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/boltledger"
	"github.com/qpool/qpool/ledgertest"
	"github.com/stretchr/testify/require"
)

// cancelOutcome is what one Append of the hammer returned.
type cancelOutcome struct {
	ledger int    // index of the ledger appended to
	value  string // unique per append: how the history is matched
	mode   int    // how its context ended, for the failure messages
	change qpool.StateChange
	err    error
}

// Ways the hammer ends an Append's context.
const (
	cancelBefore    = iota // cancelled before Append is called
	cancelTimeout          // a random short timeout
	cancelAfterFunc        // cancel from a timer after a random short delay
	cancelGoroutine        // cancel from another goroutine after a random number of yields
	cancelNever            // never ends while Append runs
	cancelModes
)

// TestCancelHammer hammers Append's promise that an error never hides a
// recorded change: "If ctx ends before the committer takes the change,
// Append returns ctx's error and nothing is recorded; once taken, Append
// waits for the outcome". 32 goroutines append to two ledgers of one file,
// each Append with a context that ends at a random moment (before the
// call, by a random short timeout, by a timer or another goroutine calling
// cancel, or never), so that contexts end before, during and after the
// group commit or the fast path. After every round, and again after the
// file is closed and reopened, each ledger's history must be gap-free and
// hold exactly the appends that returned nil (each at the sequence Append
// returned, with its key and unique value) and none of those that returned
// an error, which must be the context's error; the cached state must be
// the history replayed.
func TestCancelHammer(t *testing.T) {
	const (
		rounds   = 12
		writers  = 32
		each     = 8
		ledgers  = 2
		watchdog = 30 * time.Second
	)
	db, path := openDB(t)
	ls := make([]*boltledger.Ledger, ledgers)
	for i := range ls {
		ls[i] = ledger(t, db, fmt.Sprintf("h%d", i))
	}
	var all []cancelOutcome
	modeCount := make([]int, cancelModes)
	modeErr := make([]int, cancelModes)
	for round := range rounds {
		// Delays from 50us to 3.2ms, so that contexts end before, during
		// and after commits of a few changes or of many.
		maxDelay := 50 * time.Microsecond << (2 * (round % 4))
		out := make([]cancelOutcome, writers*each)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(round), uint64(w)))
				for n := range each {
					o := &out[w*each+n] // this goroutine's own slot
					o.ledger = rng.IntN(ledgers)
					o.value = fmt.Sprintf("r%d/w%d/n%d", round, w, n)
					o.mode = rng.IntN(cancelModes)
					m := qpool.Mutation{Key: fmt.Sprintf("k%d", rng.IntN(4)), Value: o.value}
					delay := rand.N(maxDelay)
					ctx, cancel := context.WithCancel(context.Background())
					var stop func()
					switch o.mode {
					case cancelBefore:
						cancel()
					case cancelTimeout:
						var cancelT context.CancelFunc
						ctx, cancelT = context.WithTimeout(ctx, delay)
						stop = cancelT
					case cancelAfterFunc:
						tm := time.AfterFunc(delay, cancel)
						stop = func() { tm.Stop() }
					case cancelGoroutine:
						yields := rng.IntN(200)
						done := make(chan struct{})
						go func() {
							defer close(done)
							for range yields {
								runtime.Gosched()
							}
							cancel()
						}()
						stop = func() { <-done } // the canceller ends before the next Append
					}
					o.change, o.err = ls[o.ledger].Append(ctx, m)
					if stop != nil {
						stop()
					}
					cancel()
				}
			})
		}
		waitOrFatal(t, &wg, watchdog, fmt.Sprintf("round %d: appends still running", round))
		for _, o := range out {
			modeCount[o.mode]++
			if o.err != nil {
				modeErr[o.mode]++
				require.True(t, errors.Is(o.err, context.Canceled) || errors.Is(o.err, context.DeadlineExceeded),
					"round %d: append %s (mode %d) failed with something other than its context's error: %v", round, o.value, o.mode, o.err)
			} else {
				require.NotEqual(t, cancelBefore, o.mode, "append %s: a context cancelled before the call returned nil", o.value)
			}
		}
		all = append(all, out...)
		requireHistoryMatches(t, ls, all, fmt.Sprintf("after round %d", round))
	}
	for i := range modeCount {
		t.Logf("mode %d: %d appends, %d returned an error", i, modeCount[i], modeErr[i])
	}
	// Both outcomes must have happened for the modes that race the commit,
	// or the hammer checked nothing about them.
	require.Equal(t, modeCount[cancelBefore], modeErr[cancelBefore])
	require.Zero(t, modeErr[cancelNever])
	racing := modeErr[cancelTimeout] + modeErr[cancelAfterFunc] + modeErr[cancelGoroutine]
	racingAll := modeCount[cancelTimeout] + modeCount[cancelAfterFunc] + modeCount[cancelGoroutine]
	require.Positive(t, racing, "no racing cancellation won")
	require.Less(t, racing, racingAll, "no racing cancellation lost")

	for _, l := range ls {
		require.NoError(t, l.Close())
	}
	require.NoError(t, db.Close())
	db2 := reopenDB(t, path)
	for i := range ls {
		ls[i] = ledger(t, db2, fmt.Sprintf("h%d", i))
	}
	requireHistoryMatches(t, ls, all, "after the reopen")
	for _, l := range ls {
		require.NoError(t, l.Close())
	}
	require.NoError(t, db2.Verify())
}

// waitOrFatal waits for wg, failing the test if it takes longer than d.
func waitOrFatal(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("watchdog: %s after %v", what, d)
	}
}

// requireHistoryMatches checks that each ledger's history is gap-free and
// holds exactly the appends of outs that returned nil, each at the sequence
// Append returned, and that the ledger's state is its history replayed.
func requireHistoryMatches(t *testing.T, ls []*boltledger.Ledger, outs []cancelOutcome, when string) {
	t.Helper()
	for i, l := range ls {
		first, next := l.Bounds()
		require.Zero(t, first, "%s: ledger %d", when, i)
		h, err := l.Read(t.Context(), 0, 0)
		require.NoError(t, err, "%s: ledger %d", when, i)
		requireGapFree(t, h, 0, next)
		seen := make(map[string]uint64, len(h))
		for _, c := range h {
			v, ok := c.Value.(string)
			require.True(t, ok, "%s: ledger %d: change %d holds %#v", when, i, c.Sequence, c.Value)
			_, dup := seen[v]
			require.False(t, dup, "%s: ledger %d: %s recorded twice", when, i, v)
			seen[v] = c.Sequence
		}
		recorded := 0
		for _, o := range outs {
			if o.ledger != i {
				continue
			}
			seq, ok := seen[o.value]
			if o.err != nil {
				require.False(t, ok, "%s: ledger %d: append %s (mode %d) returned %v but is recorded at %d",
					when, i, o.value, o.mode, o.err, seq)
				continue
			}
			recorded++
			require.True(t, ok, "%s: ledger %d: append %s (mode %d) returned nil but is not recorded", when, i, o.value, o.mode)
			require.Equal(t, o.change.Sequence, seq, "%s: ledger %d: append %s", when, i, o.value)
			require.Equal(t, o.change.Key, h[seq].Key, "%s: ledger %d: append %s", when, i, o.value)
		}
		require.Len(t, h, recorded, "%s: ledger %d holds changes no append returned nil for", when, i)
		state, _ := l.Snapshot()
		require.Equal(t, ledgertest.Replay(h), state, "%s: ledger %d", when, i)
	}
}
