package bench

import (
	"fmt"
	"regexp"
	"strings"
)

// Case is one (workload, implementation) pair: one benchmark the harness
// runs in a process of its own.
type Case struct {
	// Bench is the top-level benchmark function, Sub its sub-benchmark path.
	Bench string
	Sub   []string
	// OneShot cases run their whole workload once per process
	// (-test.benchtime=1x); the others are ordinary b.N benchmarks.
	OneShot bool
	// Group and Impl name the table and row the case belongs to; Floor is
	// the Impl every other row of the group is divided by.
	Group, Impl, Floor string
}

// Name is the case's benchmark name without the GOMAXPROCS suffix.
func (c Case) Name() string { return strings.Join(append([]string{c.Bench}, c.Sub...), "/") }

// Pattern is the -test.bench regexp selecting exactly this case.
func (c Case) Pattern() string {
	parts := []string{"^" + c.Bench + "$"}
	for _, s := range c.Sub {
		parts = append(parts, "^"+regexp.QuoteMeta(s)+"$")
	}
	return strings.Join(parts, "/")
}

// SerialImpl names the CPU workload's serial row: the calibrated task run
// inline by the submitter.
const SerialImpl = "serial"

// Contention levels and state sizes of the entanglement workloads.
var (
	UpdateKeys  = []int{10, 1_000, 100_000}
	Contentions = []int{2, 8, 64}
)

// Cases returns the whole matrix in a fixed order.
func Cases() []Case {
	var cs []Case
	for _, w := range PoolWorkloads() {
		for _, r := range Runners() {
			cs = append(cs, Case{Bench: "BenchmarkPool", Sub: []string{w.Name, r.Name}, OneShot: true, Group: "pool/" + w.Name, Impl: r.Name, Floor: "chanpool"})
		}
		if w.Name == "cpu1us" {
			cs = append(cs, Case{Bench: "BenchmarkPool", Sub: []string{w.Name, SerialImpl}, OneShot: true, Group: "pool/" + w.Name, Impl: SerialImpl, Floor: "chanpool"})
		}
	}
	for _, r := range ResultRunners() {
		cs = append(cs, Case{Bench: "BenchmarkResult", Sub: []string{r.Name}, OneShot: true, Group: "result", Impl: r.Name, Floor: "futurefloor"})
	}
	for _, r := range EntangledRunners() {
		cs = append(cs, Case{Bench: "BenchmarkEntangled", Sub: []string{r.Name}, OneShot: true, Group: "entangled", Impl: r.Name, Floor: "chanpool+floorstore"})
	}
	for _, k := range UpdateKeys {
		for _, s := range Stores() {
			sub := fmt.Sprintf("keys=%d", k)
			cs = append(cs, Case{Bench: "BenchmarkEntUpdate", Sub: []string{sub, s.Name}, Group: "ent/update/" + sub, Impl: s.Name, Floor: "floor"})
		}
	}
	for _, g := range Contentions {
		for _, s := range Stores()[:2] {
			sub := fmt.Sprintf("g=%d", g)
			cs = append(cs, Case{Bench: "BenchmarkEntUpdateContended", Sub: []string{sub, s.Name}, Group: "ent/contended/" + sub, Impl: s.Name, Floor: "floor"})
		}
	}
	for _, b := range []string{"BenchmarkEntGet", "BenchmarkEntGetParallel", "BenchmarkEntTail10", "BenchmarkEntReadAll", "BenchmarkEntRetained"} {
		for _, s := range Stores()[:2] {
			group := "ent/" + strings.TrimPrefix(b, "BenchmarkEnt")
			cs = append(cs, Case{Bench: b, Sub: []string{s.Name}, OneShot: b == "BenchmarkEntRetained", Group: group, Impl: s.Name, Floor: "floor"})
		}
	}
	return cs
}
