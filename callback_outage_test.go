package qpool_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
)

// TestCallbacksSurviveUnreadableLedger: callbacks get every change exactly
// once, in order, while the ledger's reads fail at random moments. Updaters
// contend, so a deliverer often drains changes other updaters recorded,
// which it reads from the ledger; a failed read delays that delivery, it
// never skips the changes (it used to: drain took a failed read for
// "nothing left").
func TestCallbacksSurviveUnreadableLedger(t *testing.T) {
	for round := range 4 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			const updaters, each = 4, 300
			rng := rand.New(rand.NewPCG(uint64(round), uint64(time.Now().UnixNano())))
			l := &flakyLedger{MemoryLedger: qpool.NewMemoryLedger()}
			var (
				mu   sync.Mutex
				seen []uint64
			)
			e := qpool.NewEntanglement(t.Name(), nil, 0, qpool.WithLedger(l), qpool.WithOnChange(func(c qpool.StateChange) {
				mu.Lock()
				seen = append(seen, c.Sequence)
				mu.Unlock()
			}))
			defer func() { _ = e.Close() }()
			stop := make(chan struct{})
			var flipper sync.WaitGroup
			flipper.Go(func() { // the ledger goes down and up at random
				for {
					select {
					case <-stop:
						l.down.Store(false)
						return
					case <-time.After(time.Duration(rng.IntN(300)) * time.Microsecond):
						l.down.Store(!l.down.Load())
					}
				}
			})
			var wg sync.WaitGroup
			for u := range updaters {
				wg.Go(func() {
					for i := range each {
						if err := e.UpdateState(fmt.Sprint("k", u), i); err != nil {
							t.Error(err)
							return
						}
						if i%7 == 0 {
							runtime.Gosched()
						}
					}
				})
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("watchdog: updates did not finish")
			}
			close(stop)
			flipper.Wait()
			// The last deliverer may still be retrying: one more update
			// after the ledger is up makes delivery catch up.
			require.NoError(t, e.UpdateState("last", true))
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, seen, updaters*each+1, "callbacks missed or repeated changes (%d read failures)", l.fails.Load())
			for i, s := range seen {
				require.Equal(t, uint64(i), s, "callbacks out of order or with a gap")
			}
			t.Logf("%d failed reads", l.fails.Load())
		})
	}
}
