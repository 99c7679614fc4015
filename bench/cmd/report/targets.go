package main

import (
	"fmt"
	"math"
	"strings"
)

// Target is one of the targets with the figure measured for it.
type Target struct {
	Label string // short, for the chart
	Text  string // the target as the issue states it
	Got   Stat
	Limit float64
	Unit  string // "×" for ratios, else a unit
	// Ratio marks targets drawn on the chart.
	Ratio bool
}

// Status is the target's verdict on the median.
func (t Target) Status() string {
	switch {
	case !t.Got.Valid() || math.IsNaN(t.Got.Median):
		return "not measured"
	case t.Got.Median <= t.Limit:
		if t.Got.Max > t.Limit {
			return "met (median; not in every round)"
		}
		return "met"
	default:
		return "**not met**"
	}
}

func (t Target) figure() string {
	if !t.Got.Valid() {
		return "n/a"
	}
	if t.Unit == "×" {
		return fmt.Sprintf("%.2f× [%.2f–%.2f]", t.Got.Median, t.Got.Min, t.Got.Max)
	}
	return fmt.Sprintf("%s %s [%s–%s]", num(t.Got.Median), t.Unit, num(t.Got.Min), num(t.Got.Max))
}

func limit(t Target) string {
	if t.Unit == "×" {
		return fmt.Sprintf("≤ %.2f×", t.Limit)
	}
	return fmt.Sprintf("≤ %s %s", num(t.Limit), t.Unit)
}

// peers are the other libraries' rows, for the RSS target: not the
// floors, not the serial row and not qpool.
func peers(impls []string) []string {
	var out []string
	for _, i := range impls {
		if strings.HasPrefix(i, "qpool") || i == "chanpool" || i == "futurefloor" || i == "serial" || strings.Contains(i, "floor") {
			continue
		}
		out = append(out, i)
	}
	return out
}

// bestPeerRSS is, per round, the lowest peak RSS of any peer in group.
func (r *Results) rssVersusBestPeer(group, impl string) Stat {
	var xs []float64
	for round, run := range r.runs[group][impl] {
		best := math.Inf(1)
		for _, p := range peers(r.order[group]) {
			if o, ok := r.runs[group][p][round]; ok && o.MaxRSSKB > 0 {
				best = min(best, float64(o.MaxRSSKB))
			}
		}
		if !math.IsInf(best, 1) && run.MaxRSSKB > 0 {
			xs = append(xs, float64(run.MaxRSSKB)/best)
		}
	}
	return stat(xs)
}

func targets(r *Results) []Target {
	ts := []Target{
		{Label: "no-op: qpool Go / pond Go", Text: "`Go` on 1,000,000 no-op tasks: at most pond's `Go` time", Got: r.Ratio("pool/noop", "qpool-go", "pond-go", "ns/task"), Limit: 1, Unit: "×", Ratio: true},
		{Text: "`Go` on no-op: 0 allocations per task (amortised pool set-up below 0.01)", Got: r.Metric("pool/noop", "qpool-go", "allocs/task"), Limit: 0.01, Unit: "allocs/task"},
		{Label: "1µs CPU: qpool Go / chanpool", Text: "1 µs CPU tasks: at most 1.05 × the channel pool", Got: r.Ratio("pool/cpu1us", "qpool-go", "chanpool", "ns/task"), Limit: 1.05, Unit: "×", Ratio: true},
		{Label: "1ms sleep: qpool Go / chanpool", Text: "1 ms sleep tasks at 1000 workers: at most 1.0 × the channel pool", Got: r.Ratio("pool/sleep1ms", "qpool-go", "chanpool", "ns/task"), Limit: 1, Unit: "×", Ratio: true},
		{Label: "results: qpool Schedule / pond result", Text: "Schedule + Wait (ID, future, default options): at most 0.5 × pond's result pool", Got: r.Ratio("result", "qpool-schedule", "pond-result", "ns/task"), Limit: 0.5, Unit: "×", Ratio: true},
		{Label: "results: qpool Schedule / future floor", Text: "Schedule + Wait (ID, future, default options): at most 1.5 × the bare-future floor", Got: r.Ratio("result", "qpool-schedule", "futurefloor", "ns/task"), Limit: 1.5, Unit: "×", Ratio: true},
		{Text: "Schedule + Wait: at most 3 allocations per task (amortised set-up below 0.01)", Got: r.Metric("result", "qpool-schedule", "allocs/task"), Limit: 3.01, Unit: "allocs/task"},
		{Label: "results: qpool Submit / future floor", Text: "(Submit[int] + Wait, default options, same limits) vs the bare-future floor", Got: r.Ratio("result", "qpool-submit", "futurefloor", "ns/task"), Limit: 1.5, Unit: "×", Ratio: true},
		// Issue 14 point 2 asks a group to cost what the pool's own path
		// costs "within the benchmark noise"; 1.10× is our reading of that.
		{Label: "results: qpool Group / Submit", Text: "Group (Go + Wait, default options): the cost of Submit[int] + Wait within the noise (our reading: at most 1.10 × qpool-submit)", Got: r.Ratio("result", "qpool-group", "qpool-submit", "ns/task"), Limit: 1.1, Unit: "×", Ratio: true},
	}
	for _, g := range []string{"pool/noop", "pool/cpu1us", "pool/sleep1ms", "result"} {
		impl := "qpool-go"
		if g == "result" {
			impl = "qpool-schedule"
		}
		ts = append(ts, Target{Label: "peak RSS " + strings.TrimPrefix(g, "pool/") + ": qpool / best peer", Text: fmt.Sprintf("Peak RSS (%s, %s): at most 1.10 × the best peer's", g, impl), Got: r.rssVersusBestPeer(g, impl), Limit: 1.1, Unit: "×", Ratio: true})
	}
	for _, k := range []string{"10", "1000", "100000"} {
		g := "ent/update/keys=" + k
		ts = append(ts, Target{Label: "UpdateState " + k + " keys / floor", Text: "UpdateState, no callback, " + k + " keys: at most 1.0 × the floor", Got: r.Ratio(g, "qpool", "floor", "ns/op"), Limit: 1, Unit: "×", Ratio: true})
		ts = append(ts, Target{Text: "UpdateState, no callback, " + k + " keys: at most 100 B/op", Got: r.Metric(g, "qpool", "B/op"), Limit: 100, Unit: "B/op"})
	}
	ts = append(ts, Target{Text: "UpdateState flat from 10 to 100,000 keys (our stricter reading: qpool at 100,000 keys ÷ qpool at 10 keys ≤ 1.25×; the issue itself asks ≤ 1.0× the floor at every size)", Got: r.RatioAcross("ent/update/keys=100000", "qpool", "ent/update/keys=10", "qpool", "ns/op"), Limit: 1.25, Unit: "×"})
	ts = append(ts, Target{Text: "Watch stays O(1) per change (qpool-watch 100,000 keys / 10 keys; ≤ 1.25×)", Got: r.RatioAcross("ent/update/keys=100000", "qpool-watch", "ent/update/keys=10", "qpool-watch", "ns/op"), Limit: 1.25, Unit: "×"})
	ts = append(ts, Target{Text: "WithOnChange (per-change StateChange callback) stays O(1) (100,000 keys / 10 keys; ≤ 1.25×)", Got: r.RatioAcross("ent/update/keys=100000", "qpool-onchange", "ent/update/keys=10", "qpool-onchange", "ns/op"), Limit: 1.25, Unit: "×"})
	ts = append(ts, Target{Text: "Retained heap per change after 1,000,000 updates of a small value: at most 64 B", Got: r.Metric("ent/Retained", "qpool", "retained-B/change"), Limit: 64, Unit: "B/change"})
	for _, g := range []string{"2", "8", "64"} {
		ts = append(ts, Target{Label: "UpdateState " + g + " goroutines / floor", Text: "Contended UpdateState, " + g + " goroutines: at most 1.0 × the floor", Got: r.Ratio("ent/contended/g="+g, "qpool", "floor", "ns/op"), Limit: 1, Unit: "×", Ratio: true})
	}
	ts = append(ts,
		Target{Label: "GetState RunParallel / floor", Text: "GetState under RunParallel: at most 1.0 × the floor", Got: r.Ratio("ent/GetParallel", "qpool", "floor", "ns/op"), Limit: 1, Unit: "×", Ratio: true},
		Target{Label: "last 10 of 1M changes / floor", Text: "Last 10 changes of a 1,000,000-change ledger: at most 1.0 × the floor", Got: r.Ratio("ent/Tail10", "qpool", "floor", "ns/op"), Limit: 1, Unit: "×", Ratio: true},
	)
	return ts
}
