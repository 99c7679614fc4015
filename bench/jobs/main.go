// Command jobs measures job queues side by side on one machine, in one
// run with interleaved rounds (issue 15): natsjobs and a raw JetStream
// probe on an embedded nats-server, river on PostgreSQL and asynq on
// Redis (servers that bench/jobs/run.sh starts from Debian's packages).
//
// Burn-down: n no-op jobs are inserted by -workers goroutines, then worked
// by -workers workers until each is done as its system defines done
// (natsjobs: outcome recorded and message acknowledged; raw: acknowledged;
// river: its completion event, after the completer wrote it; asynq: its
// handler returned and the queue has nothing pending or active). Round
// trip: one job at a time, from submit until the submitting process sees
// it done (natsjobs: the future resolves; raw: the KV watcher; river: the
// completion event; asynq: polling GetTaskInfo every 200 µs, the way its
// users wait for a task).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// system is one job queue under test.
type system interface {
	// burnDown inserts n no-op jobs, then works them with workers workers.
	burnDown(ctx context.Context, n, workers int) (insert, work time.Duration, err error)
	// roundTrip runs samples jobs one after the other and returns each
	// one's submit-to-done time.
	roundTrip(ctx context.Context, samples, workers int) ([]time.Duration, error)
	close()
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// parallelN runs fn(i) for i in [0, n) on g goroutines.
func parallelN(n, g int, fn func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

type result struct {
	insertRate, workRate, totalRate float64
	p50, p99                        time.Duration
}

func main() {
	n := flag.Int("n", 100000, "jobs per burn-down")
	workers := flag.Int("workers", 100, "inserting goroutines and workers")
	rounds := flag.Int("rounds", 3, "interleaved rounds")
	samples := flag.Int("rt", 300, "round-trip samples per round")
	systems := flag.String("systems", "natsjobs,raw,river,asynq", "systems to run, comma-separated")
	pg := flag.String("pg", "", "PostgreSQL URL for river (empty: river is skipped)")
	redis := flag.String("redis", "", "Redis address for asynq (empty: asynq is skipped)")
	syncAlways := flag.Bool("sync", false, "nats-server syncs every write to disk (sync_interval: always)")
	flag.Parse()
	ctx := context.Background()

	var names []string
	makers := map[string]func() (system, error){
		"natsjobs": func() (system, error) { return newNatsSystem(ctx, true, *syncAlways) },
		"raw":      func() (system, error) { return newNatsSystem(ctx, false, *syncAlways) },
		"river":    func() (system, error) { return newRiver(ctx, *pg) },
		"asynq":    func() (system, error) { return newAsynq(*redis) },
	}
	for _, s := range strings.Split(*systems, ",") {
		if _, ok := makers[s]; !ok {
			log.Fatalf("unknown system %q", s)
		}
		if (s == "river" && *pg == "") || (s == "asynq" && *redis == "") {
			fmt.Printf("# %s skipped: no server given\n", s)
			continue
		}
		names = append(names, s)
	}
	all := map[string][]result{}
	for r := 1; r <= *rounds; r++ {
		for _, name := range names {
			sys, err := makers[name]()
			if err != nil {
				log.Fatalf("%s: %v", name, err)
			}
			ins, work, err := sys.burnDown(ctx, *n, *workers)
			if err != nil {
				log.Fatalf("%s burn-down: %v", name, err)
			}
			rt, err := sys.roundTrip(ctx, *samples, *workers)
			if err != nil {
				log.Fatalf("%s round trip: %v", name, err)
			}
			sys.close()
			res := result{
				insertRate: float64(*n) / ins.Seconds(), workRate: float64(*n) / work.Seconds(),
				totalRate: float64(*n) / (ins + work).Seconds(), p50: pct(rt, 50), p99: pct(rt, 99),
			}
			all[name] = append(all[name], res)
			fmt.Printf("round %d %-9s insert %8.0f/s  work %8.0f/s  total %8.0f/s  rt p50 %8.2fms p99 %8.2fms\n",
				r, name, res.insertRate, res.workRate, res.totalRate, ms(res.p50), ms(res.p99))
		}
	}
	fmt.Printf("\nmedians of %d rounds, n=%d, workers=%d, nats sync always=%v\n", *rounds, *n, *workers, *syncAlways)
	fmt.Println("| system | insert jobs/s | work jobs/s | burn-down jobs/s | round trip p50 | round trip p99 |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, name := range names {
		rs := all[name]
		med := func(f func(result) float64) float64 {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			slices.Sort(v)
			return v[len(v)/2]
		}
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %.2f ms | %.2f ms |\n", name,
			med(func(r result) float64 { return r.insertRate }), med(func(r result) float64 { return r.workRate }),
			med(func(r result) float64 { return r.totalRate }),
			med(func(r result) float64 { return ms(r.p50) }), med(func(r result) float64 { return ms(r.p99) }))
	}
	_ = os.Stdout.Sync()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
