package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/qpool/qpool"
)

const partitions = 3

// runDemo starts the embedded server unless url is given, starts the
// worker processes, submits the DAG and prints each result as it
// resolves, then stops the workers.
func runDemo(url, ns string, workers int) error {
	if url == "" {
		srv, dir, err := startEmbedded()
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		defer srv.WaitForShutdown()
		defer srv.Shutdown()
		url = srv.ClientURL()
		fmt.Printf("embedded NATS server %s at %s, JetStream in %s\n", srv.ID()[:8], url, dir)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var stdins []io.WriteCloser
	var cmds []*exec.Cmd
	for i := range workers {
		cmd := exec.Command(self, "-nats", url, "-ns", ns, "-worker", fmt.Sprintf("w%d", i))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		stdins, cmds = append(stdins, in), append(cmds, cmd)
	}
	defer func() {
		for i, in := range stdins { // closing stdin shuts a worker down
			_ = in.Close()
			_ = cmds[i].Wait()
		}
	}()
	return produce(url, ns)
}

// produce submits fetch-i → process-i → report and prints each result as
// its future resolves, in whatever order that happens.
func produce(url, ns string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, _, c, err := connect(ctx, url, ns)
	if err != nil {
		return err
	}
	defer nc.Close()
	defer c.Close()

	type line struct{ id, text string }
	results := make(chan line)
	wait := func(f interface {
		ID() string
		Done() <-chan struct{}
	}, get func() (any, error)) {
		// Owner: produce. Ends when the future resolves; produce reads
		// one line per future.
		go func() {
			<-f.Done()
			v, err := get()
			if err != nil {
				results <- line{f.ID(), "error: " + err.Error()}
				return
			}
			results <- line{f.ID(), fmt.Sprint(v)}
		}()
	}
	n := 0
	// The report first: it waits for jobs submitted after it.
	var parts []int
	var depIDs []string
	for p := 1; p <= partitions; p++ {
		parts = append(parts, p)
		depIDs = append(depIDs, processID(p))
	}
	r := report.Submit(ctx, c, "report", parts, qpool.WithDependencies(depIDs...))
	wait(r, func() (any, error) { return r.Wait(ctx) })
	n++
	for p := 1; p <= partitions; p++ {
		pf := process.Submit(ctx, c, processID(p), p, qpool.WithDependencies(fetchID(p)))
		wait(pf, func() (any, error) { return pf.Wait(ctx) })
		ff := fetch.Submit(ctx, c, fetchID(p), p, qpool.WithRetry(3, 100*time.Millisecond), qpool.WithTimeout(5*time.Second))
		wait(ff, func() (any, error) { return ff.Wait(ctx) })
		n += 2
	}
	fmt.Printf("submitted %d jobs in namespace %q; results as they resolve:\n", n, ns)
	for range n {
		l := <-results
		fmt.Printf("%-10s %s\n", l.id, l.text)
	}
	rec, err := c.Result(ctx, "report")
	if err != nil {
		return err
	}
	fmt.Printf("report: ran on %s in %d attempt(s), recorded %s\n", rec.Worker, rec.Attempts, rec.Finished.Format(time.TimeOnly))
	return nil
}

// startEmbedded starts a NATS server with JetStream in a temporary
// directory, on a free port of the loopback interface.
func startEmbedded() (*server.Server, string, error) {
	dir, err := os.MkdirTemp("", "qpool-jobs-")
	if err != nil {
		return nil, "", err
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("embedded server not ready")
	}
	return srv, dir, nil
}
