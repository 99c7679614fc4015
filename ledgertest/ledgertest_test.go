package ledgertest_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/ledgertest"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var _ qpool.Ledger = (*jsonLedger)(nil)

// TestRunMemoryLedger runs the suite on the reference ledger.
func TestRunMemoryLedger(t *testing.T) {
	ledgertest.Run(t, func(*testing.T) qpool.Ledger { return qpool.NewMemoryLedger() })
}

// TestCheckMemoryLedger checks that Check finds nothing wrong with the
// reference ledger.
func TestCheckMemoryLedger(t *testing.T) {
	err := ledgertest.Check(t.Context(), func() (qpool.Ledger, error) { return qpool.NewMemoryLedger(), nil })
	require.NoError(t, err)
}

// TestRunJSONLedger runs the suite, durability checks included, on a ledger
// that stores values as JSON, as the bbolt and NATS ledgers do.
func TestRunJSONLedger(t *testing.T) {
	ledgertest.Run(t, func(t *testing.T) qpool.Ledger {
		l, err := openJSON(&store{}, false, false)
		require.NoError(t, err)
		return l
	})
}

// TestCheckJSONLedger checks that Check runs the durability checks and
// finds nothing wrong with a conforming durable ledger.
func TestCheckJSONLedger(t *testing.T) {
	err := ledgertest.Check(t.Context(), func() (qpool.Ledger, error) { return openJSON(&store{}, false, false) })
	require.NoError(t, err)
}

// TestCheckFailsBrokenLedgers proves that the suite can fail: each ledger
// breaks one promise, and Check must report the checks that cover it. The
// runs are inside synctest bubbles, so the waits for channels that never
// close and the watchdog take no real time.
func TestCheckFailsBrokenLedgers(t *testing.T) {
	mem := func() *qpool.MemoryLedger { return qpool.NewMemoryLedger() }
	tests := []struct {
		name  string
		open  func() qpool.Ledger
		fails []string // checks that must report a problem
	}{
		{"DropsEveryFifthChange", func() qpool.Ledger { return dropsFifth{mem()} },
			[]string{"GapFreeSequences", "AppendMatchesRead", "ReadFromSequence", "ValuesRoundTrip", "SnapshotIsReplay", "ConcurrentAppenders", "Compact", "TypedKeysRoundTrip"}},
		{"ReordersChanges", func() qpool.Ledger { return reorders{mem()} },
			[]string{"GapFreeSequences", "AppendMatchesRead", "ReadFromSequence", "Deletion", "ConcurrentAppenders", "TypedKeysRoundTrip"}},
		{"DuplicatesSequences", func() qpool.Ledger { return duplicates{mem()} },
			[]string{"GapFreeSequences", "AppendMatchesRead", "ConcurrentAppenders"}},
		{"AliasesReadSlice", func() qpool.Ledger { return &aliasesRead{MemoryLedger: mem()} },
			[]string{"ResultsBelongToCaller"}},
		{"AliasesSnapshotMap", func() qpool.Ledger { return &aliasesSnapshot{MemoryLedger: mem()} },
			[]string{"ResultsBelongToCaller"}},
		{"IgnoresGuard", func() qpool.Ledger { return ignoresGuard{mem()} },
			[]string{"GuardedAppend", "GuardedCreate"}},
		{"WrongConflictError", func() qpool.Ledger { return wrongConflictError{mem()} },
			[]string{"GuardedAppend", "GuardedCreate"}},
		{"RecordsRefusedChange", func() qpool.Ledger { return recordsRefused{mem()} },
			[]string{"GuardedAppend", "GuardedCreate"}},
		{"BoundsOffByOne", func() qpool.Ledger { return nextOffByOne{mem()} },
			[]string{"EmptyLedger", "GapFreeSequences", "SnapshotIsReplay", "Compact"}},
		{"StaleGet", func() qpool.Ledger { return &staleGet{MemoryLedger: mem()} },
			[]string{"GetValueAndRevision", "GuardedAppend", "ConcurrentGuardedUpdates", "TypedKeysRoundTrip"}},
		{"ChangedNeverCloses", func() qpool.Ledger { return neverChanged{mem()} },
			[]string{"ChangedWakesOnAppend", "ClosedLedger", "DroppedLedger"}},
		{"WrongClosedError", func() qpool.Ledger { return &wrongClosedError{MemoryLedger: mem()} },
			[]string{"ClosedLedger", "DroppedLedger"}},
		{"CompactHidesLaterChanges", func() qpool.Ledger { return &compactsPastNext{MemoryLedger: mem()} },
			[]string{"CompactPastNext"}},
		{"LosesTimestamps", func() qpool.Ledger { return zeroTimestamps{mem()} },
			[]string{"AppendMatchesRead", "TimestampsNonDecreasing"}},
		{"AppendHangs", func() qpool.Ledger { return &hangsAppend{MemoryLedger: mem(), done: make(chan struct{})} },
			[]string{"GapFreeSequences", "ConcurrentAppenders", "ConcurrentGuardedUpdates", "ClosedLedger", "TypedKeysRoundTrip"}},
		{"ForgetsOnClose", func() qpool.Ledger { l, _ := openJSON(&store{}, true, false); return l },
			[]string{"ReopenKeepsHistory", "TypedKeysAfterReopen"}},
		{"LosesNumberPrecision", func() qpool.Ledger { return float32Numbers{mem()} },
			[]string{"TypedKeysRoundTrip"}},
		{"KeepsDataOnDrop", func() qpool.Ledger { l, _ := openJSON(&store{}, false, true); return l },
			[]string{"ReopenAfterDrop"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				err := ledgertest.Check(context.Background(), func() (qpool.Ledger, error) { return tt.open(), nil })
				require.Error(t, err)
				t.Log(err)
				for _, name := range tt.fails {
					require.ErrorContains(t, err, name+": ")
				}
			})
		})
	}
}

// closeCounting is a memory ledger that counts the calls that close it:
// Close, and Drop, which "deletes the state and history and closes the
// ledger".
type closeCounting struct {
	*qpool.MemoryLedger
	closes *atomic.Int64
}

func (l closeCounting) Close() error {
	l.closes.Add(1)
	return l.MemoryLedger.Close()
}

func (l closeCounting) Drop(ctx context.Context) error {
	l.closes.Add(1)
	return l.MemoryLedger.Drop(ctx)
}

// TestCheckClosesEveryLedger: "Check closes every ledger it opens", also
// when its context ends part way.
func TestCheckClosesEveryLedger(t *testing.T) {
	for _, stopEarly := range []bool{false, true} {
		var opens, closes atomic.Int64
		ctx, cancel := context.WithCancel(t.Context())
		err := ledgertest.Check(ctx, func() (qpool.Ledger, error) {
			if opens.Add(1) == 5 && stopEarly {
				cancel()
			}
			return closeCounting{qpool.NewMemoryLedger(), &closes}, nil
		})
		cancel()
		if stopEarly {
			require.Error(t, err)
		} else {
			require.NoError(t, err)
		}
		require.Positive(t, opens.Load())
		require.Equal(t, opens.Load(), closes.Load(), "ledgers opened and closed (stopped early: %v)", stopEarly)
	}
}
