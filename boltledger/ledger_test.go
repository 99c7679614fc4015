package boltledger_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/boltledger"
	"github.com/qpool/qpool/ledgertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type point struct {
	X, Y int
	Tag  string
}

// TestEntanglementSurvivesRestart stores state through an entanglement,
// closes the file, reopens it and checks that state, history and sequences
// resume, and that GetStateAs decodes into the caller's type.
func TestEntanglementSurvivesRestart(t *testing.T) {
	ctx := t.Context()
	db, path := openDB(t)
	e, err := qpool.OpenEntanglement(ctx, "job", nil, 0, qpool.WithLedger(ledger(t, db, "job")))
	require.NoError(t, err)
	require.NoError(t, e.UpdateState("p", point{1, 2, "a"}))
	require.NoError(t, e.UpdateState("n", 42))
	require.NoError(t, e.DeleteState("n"))
	require.NoError(t, e.UpdateState("s", "text"))
	require.NoError(t, e.Close())
	require.NoError(t, db.Close())

	db2 := reopenDB(t, path)
	e2, err := qpool.OpenEntanglement(ctx, "job", nil, 0, qpool.WithLedger(ledger(t, db2, "job")))
	require.NoError(t, err)
	defer e2.Close()
	v, ok := e2.GetState("p")
	require.True(t, ok)
	require.Equal(t, map[string]any{"X": 1.0, "Y": 2.0, "Tag": "a"}, v, "GetState returns the decoded JSON form")
	p, ok, err := qpool.GetStateAs[point](e2, "p")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, point{1, 2, "a"}, p)
	_, ok = e2.GetState("n")
	require.False(t, ok)
	h := e2.GetStateHistory(0)
	requireGapFree(t, h, 0, 4)
	require.True(t, h[2].Deleted)
	require.NoError(t, e2.UpdateState("after", true))
	h = e2.GetStateHistory(4)
	require.Len(t, h, 1)
	require.Equal(t, uint64(4), h[0].Sequence, "sequences continue after the restart")
}

// TestUnencodableValue checks that a value JSON cannot encode is refused
// with ErrEncode and nothing is recorded.
func TestUnencodableValue(t *testing.T) {
	db, _ := openDB(t)
	e, err := qpool.OpenEntanglement(t.Context(), "x", nil, 0, qpool.WithLedger(ledger(t, db, "x")))
	require.NoError(t, err)
	defer e.Close()
	for _, v := range []any{make(chan int), math.NaN(), func() {}} {
		err := e.UpdateState("bad", v)
		require.ErrorIs(t, err, boltledger.ErrEncode, "%T", v)
		require.ErrorIs(t, err, qpool.ErrEncode, "every codec ledger's encode error matches the root sentinel")
	}
	require.Empty(t, e.GetStateHistory(0))
	require.NoError(t, e.UpdateState("good", 1))
	require.Equal(t, uint64(0), e.GetStateHistory(0)[0].Sequence)
}

// TestBadLedgerIDsAndKeys checks the errors for IDs and keys bbolt cannot
// store, and for opening one ID twice.
func TestBadLedgerIDsAndKeys(t *testing.T) {
	db, _ := openDB(t)
	for _, id := range []string{"", strings.Repeat("i", 40000)} {
		_, err := db.Ledger(id)
		require.ErrorIs(t, err, boltledger.ErrInvalidID)
	}
	l := ledger(t, db, "one")
	_, err := db.Ledger("one")
	require.ErrorIs(t, err, boltledger.ErrInUse)
	for _, key := range []string{"", strings.Repeat("k", 40000)} {
		_, err := l.Append(t.Context(), qpool.Mutation{Key: key, Value: 1.0})
		require.ErrorIs(t, err, qpool.ErrInvalidKey)
	}
	require.NoError(t, l.Close())
	l2 := ledger(t, db, "one") // Close frees the ID
	first, next := l2.Bounds()
	require.Zero(t, first)
	require.Zero(t, next, "nothing was recorded")
	require.NoError(t, l2.Close())
}

// TestCancelledAppend checks that an Append whose context has ended
// records nothing.
func TestCancelledAppend(t *testing.T) {
	db, _ := openDB(t)
	l := ledger(t, db, "c")
	defer l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := l.Append(ctx, qpool.Mutation{Key: "k", Value: 1.0})
	require.ErrorIs(t, err, context.Canceled)
	_, next := l.Bounds()
	require.Zero(t, next)
}

// TestGroupCommit appends from 64 goroutines to four ledgers in one file
// and checks every history, the states, and that transactions were shared.
func TestGroupCommit(t *testing.T) {
	db, _ := openDB(t)
	const writers, each, ledgers = 64, 40, 4
	ls := make([]*boltledger.Ledger, ledgers)
	for i := range ls {
		ls[i] = ledger(t, db, fmt.Sprintf("g%d", i))
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for n := range each {
				_, err := ls[w%ledgers].Append(t.Context(), qpool.Mutation{Key: fmt.Sprintf("w%d", w), Value: float64(n)})
				assert.NoError(t, err) // assert: not on the test's goroutine
			}
		})
	}
	wg.Wait()
	for _, l := range ls {
		h, err := l.Read(t.Context(), 0, 0)
		require.NoError(t, err)
		requireGapFree(t, h, 0, writers/ledgers*each)
		state, _ := l.Snapshot()
		require.Equal(t, ledgertest.Replay(h), state)
		for _, v := range state {
			require.Equal(t, float64(each-1), v)
		}
		require.NoError(t, l.Close())
	}
	s := db.Stats()
	require.Equal(t, uint64(writers*each), s.Changes)
	require.Less(t, s.Commits, s.Changes, "no transaction held more than one change")
	t.Logf("%d changes in %d commits", s.Changes, s.Commits)
}

// TestGuardedAppendsInOneBatch runs many guarded increments of one key at
// once: guards are checked inside the transaction, so each increment lands
// exactly once however the batches fall.
func TestGuardedAppendsInOneBatch(t *testing.T) {
	db, _ := openDB(t)
	e, err := qpool.OpenEntanglement(t.Context(), "ctr", nil, 0, qpool.WithLedger(ledger(t, db, "ctr")))
	require.NoError(t, err)
	defer e.Close()
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 5 {
				assert.NoError(t, e.Update("n", func(old any, ok bool) (any, error) {
					if !ok {
						return 1.0, nil
					}
					return old.(float64) + 1, nil
				}))
			}
		})
	}
	wg.Wait()
	v, _ := e.GetState("n")
	require.Equal(t, 160.0, v)
}

// TestCompactReusesPages keeps a bounded history with WithRetention while
// writing many changes and checks that the file stops growing: the pages
// Compact frees are reused.
func TestCompactReusesPages(t *testing.T) {
	db, path := openDB(t)
	e, err := qpool.OpenEntanglement(t.Context(), "r", nil, 0,
		qpool.WithLedger(ledger(t, db, "r")), qpool.WithRetention(20))
	require.NoError(t, err)
	defer e.Close()
	payload := strings.Repeat("x", 2048)
	write := func(n int) {
		for i := range n {
			require.NoError(t, e.UpdateState(fmt.Sprintf("k%d", i%10), payload))
		}
	}
	write(300)
	size1 := fileSize(t, path)
	write(600)
	size2 := fileSize(t, path)
	require.LessOrEqual(t, size2, size1, "the file grew from %d to %d bytes under retention", size1, size2)
	h := e.GetStateHistory(0)
	require.LessOrEqual(t, len(h), 25)
	require.GreaterOrEqual(t, len(h), 20)
	require.Equal(t, uint64(899), h[len(h)-1].Sequence)
}

// TestCloseWhileAppending closes the DB under 16 appending goroutines:
// each Append either succeeds, and its change is in the file, or fails
// with ErrClosed and is not; Close ends the committer (goleak checks).
func TestCloseWhileAppending(t *testing.T) {
	db, path := openDB(t)
	l := ledger(t, db, "c")
	var mu sync.Mutex
	acked := make(map[string]bool)
	var wg sync.WaitGroup
	started := make(chan struct{}, 16)
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("w%d-%d", w, i)
				_, err := l.Append(t.Context(), qpool.Mutation{Key: key, Value: true})
				if err != nil {
					assert.ErrorIs(t, err, qpool.ErrClosed)
					return
				}
				mu.Lock()
				acked[key] = true
				mu.Unlock()
				if i == 2 {
					started <- struct{}{}
				}
			}
		})
	}
	for range 16 {
		<-started
	}
	require.NoError(t, db.Close())
	wg.Wait()

	db2 := reopenDB(t, path)
	l2 := ledger(t, db2, "c")
	h, err := l2.Read(t.Context(), 0, 0)
	require.NoError(t, err)
	_, next := l2.Bounds()
	requireGapFree(t, h, 0, next)
	for key := range acked {
		_, _, ok := l2.Get(key)
		require.True(t, ok, "acknowledged %s is missing", key)
	}
	require.Len(t, h, len(acked), "a change is in the file whose Append failed")
	require.NoError(t, l2.Close())
}
