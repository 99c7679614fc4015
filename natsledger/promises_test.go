package natsledger_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsledger"
	"github.com/stretchr/testify/require"
)

// promiseWatchdog is how long one round of a promise test may take before
// it counts as a hang.
const promiseWatchdog = 20 * time.Second

// within runs f in a goroutine and fails the test if it does not return
// within promiseWatchdog (a hang is a failure, not a test timeout), or
// if it returns an error. f must not call t.FailNow: it runs in a
// goroutine of its own.
func within(t *testing.T, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		require.NoError(t, err, what)
	case <-time.After(promiseWatchdog):
		t.Fatalf("%s: no return within %v", what, promiseWatchdog)
	}
}

// TestPromiseDropFailsOtherLedgersAppends checks Ledger.Drop's promise:
// "Other processes' ledgers then fail their appends with ErrUnavailable
// until they expire or close too." Each round opens ledgers on the same ID
// over separate connections (as separate processes would), appends from
// the survivors while one ledger drops the stream at a random moment, and
// then checks that every append started after Drop returned fails with an
// error matching ErrUnavailable (not ErrClosed: the survivors are open),
// that none of them brought the stream back, and that after Close the
// survivors' appends fail with qpool.ErrClosed instead.
func TestPromiseDropFailsOtherLedgersAppends(t *testing.T) {
	ctx := context.Background()
	ts := startServer(t)
	js, err := jetstream.New(connect(t, ts.url()))
	require.NoError(t, err)
	const (
		rounds    = 3
		survivors = 2
		writers   = 3 // per survivor
	)
	for round := range rounds {
		id := uniqueID(t)
		opts := []natsledger.Option{
			natsledger.WithTimeout(400 * time.Millisecond),
			// The survivors' feeds report the missing stream until they close.
			natsledger.WithLogger(slog.New(slog.DiscardHandler)),
		}
		dropper := open(t, connect(t, ts.url()), id, opts...)
		others := make([]*natsledger.Ledger, survivors)
		for i := range others {
			others[i] = open(t, connect(t, ts.url()), id, opts...)
		}
		_, err := dropper.Append(ctx, qpool.Mutation{Key: "k", Value: -1})
		require.NoError(t, err)

		// Writers append until told to stop; appends racing with Drop may
		// succeed or fail, but only with the documented errors.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		racing := make(chan error, survivors*writers*1000)
		for _, l := range others {
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						_, err := l.Append(ctx, qpool.Mutation{Key: fmt.Sprintf("w%d", w), Value: i})
						if err != nil {
							racing <- err
						}
						time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
					}
				}()
			}
		}
		time.Sleep(time.Duration(5+rand.IntN(30)) * time.Millisecond)
		within(t, "Drop", func() error { return dropper.Drop(ctx) })
		close(stop)
		within(t, "writers racing with Drop", func() error { wg.Wait(); return nil })
		close(racing)
		t.Logf("round %d: %d appends racing with Drop failed", round, len(racing))
		for err := range racing {
			require.ErrorIs(t, err, natsledger.ErrUnavailable, "round %d: an append racing with Drop", round)
		}

		// Every append begun after Drop returned fails with ErrUnavailable.
		after := make(chan error, survivors*writers)
		within(t, "appends after Drop", func() error {
			var wg sync.WaitGroup
			for _, l := range others {
				for w := range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
						_, err := l.Append(ctx, qpool.Mutation{Key: fmt.Sprintf("after%d", w), Value: w})
						after <- err
					}()
				}
			}
			wg.Wait()
			return nil
		})
		close(after)
		for err := range after {
			require.Error(t, err, "round %d: an append after Drop succeeded", round)
			if round == 0 {
				t.Logf("an append after Drop: %v", err)
			}
			require.ErrorIs(t, err, natsledger.ErrUnavailable, "round %d", round)
			require.NotErrorIs(t, err, qpool.ErrClosed, "round %d: the survivor is still open", round)
		}
		_, err = js.Stream(ctx, natsledger.StreamName(id))
		require.ErrorIs(t, err, jetstream.ErrStreamNotFound, "round %d: the stream came back after Drop", round)

		// ... until they close too.
		for _, l := range others {
			within(t, "Close", l.Close)
			_, err := l.Append(ctx, qpool.Mutation{Key: "closed", Value: 1})
			require.ErrorIs(t, err, qpool.ErrClosed, "round %d: append after Close", round)
		}
	}
}

// consumerCount returns how many consumers the server holds on the
// stream, and their names for a failure message.
func consumerCount(t *testing.T, st jetstream.Stream) (int, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := st.Info(ctx)
	require.NoError(t, err)
	var names []string
	lister := st.ConsumerNames(ctx)
	for name := range lister.Name() {
		names = append(names, name)
	}
	require.NoError(t, lister.Err())
	return info.State.Consumers, names
}

// TestPromiseOldHistoryReadDeletesItsConsumer checks the package doc's
// promise: "Read may create a short-lived ordered consumer for history
// older than the replica's cache; it is deleted before Read returns."
// With a cache of a few changes, many Reads reach the stream, one at a
// time (the server's consumer count is checked after each) and then from
// many goroutines at once (checked after all have returned); the count
// must stay at the ledger's feed alone. Each Read's result is checked too,
// so that a Read that never reached the stream cannot pass.
func TestPromiseOldHistoryReadDeletesItsConsumer(t *testing.T) {
	ctx := context.Background()
	ts := startServer(t)
	nc := connect(t, ts.url())
	id := uniqueID(t)
	const (
		cache   = 4
		changes = 60
		rounds  = 3
		readers = 6
		reads   = 5 // per reader and round
	)
	l := open(t, nc, id, natsledger.WithCacheSize(cache))
	for i := range changes {
		_, err := l.Append(ctx, qpool.Mutation{Key: fmt.Sprintf("k%d", i%7), Value: i})
		require.NoError(t, err)
	}
	js, err := jetstream.New(connect(t, ts.url()))
	require.NoError(t, err)
	st, err := js.Stream(ctx, natsledger.StreamName(id))
	require.NoError(t, err)
	baseline, names := consumerCount(t, st)
	require.Equal(t, 1, baseline, "before any Read, only the feed's consumer: %v", names)
	first, next := l.Bounds()
	require.Equal(t, uint64(changes), next-first)

	// read reads from a random sequence older than the cache and checks
	// what it got.
	read := func() error {
		since := first + uint64(rand.IntN(changes-cache-1))
		limit := rand.IntN(changes) // 0: all
		h, err := l.Read(ctx, since, limit)
		if err != nil {
			return fmt.Errorf("Read(%d, %d): %w", since, limit, err)
		}
		want := int(next - since)
		if limit > 0 {
			want = min(want, limit)
		}
		if len(h) != want {
			return fmt.Errorf("Read(%d, %d): %d changes, want %d", since, limit, len(h), want)
		}
		for i, c := range h {
			if c.Sequence != since+uint64(i) || c.Value != float64(c.Sequence-first) {
				return fmt.Errorf("Read(%d, %d)[%d] = %+v", since, limit, i, c)
			}
		}
		return nil
	}

	for round := range rounds {
		for range reads {
			within(t, "a Read", read)
			n, names := consumerCount(t, st)
			require.Equal(t, baseline, n, "round %d: consumers after a Read returned: %v", round, names)
		}
		errs := make(chan error, readers*reads)
		within(t, "concurrent Reads", func() error {
			var wg sync.WaitGroup
			for range readers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range reads {
						time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
						errs <- read()
					}
				}()
			}
			wg.Wait()
			return nil
		})
		close(errs)
		for err := range errs {
			require.NoError(t, err, "round %d", round)
		}
		n, names := consumerCount(t, st)
		require.Equal(t, baseline, n, "round %d: consumers after concurrent Reads returned: %v", round, names)
	}
}

// TestPromiseCompactKeepsEveryKeysLastMessage checks Compact's promise:
// on the server "the last message of every key stays, because the stream
// is the state that other and later processes replay". Each round, writers
// on two connections set and delete random keys, one ledger compacts below
// a random sequence (and then below everything), and a fresh ledger on a
// new connection, as a later process would open it, must replay exactly
// the writers' state, with every key at its last revision.
func TestPromiseCompactKeepsEveryKeysLastMessage(t *testing.T) {
	ctx := context.Background()
	ts := startServer(t)
	const (
		rounds  = 3
		writers = 4
		updates = 40 // per writer
		keys    = 12
	)
	for round := range rounds {
		id := uniqueID(t)
		ledgers := []*natsledger.Ledger{
			open(t, connect(t, ts.url()), id),
			open(t, connect(t, ts.url()), id),
		}
		errs := make(chan error, writers*updates)
		within(t, "writers", func() error {
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					l := ledgers[w%len(ledgers)]
					for i := range updates {
						m := qpool.Mutation{Key: fmt.Sprintf("k%d", rand.IntN(keys)), Value: fmt.Sprintf("w%d-%d", w, i)}
						m.Delete = rand.IntN(6) == 0
						if _, err := l.Append(ctx, m); err != nil {
							errs <- err
						}
						if rand.IntN(4) == 0 {
							time.Sleep(time.Millisecond)
						}
					}
				}()
			}
			wg.Wait()
			return nil
		})
		close(errs)
		for err := range errs {
			require.NoError(t, err, "round %d", round)
		}
		// Both ledgers catch up with every change.
		_, end := ledgers[0].Snapshot()
		for _, l := range ledgers {
			waitNext(t, l, end)
			_, n := l.Snapshot()
			end = max(end, n)
		}
		for _, l := range ledgers {
			waitNext(t, l, end)
		}
		want, next := ledgers[0].Snapshot()
		require.Equal(t, end, next)
		revs := make(map[string]uint64, len(want))
		for key := range want {
			_, rev, ok := ledgers[0].Get(key)
			require.True(t, ok)
			revs[key] = rev
		}

		check := func(when string) {
			t.Helper()
			fresh := open(t, connect(t, ts.url()), id)
			got, n := fresh.Snapshot()
			require.Equal(t, want, got, "round %d, %s: a fresh ledger's state", round, when)
			require.Equal(t, next, n, "round %d, %s: a fresh ledger's next", round, when)
			for key, rev := range revs {
				_, r, ok := fresh.Get(key)
				require.True(t, ok, "round %d, %s: key %q lost", round, when, key)
				require.Equal(t, rev, r, "round %d, %s: key %q's revision", round, when, key)
			}
			require.NoError(t, fresh.Close())
		}
		first, _ := ledgers[0].Bounds()
		before := first + uint64(rand.IntN(int(next-first)+1))
		compactor := ledgers[rand.IntN(len(ledgers))]
		within(t, "Compact", func() error { return compactor.Compact(ctx, before) })
		check(fmt.Sprintf("after Compact(%d)", before))
		within(t, "Compact", func() error { return compactor.Compact(ctx, next) })
		check(fmt.Sprintf("after Compact(%d), all", next))

		// The purge did happen: the stream keeps at most one message per
		// key ever written, so the fresh ledger's state cannot have come
		// from an untouched stream.
		js, err := jetstream.New(connect(t, ts.url()))
		require.NoError(t, err)
		st, err := js.Stream(ctx, natsledger.StreamName(id))
		require.NoError(t, err)
		info, err := st.Info(ctx)
		require.NoError(t, err)
		require.LessOrEqual(t, info.State.Msgs, uint64(keys), "round %d: messages left after Compact(%d)", round, next)
	}
}
