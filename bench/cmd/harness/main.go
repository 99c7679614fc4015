// Command harness runs every benchmark case of the bench module in a
// process of its own, repeats the whole matrix in interleaved rounds with a
// rotating order, and writes one JSON line per run. cmd/report turns the
// lines into docs/performance.md and the chart.
//
//	go test -c -o bench.test . && go run ./cmd/harness -bin ./bench.test -rounds 3 -out results/raw/results.jsonl
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/qpool/qpool/bench"
)

// Run and Meta are the records the harness writes.
type (
	Run  = bench.RunRecord
	Meta = bench.RunMeta
)

func main() {
	bin := flag.String("bin", "", "the bench module's test binary (go test -c)")
	rounds := flag.Int("rounds", 3, "how many times to run the whole matrix")
	benchtime := flag.String("benchtime", "300ms", "-test.benchtime of the b.N benchmarks")
	out := flag.String("out", "results/raw/results.jsonl", "where to write one JSON line per run")
	meta := flag.String("meta", "results/raw/meta.json", "where to write the run's description")
	filter := flag.String("run", "", "only cases whose name matches this regexp")
	spin := flag.Int("spin", 0, "spin count of the CPU workload (0: calibrate to 1µs here)")
	command := flag.String("command", strings.Join(os.Args, " "), "the command to record in the report")
	revision := flag.String("revision", "", "the qpool revision the test binary was built from")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "harness: -bin is required")
		os.Exit(2)
	}
	if err := run(*bin, *rounds, *benchtime, *out, *meta, *filter, *spin, *command, *revision); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

func run(bin string, rounds int, benchtime, out, metaPath, filter string, spin int, command, revision string) error {
	cases := bench.Cases()
	if filter != "" {
		re, err := regexp.Compile(filter)
		if err != nil {
			return err
		}
		cases = selectCases(cases, re)
	}
	if spin <= 0 {
		spin = bench.CalibrateSpin(time.Microsecond)
	}
	m := Meta{
		Started: time.Now().UTC(), Rounds: rounds, BenchTime: benchtime, Spin: spin,
		NumCPU: runtime.NumCPU(), CPUModel: cpuModel(), GoVersion: runtime.Version(),
		Command: command, Revision: revision, Modules: modules(),
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	total := rounds * len(cases)
	done := 0
	for r := range rounds {
		order := rotate(cases, r*len(cases)/max(rounds, 1))
		for i, c := range order {
			res := runCase(bin, c, benchtime, spin)
			res.Round, res.Order = r, i
			if err := enc.Encode(res); err != nil {
				return err
			}
			done++
			fmt.Fprintf(os.Stderr, "[%d/%d] round %d %-60s %8.1f ns/task %s\n", done, total, r, c.Name(), headline(res), res.Error)
		}
	}
	m.Finished = time.Now().UTC()
	m.LoadAvg = loadAvg()
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(metaPath, data, 0o644)
}

func selectCases(cases []bench.Case, re *regexp.Regexp) []bench.Case {
	var keep []bench.Case
	for _, c := range cases {
		if re.MatchString(c.Name()) {
			keep = append(keep, c)
		}
	}
	return keep
}

// rotate returns cases starting at index k, wrapping around.
func rotate(cases []bench.Case, k int) []bench.Case {
	if len(cases) == 0 {
		return nil
	}
	k %= len(cases)
	return append(append([]bench.Case(nil), cases[k:]...), cases[:k]...)
}

func headline(r Run) float64 {
	if v, ok := r.Metrics["ns/task"]; ok {
		return v
	}
	return r.Metrics["ns/op"]
}

// runCase runs one case in a fresh process and parses its benchmark line.
func runCase(bin string, c bench.Case, benchtime string, spin int) Run {
	res := Run{Name: c.Name(), Group: c.Group, Impl: c.Impl, Floor: c.Floor}
	bt := benchtime
	if c.OneShot {
		bt = "1x"
	}
	cmd := exec.Command(bin, "-test.run=^$", "-test.bench="+c.Pattern(), "-test.count=1",
		"-test.benchmem", "-test.benchtime="+bt)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", bench.SpinEnv, spin))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	res.WallNS = time.Since(start).Nanoseconds()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru != nil {
		res.MaxRSSKB = ru.Maxrss
		res.ChildCPUNS = ru.Utime.Nano() + ru.Stime.Nano()
	}
	res.Metrics = parse(&stdout, c.Name())
	switch {
	case err != nil:
		res.Error = fmt.Sprintf("%v: %s", err, tail(stdout.String()+stderr.String()))
	case res.Metrics == nil:
		res.Error = "no benchmark line: " + tail(stdout.String())
	}
	return res
}

// parse finds the line of benchmark name (with its -N suffix) and returns
// its value/unit pairs.
func parse(r io.Reader, name string) map[string]float64 {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], name) {
			continue
		}
		if rest := strings.TrimPrefix(fields[0], name); rest != "" && !regexp.MustCompile(`^-\d+$`).MatchString(rest) {
			continue
		}
		m := map[string]float64{}
		if n, err := strconv.ParseFloat(fields[1], 64); err == nil {
			m["iterations"] = n
		}
		for i := 2; i+1 < len(fields); i += 2 {
			if v, err := strconv.ParseFloat(fields[i], 64); err == nil {
				m[fields[i+1]] = v
			}
		}
		return m
	}
	return nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func loadAvg() []string {
	data, _ := os.ReadFile("/proc/loadavg")
	return strings.Fields(string(data))
}

// modules returns the versions of the modules compiled into the harness,
// which are the bench module's: the same go.mod builds the test binary.
func modules() map[string]string {
	mods := map[string]string{}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			mods[d.Path] = d.Version
		}
	}
	return mods
}
