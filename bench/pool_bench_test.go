package bench

import "testing"

// BenchmarkPool runs each fire-and-forget workload on every implementation.
// One iteration is the whole workload (1,000,000 or 100,000 tasks); run it
// with -benchtime=1x, as the harness does.
func BenchmarkPool(b *testing.B) {
	for _, w := range PoolWorkloads() {
		b.Run(w.Name, func(b *testing.B) {
			task := w.Task(nil)
			workers := WorkersFor(w.Workers)
			for _, rc := range Runners() {
				b.Run(rc.Name, func(b *testing.B) {
					measure(b, w.Tasks, func() error { return RunPool(rc, workers, w.Tasks, task) })
				})
			}
			if w.Name == "cpu1us" {
				b.Run(SerialImpl, func(b *testing.B) {
					measure(b, w.Tasks, func() error {
						for range w.Tasks {
							task()
						}
						return nil
					})
				})
			}
		})
	}
}

// BenchmarkResult runs the result workload: 200,000 tasks whose results
// the submitter collects, one future per task where the API has them.
func BenchmarkResult(b *testing.B) {
	ids := IDs(ResultTasks)
	out := make([]int, ResultTasks)
	workers := WorkersFor(0)
	for _, rc := range ResultRunners() {
		b.Run(rc.Name, func(b *testing.B) {
			measure(b, ResultTasks, func() error {
				clear(out)
				if err := rc.R.Run(workers, ids, ResultFn, out); err != nil {
					return err
				}
				return CheckResults(out)
			})
		})
	}
}

// BenchmarkEntangled runs 100,000 jobs over 8 entanglements, each job doing
// one update and one read.
func BenchmarkEntangled(b *testing.B) {
	ids := IDs(EntangledJobs)
	keys := Keys(EntangledKeys)
	workers := WorkersFor(0)
	for _, rc := range EntangledRunners() {
		b.Run(rc.Name, func(b *testing.B) {
			var stores []Store
			measure(b, EntangledJobs, func() error {
				for _, s := range stores {
					s.Close()
				}
				found, st, err := rc.R.Run(workers, EntangledGroups, ids, keys)
				stores = st
				if err == nil && found != EntangledJobs {
					b.Fatalf("%d of %d reads found their key", found, EntangledJobs)
				}
				return err
			})
			for _, s := range stores {
				s.Close()
			}
		})
	}
}
