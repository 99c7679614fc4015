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
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // its stdout, line by line; closed at its end
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
	p := &workerProc{name: name, cmd: cmd, stdin: stdin, lines: make(chan string, 1024)}
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
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("watchdog: worker %s printed no %q", p.name, prefix)
		}
	}
}

// stop closes the process's stdin, so it shuts down, and waits for it.
func (p *workerProc) stop(t *testing.T) {
	require.NoError(t, p.stdin.Close())
	for range p.lines {
	}
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
