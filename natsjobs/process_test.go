package natsjobs_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
	"github.com/stretchr/testify/require"
)

// workerProc is a worker in an OS process of its own.
type workerProc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	// lines has its stdout, line by line, and is closed at its end. A
	// "start" line that finds it full is dropped (a busy worker prints
	// thousands), and counted all the same in starts.
	lines  chan string
	starts atomic.Int64 // "start" lines printed

	mu      sync.Mutex
	started map[string]int // guarded by mu: "start" lines by job ID
}

func startWorkerProc(t *testing.T, ts *testServer, ns, name string, env ...string) *workerProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=worker", urlEnv+"="+ts.url(), nsEnv+"="+ns, nameEnv+"="+name)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &workerProc{name: name, cmd: cmd, stdin: stdin, lines: make(chan string, 1024), started: map[string]int{}}
	// Owner: the test. Ends when the process's stdout closes (it exits or
	// is killed), which the cleanup below waits for.
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			l := sc.Text()
			if !strings.HasPrefix(l, "start ") {
				p.lines <- l
				continue
			}
			p.starts.Add(1)
			p.mu.Lock()
			p.started[strings.TrimPrefix(l, "start ")]++
			p.mu.Unlock()
			select {
			case p.lines <- l:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		for range p.lines {
		}
		_ = cmd.Wait()
	})
	p.expect(t, "ready")
	return p
}

// expect returns the next line that starts with prefix, or fails the test.
func (p *workerProc) expect(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("worker %s ended before %q", p.name, prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("watchdog: worker %s printed no %q", p.name, prefix)
		}
	}
}

// drain reads the rest of the process's output.
func (p *workerProc) drain() {
	for range p.lines {
	}
}

// startedIDs returns the IDs of the jobs the processes started, each once.
func startedIDs(procs []*workerProc) []string {
	var ids []string
	for _, p := range procs {
		p.mu.Lock()
		for id := range p.started {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		p.mu.Unlock()
	}
	slices.Sort(ids)
	return ids
}

// drainQueued drops the lines read and not yet taken.
func (p *workerProc) drainQueued() {
	for {
		select {
		case <-p.lines:
		default:
			return
		}
	}
}

// waitForStart returns the index of the process in procs that prints
// "start id", reading (and dropping) their other lines meanwhile.
func waitForStart(t *testing.T, procs []*workerProc, id string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		idle := true
		for i, p := range procs {
			select {
			case l, ok := <-p.lines:
				if !ok {
					t.Fatalf("worker %s ended", p.name)
				}
				idle = false
				if l == "start "+id {
					return i
				}
			default:
			}
		}
		if idle {
			time.Sleep(time.Millisecond)
		}
	}
	t.Fatalf("watchdog: no worker started %s", id)
	return -1
}

// stop closes the process's stdin, so it shuts down, and waits for it.
func (p *workerProc) stop(t *testing.T) {
	require.NoError(t, p.stdin.Close())
	p.drain()
	require.NoError(t, p.cmd.Wait())
}

// TestKilledWorkerProcess kills a worker process with SIGKILL while it runs
// a job: no job is lost, the killed worker's jobs finish on the other
// processes once AckWait passes, and each job has one outcome.
func TestKilledWorkerProcess(t *testing.T) {
	ts := startServer(t)
	ns := namespace()
	victim := startWorkerProc(t, ts, ns, "victim")
	c := newClient(t, ts.connect(t), natsjobs.WithNamespace(ns))
	ctx := wctx(t, 40*time.Second)
	work := natsjobs.Declare[workIn, string]("work")
	const n = 12
	futs := make([]*qpool.Future[string], n)
	for i := range futs {
		id := fmt.Sprint("w", i)
		futs[i] = work.Submit(ctx, c, id, workIn{ID: id, Sleep: 200})
	}
	started := strings.TrimPrefix(victim.expect(t, "start "), "start ")
	require.NoError(t, victim.cmd.Process.Kill())
	survivors := []*workerProc{startWorkerProc(t, ts, ns, "a"), startWorkerProc(t, ts, ns, "b")}
	for i, f := range futs {
		v, err := f.Wait(ctx)
		require.NoError(t, err, "w%d", i)
		require.Contains(t, []string{"a", "b"}, v, "w%d finished on the killed worker", i)
	}
	rec, err := c.Result(ctx, started)
	require.NoError(t, err)
	require.Contains(t, []string{"a", "b"}, rec.Worker, "the killed worker's job %s finished elsewhere", started)
	require.Equal(t, 1, rec.Attempts, "a crash is a redelivery, not an attempt")
	for _, p := range survivors {
		p.stop(t)
	}
}

// TestProcessesChaos: one producer (the test) and three worker processes,
// jobs that fail at random (and are retried), some that panic; a worker is
// killed with SIGKILL mid-job, repeatedly, and replaced. Every future
// resolves with the one outcome recorded for its ID, no outcome is
// written twice, no job is left in the stream, and duplicate executions
// are counted. At full scale (QPOOL_NATSJOBS_FULL=1): 10,000 jobs and 10
// kills.
func TestProcessesChaos(t *testing.T) {
	n, kills := scale(200, 10000), scale(2, 10)
	ts := startServer(t)
	ns := namespace()
	procs := []*workerProc{startWorkerProc(t, ts, ns, "p0"), startWorkerProc(t, ts, ns, "p1"), startWorkerProc(t, ts, ns, "p2")}
	live := []*workerProc{procs[0], procs[1], procs[2]}
	js := ts.connect(t)
	c := newClient(t, js, natsjobs.WithNamespace(ns))
	ctx := wctx(t, time.Duration(scale(45, 900))*time.Second)
	chaos := natsjobs.Declare[chaosIn, string]("chaos")
	futs := submitAll(t, ctx, n, func(i int) *qpool.Future[string] {
		id := fmt.Sprint("x", i)
		in := chaosIn{ID: id, FailP: 0.2, Panic: i%97 == 7, Sleep: 2 + i%7}
		return chaos.Submit(ctx, c, id, in, qpool.WithRetry(3, time.Millisecond))
	})
	started := func() int64 {
		s := int64(0)
		for _, p := range procs {
			s += p.starts.Load()
		}
		return s
	}
	work := natsjobs.Declare[workIn, string]("work")
	var killed []*qpool.Future[string]
	var victims []string
	for k := 1; k <= kills; k++ {
		// Spread the kills over the run: the next when another share of
		// the jobs has started (starts, not resolved futures, which are
		// seen in order and lag behind).
		waitFor(t, time.Duration(scale(30, 600))*time.Second, "jobs to start before a kill", func() bool {
			return started() >= int64(k*n/(kills+1))
		})
		// The victim is whichever worker starts a long job submitted now:
		// killed while that job certainly runs.
		id := fmt.Sprint("kill", k)
		for _, p := range live {
			p.drainQueued()
		}
		killed = append(killed, work.Submit(ctx, c, id, workIn{ID: id, Sleep: 1000}))
		v := waitForStart(t, live, id)
		victims = append(victims, live[v].name)
		require.NoError(t, live[v].cmd.Process.Kill())
		live[v].drain()
		_ = live[v].cmd.Wait()
		p := startWorkerProc(t, ts, ns, fmt.Sprint("p", len(procs)))
		procs = append(procs, p)
		live[v] = p
	}
	for k, f := range killed {
		_, err := f.Wait(ctx)
		require.NoError(t, err, f.ID())
		rec, err := c.Result(ctx, f.ID())
		require.NoError(t, err)
		require.NotEqual(t, victims[k], rec.Worker, "%s finished elsewhere", f.ID())
		require.Equal(t, 1, rec.Attempts, "a crash is a redelivery, not an attempt")
	}
	ok, failed := 0, 0
	for i, f := range futs {
		v, err := f.Wait(ctx)
		require.NoError(t, ctx.Err(), "watchdog: future %s did not resolve", f.ID())
		rec, rerr := c.Result(ctx, f.ID())
		require.NoError(t, rerr)
		if err == nil {
			ok++
			require.Equal(t, f.ID(), v)
			require.NoError(t, rec.Err, "the future and the record agree")
			require.LessOrEqual(t, rec.Attempts, 3)
			continue
		}
		failed++
		require.Error(t, rec.Err, "the future and the record agree (%s)", f.ID())
		require.Equal(t, err.Error(), rec.Err.Error())
		var re *natsjobs.RemoteError
		require.ErrorAs(t, err, &re)
		if i%97 == 7 {
			require.Equal(t, "panic", re.Kind, f.ID())
			require.Equal(t, 1, re.Attempts)
		} else {
			require.Equal(t, "error", re.Kind, f.ID())
			require.Equal(t, 3, re.Attempts, f.ID())
		}
	}
	checkOneOutcomeEach(t, ctx, js, ns, n+kills)
	checkQueueEmpty(t, ctx, js, ns)
	// Count executions from the workers' logs: starts beyond attempts are
	// duplicate executions (at least once).
	for _, p := range live {
		p.stop(t)
	}
	starts := int64(0)
	for _, p := range procs {
		starts += p.starts.Load()
	}
	attempts := int64(0)
	for _, f := range append(futs, killed...) {
		rec, err := c.Result(ctx, f.ID())
		require.NoError(t, err)
		attempts += int64(rec.Attempts)
	}
	t.Logf("%d jobs, %d kills: %d ok, %d failed after their attempts; %d handler calls for %d recorded attempts (%d duplicate executions: the killed workers' unfinished jobs and duplicate deliveries)",
		n, kills, ok, failed, starts, attempts, starts-attempts)
	require.GreaterOrEqual(t, starts, attempts, "every recorded attempt ran")
}
