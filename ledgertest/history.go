package ledgertest

import (
	"context"

	"github.com/qpool/qpool"
)

// checkEmpty checks a fresh ledger: no changes, no state, next sequence 0.
func checkEmpty(ctx context.Context, l qpool.Ledger) error {
	var p problems
	checkBounds(&p, "fresh ledger", l, 0, 0)
	if got, ok := readAll(ctx, &p, l); ok && len(got) != 0 {
		p.addf("fresh ledger: Read(0, 0) returned %d changes, want none", len(got))
	}
	checkGet(&p, "fresh ledger", l, "absent", nil, false)
	state, next := l.Snapshot()
	if len(state) != 0 || next != 0 {
		p.addf("fresh ledger: Snapshot() = (%#v, %d), want an empty state and 0", state, next)
	}
	return p.err()
}

// gapFreeN crosses the reference ledger's 1024-change block boundary.
const gapFreeN = 1030

// checkGapFree checks that Append numbers changes 0, 1, 2, … and that Read
// and Bounds agree with it.
func checkGapFree(ctx context.Context, l qpool.Ledger) error {
	var p problems
	ms := mixed(gapFreeN, 7)
	acks, ok := appendAll(ctx, &p, l, ms)
	for i, c := range acks {
		if c.Sequence != uint64(i) {
			p.addf("Append #%d returned sequence %d, want %d", i, c.Sequence, i)
		}
	}
	if !ok {
		return p.err()
	}
	checkBounds(&p, "after appends", l, 0, gapFreeN)
	got, ok := readAll(ctx, &p, l)
	if !ok {
		return p.err()
	}
	if len(got) != gapFreeN {
		p.addf("Read(0, 0) returned %d changes, want %d", len(got), gapFreeN)
	}
	for i, c := range got {
		if c.Sequence != uint64(i) {
			p.addf("Read(0, 0): change %d has sequence %d, want %d", i, c.Sequence, i)
		}
	}
	return p.err()
}

// checkAppendMatchesRead checks that Append returns the change as recorded:
// the one Read returns, with Value nil for a deletion.
func checkAppendMatchesRead(ctx context.Context, l qpool.Ledger) error {
	var p problems
	ms := mixed(40, 4)
	acks, ok := appendAll(ctx, &p, l, ms)
	checkAcks(&p, 0, ms, acks)
	if !ok {
		return p.err()
	}
	if got, ok := readAll(ctx, &p, l); ok {
		compareChanges(&p, "Read(0, 0) compared with Append's results", got, acks)
	}
	return p.err()
}

// checkTimestamps checks that timestamps are set and do not decrease with
// the sequence.
func checkTimestamps(ctx context.Context, l qpool.Ledger) error {
	var p problems
	acks, ok := appendAll(ctx, &p, l, mixed(50, 3))
	nonDecreasing(&p, "Append's results", acks)
	if !ok {
		return p.err()
	}
	if got, ok := readAll(ctx, &p, l); ok {
		nonDecreasing(&p, "Read(0, 0)", got)
	}
	return p.err()
}

func nonDecreasing(p *problems, what string, cs []qpool.StateChange) {
	for i, c := range cs {
		if c.Timestamp.IsZero() {
			p.addf("%s: change %d has a zero Timestamp", what, c.Sequence)
		}
		if i > 0 && c.Timestamp.Before(cs[i-1].Timestamp) {
			p.addf("%s: change %d has Timestamp %s, before change %d's %s",
				what, c.Sequence, c.Timestamp, cs[i-1].Sequence, cs[i-1].Timestamp)
		}
	}
}

// checkReadFrom checks Read from a sequence, past the end and with a limit.
func checkReadFrom(ctx context.Context, l qpool.Ledger) error {
	var p problems
	const n = 20
	acks, ok := appendAll(ctx, &p, l, mixed(n, 5))
	if !ok {
		return p.err()
	}
	cases := []struct {
		since    uint64
		limit    int
		from, to int // want acks[from:to]
	}{
		{since: 0, limit: 0, from: 0, to: n},
		{since: 0, limit: -1, from: 0, to: n},
		{since: 0, limit: 1, from: 0, to: 1},
		{since: 5, limit: 0, from: 5, to: n},
		{since: 5, limit: 3, from: 5, to: 8},
		{since: 18, limit: 10, from: 18, to: n},
		{since: n - 1, limit: 0, from: n - 1, to: n},
		{since: n, limit: 0, from: n, to: n},
		{since: n + 100, limit: 5, from: n, to: n},
	}
	for _, tc := range cases {
		got, ok := read(ctx, &p, l, tc.since, tc.limit)
		if ok {
			compareChanges(&p, readName(tc.since, tc.limit), got, acks[tc.from:tc.to])
		}
	}
	return p.err()
}
