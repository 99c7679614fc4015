package ledgertest

import (
	"context"

	"github.com/qpool/qpool"
)

// compactN and compactAt cross the reference ledger's 1024-change block, so
// that Compact frees a block.
const (
	compactN  = 1100
	compactAt = 1030
)

// checkCompact checks that Compact forgets exactly the history below its
// argument, never brings it back, leaves the state alone, and that
// sequences continue after it.
func checkCompact(ctx context.Context, l qpool.Ledger) error {
	var p problems
	acks, ok := appendAll(ctx, &p, l, mixed(compactN, 9))
	if !ok {
		return p.err()
	}
	state, _ := l.Snapshot()
	compactTo(ctx, &p, l, 0)
	checkBounds(&p, "after Compact(0)", l, 0, compactN)
	compactTo(ctx, &p, l, compactAt)
	checkBounds(&p, "after Compact(1030)", l, compactAt, compactN)
	compactTo(ctx, &p, l, 10)
	checkBounds(&p, "after Compact(10) following Compact(1030)", l, compactAt, compactN)
	for _, since := range []uint64{0, 10, compactAt - 1, compactAt} {
		if got, ok := read(ctx, &p, l, since, 0); ok {
			compareChanges(&p, readName(since, 0)+" after Compact(1030)", got, acks[compactAt:])
		}
	}
	if got, ok := read(ctx, &p, l, 1050, 5); ok {
		compareChanges(&p, "Read(1050, 5) after Compact(1030)", got, acks[1050:1055])
	}
	after, next := l.Snapshot()
	compareState(&p, "Snapshot's state after Compact", after, state)
	if next != compactN {
		p.addf("Snapshot's next after Compact is %d, want %d", next, compactN)
	}
	c, err := l.Append(ctx, set("later", true))
	if err != nil {
		p.addf("Append after Compact: %v", err)
		return p.err()
	}
	if c.Sequence != compactN {
		p.addf("Append after Compact returned sequence %d, want %d", c.Sequence, compactN)
	}
	if got, ok := readAll(ctx, &p, l); ok {
		compareChanges(&p, "Read(0, 0) after Compact and Append", got, append(acks[compactAt:compactN:compactN], c))
	}
	return p.err()
}

// checkCompactPastNext checks that compacting beyond the next sequence
// forgets the whole history, keeps the state, and does not move the next
// sequence or hide the changes appended after it.
func checkCompactPastNext(ctx context.Context, l qpool.Ledger) error {
	var p problems
	if _, ok := appendAll(ctx, &p, l, mixed(10, 3)); !ok {
		return p.err()
	}
	state, _ := l.Snapshot()
	compactTo(ctx, &p, l, 50)
	checkBounds(&p, "after Compact(50) with next 10", l, 10, 10)
	if got, ok := readAll(ctx, &p, l); ok && len(got) != 0 {
		p.addf("Read(0, 0) after compacting everything returned %d changes, want none", len(got))
	}
	after, next := l.Snapshot()
	compareState(&p, "Snapshot's state after Compact(50)", after, state)
	if next != 10 {
		p.addf("Snapshot's next after Compact(50) is %d, want 10", next)
	}
	c, err := l.Append(ctx, set("later", "x"))
	if err != nil {
		p.addf("Append after Compact(50): %v", err)
		return p.err()
	}
	if c.Sequence != 10 {
		p.addf("Append after Compact(50) returned sequence %d, want 10", c.Sequence)
	}
	checkBounds(&p, "after Compact(50) and one Append", l, 10, 11)
	if got, ok := readAll(ctx, &p, l); ok {
		compareChanges(&p, "Read(0, 0) after Compact(50) and one Append", got, []qpool.StateChange{c})
	}
	return p.err()
}

// compactTo calls Compact, recording a problem on error.
func compactTo(ctx context.Context, p *problems, l qpool.Ledger, before uint64) {
	if err := l.Compact(ctx, before); err != nil {
		p.addf("Compact(%d): %v", before, err)
	}
}
