package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/qpool/qpool/natsledger"
)

// runDemo starts the embedded server unless url is given, runs the
// workers as child processes, and prints the history they wrote.
func runDemo(url, id string, workers int) error {
	if url == "" {
		srv, dir, err := startEmbedded()
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		defer srv.WaitForShutdown()
		defer srv.Shutdown()
		url = srv.ClientURL()
		fmt.Printf("embedded NATS server at %s, JetStream in %s\n", url, dir)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmds := make([]*exec.Cmd, workers)
	for w := range cmds {
		cmds[w] = exec.Command(self, "-nats", url, "-id", id,
			"-worker", strconv.Itoa(w), "-workers", strconv.Itoa(workers))
		cmds[w].Stdout, cmds[w].Stderr = os.Stdout, os.Stderr
		if err := cmds[w].Start(); err != nil {
			return err
		}
	}
	for w, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("worker %d: %w", w, err)
		}
	}
	return printHistory(url, id)
}

// startEmbedded starts a NATS server with JetStream in a temporary
// directory, on a free port of the loopback interface.
func startEmbedded() (*server.Server, string, error) {
	dir, err := os.MkdirTemp("", "qpool-distributed-")
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

// printHistory opens the entanglement's ledger as a late process would
// and prints everything the workers recorded, in the one shared order.
func printHistory(url, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	l, err := natsledger.Open(ctx, nc, id)
	if err != nil {
		return err
	}
	defer l.Close()
	history, err := l.Read(ctx, 0, 0)
	if err != nil {
		return err
	}
	fmt.Printf("\nhistory of %q (stream %s), as replayed by a late process:\n", id, l.Stream())
	for _, c := range history {
		fmt.Printf("  #%-3d %-12s = %v\n", c.Sequence, c.Key, c.Value)
	}
	processed, _, _ := l.Get("processed")
	fmt.Printf("processed = %v of %d partitions\n", processed, partitions)
	return nil
}
