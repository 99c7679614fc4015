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
			switch rng.IntN(4) {
			case 0:
				j := &job{id: id}
				tab.put(h, j)
				model[id] = j
			case 3:
				j, keepOld, asked := &job{id: id}, rng.IntN(2) == 0, false
				got := tab.putUnless(h, j, func(old *job) bool {
					if asked = true; old != model[id] {
						t.Fatalf("seed %d op %d: putUnless(%s) asked about %p, registered %p", seed, op, id, old, model[id])
					}
					return keepOld
				})
				old := model[id]
				switch {
				case asked != (old != nil):
					t.Fatalf("seed %d op %d: putUnless(%s) asked %v with a job registered: %v", seed, op, id, asked, old != nil)
				case old != nil && keepOld:
					if got != old {
						t.Fatalf("seed %d op %d: putUnless(%s) = %p, want the kept %p", seed, op, id, got, old)
					}
				default:
					if got != nil {
						t.Fatalf("seed %d op %d: putUnless(%s) = %p, want nil", seed, op, id, got)
					}
					model[id] = j
				}
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

// TestIDTableFitShrinksAfterABurst: a table grown by a burst shrinks once
// a sweep has left it mostly empty, and keeps every remaining job.
func TestIDTableFitShrinksAfterABurst(t *testing.T) {
	var tab idTable
	jobs := make([]*job, 10_000)
	for i := range jobs {
		jobs[i] = &job{id: fmt.Sprint(i)}
		tab.put(uint64(i)*0x9E3779B97F4A7C15, jobs[i])
	}
	grown := len(tab.slots)
	tab.sweep(func(j *job) bool { return j != jobs[7] && j != jobs[4242] })
	tab.fit()
	const want = 8 // the smallest power of two at most a quarter full with 2 jobs
	if len(tab.slots) != want {
		t.Fatalf("%d slots after the sweep, grown to %d; want %d", len(tab.slots), grown, want)
	}
	for _, i := range []int{7, 4242} {
		if tab.find(uint64(i)*0x9E3779B97F4A7C15, jobs[i].id) != jobs[i] {
			t.Fatalf("job %d lost by fit", i)
		}
	}
	tab.fit() // nothing to shrink: a no-op
	if len(tab.slots) != want || tab.n != 2 {
		t.Fatalf("fit of a small table changed it: %d slots, %d jobs", len(tab.slots), tab.n)
	}
}

// TestRegistryDropFinishedShrinks: without a TTL, once a burst of jobs has
// finished, dropFinished leaves every shard's table at its smallest size,
// so that later sweeps (one per exit of the last worker) stay cheap.
func TestRegistryDropFinishedShrinks(t *testing.T) {
	var r idRegistry
	r.init(0, 0) // the lazy mode: no TTL, no dependency window
	burst := make([]*job, 20_000)
	for i := range burst { // all unresolved at once: the tables grow
		burst[i] = &job{id: fmt.Sprint("burst-", i)}
		if !r.add(burst[i]) {
			t.Fatalf("add %s refused", burst[i].id)
		}
	}
	for _, j := range burst {
		j.state.Store(stateDone)
	}
	if r.dropFinished() {
		t.Fatal("dropFinished reports retained jobs without a TTL")
	}
	for i := range r.shards {
		if s := &r.shards[i]; s.jobs.n != 0 || len(s.jobs.slots) > minTable {
			t.Fatalf("shard %d: %d jobs in %d slots after the sweep", i, s.jobs.n, len(s.jobs.slots))
		}
	}
}
