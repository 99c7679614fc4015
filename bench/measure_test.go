package bench

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sample is what measure reads before and after the timed part.
type sample struct {
	cpu     time.Duration
	mallocs uint64
	bytes   uint64
}

func takeSample() sample {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return sample{
		cpu:     time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		mallocs: ms.Mallocs,
		bytes:   ms.TotalAlloc,
	}
}

// measure runs run b.N times, each running tasks tasks, and reports the
// per-task figures the issue asks for: ns/task (wall), cpu-ns/task (user +
// system time of the whole process, so GC and idle spinning count),
// B/task and allocs/task, and the process's peak RSS so far.
func measure(b *testing.B, tasks int, run func() error) {
	b.Helper()
	b.ReportAllocs()
	runtime.GC()
	before := takeSample()
	b.ResetTimer()
	for range b.N {
		if err := run(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	after := takeSample()
	n := float64(b.N) * float64(tasks)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/task")
	b.ReportMetric(float64((after.cpu-before.cpu).Nanoseconds())/n, "cpu-ns/task")
	b.ReportMetric(float64(after.bytes-before.bytes)/n, "B/task")
	b.ReportMetric(float64(after.mallocs-before.mallocs)/n, "allocs/task")
	if kb := peakRSSKB(); kb > 0 {
		b.ReportMetric(float64(kb), "peak-RSS-KB")
	}
}

// peakRSSKB reads VmHWM, the process's peak resident set, in KiB.
func peakRSSKB() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
