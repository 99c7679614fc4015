package natsjobs_test

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool/natsjobs"
	"github.com/stretchr/testify/require"
)

// testServer is an embedded NATS server with JetStream in a test's
// temporary directory, on a random loopback port.
type testServer struct {
	t    testing.TB
	dir  string
	port int
	srv  *server.Server
}

func startServer(t testing.TB) *testServer {
	t.Helper()
	ts := &testServer{t: t, dir: t.TempDir(), port: -1}
	ts.start()
	ts.port = ts.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) start() {
	ts.t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: ts.port, JetStream: true, StoreDir: ts.dir, NoLog: true, NoSigs: true,
	})
	require.NoError(ts.t, err)
	srv.Start()
	require.True(ts.t, srv.ReadyForConnections(10*time.Second), "server not ready")
	ts.srv = srv
}

func (ts *testServer) stop() {
	if ts.srv == nil {
		return
	}
	ts.srv.Shutdown()
	ts.srv.WaitForShutdown()
	ts.srv = nil
}

func (ts *testServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(ts.port) }

func connOptions() []nats.Option {
	return []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(20 * time.Millisecond), nats.ReconnectBufSize(-1)}
}

// connect opens a connection and its JetStream context; t.Cleanup closes it.
func (ts *testServer) connect(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(ts.url(), connOptions()...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

var nsSeq atomic.Int64

// namespace returns a namespace no other test uses (tests share nothing,
// but a fresh namespace keeps each test's streams and buckets apart even
// on one server).
func namespace() string { return "t" + strconv.FormatInt(nsSeq.Add(1), 10) }

func newClient(t testing.TB, js jetstream.JetStream, opts ...natsjobs.Option) *natsjobs.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := natsjobs.NewClient(ctx, js, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newWorker(t testing.TB, js jetstream.JetStream, reg *natsjobs.Registry, opts ...natsjobs.Option) *natsjobs.Worker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := natsjobs.NewWorker(ctx, js, reg, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.Shutdown(ctx)
	})
	return w
}

// wctx is a test's watchdog: a context that ends well before the test
// binary's timeout, so a hang fails the test rather than the run.
func wctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or the watchdog fires.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("watchdog: %s did not happen within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// restart stops the server and starts a new one on the same port and store.
func (ts *testServer) restart() {
	ts.stop()
	ts.start()
}
