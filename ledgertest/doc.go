// Package ledgertest is the conformance suite every [qpool.Ledger] runs: it
// checks an implementation against exactly the semantics documented on
// [qpool.Ledger], [qpool.Mutation] and [qpool.StateChange], in the manner
// of testing/fstest.TestFS and golang.org/x/net/nettest.TestConn. The
// in-memory [qpool.MemoryLedger] is the reference and passes it.
//
// # Basics
//
// A backend's test hands [Run] a [Factory] that returns a fresh, empty
// ledger:
//
//	func TestConformance(t *testing.T) {
//		ledgertest.Run(t, func(t *testing.T) qpool.Ledger { return qpool.NewMemoryLedger() })
//	}
//
// Run runs each check in a subtest named by the behaviour it checks
// (GapFreeSequences, GuardedAppend, ResultsBelongToCaller,
// ConcurrentAppenders, Compact, ClosedLedger, …), with a fresh ledger that
// it closes in t.Cleanup, and a watchdog that fails a check still running
// after 30 seconds instead of hanging the test binary. Run the suite with
// -race: the concurrent checks find some defects only as data races.
//
// [Check] runs the same checks outside a test and returns every problem
// joined with [errors.Join], each prefixed with its check's name, or nil
// when the ledger conforms. [Replay] is the state a history defines, for a
// backend's own tests (after a crash, say).
//
// # Durability
//
// A durable ledger also proves that Close keeps its data and Drop deletes
// it. The suite probes each ledger from the factory for the optional
// [Reopener] interface and runs ReopenKeepsHistory and ReopenAfterDrop
// only when it is present (Run skips them otherwise). A backend's test
// provides it with a wrapper that remembers where the store is. The bbolt
// ledger's test (boltledger/conformance_test.go) does it this way: a
// ledger that owns its file, closes it on Close, and opens it again on
// Reopen, as a restarted process would:
//
//	type owned struct {
//		*boltledger.Ledger
//		db   *boltledger.DB
//		path string
//	}
//
//	func (o owned) Close() error { return errors.Join(o.Ledger.Close(), o.db.Close()) }
//
//	func (o owned) Reopen() (qpool.Ledger, error) { return openOwned(o.path) }
//
//	func openOwned(path string) (qpool.Ledger, error) {
//		db, err := boltledger.Open(path)
//		if err != nil {
//			return nil, err
//		}
//		l, err := db.Ledger("conformance")
//		if err != nil {
//			return nil, errors.Join(err, db.Close())
//		}
//		return owned{l, db, path}, nil
//	}
//
//	func TestConformance(t *testing.T) {
//		ledgertest.Run(t, func(t *testing.T) qpool.Ledger {
//			l, err := openOwned(filepath.Join(t.TempDir(), "ledger.db"))
//			require.NoError(t, err)
//			return l
//		})
//	}
//
// # Values
//
// The checks of the bare ledger store only values whose JSON round trip is
// the identity — string, bool, float64, nil, and map[string]any and []any
// of those — and compare them with [reflect.DeepEqual], so that ledgers
// which encode values as JSON pass. Timestamps are compared with [time.Time.Equal]: a
// ledger may drop the monotonic clock reading and the location, but must
// return the instant it recorded, from Append and from Read alike.
//
// # Typed keys
//
// TypedKeysRoundTrip and TypedKeysAfterReopen check what a program sees
// through a [qpool.Key], which must not depend on the ledger: an int, an
// int64, a float64, a string, a bool, a struct with nested fields, a
// []string, a map[string]int and a time.Time come back with their type and
// value (times compared with [time.Time.Equal]); three Updates adding 100
// to a counter make 300; Watch yields the counter's values as ints; and a
// value that does not convert is an error matching [qpool.ErrType], with
// Update not calling its function. TypedKeysAfterReopen, run only on a
// [Reopener], reads everything back from the reopened store, and three
// more Updates make the counter 600.
//
// These checks go through an entanglement over the ledger, named by the
// ledger's ID method when it has one, and close it, which closes the
// ledger. A ledger that encodes values must implement [qpool.CodecLedger],
// so that the keys convert its generic values with its codec, and the
// codec must round-trip those Go values (JSON does; the checks store no
// integer beyond 2^53, which JSON's float64 cannot hold). A ledger that
// refuses more than 100 guarded appends in one of these checks, where
// nothing else appends, fails it rather than keeping
// [qpool.Entanglement.Update] retrying.
//
// # Caveats
//
// The suite checks only what the documentation promises. It reads two
// promises strictly, because entanglements rely on them: Compact(before)
// forgets exactly the history below before, so that Bounds' first becomes
// before (or next, when before is past it) and retention keeps what it
// asks for; and a revision identifies a change, so that setting a key to
// the value it already has still moves its revision. A channel from
// Changed may close after Append returns, as a remote ledger's watcher
// would close it, but within 10 seconds. Where the documentation leaves a
// choice to the ledger the suite does not test it: the
// value of the revision of an absent key, whether Read, Get, Snapshot,
// Compact or a second Close work after Close, and whether stored values
// are copied. Passing it shows the absence of the defects it looks for, not
// correctness: like nettest, it can miss races that a particular schedule
// does not expose.
//
// A check that hangs is abandoned by the watchdog, with its goroutine still
// blocked in the ledger; closing the ledger is its only chance to end, so
// a goroutine leak detector may report it as well.
package ledgertest
