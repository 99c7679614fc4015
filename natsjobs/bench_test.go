package natsjobs_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
	"github.com/stretchr/testify/require"
)

// The benchmarks of issue 15, each against a raw JetStream probe doing the
// least the same work needs, on one embedded server (file store, default
// sync) in this process:
//
//   - BurnDown: benchGoroutines goroutines submit b.N no-op jobs, then
//     workers with as many slots run and acknowledge them (raw: publish to
//     a work-queue stream, then as many goroutines consume and ack).
//   - SubmitWait: benchGoroutines goroutines each submit a job and wait
//     for its result, b.N in all (raw: publish, a consumer writes the
//     result to a KV bucket, one watcher resolves the waiters).
//   - RoundTrip: one job at a time, submit to result in the submitting
//     process; p50 and p99 are reported.
//
// Run (in natsjobs): go test -run '^$' -bench . -benchtime 5000x -count 5 .
// and take the medians; the machine is shared, so compare ratios from one
// run, not figures across runs.

const benchGoroutines = 100

func benchServer(b *testing.B) (*testServer, jetstream.JetStream) {
	b.Helper()
	ts := startServer(b)
	return ts, ts.connect(b)
}

func noopRegistry() (*natsjobs.Registry, natsjobs.Handle[int, int]) {
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "noop", func(_ context.Context, n int) (int, error) { return n, nil })
	return reg, h
}

// parallelN runs fn(i) for i in [0, n) on g goroutines.
func parallelN(n, g int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

func reportRate(b *testing.B, name string, n int, d time.Duration) {
	b.ReportMetric(float64(n)/d.Seconds(), name)
}

func BenchmarkBurnDown(b *testing.B) {
	b.Run("natsjobs", func(b *testing.B) {
		ts, js := benchServer(b)
		ns := natsjobs.WithNamespace(namespace())
		reg, noop := noopRegistry()
		c := newClient(b, js, ns)
		ctx := wctx(b, 10*time.Minute)
		futs := make([]*qpool.Future[int], b.N)
		b.ResetTimer()
		start := time.Now()
		parallelN(b.N, benchGoroutines, func(i int) { futs[i] = noop.Submit(ctx, c, fmt.Sprint(i), i) })
		submitted := time.Now()
		newWorker(b, ts.connect(b), reg, ns, natsjobs.WithConcurrency(benchGoroutines))
		for _, f := range futs {
			if _, err := f.Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
		end := time.Now()
		b.StopTimer()
		reportRate(b, "submit/s", b.N, submitted.Sub(start))
		reportRate(b, "work/s", b.N, end.Sub(submitted))
		reportRate(b, "jobs/s", b.N, end.Sub(start))
	})
	b.Run("raw", func(b *testing.B) {
		ts, js := benchServer(b)
		ctx := wctx(b, 10*time.Minute)
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "raw", Subjects: []string{"raw.run"},
			Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
		require.NoError(b, err)
		b.ResetTimer()
		start := time.Now()
		parallelN(b.N, benchGoroutines, func(i int) {
			m := nats.NewMsg("raw.run")
			m.Data = fmt.Append(nil, i)
			m.Header.Set("Qp-Id", fmt.Sprint(i))
			if _, err := js.PublishMsg(ctx, m); err != nil {
				b.Error(err)
			}
		})
		submitted := time.Now()
		// The consumers on a connection of their own, as natsjobs's worker.
		cons, err := ts.connect(b).CreateOrUpdateConsumer(ctx, "raw", jetstream.ConsumerConfig{Durable: "workers",
			AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000})
		require.NoError(b, err)
		it, err := cons.Messages(jetstream.PullMaxMessages(benchGoroutines))
		require.NoError(b, err)
		var done atomic.Int64
		var wg sync.WaitGroup
		for range benchGoroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					m, err := it.Next()
					if err != nil {
						return
					}
					_ = m.Ack()
					done.Add(1)
				}
			}()
		}
		for done.Load() < int64(b.N) {
			time.Sleep(100 * time.Microsecond)
		}
		end := time.Now()
		b.StopTimer()
		it.Stop()
		wg.Wait()
		reportRate(b, "submit/s", b.N, submitted.Sub(start))
		reportRate(b, "work/s", b.N, end.Sub(submitted))
		reportRate(b, "jobs/s", b.N, end.Sub(start))
	})
}

// rawProbe is the least a job queue with results needs on JetStream: a
// work-queue stream of jobs, consumers that write each result to a KV
// bucket and acknowledge, and one watcher of the bucket per producer that
// resolves the waiters.
type rawProbe struct {
	js      jetstream.JetStream
	results jetstream.KeyValue
	mu      sync.Mutex
	waiters map[string]chan struct{}
	stop    func()
}

func newRawProbe(b *testing.B, ts *testServer, consumers int) *rawProbe {
	b.Helper()
	ctx := wctx(b, time.Minute)
	js := ts.connect(b)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "probe", Subjects: []string{"probe.run"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	require.NoError(b, err)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "probe_results", Storage: jetstream.FileStorage})
	require.NoError(b, err)
	p := &rawProbe{js: js, results: kv, waiters: map[string]chan struct{}{}}
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	require.NoError(b, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the one watcher
		defer wg.Done()
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			p.mu.Lock()
			ch := p.waiters[e.Key()]
			delete(p.waiters, e.Key())
			p.mu.Unlock()
			if ch != nil {
				close(ch)
			}
		}
	}()
	wjs := ts.connect(b)
	wkv, err := wjs.KeyValue(ctx, "probe_results")
	require.NoError(b, err)
	cons, err := wjs.CreateOrUpdateConsumer(ctx, "probe", jetstream.ConsumerConfig{Durable: "workers",
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000})
	require.NoError(b, err)
	it, err := cons.Messages(jetstream.PullMaxMessages(consumers))
	require.NoError(b, err)
	for range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := it.Next()
				if err != nil {
					return
				}
				if _, err := wkv.Put(context.Background(), m.Headers().Get("Qp-Id"), m.Data()); err != nil {
					_ = m.Nak()
					continue
				}
				_ = m.Ack()
			}
		}()
	}
	p.stop = func() { it.Stop(); _ = w.Stop(); wg.Wait() }
	b.Cleanup(p.stop)
	return p
}

// submitWait publishes job id and waits for its result.
func (p *rawProbe) submitWait(ctx context.Context, id string) error {
	ch := make(chan struct{})
	p.mu.Lock()
	p.waiters[id] = ch
	p.mu.Unlock()
	m := nats.NewMsg("probe.run")
	m.Data = []byte(id)
	m.Header.Set("Qp-Id", id)
	if _, err := p.js.PublishMsg(ctx, m); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func BenchmarkSubmitWait(b *testing.B) {
	b.Run("natsjobs", func(b *testing.B) {
		ts, js := benchServer(b)
		ns := natsjobs.WithNamespace(namespace())
		reg, noop := noopRegistry()
		newWorker(b, ts.connect(b), reg, ns, natsjobs.WithConcurrency(benchGoroutines))
		c := newClient(b, js, ns)
		ctx := wctx(b, 10*time.Minute)
		b.ResetTimer()
		start := time.Now()
		parallelN(b.N, benchGoroutines, func(i int) {
			if _, err := noop.Submit(ctx, c, fmt.Sprint(i), i).Wait(ctx); err != nil {
				b.Error(err)
			}
		})
		reportRate(b, "jobs/s", b.N, time.Since(start))
	})
	b.Run("raw", func(b *testing.B) {
		ts, _ := benchServer(b)
		p := newRawProbe(b, ts, benchGoroutines)
		ctx := wctx(b, 10*time.Minute)
		b.ResetTimer()
		start := time.Now()
		parallelN(b.N, benchGoroutines, func(i int) {
			if err := p.submitWait(ctx, fmt.Sprint(i)); err != nil {
				b.Error(err)
			}
		})
		reportRate(b, "jobs/s", b.N, time.Since(start))
	})
}

// reportLatencies reports the p50 and p99 of ds in microseconds.
func reportLatencies(b *testing.B, ds []time.Duration) {
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-µs")
}

func BenchmarkRoundTrip(b *testing.B) {
	b.Run("natsjobs", func(b *testing.B) {
		ts, js := benchServer(b)
		ns := natsjobs.WithNamespace(namespace())
		reg, noop := noopRegistry()
		newWorker(b, ts.connect(b), reg, ns, natsjobs.WithConcurrency(benchGoroutines))
		c := newClient(b, js, ns)
		ctx := wctx(b, 10*time.Minute)
		ds := make([]time.Duration, b.N)
		b.ResetTimer()
		for i := range b.N {
			start := time.Now()
			if _, err := noop.Submit(ctx, c, fmt.Sprint(i), i).Wait(ctx); err != nil {
				b.Fatal(err)
			}
			ds[i] = time.Since(start)
		}
		b.StopTimer()
		reportLatencies(b, ds)
	})
	b.Run("raw", func(b *testing.B) {
		ts, _ := benchServer(b)
		p := newRawProbe(b, ts, benchGoroutines)
		ctx := wctx(b, 10*time.Minute)
		ds := make([]time.Duration, b.N)
		b.ResetTimer()
		for i := range b.N {
			start := time.Now()
			if err := p.submitWait(ctx, fmt.Sprint(i)); err != nil {
				b.Fatal(err)
			}
			ds[i] = time.Since(start)
		}
		b.StopTimer()
		reportLatencies(b, ds)
	})
}
