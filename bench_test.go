package qpool_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"

	"github.com/qpool/qpool"
)

// ids are precomputed so that the benchmarks measure the pool, not
// strconv.
var ids = func() []string {
	s := make([]string, 1<<16)
	for i := range s {
		s[i] = "job-" + strconv.Itoa(i)
	}
	return s
}()

func BenchmarkScheduleWait(b *testing.B) {
	p := qpool.NewPool(qpool.WithResultTTL(0))
	defer p.Close()
	ctx := context.Background()
	fn := func() (any, error) { return nil, nil }
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := p.Schedule(ids[i&(len(ids)-1)], fn).Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSubmitWait(b *testing.B) {
	p := qpool.NewPool(qpool.WithResultTTL(0))
	defer p.Close()
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := qpool.Submit(p, ids[i&(len(ids)-1)], fn).Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScheduleThenWait submits a batch, then collects it: the
// throughput shape, where most futures have resolved before Wait.
func BenchmarkScheduleThenWait(b *testing.B) {
	p := qpool.NewPool(qpool.WithResultTTL(0))
	defer p.Close()
	ctx := context.Background()
	fn := func() (any, error) { return nil, nil }
	futs := make([]*qpool.Future[any], 0, 1024)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		futs = append(futs, p.Schedule(ids[i&(len(ids)-1)], fn))
		if len(futs) == cap(futs) {
			for _, f := range futs {
				_, _ = f.Wait(ctx)
			}
			futs = futs[:0]
		}
	}
	for _, f := range futs {
		_, _ = f.Wait(ctx)
	}
}

func BenchmarkGo(b *testing.B) {
	p := qpool.NewPool()
	defer p.Close()
	fn := func() {}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Go(fn); err != nil {
			b.Fatal(err)
		}
	}
	p.Wait()
}

func keys(n int) []string {
	k := make([]string, n)
	for i := range k {
		k[i] = "key-" + strconv.Itoa(i)
	}
	return k
}

func BenchmarkUpdateState(b *testing.B) {
	for _, size := range []int{10, 1_000, 100_000} {
		for _, mode := range []string{"none", "OnChange", "OnStateChange"} {
			if mode == "OnStateChange" && size == 100_000 {
				continue // two copies of 100,000 keys per change: minutes per run
			}
			b.Run(fmt.Sprintf("keys=%d/callback=%s", size, mode), func(b *testing.B) {
				var opts []qpool.EntanglementOption
				switch mode {
				case "OnChange":
					opts = append(opts, qpool.WithOnChange(func(qpool.StateChange) {}))
				case "OnStateChange":
					opts = append(opts, qpool.WithOnStateChange(func(_, _ map[string]any) {}))
				}
				e := qpool.NewEntanglement("bench", nil, 0, opts...)
				defer e.Close()
				k := keys(size)
				for _, key := range k {
					_ = e.UpdateState(key, 0)
				}
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if err := e.UpdateState(k[i%size], i&0xff); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkGetStateParallel(b *testing.B) {
	e := qpool.NewEntanglement("bench", nil, 0)
	defer e.Close()
	k := keys(1_000)
	for _, key := range k {
		_ = e.UpdateState(key, 1)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := e.GetState(k[i%len(k)]); !ok {
				b.Fatal("missing key")
			}
			i++
		}
	})
}

func BenchmarkHistoryTail(b *testing.B) {
	e := qpool.NewEntanglement("bench", nil, 0)
	defer e.Close()
	const n = 1_000_000
	for i := range n {
		_ = e.UpdateState("k", i&0xff)
	}
	b.ReportAllocs()
	for b.Loop() {
		if h := e.GetStateHistory(n - 10); len(h) != 10 {
			b.Fatal(len(h))
		}
	}
}

// BenchmarkRetainedBytesPerChange reports the heap a recorded change keeps
// alive, for a small value (an int below 256, which Go stores without
// allocating).
func BenchmarkRetainedBytesPerChange(b *testing.B) {
	const n = 1_000_000
	var perChange float64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		e := qpool.NewEntanglement("bench", nil, 0)
		for i := range n {
			_ = e.UpdateState("k", i&0xff)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perChange = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(e)
		_ = e.Close()
	}
	b.ReportMetric(perChange, "B/change")
}
