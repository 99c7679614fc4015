package main

import (
	"math"
	"slices"

	"github.com/qpool/qpool/bench"
)

// Run and Meta are the records cmd/harness writes.
type (
	Run  = bench.RunRecord
	Meta = bench.RunMeta
)

// Results indexes runs by group, implementation and round.
type Results struct {
	runs   map[string]map[string]map[int]Run // group → impl → round → run
	order  map[string][]string               // group → impls in first-seen order
	groups []string
	floor  map[string]string
	errors []Run
}

func index(runs []Run) *Results {
	r := &Results{runs: map[string]map[string]map[int]Run{}, order: map[string][]string{}, floor: map[string]string{}}
	for _, run := range runs {
		if run.Error != "" {
			r.errors = append(r.errors, run)
			continue
		}
		g := r.runs[run.Group]
		if g == nil {
			g = map[string]map[int]Run{}
			r.runs[run.Group] = g
			r.groups = append(r.groups, run.Group)
			r.floor[run.Group] = run.Floor
		}
		if g[run.Impl] == nil {
			g[run.Impl] = map[int]Run{}
			r.order[run.Group] = append(r.order[run.Group], run.Impl)
		}
		g[run.Impl][run.Round] = run
	}
	return r
}

// value returns a metric of a run; "maxrss" is the harness's RSS figure.
func value(run Run, metric string) (float64, bool) {
	if metric == "maxrss" {
		return float64(run.MaxRSSKB), run.MaxRSSKB > 0
	}
	v, ok := run.Metrics[metric]
	return v, ok
}

// Stat is a median with its range over rounds.
type Stat struct {
	Median, Min, Max float64
	N                int
}

// Valid reports whether any round gave a figure.
func (s Stat) Valid() bool { return s.N > 0 }

// Spread is the range as a fraction of the median.
func (s Stat) Spread() float64 {
	if s.Median == 0 {
		return 0
	}
	return (s.Max - s.Min) / s.Median
}

func stat(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{Median: math.NaN()}
	}
	slices.Sort(xs)
	m := xs[len(xs)/2]
	if len(xs)%2 == 0 {
		m = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	return Stat{Median: m, Min: xs[0], Max: xs[len(xs)-1], N: len(xs)}
}

// Metric is the median of one implementation's metric over rounds.
func (r *Results) Metric(group, impl, metric string) Stat {
	var xs []float64
	for _, run := range r.runs[group][impl] {
		if v, ok := value(run, metric); ok {
			xs = append(xs, v)
		}
	}
	return stat(xs)
}

// Ratio is the median over rounds of impl's metric divided by other's in
// the same round: the figure the targets are about.
func (r *Results) Ratio(group, impl, other, metric string) Stat {
	return r.RatioAcross(group, impl, group, other, metric)
}

// RatioAcross is Ratio between two groups (the same round of each).
func (r *Results) RatioAcross(group, impl, otherGroup, other, metric string) Stat {
	var xs []float64
	for round, run := range r.runs[group][impl] {
		o, ok := r.runs[otherGroup][other][round]
		if !ok {
			continue
		}
		a, ok1 := value(run, metric)
		b, ok2 := value(o, metric)
		if ok1 && ok2 && b != 0 {
			xs = append(xs, a/b)
		}
	}
	return stat(xs)
}
