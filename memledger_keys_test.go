package qpool

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
)

// checkKeyTable checks the in-memory ledger's key table against the
// history: every entry still stored, and every moved latest change, names
// a cell that counts it, and no cell counts more.
func checkKeyTable(t *testing.T, l *MemoryLedger) {
	t.Helper()
	want := map[*memCell]int{}
	for seq := l.base; seq < l.next; seq++ {
		e := l.entry(seq)
		c := l.keys[e.key]
		if c == nil {
			t.Fatalf("change %d names released index %d", seq, e.key)
		}
		want[c]++
	}
	for i, c := range l.keys {
		if c == nil {
			continue
		}
		if c.index != uint32(i) {
			t.Fatalf("cell %q is at index %d but says %d", c.key, i, c.index)
		}
		if e := c.latest.Load(); e != nil && e.moved {
			want[c]++
		}
		if c.refs != want[c] {
			t.Fatalf("cell %q counts %d entries, %d name it", c.key, c.refs, want[c])
		}
		delete(want, c)
	}
	for c, n := range want {
		t.Fatalf("%d entries name cell %q, which is not in the table", n, c.key)
	}
	for _, i := range l.free {
		if l.keys[i] != nil {
			t.Fatalf("free index %d holds cell %q", i, l.keys[i].key)
		}
	}
}

// TestMemoryLedgerKeyTableUnderCompaction sets, deletes and re-sets keys
// at random, compacting as it goes, and checks after every step that the
// retained history names the right keys, that the state matches a model,
// and that the key table counts exactly the entries naming each key.
func TestMemoryLedgerKeyTableUnderCompaction(t *testing.T) {
	ctx := context.Background()
	l := NewMemoryLedger()
	defer l.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[string]int{}
	var keys []string // by sequence
	for i := range 20_000 {
		key := fmt.Sprintf("k%d", rng.IntN(50))
		m := Mutation{Key: key, Value: i}
		if rng.IntN(4) == 0 {
			m = Mutation{Key: key, Delete: true}
		}
		if _, err := l.Append(ctx, m); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
		if m.Delete {
			delete(model, key)
		} else {
			model[key] = i
		}
		if rng.IntN(300) == 0 {
			if err := l.Compact(ctx, uint64(i)-uint64(rng.IntN(3000))); err != nil {
				t.Fatal(err)
			}
		}
		if i%97 == 0 {
			for k := range 50 { // reads drive the state map's promotions, which drop deleted cells
				l.Get(fmt.Sprintf("k%d", k))
			}
			checkKeyTable(t, l)
		}
	}
	checkKeyTable(t, l)
	first, _ := l.Bounds()
	history, err := l.Read(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range history {
		if want := keys[first+uint64(i)]; c.Key != want || c.Sequence != first+uint64(i) {
			t.Fatalf("change %d is %q (sequence %d), want %q", first+uint64(i), c.Key, c.Sequence, want)
		}
	}
	for k, v := range model {
		if got, _, ok := l.Get(k); !ok || got != v {
			t.Fatalf("Get(%q) = %v, %v; want %v", k, got, ok, v)
		}
	}
	if snap, _ := l.Snapshot(); len(snap) != len(model) {
		t.Fatalf("snapshot has %d keys, model %d", len(snap), len(model))
	}
}

// TestMemoryLedgerKeyTableIsBounded sets a new key for every change and
// deletes it a little later, compacting as a retention window would: the
// key table must hold the keys of the retained changes, not every key
// ever used.
func TestMemoryLedgerKeyTableIsBounded(t *testing.T) {
	ctx := context.Background()
	l := NewMemoryLedger()
	defer l.Close()
	const n, window = 50_000, 2 * chunkSize
	for i := range n {
		if _, err := l.Append(ctx, Mutation{Key: fmt.Sprintf("job-%d", i), Value: i}); err != nil {
			t.Fatal(err)
		}
		if i >= 10 {
			if _, err := l.Append(ctx, Mutation{Key: fmt.Sprintf("job-%d", i-10), Delete: true}); err != nil {
				t.Fatal(err)
			}
		}
		if _, next := l.Bounds(); next > window {
			if err := l.Compact(ctx, next-window); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkKeyTable(t, l)
	// Retained: at most window+chunkSize changes, each naming one key.
	if limit := window + chunkSize; len(l.keys) > limit {
		t.Fatalf("key table has %d slots after %d keys came and went; want at most %d", len(l.keys), n, limit)
	}
}

// TestMemoryLedgerKeyTableBoundedWithMovedChanges keeps each key past the
// retention window, so that its latest change is moved out of a freed
// block, then changes and deletes it: the moved copy stops naming the key
// when it is superseded, and the table must not grow with every key ever
// used.
func TestMemoryLedgerKeyTableBoundedWithMovedChanges(t *testing.T) {
	ctx := context.Background()
	l := NewMemoryLedger()
	defer l.Close()
	const n, window, lifetime = 30_000, 2 * chunkSize, 3_000
	for i := range n {
		if _, err := l.Append(ctx, Mutation{Key: fmt.Sprintf("job-%d", i), Value: i}); err != nil {
			t.Fatal(err)
		}
		if old := i - lifetime; old >= 0 {
			key := fmt.Sprintf("job-%d", old)
			if _, err := l.Append(ctx, Mutation{Key: key, Value: -old}); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Append(ctx, Mutation{Key: key, Delete: true}); err != nil {
				t.Fatal(err)
			}
		}
		if _, next := l.Bounds(); next > window {
			if err := l.Compact(ctx, next-window); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkKeyTable(t, l)
	if limit := lifetime + window + chunkSize; len(l.keys) > limit {
		t.Fatalf("key table has %d slots after %d keys came and went; want at most %d", len(l.keys), n, limit)
	}
}

// TestMemoryLedgerDeletingAnAbsentKeyAllocatesNothing records deletions of
// a key that was never set: after the first, they reuse its cell and its
// index instead of making new ones.
func TestMemoryLedgerDeletingAnAbsentKeyAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	l := NewMemoryLedger()
	defer l.Close()
	del := func() {
		if _, err := l.Append(ctx, Mutation{Key: "never-set", Delete: true}); err != nil {
			t.Fatal(err)
		}
	}
	del()
	// A block of history is allocated every 1,024 changes: well below one
	// allocation per run on average.
	if allocs := testing.AllocsPerRun(10_000, del); allocs != 0 {
		t.Fatalf("a deletion of an absent key allocates %v times", allocs)
	}
	if len(l.keys) != 1 {
		t.Fatalf("key table has %d slots for one key", len(l.keys))
	}
	if _, _, ok := l.Get("never-set"); ok {
		t.Fatal("Get finds a key that was only deleted")
	}
	checkKeyTable(t, l)
}
