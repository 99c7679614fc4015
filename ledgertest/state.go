package ledgertest

import (
	"context"
	"errors"
	"fmt"

	"github.com/qpool/qpool"
)

// jsonValues are values of every kind whose JSON round trip is the
// identity, so a ledger that stores JSON returns them unchanged.
func jsonValues() []any {
	return []any{
		"", "héllo, 世界 ✓ <&>", true, false, 0.0, 42.0, -1.5, 1e300, nil,
		map[string]any{}, []any{},
		map[string]any{"n": 1.0, "s": "x", "b": false, "z": nil,
			"list": []any{1.0, "two", map[string]any{"deep": []any{true, nil}}}},
		[]any{nil, "a", []any{2.5}, map[string]any{"k": "v"}},
	}
}

// checkValues checks that every JSON-safe kind of value comes back
// unchanged from Append, Get, Read and Snapshot.
func checkValues(ctx context.Context, l qpool.Ledger) error {
	var p problems
	values := jsonValues()
	ms := make([]qpool.Mutation, len(values))
	want := make(map[string]any, len(values))
	for i, v := range values {
		ms[i] = set(fmt.Sprintf("value-%d", i), v)
		want[ms[i].Key] = v
	}
	acks, ok := appendAll(ctx, &p, l, ms)
	checkAcks(&p, 0, ms, acks)
	if !ok {
		return p.err()
	}
	for _, m := range ms {
		checkGet(&p, "after setting", l, m.Key, m.Value, true)
	}
	if got, ok := readAll(ctx, &p, l); ok {
		compareChanges(&p, "Read(0, 0)", got, acks)
	}
	state, _ := l.Snapshot()
	compareState(&p, "Snapshot's state", state, want)
	return p.err()
}

// revision returns key's revision as Get reports it.
func revision(l qpool.Ledger, key string) uint64 {
	_, rev, _ := l.Get(key)
	return rev
}

// checkGetRevision checks Get's value and that its revision identifies the change
// that set the value: it changes with every change of the key, and only
// then.
func checkGetRevision(ctx context.Context, l qpool.Ledger) error {
	var p problems
	steps := []qpool.Mutation{set("a", 1.0), set("b", "other"), set("a", 2.0), set("a", 2.0)}
	revs := make([]uint64, len(steps))
	for i, m := range steps {
		if _, err := l.Append(ctx, m); err != nil {
			p.addf("Append(%+v): %v", m, err)
			return p.err()
		}
		checkGet(&p, fmt.Sprintf("after step %d", i), l, m.Key, m.Value, true)
		revs[i] = revision(l, "a")
	}
	if revs[1] != revs[0] {
		p.addf("changing key b changed key a's revision from %d to %d", revs[0], revs[1])
	}
	if revs[2] == revs[1] {
		p.addf("setting a again left its revision at %d", revs[1])
	}
	if revs[3] == revs[2] {
		p.addf("setting a again to the same value left its revision at %d: a revision identifies a change, not a value", revs[2])
	}
	return p.err()
}

// conflict appends m, which must fail with ErrConflict and record nothing.
func conflict(ctx context.Context, p *problems, l qpool.Ledger, m qpool.Mutation) {
	first, next := l.Bounds()
	state, _ := l.Snapshot()
	c, err := l.Append(ctx, m)
	switch {
	case err == nil:
		p.addf("Append(%+v) with a stale revision succeeded as %s; want an error wrapping qpool.ErrConflict", m, describe(c))
	case !errors.Is(err, qpool.ErrConflict):
		p.addf("Append(%+v) with a stale revision returned %q, which does not wrap qpool.ErrConflict", m, err)
	}
	checkBounds(p, fmt.Sprintf("after the refused Append(%+v)", m), l, first, next)
	after, _ := l.Snapshot()
	compareState(p, fmt.Sprintf("Snapshot after the refused Append(%+v)", m), after, state)
}

// checkGuarded checks that a guard naming the current revision lets the
// change through, and a stale one fails with ErrConflict, recording nothing.
func checkGuarded(ctx context.Context, l qpool.Ledger) error {
	var p problems
	if _, err := l.Append(ctx, set("a", "v1")); err != nil {
		p.addf("Append: %v", err)
		return p.err()
	}
	r1 := revision(l, "a")
	c, err := l.Append(ctx, qpool.Mutation{Key: "a", Value: "v2", Guarded: true, Revision: r1})
	if err != nil {
		p.addf("Append guarded by the current revision %d: %v", r1, err)
		return p.err()
	}
	if c.Sequence != 1 || c.Value != "v2" {
		p.addf("Append guarded by the current revision returned %s, want sequence 1 and value \"v2\"", describe(c))
	}
	checkGet(&p, "after the guarded Append", l, "a", "v2", true)
	r2 := revision(l, "a")
	conflict(ctx, &p, l, qpool.Mutation{Key: "a", Value: "stale", Guarded: true, Revision: r1})
	conflict(ctx, &p, l, qpool.Mutation{Key: "a", Delete: true, Guarded: true, Revision: r1})
	checkGet(&p, "after the refused Appends", l, "a", "v2", true)
	if r := revision(l, "a"); r != r2 {
		p.addf("refused Appends changed a's revision from %d to %d", r2, r)
	}
	if _, err := l.Append(ctx, qpool.Mutation{Key: "a", Delete: true, Guarded: true, Revision: r2}); err != nil {
		p.addf("deletion guarded by the current revision %d: %v", r2, err)
	}
	checkGet(&p, "after the guarded deletion", l, "a", nil, false)
	return p.err()
}

// checkGuardedCreate checks that a guard naming the revision Get reports
// for an absent key creates it, once, also after a deletion.
func checkGuardedCreate(ctx context.Context, l qpool.Ledger) error {
	var p problems
	_, r0, ok := l.Get("new")
	if ok {
		p.addf("Get(\"new\") on a fresh ledger reports it present")
	}
	if _, err := l.Append(ctx, qpool.Mutation{Key: "new", Value: 1.0, Guarded: true, Revision: r0}); err != nil {
		p.addf("create guarded by the absent key's revision %d: %v", r0, err)
		return p.err()
	}
	checkGet(&p, "after the guarded create", l, "new", 1.0, true)
	conflict(ctx, &p, l, qpool.Mutation{Key: "new", Value: 2.0, Guarded: true, Revision: r0})
	if _, err := l.Append(ctx, del("new")); err != nil {
		p.addf("Append(delete): %v", err)
		return p.err()
	}
	_, rd, ok := l.Get("new")
	if ok {
		p.addf("Get(\"new\") after its deletion reports it present")
	}
	if _, err := l.Append(ctx, qpool.Mutation{Key: "new", Value: 3.0, Guarded: true, Revision: rd}); err != nil {
		p.addf("re-create guarded by the deleted key's revision %d: %v", rd, err)
	}
	checkGet(&p, "after the guarded re-create", l, "new", 3.0, true)
	_, ro, _ := l.Get("other")
	conflict(ctx, &p, l, qpool.Mutation{Key: "other", Value: 1.0, Guarded: true, Revision: ro + 1})
	checkGet(&p, "after a create guarded by a wrong revision", l, "other", nil, false)
	return p.err()
}

// checkDeletion checks that a deletion is recorded with Deleted set and a
// nil Value, even when the mutation carried one, and removes the key.
func checkDeletion(ctx context.Context, l qpool.Ledger) error {
	var p problems
	ms := []qpool.Mutation{set("k", "x"), set("keep", true), del("k")}
	acks, ok := appendAll(ctx, &p, l, ms)
	checkAcks(&p, 0, ms, acks)
	if !ok {
		return p.err()
	}
	checkGet(&p, "after deleting k", l, "k", nil, false)
	checkGet(&p, "after deleting k", l, "keep", true, true)
	state, _ := l.Snapshot()
	compareState(&p, "Snapshot's state after deleting k", state, map[string]any{"keep": true})
	if got, ok := readAll(ctx, &p, l); ok {
		compareChanges(&p, "Read(0, 0)", got, acks)
	}
	return p.err()
}

// checkSnapshot checks that Snapshot is the replay of the whole history,
// agrees with Get, and that its next is Bounds' next.
func checkSnapshot(ctx context.Context, l qpool.Ledger) error {
	var p problems
	if _, ok := appendAll(ctx, &p, l, mixed(60, 6)); !ok {
		return p.err()
	}
	state, next := l.Snapshot()
	if _, n := l.Bounds(); next != n || next != 60 {
		p.addf("Snapshot's next is %d and Bounds' next %d, want 60", next, n)
	}
	history, ok := readAll(ctx, &p, l)
	if !ok {
		return p.err()
	}
	compareState(&p, "Snapshot's state compared with the replay of Read(0, 0)", state, Replay(history))
	for i := range 7 {
		key := fmt.Sprintf("key-%d", i)
		v, present := state[key]
		checkGet(&p, "compared with Snapshot", l, key, v, present)
	}
	return p.err()
}

// checkOwnership checks that Read's slice and Snapshot's map belong to the
// caller: changing them does not change what the ledger returns later.
func checkOwnership(ctx context.Context, l qpool.Ledger) error {
	var p problems
	ms := []qpool.Mutation{set("a", 1.0), set("b", "two"), set("c", []any{"x"})}
	acks, ok := appendAll(ctx, &p, l, ms)
	if !ok {
		return p.err()
	}
	if got, ok := readAll(ctx, &p, l); ok {
		for i := range got {
			got[i] = qpool.StateChange{Sequence: 99, Key: "mutated", Value: "mutated", Deleted: true}
		}
	}
	if got, ok := readAll(ctx, &p, l); ok {
		compareChanges(&p, "Read(0, 0) after the caller changed an earlier result", got, acks)
	}
	want := map[string]any{"a": 1.0, "b": "two", "c": []any{"x"}}
	state, _ := l.Snapshot()
	if state == nil {
		p.addf("Snapshot returned a nil map for a state of 3 keys")
		return p.err()
	}
	state["a"] = "mutated"
	delete(state, "b")
	state["new"] = true
	after, _ := l.Snapshot()
	compareState(&p, "Snapshot after the caller changed an earlier one", after, want)
	checkGet(&p, "after the caller changed a Snapshot", l, "b", "two", true)
	checkGet(&p, "after the caller changed a Snapshot", l, "new", nil, false)
	return p.err()
}
