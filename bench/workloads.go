package bench

import (
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
)

// PoolWorkload is one of the fire-and-forget workloads of the issue.
type PoolWorkload struct {
	Name    string
	Tasks   int
	Workers int // 0 means GOMAXPROCS
	// Task returns the task to submit; count, when non-nil, is added to by
	// each task so that tests can check every task ran exactly once.
	Task func(count *atomic.Int64) func()
}

// PoolWorkloads returns the three fire-and-forget workloads at full size.
func PoolWorkloads() []PoolWorkload {
	return []PoolWorkload{
		{Name: "noop", Tasks: 1_000_000, Task: noopTask},
		{Name: "cpu1us", Tasks: 1_000_000, Task: spinTask},
		{Name: "sleep1ms", Tasks: 100_000, Workers: 1000, Task: sleepTask},
	}
}

func noop() {}

func noopTask(count *atomic.Int64) func() {
	if count == nil {
		return noop
	}
	return func() { count.Add(1) }
}

func spinTask(count *atomic.Int64) func() {
	n := SpinCount()
	if count == nil {
		return func() { Spin(n) }
	}
	return func() { Spin(n); count.Add(1) }
}

func sleepTask(count *atomic.Int64) func() {
	if count == nil {
		return func() { time.Sleep(time.Millisecond) }
	}
	return func() { time.Sleep(time.Millisecond); count.Add(1) }
}

// WorkersFor returns the worker count of a workload.
func WorkersFor(w int) int {
	if w <= 0 {
		return runtime.GOMAXPROCS(0)
	}
	return w
}

// RunPool runs n copies of task on a fresh runner and waits for them.
func RunPool(rc RunnerCase, workers, n int, task func()) error {
	r := rc.New()
	r.Start(workers)
	for range n {
		r.Go(task)
	}
	return r.Wait()
}

// ResultTasks is the size of the result workload.
const ResultTasks = 200_000

// IDs returns n distinct job IDs.
func IDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "job-" + strconv.Itoa(i)
	}
	return ids
}

// ResultFn is the task of the result workload: it returns a value the
// submitter can check.
func ResultFn(i int) int { return 3*i + 1 }

// CheckResults reports the first result that ResultFn did not produce.
func CheckResults(out []int) error {
	for i, v := range out {
		if v != ResultFn(i) {
			return fmt.Errorf("bench: result %d is %d, want %d", i, v, ResultFn(i))
		}
	}
	return nil
}

// Entangled workload sizes.
const (
	EntangledJobs   = 100_000
	EntangledGroups = 8
	EntangledKeys   = 1024
)

// Keys returns n distinct state keys.
func Keys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	return keys
}
