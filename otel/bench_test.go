package qpoolotel

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/qpool/qpool"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// benchIDs are precomputed so that the benchmarks measure the pool and the
// observer, not strconv.
var benchIDs = func() []string {
	s := make([]string, 1<<16)
	for i := range s {
		s[i] = "job-" + strconv.Itoa(i)
	}
	return s
}()

// discardExporter takes the batches of a BatchSpanProcessor and drops them:
// the SDK does all its work (recording, batching), nothing is written.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// benchVariant makes a pool to measure and the function that frees it.
type benchVariant struct {
	name string
	make func(b *testing.B) (*qpool.Pool, func())
}

var benchVariants = []benchVariant{
	{"none", func(b *testing.B) (*qpool.Pool, func()) {
		p := qpool.NewPool()
		return p, func() { p.Close() }
	}},
	{"hooks", func(b *testing.B) (*qpool.Pool, func()) {
		// The pool's own cost of calling an observer: every function set,
		// doing nothing.
		p := qpool.NewPool(qpool.WithObserver(qpool.Observer{
			Submitted: func(context.Context, qpool.JobEvent) {},
			Started:   func(context.Context, qpool.JobEvent) context.Context { return nil },
			Retried:   func(context.Context, qpool.JobEvent) {},
			Finished:  func(context.Context, qpool.JobEvent) {},
		}))
		return p, func() { p.Close() }
	}},
	{"noop", func(b *testing.B) (*qpool.Pool, func()) {
		tel, err := New(WithMeterProvider(metricnoop.NewMeterProvider()), WithTracerProvider(tracenoop.NewTracerProvider()), WithPoolName("bench"))
		if err != nil {
			b.Fatal(err)
		}
		p := qpool.NewPool(qpool.WithObserver(tel.Observer()))
		return p, func() { p.Close() }
	}},
	{"sdk", func(b *testing.B) (*qpool.Pool, func()) {
		// A production-like SDK set-up: every span sampled and batched to
		// an exporter (which drops them), metrics aggregated for a reader.
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
		tel, err := New(WithMeterProvider(mp), WithTracerProvider(tp), WithPoolName("bench"))
		if err != nil {
			b.Fatal(err)
		}
		p := qpool.NewPool(qpool.WithObserver(tel.Observer()))
		return p, func() {
			p.Close()
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		}
	}},
}

// runJobs submits n trivial jobs one after the other and waits for each:
// the per-job cost of Submit + Wait, as the root module's
// BenchmarkSubmitWait measures it.
func runJobs(b *testing.B, p *qpool.Pool, start, n int) {
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	for i := start; i < start+n; i++ {
		if _, err := qpool.Submit(p, benchIDs[i&(len(benchIDs)-1)], fn).Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSubmitWait is the per-job cost of Submit + Wait on a pool with
// no observer, with an observer that does nothing, with this package's
// observer on no-op providers, and on SDK providers.
func BenchmarkSubmitWait(b *testing.B) {
	for _, v := range benchVariants {
		b.Run(v.name, func(b *testing.B) {
			p, free := v.make(b)
			defer free()
			b.ReportAllocs()
			b.ResetTimer()
			runJobs(b, p, 0, b.N)
		})
	}
}

// BenchmarkObserverCost measures the set-ups in one run, interleaved in
// rounds so that a drift of the machine touches them alike, and reports each
// one's time per job and its ratio to the pool with no observer (hooks/none:
// an observer that does nothing; noop/none: this package on no-op
// providers; sdk/none: on SDK providers). One op is one job on each pool.
//
//	go test -run '^$' -bench BenchmarkObserverCost -benchtime 200000x ./otel/
func BenchmarkObserverCost(b *testing.B) {
	pools := make([]*qpool.Pool, len(benchVariants))
	for i, v := range benchVariants {
		p, free := v.make(b)
		defer free()
		pools[i] = p
		runJobs(b, p, 0, 1000) // warm up: workers started, tables grown
	}
	const rounds = 10
	took := make([]time.Duration, len(benchVariants))
	b.ResetTimer()
	done := 0
	for r := range rounds {
		n := b.N/rounds + boolInt(r < b.N%rounds)
		for i, p := range pools {
			start := time.Now()
			runJobs(b, p, done, n)
			took[i] += time.Since(start)
		}
		done += n
	}
	b.StopTimer()
	if b.N == 0 {
		return
	}
	for i, v := range benchVariants {
		b.ReportMetric(float64(took[i].Nanoseconds())/float64(b.N), v.name+"-ns/job")
	}
	for i, v := range benchVariants[1:] {
		b.ReportMetric(float64(took[i+1])/float64(took[0]), v.name+"/none")
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
