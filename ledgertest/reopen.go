package ledgertest

import (
	"context"
	"errors"

	"github.com/qpool/qpool"
)

// Reopener is the optional capability of a durable ledger: opening its
// store again after Close. [Run] and [Check] probe each ledger from the
// factory for it, as fstest probes for optional interfaces, and run the
// durability checks (ReopenKeepsHistory, ReopenAfterDrop) only when it is
// present. A backend's test usually provides it with a small wrapper that
// embeds its ledger and remembers where the store is; see the package doc.
type Reopener interface {
	// Reopen opens a new ledger on the receiver's store, after the
	// receiver was closed or dropped. After Close the new ledger has the
	// same state, history, revisions and bounds; after Drop it is empty.
	// The suite closes the ledger it returns.
	Reopen() (qpool.Ledger, error)
}

// reopen opens l's store again, recording a problem on error.
func reopen(p *problems, l qpool.Ledger) qpool.Ledger {
	l2, err := l.(Reopener).Reopen()
	switch {
	case err != nil:
		p.addf("Reopen: %v", err)
		return nil
	case l2 == nil:
		p.addf("Reopen returned a nil qpool.Ledger")
		return nil
	}
	return l2
}

// durableKeys are the keys checkReopen writes.
var durableKeys = []string{"a", "b", "c", "nil", "nested"}

// checkReopen checks that Close keeps everything for a later open: the
// state, the history with its timestamps, compaction, Bounds and the
// revisions guards name; and that sequences continue after reopening.
func checkReopen(ctx context.Context, l qpool.Ledger) (err error) {
	var p problems
	ms := []qpool.Mutation{
		set("a", 1.0), set("b", "two"), set("c", true), set("a", 4.0), del("b"),
		set("nil", nil), set("nested", map[string]any{"l": []any{1.0, "x", nil}}),
	}
	acks, ok := appendAll(ctx, &p, l, ms)
	compactTo(ctx, &p, l, 2)
	history, _ := readAll(ctx, &p, l)
	state, next := l.Snapshot()
	revs := make(map[string]uint64, len(durableKeys))
	for _, k := range durableKeys {
		revs[k] = revision(l, k)
	}
	if err := l.Close(); err != nil {
		p.addf("Close: %v", err)
	}
	if !ok || p.failed() {
		return p.err()
	}
	l2 := reopen(&p, l)
	if l2 == nil {
		return p.err()
	}
	defer func() { err = errors.Join(err, closeError("the reopened ledger", l2.Close())) }()
	checkBounds(&p, "after Close and Reopen", l2, 2, uint64(len(ms)))
	if got, ok := readAll(ctx, &p, l2); ok {
		compareChanges(&p, "Read(0, 0) after Reopen compared with before Close", got, history)
	}
	got, gotNext := l2.Snapshot()
	compareState(&p, "Snapshot's state after Reopen", got, state)
	if gotNext != next {
		p.addf("Snapshot's next after Reopen is %d, want %d", gotNext, next)
	}
	for _, k := range durableKeys {
		v, present := state[k]
		checkGet(&p, "after Reopen", l2, k, v, present)
		if r := revision(l2, k); r != revs[k] {
			p.addf("after Reopen, Get(%q) reports revision %d, want %d as before Close", k, r, revs[k])
		}
	}
	c, appendErr := l2.Append(ctx, qpool.Mutation{Key: "a", Value: 5.0, Guarded: true, Revision: revs["a"]})
	if appendErr != nil {
		p.addf("Append after Reopen guarded by the revision from before Close: %v", appendErr)
		return p.err()
	}
	if c.Sequence != next {
		p.addf("Append after Reopen returned sequence %d, want %d", c.Sequence, next)
	}
	if last := acks[len(acks)-1]; c.Timestamp.Before(last.Timestamp) {
		p.addf("Append after Reopen has Timestamp %s, before the last change's %s", c.Timestamp, last.Timestamp)
	}
	return p.err()
}

// checkReopenAfterDrop checks that Drop deletes the store: reopening it
// gives an empty ledger whose sequences start again at 0.
func checkReopenAfterDrop(ctx context.Context, l qpool.Ledger) (err error) {
	var p problems
	_, ok := appendAll(ctx, &p, l, mixed(10, 3))
	if err := l.Drop(ctx); err != nil {
		p.addf("Drop: %v", err)
	}
	if !ok || p.failed() {
		return p.err()
	}
	l2 := reopen(&p, l)
	if l2 == nil {
		return p.err()
	}
	defer func() { err = errors.Join(err, closeError("the reopened ledger", l2.Close())) }()
	if err := checkEmpty(ctx, l2); err != nil {
		p.addf("after Drop and Reopen: %w", err)
	}
	c, appendErr := l2.Append(ctx, set("fresh", true))
	switch {
	case appendErr != nil:
		p.addf("Append after Drop and Reopen: %v", appendErr)
	case c.Sequence != 0:
		p.addf("Append after Drop and Reopen returned sequence %d, want 0", c.Sequence)
	}
	return p.err()
}
