package ledgertest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/qpool/qpool"
)

// Factory returns a fresh, empty ledger. [Run] calls it once per check,
// from that check's subtest, so it may use t.TempDir and t.Cleanup.
type Factory func(t *testing.T) qpool.Ledger

// watchdog is how long one check may run before the suite gives up on it.
// It only turns a hang into a failure: a conforming ledger, even a remote
// one under -race, finishes every check far sooner.
const watchdog = 30 * time.Second

// check is one behaviour of the [qpool.Ledger] contract.
type check struct {
	name string
	run  func(ctx context.Context, l qpool.Ledger) error
	// closes means the check closes (or drops) the ledger itself, so the
	// runner must not close it again: Close is not promised idempotent.
	closes bool
	// reopen means the check needs a [Reopener] and is skipped without one.
	reopen bool
}

// checks lists every check in the order Run and Check run them.
var checks = []check{
	{name: "EmptyLedger", run: checkEmpty},
	{name: "GapFreeSequences", run: checkGapFree},
	{name: "AppendMatchesRead", run: checkAppendMatchesRead},
	{name: "TimestampsNonDecreasing", run: checkTimestamps},
	{name: "ReadFromSequence", run: checkReadFrom},
	{name: "ValuesRoundTrip", run: checkValues},
	{name: "GetValueAndRevision", run: checkGetRevision},
	{name: "GuardedAppend", run: checkGuarded},
	{name: "GuardedCreate", run: checkGuardedCreate},
	{name: "Deletion", run: checkDeletion},
	{name: "SnapshotIsReplay", run: checkSnapshot},
	{name: "ResultsBelongToCaller", run: checkOwnership},
	{name: "ChangedWakesOnAppend", run: checkChanged},
	{name: "ConcurrentAppenders", run: checkConcurrentAppenders},
	{name: "ConcurrentGuardedUpdates", run: checkConcurrentGuarded},
	{name: "Compact", run: checkCompact},
	{name: "CompactPastNext", run: checkCompactPastNext},
	{name: "ClosedLedger", run: checkClosed, closes: true},
	{name: "DroppedLedger", run: checkDropped, closes: true},
	{name: "ReopenKeepsHistory", run: checkReopen, closes: true, reopen: true},
	{name: "ReopenAfterDrop", run: checkReopenAfterDrop, closes: true, reopen: true},
	{name: "TypedKeysRoundTrip", run: checkTyped, closes: true},
	{name: "TypedKeysAfterReopen", run: checkTypedReopen, closes: true, reopen: true},
}

// Run checks the ledgers open makes against every documented semantic of
// [qpool.Ledger], each check in a subtest named by the behaviour it checks,
// with a fresh ledger from open that is closed in t.Cleanup. A watchdog
// fails a check that hangs instead of letting it block the test binary.
// Checks that need a [Reopener] are skipped when the ledger is not one.
// Run it with -race: some defects show only as data races.
func Run(t *testing.T, open Factory) {
	t.Helper()
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			l := open(t)
			if l == nil {
				t.Fatal("ledgertest: the Factory returned a nil qpool.Ledger")
			}
			if _, ok := l.(Reopener); c.reopen && !ok {
				closeOrReport(t, l)
				t.Skip("ledgertest: the ledger does not implement ledgertest.Reopener")
			}
			if !c.closes {
				t.Cleanup(func() { closeOrReport(t, l) })
			}
			hung, err := runWatched(t.Context(), c, l)
			if hung && c.closes {
				t.Cleanup(func() { _ = l.Close() }) // the abandoned check's only chance to end
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
}

// closeOrReport closes l at the end of a subtest, failing it on an error.
func closeOrReport(t *testing.T, l qpool.Ledger) {
	if err := l.Close(); err != nil {
		t.Errorf("ledgertest: Close: %v", err)
	}
}

// Check runs every check against ledgers from open, which must return a
// fresh, empty ledger on each call, and returns every problem it found
// joined with [errors.Join], each prefixed with the name of its check
// (the subtest names of [Run]); nil means the ledger conforms. Check closes
// every ledger it opens. Checks that need a [Reopener] are left out when
// the ledger is not one. Check stops early when ctx ends.
func Check(ctx context.Context, open func() (qpool.Ledger, error)) error {
	var errs []error
	for _, c := range checks {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, fmt.Errorf("ledgertest: stopped before %s: %w", c.name, err))...)
		}
		l, err := open()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: open: %w", c.name, err))
			continue
		}
		if l == nil {
			errs = append(errs, fmt.Errorf("%s: open returned a nil qpool.Ledger", c.name))
			continue
		}
		if _, ok := l.(Reopener); c.reopen && !ok {
			errs = append(errs, closeError(c.name, l.Close()))
			continue
		}
		hung, err := runWatched(ctx, c, l)
		errs = append(errs, err)
		if hung && c.closes {
			_ = l.Close() // the abandoned check's only chance to end
		}
		if !c.closes {
			errs = append(errs, closeError(c.name, l.Close()))
		}
	}
	return errors.Join(errs...)
}

func closeError(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: Close: %w", name, err)
}

// runWatched runs c on l and returns whether the watchdog gave up on it,
// and its problems prefixed with c's name.
// The check runs in its own goroutine so that the caller can give up on a
// hung ledger: a time.AfterFunc watchdog (as nettest uses) can fail a test
// but cannot unblock it, and t.FailNow must not be called off the test's
// goroutine. On a hang the goroutine is abandoned; the caller's Close of
// the ledger is its best chance to end.
func runWatched(ctx context.Context, c check, l qpool.Ledger) (hung bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1) // buffered: an abandoned check must not block on the send
	go func() { done <- c.run(ctx, l) }()
	timer := time.NewTimer(watchdog)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			return false, fmt.Errorf("%s: %w", c.name, err)
		}
		return false, nil
	case <-timer.C:
		cancel()
		return true, fmt.Errorf("%s: watchdog: still running after %v: a ledger call blocks (deadlock or lost wake-up)", c.name, watchdog)
	}
}
