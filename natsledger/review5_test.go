package natsledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/qpool/qpool/natsledger"
)

// A review (2026-12-06) of natsledger's Open: "a natsledger
// Open that times out wraps ErrUnavailable" (ErrUnavailable: "JetStream did
// not answer within the ledger's timeout: the server is down, restarting or
// unreachable").

// TestReview5OpenWhileServerDownIsUnavailable: an Open made while the
// connection's server is down (the connection reconnecting, with the
// package's recommended nats.ReconnectBufSize(-1)) must fail with an error
// that matches ErrUnavailable, within its timeout, as an Append does.
func TestReview5OpenWhileServerDownIsUnavailable(t *testing.T) {
	ts := startServer(t)
	nc := connect(t, ts.url())
	ts.stop()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := natsledger.Open(ctx, nc, uniqueID(t), natsledger.WithTimeout(300*time.Millisecond))
		late := ctx.Err() != nil
		cancel()
		if late {
			t.Fatal("watchdog: Open did not return within its timeout")
		}
		if err == nil {
			t.Fatalf("open %d: no error with the server down", i)
		}
		if !errors.Is(err, natsledger.ErrUnavailable) {
			t.Fatalf("open %d with the server down: %v; want an error matching ErrUnavailable", i, err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("open %d with the server down: %v; want context.DeadlineExceeded too, as ErrUnavailable says", i, err)
		}
		if i == 0 {
			t.Log(err)
		}
	}
}

// TestReview5OpenDuringRestartWaitsForTheServer: an Open made while the
// server restarts waits for it within its timeout, rather than failing at
// once because the reconnecting connection refused its first request.
func TestReview5OpenDuringRestartWaitsForTheServer(t *testing.T) {
	ts := startServer(t)
	nc := connect(t, ts.url())
	for i := range 2 {
		ts.stop()
		done := make(chan error, 1)
		go func() {
			l, err := natsledger.Open(context.Background(), nc, uniqueID(t), natsledger.WithTimeout(10*time.Second))
			if err == nil {
				err = l.Close()
			}
			done <- err
		}()
		time.Sleep(time.Duration(50+50*i) * time.Millisecond) // the Open's first requests are refused
		ts.start()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: Open during a restart: %v", i, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("watchdog: Open did not return")
		}
	}
}
