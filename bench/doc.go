// Package bench measures qpool against its peers (ants, pond, errgroup,
// conc, raw goroutines) and against floors written here: a minimal channel
// pool, the same pool with a one-slot-channel future per task, and a plain
// mutex + map + slice store for entanglements.
//
// Every implementation runs the same workload functions through a small
// adapter, so each figure is also a ratio to a floor measured in the same
// run. The benchmarks are ordinary `go test -bench` functions; the harness
// in cmd/harness runs each case in its own process, in interleaved rounds,
// and cmd/report turns its results into docs/performance.md and the chart.
// Nothing here runs under a plain `go test ./...` except the adapter
// correctness tests, which assert results, never durations.
package bench
