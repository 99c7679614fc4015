package qpool

import (
	"runtime"
	"sync"
	"testing"
)

// numbered returns a task whose function identifies i, for the ring tests.
func numbered(i int, seen []int) task { return task{fn: func() { seen[i]++ }} }

// TestTaskRingFillAndEmpty fills rings of several sizes (one cell, a power
// of two, neither) to the brim, lap after lap, and checks order, fullness,
// emptiness and len.
func TestTaskRingFillAndEmpty(t *testing.T) {
	for _, size := range []int{1, 2, 3, 4, 7, 64} {
		var r taskRing
		r.init(size)
		seen := make([]int, size*5)
		next := 0
		for lap := range 5 {
			for i := range size {
				if !r.push(numbered(lap*size+i, seen)) {
					t.Fatalf("size %d lap %d: push %d refused", size, lap, i)
				}
			}
			if r.push(task{fn: func() {}}) {
				t.Fatalf("size %d lap %d: push into a full ring accepted", size, lap)
			}
			if n := r.len(); n != size {
				t.Fatalf("size %d: len %d when full", size, n)
			}
			for range size {
				tk, ok := r.pop()
				if !ok {
					t.Fatalf("size %d lap %d: pop found nothing", size, lap)
				}
				tk.fn()
				if seen[next] != 1 {
					t.Fatalf("size %d: popped out of order at %d", size, next)
				}
				next++
			}
			if _, ok := r.pop(); ok {
				t.Fatalf("size %d lap %d: pop from an empty ring", size, lap)
			}
			if n := r.len(); n != 0 {
				t.Fatalf("size %d: len %d when empty", size, n)
			}
		}
	}
}

func TestTaskRingOfSizeZeroHoldsNothing(t *testing.T) {
	var r taskRing
	r.init(0)
	if r.push(task{fn: func() {}}) {
		t.Fatal("a ring of size 0 took a task")
	}
	if _, ok := r.pop(); ok {
		t.Fatal("a ring of size 0 gave a task")
	}
	if r.len() != 0 {
		t.Fatal("a ring of size 0 has a length")
	}
}

// TestTaskRingConcurrent has several goroutines push and several pop a
// small ring at once, each retrying when the ring is full or empty, and
// checks that every task came out exactly once (run it with -race: the
// cells' tasks are plain fields handed over by the sequence numbers).
func TestTaskRingConcurrent(t *testing.T) {
	const producers, consumers, each = 4, 3, 5000
	for _, size := range []int{1, 3, 8} {
		var r taskRing
		r.init(size)
		var mu sync.Mutex
		seen := make([]int, producers*each)
		count := func(i int) task {
			return task{fn: func() { mu.Lock(); seen[i]++; mu.Unlock() }}
		}
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for i := range each {
					for !r.push(count(p*each + i)) {
						runtime.Gosched()
					}
				}
			})
		}
		var popped sync.WaitGroup
		var left sync.Mutex
		remaining := producers * each
		for range consumers {
			popped.Go(func() {
				for {
					left.Lock()
					if remaining == 0 {
						left.Unlock()
						return
					}
					left.Unlock()
					tk, ok := r.pop()
					if !ok {
						runtime.Gosched()
						continue
					}
					tk.fn()
					left.Lock()
					remaining--
					left.Unlock()
				}
			})
		}
		wg.Wait()
		popped.Wait()
		for i, n := range seen {
			if n != 1 {
				t.Fatalf("size %d: task %d ran %d times", size, i, n)
			}
		}
	}
}
