package qpool

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// checkIDTable verifies the linear-probing invariant: every entry is
// reachable from its home slot without crossing a free slot, the count is
// right, and no ID is held twice.
func checkIDTable(t *testing.T, tab *idTable) {
	t.Helper()
	if err := idTableErr(tab); err != nil {
		t.Fatal(err)
	}
}

func idTableErr(tab *idTable) error {
	size := len(tab.slots)
	if size == 0 {
		if tab.n != 0 {
			return fmt.Errorf("no slots, %d jobs", tab.n)
		}
		return nil
	}
	if 4*tab.n > 3*size {
		return fmt.Errorf("table over three quarters full: %d of %d", tab.n, size)
	}
	mask := uint64(size - 1)
	start := -1 // a free slot: every run starts after one
	for k, s := range tab.slots {
		if s.j == nil {
			start = k
			break
		}
	}
	if start < 0 {
		return fmt.Errorf("no free slot")
	}
	n, lastFree := 0, uint64(start)
	ids := map[string]bool{}
	for d := 1; d <= size; d++ {
		k := (uint64(start) + uint64(d)) & mask
		s := tab.slots[k]
		if s.j == nil {
			lastFree = k
			continue
		}
		n++
		if ids[s.j.id] {
			return fmt.Errorf("ID %s held twice", s.j.id)
		}
		ids[s.j.id] = true
		// home must be cyclically within (lastFree, k]
		if (k-s.hash)&mask >= (k-lastFree)&mask {
			return fmt.Errorf("%s at slot %d unreachable from home %d (free slot at %d)", s.j.id, k, s.hash&mask, lastFree)
		}
	}
	if n != tab.n {
		return fmt.Errorf("%d jobs in slots, n = %d", n, tab.n)
	}
	return nil
}

// TestCheckerFindsAHole shows that the invariant check can fail: a
// removal that frees a slot without shifting back breaks a wrapped run.
func TestCheckerFindsAHole(t *testing.T) {
	var tab idTable
	for i := range 5 {
		tab.put(^uint64(0)-1, &job{id: fmt.Sprint(i)}) // home: second-last slot; the run wraps
	}
	require.NoError(t, idTableErr(&tab))
	tab.slots[len(tab.slots)-1] = idSlot{} // punch a hole in the run
	tab.n--
	require.Error(t, idTableErr(&tab))
}

// TestIDTableInvariants runs puts (new and replacing), removes of the
// current job, of a replaced job and of an unknown one, and sweeps of a
// random part of the jobs, against a model,
// with hashes crowded on few homes near the table's end (runs wrap) and
// spread across growing sizes (resizes with wrapped runs).
func TestIDTableInvariants(t *testing.T) {
	for seed := range uint64(6) {
		rng := rand.New(rand.NewPCG(seed, 7*seed+1))
		var tab idTable
		model := map[string]*job{}
		replaced := map[string][]*job{}
		ids := 8 + rng.IntN(200)
		homes := uint64(1 + rng.IntN(12))
		hashOf := func(id string) uint64 {
			var h uint64
			for _, c := range id {
				h = h*131 + uint64(c)
			}
			// Top bits vary (as the shard bits would), low bits crowd
			// at the end of every table size.
			return h<<59 ^ (^uint64(0) - h%homes)
		}
		for op := range 3000 {
			id := fmt.Sprint("id", rng.IntN(ids))
			h := hashOf(id)
			switch rng.IntN(6) {
			case 0, 1:
				j := &job{id: id}
				if old := model[id]; old != nil {
					replaced[id] = append(replaced[id], old)
				}
				tab.put(h, j)
				model[id] = j
			case 2:
				if j := model[id]; j != nil {
					require.True(t, tab.remove(h, j), "seed %d op %d", seed, op)
					delete(model, id)
				}
			case 3:
				if olds := replaced[id]; len(olds) > 0 {
					require.False(t, tab.remove(h, olds[rng.IntN(len(olds))]), "removed a replaced job")
				}
			case 4:
				require.False(t, tab.remove(h, &job{id: id}))
			case 5:
				if rng.IntN(8) > 0 {
					break // sweeps are rarer, so that runs grow long
				}
				dead := map[*job]bool{}
				for mid, j := range model {
					if rng.IntN(2) == 0 {
						dead[j] = true
						delete(model, mid)
					}
				}
				tab.sweep(func(j *job) bool { return dead[j] })
			}
			checkIDTable(t, &tab)
			for mid, want := range model {
				if got := tab.find(hashOf(mid), mid); got != want {
					t.Fatalf("seed %d op %d: find(%s) = %p, want %p", seed, op, mid, got, want)
				}
			}
			if model[id] == nil {
				require.Nil(t, tab.find(h, id))
			}
		}
		seen := 0
		tab.each(func(j *job) { seen++; require.Same(t, model[j.id], j) })
		require.Equal(t, len(model), seen)
		tab.reset()
		require.Nil(t, tab.find(hashOf("id0"), "id0"))
		require.False(t, tab.remove(hashOf("id0"), &job{id: "id0"}))
	}
}

// TestIDTableSweepsStayBounded drives a table as the registry does
// without a TTL: jobs are never removed, they finish a fixed number of puts
// after they were put, and a put into a full table sweeps finished jobs
// first. The table must stay within four times the unfinished jobs, and
// the sweeps must look at no more than three jobs per put (after a sweep
// the table is at most half full, so the next one comes a quarter of the
// slots later and looks at three quarters of them).
func TestIDTableSweepsStayBounded(t *testing.T) {
	for _, live := range []int{1, 7, 100, 190, 1000, 1500} {
		var tab idTable
		var window []*job // unfinished jobs, oldest first
		looked := 0
		const puts = 20_000
		for i := range puts {
			if len(window) == live {
				window[0].state.Store(stateDone)
				window = window[1:]
			}
			if tab.full() {
				tab.tidy(func(j *job) bool { looked++; return j.isDone() })
			}
			j := &job{id: fmt.Sprint(i)}
			tab.put(uint64(i)*0x9E3779B97F4A7C15, j)
			window = append(window, j)
			if i%97 == 0 {
				checkIDTable(t, &tab)
			}
		}
		checkIDTable(t, &tab)
		t.Logf("live %d: %d slots, sweeps looked at %.2f jobs per put", live, len(tab.slots), float64(looked)/puts)
		require.LessOrEqual(t, len(tab.slots), max(4*live, minTable), "live %d", live)
		require.LessOrEqual(t, looked, 3*puts, "live %d: jobs looked at by sweeps", live)
		for k, j := range window { // every unfinished job is still found
			i := puts - len(window) + k
			require.Same(t, j, tab.find(uint64(i)*0x9E3779B97F4A7C15, j.id), "live %d", live)
		}
	}
}

// TestDefaultJobConfigUntouched submits jobs with and without
// options (dependencies given twice, retry below one, nil options) and
// checks that the shared default is unchanged and that a job's
// dependency list does not alias the caller's slice.
func TestDefaultJobConfigUntouched(t *testing.T) {
	p := NewPool(WithWorkers(2))
	defer p.Close()
	require.NoError(t, errOf(Submit(p, "a", okFn)))
	require.NoError(t, errOf(Submit(p, "b", okFn, nil)))
	deps := make([]string, 1, 8)
	deps[0] = "a"
	f := Submit(p, "c", okFn, WithDependencies(deps...), WithDependencies("b"), WithRetry(0, -1), WithTimeout(-1))
	deps = append(deps, "zzz")
	deps[0] = "changed"
	require.NoError(t, errOf(f))
	require.Equal(t, []string{"a", "b"}, f.j.cfg.deps)
	require.Equal(t, 1, f.j.cfg.attempts)
	require.Equal(t, jobConfig{pool: p, attempts: 1}, p.jobDefaults)
	g := Submit(p, "d", okFn)
	require.Same(t, &p.jobDefaults, g.j.cfg)
	require.NoError(t, errOf(g))
	_ = deps
}

func okFn(context.Context) (int, error) { return 1, nil }

func errOf[T any](f *Future[T]) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := f.Wait(ctx)
	return err
}
