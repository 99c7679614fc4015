package natsjobs_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
	"github.com/stretchr/testify/require"
)

// workerProc is a worker in an OS process of its own.
type workerProc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // its stdout, line by line; closed at its end
	starts int         // "start" lines read by expect and stop
}

func startWorkerProc(t *testing.T, ts *testServer, ns, name string) *workerProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=worker", urlEnv+"="+ts.url(), nsEnv+"="+ns, nameEnv+"="+name)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &workerProc{name: name, cmd: cmd, stdin: stdin, lines: make(chan string, 8192)}
	// Owner: the test. Ends when the process's stdout closes (it exits or
	// is killed), which the cleanup below waits for.
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
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
			if strings.HasPrefix(l, "start ") {
				p.starts++
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("watchdog: worker %s printed no %q", p.name, prefix)
		}
	}
}

// drain reads the rest of the process's output, counting its starts.
func (p *workerProc) drain() {
	for l := range p.lines {
		if strings.HasPrefix(l, "start ") {
			p.starts++
		}
	}
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
// killed with SIGKILL half-way and replaced. Every future resolves with the
// one outcome recorded for its ID; duplicate executions are counted.
func TestProcessesChaos(t *testing.T) {
	ts := startServer(t)
	ns := namespace()
	procs := []*workerProc{startWorkerProc(t, ts, ns, "p0"), startWorkerProc(t, ts, ns, "p1"), startWorkerProc(t, ts, ns, "p2")}
	c := newClient(t, ts.connect(t), natsjobs.WithNamespace(ns))
	ctx := wctx(t, 45*time.Second)
	chaos := natsjobs.Declare[chaosIn, string]("chaos")
	const n = 200
	futs := make([]*qpool.Future[string], n)
	for i := range futs {
		id := fmt.Sprint("x", i)
		futs[i] = chaos.Submit(ctx, c, id, chaosIn{ID: id, FailP: 0.3, Panic: i%50 == 7, Sleep: 20}, qpool.WithRetry(4, time.Millisecond))
		if i == n/2 {
			// Mid-run: p0 has just started a job (and has four slots, and
			// the queue is long): kill it.
			procs[0].expect(t, "start ")
			require.NoError(t, procs[0].cmd.Process.Kill())
			procs[0].drain() // until its stdout closes
			procs = append(procs, startWorkerProc(t, ts, ns, "p3"))
		}
	}
	ok, failed := 0, 0
	for i, f := range futs {
		v, err := f.Wait(ctx)
		rec, rerr := c.Result(ctx, f.ID())
		require.NoError(t, rerr)
		if err == nil {
			ok++
			require.Equal(t, f.ID(), v)
			require.NoError(t, rec.Err, "the future and the record agree")
			continue
		}
		failed++
		require.Error(t, rec.Err, "the future and the record agree (%s)", f.ID())
		require.Equal(t, err.Error(), rec.Err.Error())
		var re *natsjobs.RemoteError
		require.ErrorAs(t, err, &re)
		if i%50 == 7 {
			require.Equal(t, "panic", re.Kind, f.ID())
			require.Equal(t, 1, re.Attempts)
		} else {
			require.Equal(t, 4, re.Attempts, f.ID())
		}
	}
	// Count executions from the workers' logs: starts beyond attempts are
	// duplicate executions (at least once).
	for _, p := range procs[1:] {
		p.stop(t)
	}
	starts := 0
	for _, p := range procs {
		starts += p.starts
	}
	attempts := 0
	for _, f := range futs {
		rec, err := c.Result(ctx, f.ID())
		require.NoError(t, err)
		attempts += rec.Attempts
	}
	t.Logf("%d jobs: %d ok, %d failed after their attempts; %d handler calls for %d recorded attempts (%d beyond, from the killed worker's unfinished jobs and duplicate deliveries)",
		n, ok, failed, starts, attempts, starts-attempts)
	require.GreaterOrEqual(t, starts, attempts, "every recorded attempt ran")
}
