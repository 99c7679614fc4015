package natsjobs_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
	"github.com/stretchr/testify/require"
)

// fullEnv set to 1 runs the multi-process reliability tests at the scale
// of issue 15 (10,000 jobs, chains of 1,000) instead of CI's: give go test
// a -timeout of 30m.
const fullEnv = "QPOOL_NATSJOBS_FULL"

// scale returns ci, or full when fullEnv is set.
func scale(ci, full int) int {
	if os.Getenv(fullEnv) == "1" {
		return full
	}
	return ci
}

// submitAll submits n jobs from 8 goroutines and returns their futures
// in order.
func submitAll[T any](t *testing.T, ctx context.Context, n int, submit func(i int) *qpool.Future[T]) []*qpool.Future[T] {
	t.Helper()
	futs := make([]*qpool.Future[T], n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		// Owner: submitAll, which waits for them.
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				futs[i] = submit(i)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, ctx.Err(), "watchdog: submissions")
	return futs
}

// checkOneOutcomeEach checks that the results bucket of namespace ns has
// one outcome for each of n jobs and was written n times, no more: no ID
// got a second outcome (the bucket keeps one value per key, so a second
// write would show only in the stream's sequence).
func checkOneOutcomeEach(t *testing.T, ctx context.Context, js jetstream.JetStream, ns string, n int) {
	t.Helper()
	st, err := js.Stream(ctx, "KV_"+ns+"_results")
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(n), info.State.Msgs, "one outcome per job")
	require.Equal(t, uint64(n), info.State.LastSeq, "outcome writes: one per job, no second outcome")
}

// checkQueueEmpty waits for the default queue's stream to be empty: every
// job's message was acknowledged after its outcome, none left behind.
func checkQueueEmpty(t *testing.T, ctx context.Context, js jetstream.JetStream, ns string) {
	t.Helper()
	st, err := js.Stream(ctx, ns+"_q_default")
	require.NoError(t, err)
	waitFor(t, 20*time.Second, "the queue's stream to empty", func() bool {
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
}

// startedBy sums the "start" lines the processes printed.
func startedBy(procs []*workerProc) int64 {
	s := int64(0)
	for _, p := range procs {
		s += p.starts.Load()
	}
	return s
}

// TestProcessesServerRestart: one producer and three worker processes; the
// server is stopped mid-run and started again on the same store and port
// (at full scale: 10,000 jobs, three restarts). Submissions during the
// outage fail within their context with an error, and succeed once
// submitted again after it; every future resolves, no job is lost, and no
// ID gets a second outcome.
func TestProcessesServerRestart(t *testing.T) {
	n, restarts := scale(200, 10000), scale(1, 3)
	ts := startServer(t)
	ns := namespace()
	procs := []*workerProc{startWorkerProc(t, ts, ns, "p0"), startWorkerProc(t, ts, ns, "p1"), startWorkerProc(t, ts, ns, "p2")}
	js := ts.connect(t)
	c := newClient(t, js, natsjobs.WithNamespace(ns))
	ctx := wctx(t, time.Duration(scale(45, 900))*time.Second)
	chaos := natsjobs.Declare[chaosIn, string]("chaos")
	futs := submitAll(t, ctx, n, func(i int) *qpool.Future[string] {
		id := fmt.Sprint("r", i)
		return chaos.Submit(ctx, c, id, chaosIn{ID: id, Sleep: 2 + i%5})
	})
	var outage []*qpool.Future[string]
	failedAtOutage := 0
	for k := 1; k <= restarts; k++ {
		waitFor(t, time.Duration(scale(30, 600))*time.Second, "jobs to start before a restart", func() bool {
			return startedBy(procs) >= int64(k*n/(restarts+1))
		})
		ts.stop()
		for i := range 3 {
			id := fmt.Sprintf("o%d-%d", k, i)
			sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			f := chaos.Submit(sctx, c, id, chaosIn{ID: id})
			cancel()
			// Submit returns once the job is stored or the submission has
			// failed: with the server down, it has failed, within sctx.
			select {
			case <-f.Done():
			default:
				t.Fatalf("a submit during the outage returned with its future pending (%s)", id)
			}
			_, err := f.Wait(ctx)
			require.Error(t, err, id)
			require.NotErrorIs(t, err, natsjobs.ErrDuplicateJob, id)
			failedAtOutage++
			outage = append(outage, f)
		}
		ts.start()
		waitFor(t, 10*time.Second, "the client's reconnection", js.Conn().IsConnected)
		// The same IDs again, after the reconnection: nothing of the
		// failed submissions was kept, so they are accepted.
		for i, f := range outage[len(outage)-3:] {
			outage[len(outage)-3+i] = chaos.Submit(ctx, c, f.ID(), chaosIn{ID: f.ID()})
		}
	}
	all := append(append([]*qpool.Future[string](nil), futs...), outage...)
	for _, f := range all {
		v, err := f.Wait(ctx)
		require.NoError(t, ctx.Err(), "watchdog: future %s did not resolve", f.ID())
		require.NoError(t, err, f.ID())
		require.Equal(t, f.ID(), v)
	}
	checkOneOutcomeEach(t, ctx, js, ns, len(all))
	checkQueueEmpty(t, ctx, js, ns)
	for _, p := range procs {
		p.stop(t)
	}
	t.Logf("%d jobs, %d restarts: %d submissions during the outages failed (and were accepted after); %d handler calls for %d jobs (%d duplicate executions)",
		len(all), restarts, failedAtOutage, startedBy(procs), len(all), startedBy(procs)-int64(len(all)))
}

// TestProcessesChain: a chain of jobs (1,000 at full scale) across
// processes: half its links submitted by a child process, half by the
// test, each mostly before the job it depends on, run by two worker
// processes. With a head that succeeds every link runs, in order; with a
// head that fails, no other link runs and each fails with
// ErrDependencyFailed naming the head.
func TestProcessesChain(t *testing.T) {
	n := scale(50, 1000)
	for _, failHead := range []bool{false, true} {
		t.Run(map[bool]string{false: "ok", true: "head-fails"}[failHead], func(t *testing.T) {
			ts := startServer(t)
			ns := namespace()
			procs := []*workerProc{startWorkerProc(t, ts, ns, "p0"), startWorkerProc(t, ts, ns, "p1")}
			js := ts.connect(t)
			c := newClient(t, js, natsjobs.WithNamespace(ns))
			ctx := wctx(t, time.Duration(scale(30, 600))*time.Second)
			chaos := natsjobs.Declare[chaosIn, string]("chaos")
			const prefix = "c"
			fh := "0"
			if failHead {
				fh = "1"
			}
			// The child submits the even links, the test the odd ones, at
			// the same time.
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"=chain", urlEnv+"="+ts.url(), nsEnv+"="+ns,
				chainEnv+"="+prefix+","+strconv.Itoa(n)+",0,"+fh)
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			futs := make([]*qpool.Future[string], n)
			for i := n - 1; i >= 0; i-- {
				if i%2 == 1 {
					id, in, opts := chainLink(prefix, i, failHead)
					futs[i] = chaos.Submit(ctx, c, id, in, opts...)
				}
			}
			b, err := io.ReadAll(out)
			require.NoError(t, err)
			require.NoError(t, cmd.Wait(), "the submitting child")
			require.Equal(t, "submitted\n", string(b))
			for i := 0; i < n; i += 2 {
				futs[i] = chaos.Future(ctx, c, fmt.Sprintf("%s-%d", prefix, i))
			}
			var prev *natsjobs.Record
			head := prefix + "-0"
			for i, f := range futs {
				v, err := f.Wait(ctx)
				require.NoError(t, ctx.Err(), "watchdog: link %d did not resolve", i)
				rec, rerr := c.Result(ctx, f.ID())
				require.NoError(t, rerr)
				switch {
				case !failHead:
					require.NoError(t, err, f.ID())
					require.Equal(t, f.ID(), v)
					if prev != nil {
						require.False(t, rec.Finished.Before(prev.Finished), "%s finished before its dependency", f.ID())
					}
				case i == 0:
					var re *natsjobs.RemoteError
					require.ErrorAs(t, err, &re)
					require.Equal(t, "error", re.Kind)
				default:
					require.ErrorIs(t, err, qpool.ErrDependencyFailed, f.ID())
					var de *qpool.DependencyError
					require.ErrorAs(t, err, &de)
					require.Equal(t, head, de.Origin, f.ID())
					require.Equal(t, 0, rec.Attempts, "%s never ran", f.ID())
				}
				prev = rec
			}
			checkOneOutcomeEach(t, ctx, js, ns, n)
			for _, p := range procs {
				p.stop(t)
			}
			if failHead {
				require.Equal(t, []string{head}, startedIDs(procs), "only the failing head ran")
			} else {
				require.GreaterOrEqual(t, startedBy(procs), int64(n))
			}
		})
	}
}

// TestProcessesCancelAndDelayed: across processes, a cancel from the
// producer ends a job's context on the worker process that runs it, and a
// queued cancelled job never runs; a delayed job runs on a worker process
// not before its time.
func TestProcessesCancelAndDelayed(t *testing.T) {
	ts := startServer(t)
	ns := namespace()
	procs := []*workerProc{startWorkerProc(t, ts, ns, "p0"), startWorkerProc(t, ts, ns, "p1")}
	c := newClient(t, ts.connect(t), natsjobs.WithNamespace(ns))
	ctx := wctx(t, 30*time.Second)
	work := natsjobs.Declare[workIn, string]("work")
	chaos := natsjobs.Declare[chaosIn, string]("chaos")

	long := work.Submit(ctx, c, "long", workIn{ID: "long", Sleep: 60000})
	at := time.Now().Add(1500 * time.Millisecond)
	delayed := chaos.SubmitAt(ctx, c, "delayed", chaosIn{ID: "delayed"}, at)
	never := chaos.SubmitAt(ctx, c, "never", chaosIn{ID: "never"}, at)
	require.NoError(t, c.Cancel(ctx, "never"))

	v := waitForStart(t, procs, "long")
	require.NoError(t, c.Cancel(ctx, "long"))
	l := procs[v].expect(t, "stop long")
	require.Contains(t, l, "canceled", "the worker process's job context ended by the cancel")
	_, err := long.Wait(ctx)
	require.ErrorIs(t, err, context.Canceled)

	got, err := delayed.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, "delayed", got)
	rec, err := c.Result(ctx, "delayed")
	require.NoError(t, err)
	require.False(t, rec.Finished.Before(at), "the delayed job finished at %v, before its time %v", rec.Finished, at)
	require.Contains(t, []string{"p0", "p1"}, rec.Worker)
	_, err = never.Wait(ctx)
	require.ErrorIs(t, err, context.Canceled)

	for _, p := range procs {
		p.stop(t)
	}
	require.Equal(t, []string{"delayed", "long"}, startedIDs(procs), "the jobs that ran (never did not)")
}

// TestProcessesDiamond: diamonds (a; b and c after a; d after b and c)
// submitted from two clients, d first, run by two worker processes; in
// half of them a fails, and then b, c and d fail with ErrDependencyFailed
// naming a, and none of them runs.
func TestProcessesDiamond(t *testing.T) {
	n := scale(10, 200)
	ts := startServer(t)
	ns := namespace()
	procs := []*workerProc{startWorkerProc(t, ts, ns, "p0"), startWorkerProc(t, ts, ns, "p1")}
	c1 := newClient(t, ts.connect(t), natsjobs.WithNamespace(ns))
	c2 := newClient(t, ts.connect(t), natsjobs.WithNamespace(ns))
	ctx := wctx(t, time.Duration(scale(30, 300))*time.Second)
	chaos := natsjobs.Declare[chaosIn, string]("chaos")
	type diamond struct{ a, b, c, d *qpool.Future[string] }
	ds := make([]diamond, n)
	one := qpool.WithRetry(1, 0)
	for i := range ds {
		id := func(s string) string { return fmt.Sprintf("%s%d", s, i) }
		fail := 0.0
		if i%2 == 1 {
			fail = 1
		}
		ds[i].d = chaos.Submit(ctx, c1, id("d"), chaosIn{ID: id("d")}, one, qpool.WithDependencies(id("b"), id("c")))
		ds[i].b = chaos.Submit(ctx, c2, id("b"), chaosIn{ID: id("b")}, one, qpool.WithDependencies(id("a")))
		ds[i].c = chaos.Submit(ctx, c1, id("c"), chaosIn{ID: id("c")}, one, qpool.WithDependencies(id("a")))
		ds[i].a = chaos.Submit(ctx, c2, id("a"), chaosIn{ID: id("a"), FailP: fail}, one)
	}
	for i, dm := range ds {
		if i%2 == 0 {
			var fin [4]time.Time
			for k, f := range []*qpool.Future[string]{dm.a, dm.b, dm.c, dm.d} {
				v, err := f.Wait(ctx)
				require.NoError(t, err, f.ID())
				require.Equal(t, f.ID(), v)
				rec, err := c1.Result(ctx, f.ID())
				require.NoError(t, err)
				fin[k] = rec.Finished
			}
			require.False(t, fin[1].Before(fin[0]) || fin[2].Before(fin[0]), "b or c of diamond %d finished before a", i)
			require.False(t, fin[3].Before(fin[1]) || fin[3].Before(fin[2]), "d of diamond %d finished before b or c", i)
			continue
		}
		_, err := dm.a.Wait(ctx)
		var re *natsjobs.RemoteError
		require.ErrorAs(t, err, &re, dm.a.ID())
		for _, f := range []*qpool.Future[string]{dm.b, dm.c, dm.d} {
			_, err := f.Wait(ctx)
			require.ErrorIs(t, err, qpool.ErrDependencyFailed, f.ID())
			var de *qpool.DependencyError
			require.ErrorAs(t, err, &de)
			require.Equal(t, dm.a.ID(), de.Origin, f.ID())
		}
	}
	for _, p := range procs {
		p.stop(t)
	}
	var want []string
	for i := range n {
		want = append(want, fmt.Sprint("a", i))
		if i%2 == 0 {
			want = append(want, fmt.Sprint("b", i), fmt.Sprint("c", i), fmt.Sprint("d", i))
		}
	}
	slices.Sort(want)
	require.Equal(t, want, startedIDs(procs), "the jobs that ran: no dependent of a failed job")
}
