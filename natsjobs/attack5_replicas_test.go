package natsjobs_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool/natsjobs"
)

// An attack (2026-12-06) on natsjobs' WithReplicas: "a count
// outside 1..5 [fails] with ErrInvalidOption"; "with it, a stream or bucket
// that exists with another count fails NewClient/NewWorker with
// ErrConfigMismatch (nothing is changed on the server)"; "Without the
// option a process uses what exists, with its replica count".

// streamConfigs returns the configurations of the streams of namespace ns
// (the default queue and the buckets) that exist.
func streamConfigs(t *testing.T, ctx context.Context, js jetstream.JetStream, ns string, queues ...string) map[string]jetstream.StreamConfig {
	t.Helper()
	names := []string{"KV_" + ns + "_jobs", "KV_" + ns + "_results", "KV_" + ns + "_deps", "KV_" + ns + "_cancels"}
	for _, q := range queues {
		names = append(names, ns+"_q_"+q)
	}
	out := map[string]jetstream.StreamConfig{}
	for _, n := range names {
		st, err := js.Stream(ctx, n)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("stream %s: %v", n, err)
		}
		out[n] = st.CachedInfo().Config
	}
	return out
}

// TestAttackJobsReplicasSingleServer: on one server, with jobs running,
// clients and workers with counts out of range are refused with
// ErrInvalidOption, and with counts that do not match the namespace's (2
// to 5) with ErrConfigMismatch, including a worker of a queue whose stream
// does not exist yet; the jobs go on, and no stream or bucket changes.
func TestAttackJobsReplicasSingleServer(t *testing.T) {
	ts := startServer(t)
	nsName := namespace()
	ns := natsjobs.WithNamespace(nsName)
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "r", func(ctx context.Context, in int) (int, error) { return in * 2, nil })
	c := newClient(t, ts.connect(t), ns, natsjobs.WithReplicas(1), quiet)
	newWorker(t, ts.connect(t), reg, ns, quiet)
	js := ts.connect(t)
	ctx := wctx(t, 20*time.Second)
	before := streamConfigs(t, ctx, js, nsName, "default", "other")
	if len(before) != 5 {
		t.Fatalf("streams made: %d, want 5", len(before))
	}

	stop := make(chan struct{})
	jobErr := make(chan error, 1)
	ran := 0
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				ran = i
				jobErr <- nil
				return
			default:
			}
			v, err := h.Submit(ctx, c, fmt.Sprint("j", i), i).Wait(ctx)
			if err != nil || v != 2*i {
				jobErr <- fmt.Errorf("job %d: (%d, %v)", i, v, err)
				return
			}
		}
	}()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		problems []string
	)
	for g := range 4 {
		gjs := ts.connect(t)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
			for range 10 {
				n := []int{2, 3, 5, 0, -1, natsjobs.MaxReplicas + 1}[rng.IntN(6)]
				opts := []natsjobs.Option{ns, quiet, natsjobs.WithReplicas(n)}
				worker := rng.IntN(2) == 0
				if worker && rng.IntN(2) == 0 {
					opts = append(opts, natsjobs.WithQueue("other"))
				}
				var err error
				if worker {
					var w *natsjobs.Worker
					w, err = natsjobs.NewWorker(ctx, gjs, reg, opts...)
					if err == nil {
						_ = w.Shutdown(ctx)
					}
				} else {
					var cl *natsjobs.Client
					cl, err = natsjobs.NewClient(ctx, gjs, opts...)
					if err == nil {
						_ = cl.Close()
					}
				}
				want := natsjobs.ErrConfigMismatch
				if n < 1 || n > natsjobs.MaxReplicas {
					want = natsjobs.ErrInvalidOption
				}
				other := natsjobs.ErrInvalidOption
				if want == other {
					other = natsjobs.ErrConfigMismatch
				}
				if !errors.Is(err, want) || errors.Is(err, other) {
					mu.Lock()
					problems = append(problems, fmt.Sprintf("worker=%v WithReplicas(%d): %v, want %v", worker, n, err, want))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	if err := <-jobErr; err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, p := range problems {
		seen[p]++
	}
	for p, n := range seen {
		t.Errorf("%d times: %s", n, p)
	}
	after := streamConfigs(t, ctx, js, nsName, "default", "other")
	for name, cfg := range before {
		if fmt.Sprint(after[name]) != fmt.Sprint(cfg) {
			t.Errorf("stream %s changed by a refused client or worker:\nbefore %+v\nafter  %+v", name, cfg, after[name])
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("stream %s made by a refused worker", name)
		}
	}
	t.Logf("%d jobs ran while 40 clients and workers were refused", ran)
}

// TestAttackJobsReplicasClusterRace: on a three-server cluster, clients
// and workers of a new namespace start together from connections to
// different servers, with WithReplicas(3), WithReplicas(1) or no option.
// Each stream and bucket gets the count of whoever made it first; the
// promise for each process: no option, or a count that matches what
// exists, starts; another count fails with ErrConfigMismatch. Checked
// besides: whether the namespace ends with one count for all of its
// streams and buckets (not promised; logged), and that a job submitted
// through a client that started runs on a worker that started. Each
// process is given 10 s to start.
func TestAttackJobsReplicasClusterRace(t *testing.T) {
	servers := startCluster(t, 3)
	jss := make([]jetstream.JetStream, 6)
	for i := range jss {
		jss[i] = connectHome(t, servers, i%len(servers))
	}
	newClusterClient(t, jss[0], natsjobs.WithNamespace(namespace()), natsjobs.WithReplicas(3)) // the cluster settles
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "r", func(ctx context.Context, in int) (int, error) { return in + 1, nil })
	kinds := []int{3, 1, 0, 3, 1, 0}
	var problems, mixed []string
	for round := range 4 {
		nsName := namespace()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		type res struct {
			kind   int
			worker bool
			c      *natsjobs.Client
			w      *natsjobs.Worker
			err    error
			took   time.Duration
		}
		results := make([]res, len(jss))
		var wg sync.WaitGroup
		for i, js := range jss {
			r := res{kind: kinds[(i+round)%len(kinds)], worker: i%2 == 1}
			wg.Go(func() {
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				opts := []natsjobs.Option{natsjobs.WithNamespace(nsName), quiet, natsjobs.WithAckWait(time.Second)}
				if r.kind > 0 {
					opts = append(opts, natsjobs.WithReplicas(r.kind))
				}
				start := time.Now()
				if r.worker {
					r.w, r.err = natsjobs.NewWorker(ctx, js, reg, opts...)
				} else {
					r.c, r.err = natsjobs.NewClient(ctx, js, opts...)
				}
				r.took = time.Since(start)
				results[i] = r
			})
		}
		wg.Wait()
		for i, r := range results {
			t.Logf("round %d: %d worker=%v WithReplicas(%d): %v after %v", round, i, r.worker, r.kind, r.err, r.took.Round(time.Millisecond))
		}
		lctx, lcancel := context.WithTimeout(context.Background(), 20*time.Second)
		cfgs := streamConfigs(t, lctx, jss[0], nsName, "default")
		lcancel()
		counts := map[string]int{}
		byCount := map[int]int{}
		for name, cfg := range cfgs {
			counts[name] = cfg.Replicas
			byCount[cfg.Replicas]++
		}
		if len(byCount) > 1 {
			mixed = append(mixed, fmt.Sprintf("round %d: %v", round, counts))
		}
		for i, r := range results {
			what := fmt.Sprintf("round %d, %s %d (WithReplicas(%d), %v): ", round, map[bool]string{true: "worker", false: "client"}[r.worker], i, r.kind, r.took.Round(time.Millisecond))
			switch {
			case len(cfgs) < 5:
				if r.err == nil {
					problems = append(problems, what+fmt.Sprintf("started, with only %d of 5 streams made", len(cfgs)))
				}
			case r.kind == 0 || len(byCount) == 1 && byCount[r.kind] == 5:
				if r.err != nil {
					problems = append(problems, what+fmt.Sprintf("%v (streams %v)", r.err, counts))
				}
			case len(byCount) == 1:
				if !errors.Is(r.err, natsjobs.ErrConfigMismatch) {
					problems = append(problems, what+fmt.Sprintf("%v, want ErrConfigMismatch (streams %v)", r.err, counts))
				}
			default: // mixed: a count matches some and not others
				if r.err == nil {
					problems = append(problems, what+fmt.Sprintf("started on streams of mixed counts %v", counts))
				} else if !errors.Is(r.err, natsjobs.ErrConfigMismatch) {
					problems = append(problems, what+fmt.Sprintf("%v (streams %v)", r.err, counts))
				}
			}
		}
		// A job through every client that started, on the workers that did.
		workers := 0
		for _, r := range results {
			if r.w != nil {
				workers++
			}
		}
		for i, r := range results {
			if r.c == nil || workers == 0 {
				continue
			}
			v, err := h.Submit(ctx, r.c, fmt.Sprint("j", i), i).Wait(ctx)
			if err != nil || v != i+1 {
				problems = append(problems, fmt.Sprintf("round %d: a job through client %d: (%d, %v)", round, i, v, err))
			}
		}
		for _, r := range results {
			if r.c != nil {
				_ = r.c.Close()
			}
			if r.w != nil {
				_ = r.w.Shutdown(ctx)
			}
		}
		cancel()
		if len(problems) > 0 {
			break // one failing round says enough, and keeps the test short
		}
	}
	for _, m := range mixed {
		t.Logf("streams and buckets of one namespace with different counts: %s", m)
	}
	for _, p := range problems {
		t.Error(p)
	}
}
