package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

func num(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "n/a"
	case a == 0:
		return "0"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 0.01:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.1g", v)
	}
}

func pct(s Stat) string {
	if !s.Valid() {
		return "n/a"
	}
	return fmt.Sprintf("±%.0f%%", 50*s.Spread())
}

func ratio(s Stat) string {
	if !s.Valid() {
		return "n/a"
	}
	return fmt.Sprintf("%.2f× [%.2f–%.2f]", s.Median, s.Min, s.Max)
}

func generate(r *Results, m Meta, ts []Target) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("## Run\n\n")
	w("- Machine: %d CPUs (`nproc`), `%s` (/proc/cpuinfo), shared with other jobs building and testing while this ran (load average at the end: %s).\n", m.NumCPU, m.CPUModel, strings.Join(m.LoadAvg[:min(3, len(m.LoadAvg))], " "))
	w("- Go: %s. Started %s, finished %s. %d interleaved rounds, each case in its own process; b.N benchmarks with `-benchtime=%s`, whole-workload cases with `-benchtime=1x`.\n", m.GoVersion, m.Started.Format(time.RFC3339Nano), m.Finished.Format(time.RFC3339Nano), m.Rounds, m.BenchTime)
	w("- Command: `%s`, on qpool revision `%s` (a `-dirty` suffix would mean uncommitted changes to the library's .go files when the binary was built).\n", m.Command, m.Revision)
	var mods []string
	for p, v := range m.Modules {
		if strings.Contains(p, "ants") || strings.Contains(p, "pond") || strings.Contains(p, "conc") || strings.Contains(p, "x/sync") || strings.HasPrefix(p, "github.com/qpool") {
			mods = append(mods, fmt.Sprintf("`%s` %s", p, v))
		}
	}
	slices.Sort(mods)
	w("- Libraries: %s (qpool is this repository's working tree).\n", strings.Join(mods, ", "))
	w("- CPU workload: %d xorshift rounds per task, calibrated to about 1 µs; its serial cost, measured in the same run (row `serial`), is %s ns/task of CPU time and %s ns/task of wall time (the difference is time the process waited for a core on the shared machine).\n\n", m.Spin, num(r.Metric("pool/cpu1us", "serial", "cpu-ns/task").Median), num(r.Metric("pool/cpu1us", "serial", "ns/task").Median))
	w("Figures are medians over rounds; `±` is half the range (max−min) over rounds as a share of the median; ratios are taken per round against the floor of the same round, then the median is reported with the [min–max] over rounds.\n\n")

	w("## Targets\n\n| target | limit | measured (median [min–max]) | status |\n|---|---|---|---|\n")
	for _, t := range ts {
		w("| %s | %s | %s | %s |\n", t.Text, limit(t), t.figure(), t.Status())
	}
	w("\n![headline ratios](performance.svg)\n\n")

	titles := map[string]string{
		"pool/noop":     "1,000,000 no-op tasks from one goroutine, then wait (GOMAXPROCS workers)",
		"pool/cpu1us":   "1,000,000 tasks of about 1 µs CPU each (GOMAXPROCS workers)",
		"pool/sleep1ms": "100,000 tasks sleeping 1 ms (1000 workers; `goroutines` is unbounded)",
		"result":        "200,000 tasks returning a result the submitter collects (GOMAXPROCS workers)",
		"entangled":     "100,000 jobs over 8 entanglements, one UpdateState and one GetState each",
	}
	w("## Pool workloads\n\nns/task is wall time over tasks; cpu-ns/task is the process's user+system time over tasks (GC and idle spinning included); B and allocs per task come from runtime.MemStats over the timed part; peak RSS is the child process's `ru_maxrss`, start-up and set-up included (the same for every row).\n\n")
	for _, g := range []string{"pool/noop", "pool/cpu1us", "pool/sleep1ms", "result", "entangled"} {
		if r.runs[g] == nil {
			continue
		}
		w("### %s\n\n", titles[g])
		w("| implementation | ns/task | spread | ratio to %s | cpu-ns/task | B/task | allocs/task | peak RSS MiB |\n|---|---|---|---|---|---|---|---|\n", r.floor[g])
		for _, impl := range r.order[g] {
			t := r.Metric(g, impl, "ns/task")
			w("| %s | %s | %s | %s | %s | %s | %s | %s |\n", impl, num(t.Median), pct(t), ratio(r.Ratio(g, impl, r.floor[g], "ns/task")),
				num(r.Metric(g, impl, "cpu-ns/task").Median), num(r.Metric(g, impl, "B/task").Median),
				num(r.Metric(g, impl, "allocs/task").Median), num(r.Metric(g, impl, "maxrss").Median/1024))
		}
		w("\n")
	}

	w("## Entanglement workloads\n\nThe floor is `bench.PlainStore`: one `sync.Mutex`, a `map[string]any` and an append-only `[]entry{seq, time, key, value}`. Updates write a small value (an `int` below 256, whose boxing allocates nothing) round-robin over the keys present. With a hook (OnStateChange, WithOnChange, a Watch draining its channel) the timing includes waiting until the hook has seen every change.\n\n")
	entTitles := []struct{ group, title string }{
		{"ent/update/keys=10", "UpdateState, 10 keys present"},
		{"ent/update/keys=1000", "UpdateState, 1,000 keys present"},
		{"ent/update/keys=100000", "UpdateState, 100,000 keys present"},
		{"ent/contended/g=2", "UpdateState from 2 goroutines (1,000 keys)"},
		{"ent/contended/g=8", "UpdateState from 8 goroutines"},
		{"ent/contended/g=64", "UpdateState from 64 goroutines"},
		{"ent/Get", "GetState, one goroutine (1,000 keys)"},
		{"ent/GetParallel", "GetState under b.RunParallel"},
		{"ent/Tail10", "Last 10 changes of a 1,000,000-change ledger"},
		{"ent/ReadAll", "The whole 1,000,000-change ledger"},
	}
	for _, et := range entTitles {
		g := et.group
		if r.runs[g] == nil {
			continue
		}
		w("### %s\n\n| store | ns/op | spread | ratio to floor | B/op | allocs/op |\n|---|---|---|---|---|---|\n", et.title)
		for _, impl := range r.order[g] {
			t := r.Metric(g, impl, "ns/op")
			w("| %s | %s | %s | %s | %s | %s |\n", impl, num(t.Median), pct(t), ratio(r.Ratio(g, impl, "floor", "ns/op")),
				num(r.Metric(g, impl, "B/op").Median), num(r.Metric(g, impl, "allocs/op").Median))
		}
		w("\n")
	}
	if r.runs["ent/Retained"] != nil {
		w("### Retained heap after 1,000,000 updates\n\n| store | retained B/change | spread |\n|---|---|---|\n")
		for _, impl := range r.order["ent/Retained"] {
			s := r.Metric("ent/Retained", impl, "retained-B/change")
			w("| %s | %s | %s |\n", impl, num(s.Median), pct(s))
		}
		w("\n")
	}

	w("### Beside the reference implementation\n\nThe reference implementation's figures are **quoted from issue 4, not measured here**: it copied the whole state on every update.\n\n| keys present | reference implementation (quoted) | qpool, no callback (measured) | qpool with OnStateChange (measured) | qpool with Watch (measured) | floor (measured) |\n|---|---|---|---|---|---|\n")
	for _, k := range []struct{ keys, ref string }{{"10", "≈ 3 µs"}, {"1000", "≈ 270 µs"}, {"100000", "≈ 30 ms"}} {
		g := "ent/update/keys=" + k.keys
		w("| %s | %s | %s | %s | %s | %s |\n", k.keys, k.ref, dur(r.Metric(g, "qpool", "ns/op")), dur(r.Metric(g, "qpool-onstatechange", "ns/op")), dur(r.Metric(g, "qpool-watch", "ns/op")), dur(r.Metric(g, "floor", "ns/op")))
	}
	w("\n")
	if len(r.errors) > 0 {
		w("## Failed runs\n\n")
		for _, e := range r.errors {
			w("- round %d, %s: `%s`\n", e.Round, e.Name, strings.ReplaceAll(firstLine(e.Error), "`", "'"))
		}
		w("\n")
	}
	return b.String()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func dur(s Stat) string {
	if !s.Valid() {
		return "n/a"
	}
	switch v := s.Median; {
	case v >= 1e6:
		return fmt.Sprintf("%.1f ms", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.2f µs", v/1e3)
	default:
		return fmt.Sprintf("%.0f ns", v)
	}
}
