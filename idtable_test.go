package qpool

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestIDTableModel runs random puts, finds and removes against a map.
// Hashes come from a small range, so that runs of colliding entries form
// and wrap around the table's end: the case backward-shift deletion must
// get right.
func TestIDTableModel(t *testing.T) {
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, seed))
		var tab idTable
		model := map[string]*job{}
		hashOf := func(id string) uint64 {
			var h uint64
			for _, c := range id {
				h = h*31 + uint64(c)
			}
			return h%7 - 3 // seven homes, three at the table's end: runs wrap
		}
		for op := range 5000 {
			id := fmt.Sprint("j", rng.IntN(60))
			h := hashOf(id)
			switch rng.IntN(3) {
			case 0:
				j := &job{id: id}
				tab.put(h, j)
				model[id] = j
			case 1:
				if j := model[id]; j != nil && rng.IntN(4) > 0 {
					if !tab.remove(h, j) {
						t.Fatalf("seed %d op %d: remove(%s) found nothing", seed, op, id)
					}
					delete(model, id)
				} else if tab.remove(h, &job{id: id}) {
					t.Fatalf("seed %d op %d: removed a job that was not registered", seed, op)
				}
			}
			if tab.n != len(model) {
				t.Fatalf("seed %d op %d: %d jobs, model has %d", seed, op, tab.n, len(model))
			}
			for mid, want := range model {
				if got := tab.find(hashOf(mid), mid); got != want {
					t.Fatalf("seed %d op %d: find(%s) = %p, want %p", seed, op, mid, got, want)
				}
			}
			if got := tab.find(h, id); got != model[id] {
				t.Fatalf("seed %d op %d: find(%s) = %p, want %p", seed, op, id, got, model[id])
			}
		}
		seen := 0
		tab.each(func(j *job) {
			seen++
			if model[j.id] != j {
				t.Fatalf("seed %d: each gave %s, not registered", seed, j.id)
			}
		})
		if seen != len(model) {
			t.Fatalf("seed %d: each gave %d jobs, want %d", seed, seen, len(model))
		}
	}
}

// TestIDTableStaysSmallUnderChurn checks that a table whose jobs come and
// go, a few at a time, does not grow: deletions leave no tombstones.
func TestIDTableStaysSmallUnderChurn(t *testing.T) {
	var tab idTable
	live := make([]*job, 0, 8)
	for i := range 100_000 {
		j := &job{id: fmt.Sprint(i)}
		h := uint64(i) * 0x9E3779B97F4A7C15
		tab.put(h, j)
		live = append(live, j)
		if len(live) == cap(live) {
			for k, old := range live {
				if !tab.remove(uint64(i-len(live)+1+k)*0x9E3779B97F4A7C15, old) {
					t.Fatalf("job %s not found", old.id)
				}
			}
			live = live[:0]
		}
	}
	if len(tab.slots) > 16 {
		t.Fatalf("table grew to %d slots for at most 8 live jobs", len(tab.slots))
	}
}
