package qpool_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

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
	b.Run("defaults", func(b *testing.B) { scheduleWait(b) })
	b.Run("nowindow", func(b *testing.B) { scheduleWait(b, qpool.WithDependencyWindow(0)) })
}

func scheduleWait(b *testing.B, opts ...qpool.Option) {
	p := qpool.NewPool(opts...)
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
	p := qpool.NewPool()
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

// BenchmarkScheduleWaitCancellable waits with a context that can end: the
// wait selects on the job's Done channel, made for the purpose, instead of
// parking on the job's semaphore.
func BenchmarkScheduleWaitCancellable(b *testing.B) {
	p := qpool.NewPool()
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fn := func() (any, error) { return nil, nil }
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := p.Schedule(ids[i&(len(ids)-1)], fn).Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScheduleThenWait submits a batch, then collects it: the
// throughput shape, where most futures have resolved before Wait. The
// sub-benchmarks compare the default registry (outcomes kept for the
// dependency window) with none kept and with results kept.
func BenchmarkScheduleThenWait(b *testing.B) {
	b.Run("defaults", func(b *testing.B) { scheduleThenWait(b) })
	b.Run("nowindow", func(b *testing.B) { scheduleThenWait(b, qpool.WithDependencyWindow(0)) })
	b.Run("ttl1m", func(b *testing.B) { scheduleThenWait(b, qpool.WithResultTTL(time.Minute)) })
}

func scheduleThenWait(b *testing.B, opts ...qpool.Option) {
	p := qpool.NewPool(opts...)
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

// The floors below are what each operation would cost written by hand with
// the runtime's primitives; the figures in docs/ are ratios to them,
// measured in the same run.

// chanPool is the minimal channel pool: workers reading functions from a
// buffered channel.
type chanPool struct {
	tasks chan func()
	done  chan struct{}
}

func newChanPool(workers int) *chanPool {
	c := &chanPool{tasks: make(chan func(), 4096), done: make(chan struct{})}
	for range workers {
		go func() {
			for fn := range c.tasks {
				fn()
			}
			c.done <- struct{}{}
		}()
	}
	return c
}

func (c *chanPool) close(workers int) {
	close(c.tasks)
	for range workers {
		<-c.done
	}
}

func BenchmarkFloorChanFutureWait(b *testing.B) {
	workers := runtime.GOMAXPROCS(0)
	c := newChanPool(workers)
	defer c.close(workers)
	b.ReportAllocs()
	for b.Loop() {
		fut := make(chan any, 1)
		c.tasks <- func() { fut <- nil }
		<-fut
	}
}

func BenchmarkFloorChanGo(b *testing.B) {
	workers := runtime.GOMAXPROCS(0)
	c := newChanPool(workers)
	fn := func() {}
	b.ReportAllocs()
	for b.Loop() {
		c.tasks <- fn
	}
	c.close(workers)
}

// plainStore is the entanglement floor: one mutex, a map and an
// append-only slice.
type plainStore struct {
	mu      sync.Mutex
	state   map[string]any
	entries []plainEntry
}

type plainEntry struct {
	seq   uint64
	at    time.Time
	key   string
	value any
}

func (s *plainStore) update(key string, v any) {
	s.mu.Lock()
	s.state[key] = v
	s.entries = append(s.entries, plainEntry{uint64(len(s.entries)), time.Now(), key, v})
	s.mu.Unlock()
}

func (s *plainStore) get(key string) (any, bool) {
	s.mu.Lock()
	v, ok := s.state[key]
	s.mu.Unlock()
	return v, ok
}

func (s *plainStore) tail(since int) []plainEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]plainEntry(nil), s.entries[since:]...)
}

func BenchmarkFloorUpdate(b *testing.B) {
	for _, size := range []int{10, 1_000, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", size), func(b *testing.B) {
			s := &plainStore{state: map[string]any{}}
			k := keys(size)
			for _, key := range k {
				s.update(key, 0)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				s.update(k[i%size], i&0xff)
			}
		})
	}
}

func BenchmarkFloorGetParallel(b *testing.B) {
	s := &plainStore{state: map[string]any{}}
	k := keys(1_000)
	for _, key := range k {
		s.update(key, 1)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := s.get(k[i%len(k)]); !ok {
				b.Fatal("missing key")
			}
			i++
		}
	})
}

func BenchmarkFloorHistoryTail(b *testing.B) {
	s := &plainStore{state: map[string]any{}}
	const n = 1_000_000
	for i := range n {
		s.update("k", i&0xff)
	}
	b.ReportAllocs()
	for b.Loop() {
		if h := s.tail(n - 10); len(h) != 10 {
			b.Fatal(len(h))
		}
	}
}
