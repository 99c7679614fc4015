package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool/natsjobs"
)

// runWorker runs one worker until its standard input closes or it is
// interrupted, then shuts it down, handing back what still runs.
func runWorker(url, ns, name string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	nc, js, c, err := connect(ctx, url, ns)
	if err != nil {
		return err
	}
	defer nc.Close()
	defer c.Close()
	var mu sync.Mutex
	log := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf("  [worker] "+format+"\n", args...)
	}
	reg := natsjobs.NewRegistry()
	register(reg, c, name, log)
	w, err := natsjobs.NewWorker(ctx, js, reg, natsjobs.WithNamespace(ns), natsjobs.WithWorkerName(name),
		natsjobs.WithConcurrency(4))
	if err != nil {
		return err
	}
	stdin := make(chan struct{})
	// Owner: runWorker. Ends when stdin closes (or at exit, for a
	// terminal that never closes).
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stdin) }()
	select {
	case <-stdin:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.Shutdown(sctx)
}

// connect opens a connection that reconnects for ever and buffers what is
// published meanwhile, and a client of the namespace ns on it. The caller
// closes both, the client first.
func connect(ctx context.Context, url, ns string) (*nats.Conn, jetstream.JetStream, *natsjobs.Client, error) {
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectBufSize(-1))
	if err != nil {
		return nil, nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		var c *natsjobs.Client
		if c, err = natsjobs.NewClient(ctx, js, natsjobs.WithNamespace(ns)); err == nil {
			return nc, js, c, nil
		}
	}
	nc.Close()
	return nil, nil, nil, err
}
