package qpool

import (
	"context"
	"time"
)

// StateChange is one record of an entanglement's ledger: the change of one
// key. The zero value is a valid, empty record.
type StateChange struct {
	// Sequence numbers the changes of one entanglement 0, 1, 2, … with no
	// gaps, in the order they were applied.
	Sequence uint64
	// Timestamp is when the ledger recorded the change. Timestamps do not
	// decrease with Sequence.
	Timestamp time.Time
	// Key is the state key that changed.
	Key string
	// Value is the key's new value; nil for a deletion.
	Value any
	// Deleted reports that the change removed Key.
	Deleted bool
}

// Mutation is one change an [Entanglement] asks its [Ledger] to record.
type Mutation struct {
	// Key is the state key to change; never empty.
	Key string
	// Value is the key's new value, ignored when Delete is set.
	Value any
	// Delete removes Key instead of setting it.
	Delete bool
	// Guarded makes Append fail with [ErrConflict], recording nothing,
	// unless Key's current revision (from [Ledger.Get]) equals Revision.
	// [Entanglement.Update] uses it for optimistic read-modify-write.
	Guarded  bool
	Revision uint64
}

// Ledger is where an entanglement's state and its history of changes live:
// the seam between [Entanglement] and its storage. [NewMemoryLedger] is the
// default; durable and distributed ledgers plug in through
// [WithLedger]. The package ledgertest checks any implementation against
// the semantics below.
//
// A ledger owns both the current state and the sequenced history, so that
// recording a change and applying it are one atomic step. It assigns the
// sequences itself. All methods must be safe for concurrent use, and none
// may call back into the entanglement.
type Ledger interface {
	// Append records m: it checks m's guard, assigns the next sequence,
	// appends the change to the history and applies it to the state, all
	// or nothing. It returns the change as recorded (Value as Get would
	// return it). After Close or Drop it returns an error wrapping
	// [ErrClosed].
	//
	// On error nothing is recorded, with one exception: a ledger on a
	// remote store may lose the store's answer (a lost acknowledgement)
	// and so not know whether the change was recorded. Its error must
	// then say that the outcome is unknown, and should let the caller
	// retry without recording the change twice. If the change was
	// recorded, it appears in Get, Read, Bounds and Changed like a change
	// another process made.
	Append(ctx context.Context, m Mutation) (StateChange, error)

	// Get returns key's current value. revision identifies the change that
	// set it, for a guarded Mutation; an absent key has the revision a
	// guard must name to create it (0 for the in-memory ledger).
	Get(key string) (value any, revision uint64, ok bool)

	// Snapshot returns a copy of the whole state that the caller owns, and
	// the sequence the next change will get: the state is exactly the
	// replay of every change below next.
	Snapshot() (state map[string]any, next uint64)

	// Read returns up to limit changes (all, if limit ≤ 0) with sequence
	// at least since, oldest first, in a slice the caller owns. Changes
	// removed by Compact are skipped: the first one returned may then have
	// a sequence above since. An error means the history could not be
	// read (a remote store is unreachable), never that it is empty.
	Read(ctx context.Context, since uint64, limit int) ([]StateChange, error)

	// Bounds returns the oldest sequence Read can still return and the
	// sequence the next change will get; first == next when no change is
	// retained.
	Bounds() (first, next uint64)

	// Changed returns a channel that is closed when a change is recorded
	// after the call, or when the ledger is closed. Callers take the
	// channel before they read, so that no change slips between the two.
	Changed() <-chan struct{}

	// Compact forgets the history below sequence before, and only that:
	// afterwards Bounds' first is before, or next when before is past it.
	// The state and the next sequence are untouched.
	Compact(ctx context.Context, before uint64) error

	// Drop deletes the state and history from the store and closes the
	// ledger: the end of an entanglement whose TTL ran out.
	Drop(ctx context.Context) error

	// Close releases the ledger's resources. A durable ledger keeps its
	// data for a later open; the in-memory ledger releases it.
	Close() error
}

// SharedLedger is implemented by ledgers that other processes append to as
// well (natsledger): changes then appear that no local update made. An
// entanglement on a ledger whose Shared reports true runs a follower
// goroutine that delivers those changes to its callbacks, in sequence
// order, along with its own; and its reaper counts the TTL from the last
// change any process made.
type SharedLedger interface {
	Ledger
	// Shared reports whether other processes may append to the ledger.
	Shared() bool
}
