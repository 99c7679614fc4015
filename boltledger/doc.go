// Package boltledger keeps entanglements on disk: a [qpool.Ledger] on a
// bbolt file, so that an entanglement's state and history survive a
// restart, a crash and kill -9, with nothing acknowledged lost.
//
// # Basics
//
// One file holds the ledgers of many entanglements. Open the file once per
// process, take one ledger per entanglement, and hand it to
// [qpool.OpenEntanglement], which resumes its state, history, sequences
// and TTL deadline:
//
//	db, err := boltledger.Open("state.db")
//	if err != nil { ... }
//	defer db.Close()
//	l, err := db.Ledger("pipeline")
//	if err != nil { ... }
//	e, err := qpool.OpenEntanglement(ctx, "pipeline", jobs, time.Hour, qpool.WithLedger(l))
//	if err != nil { ... }
//	defer e.Close() // closes l; the data stays in the file
//
// # Durability
//
// Append (and so UpdateState, DeleteState and Update) returns only after
// the transaction holding its change has been fsync'd. Concurrent changes,
// of one entanglement or of many in the file, share a transaction and its
// fsync: one committer goroutine per [DB] takes every change waiting and
// commits them together (group commit), so throughput grows with the
// number of writers. A failed commit fails every change in it, and the
// cached state stays equal to the file. A guarded change (Update's
// read-modify-write) checks its revision inside the transaction. Appending
// a change to the history and applying it to the state are one
// transaction. NoSync is never set.
//
// # Values
//
// Values are encoded by a [qpool.Codec], JSON unless [WithCodec] says
// otherwise. GetState, GetStateHistory and Snapshot return what the codec
// decodes into an any, not the Go value stored: with JSON, numbers come
// back as float64, structs as map[string]any. [qpool.GetStateAs] decodes
// into the caller's type. A value the codec cannot encode fails with
// [ErrEncode] and records nothing.
//
// # Memory
//
// The current state is cached in memory, decoded; maps and slices are kept
// encoded and decoded afresh for each caller, so what a caller gets is its
// own. The history stays in the file: Read streams it in batches of 1024
// changes per read transaction. [qpool.WithRetention] compacts the history;
// bbolt reuses the freed pages.
//
// # Goroutines
//
// [Open] starts the committer; [DB.Close] commits what was submitted, ends
// it and closes the file. Nothing else runs in the background.
//
// # Caveats
//
// One process at a time may open a file for writing: a second one fails
// with [ErrLocked] after the lock timeout. A damaged file fails [Open] with
// [ErrCorrupt], and a failed Open releases the file. Durability across a power loss
// depends on the disk honouring fsync. Errors wrap the root package's
// sentinels where they apply ([qpool.ErrClosed], [qpool.ErrConflict],
// [qpool.ErrInvalidKey]) and this package's otherwise.
package boltledger
