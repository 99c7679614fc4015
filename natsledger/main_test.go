package natsledger_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/qpool/qpool/natsledger"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(childMain(mode))
	}
	goleak.VerifyTestMain(m)
}

// testServer is an embedded NATS server with JetStream in a test's
// temporary directory. Restart keeps its store directory and port.
type testServer struct {
	t    testing.TB
	dir  string
	port int
	srv  *server.Server
}

// startServer starts a server that t.Cleanup shuts down and waits for.
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
		Host:      "127.0.0.1",
		Port:      ts.port,
		JetStream: true,
		StoreDir:  ts.dir,
		NoLog:     true,
		NoSigs:    true,
	})
	require.NoError(ts.t, err)
	srv.Start()
	require.True(ts.t, srv.ReadyForConnections(10*time.Second), "server not ready")
	ts.srv = srv
}

// stop shuts the server down and waits until it has.
func (ts *testServer) stop() {
	if ts.srv == nil {
		return
	}
	ts.srv.Shutdown()
	ts.srv.WaitForShutdown()
	ts.srv = nil
}

// restart stops the server and starts a new one on the same port and
// store directory.
func (ts *testServer) restart() {
	ts.stop()
	ts.start()
}

func (ts *testServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(ts.port) }

// connect opens a connection that reconnects for ever and does not buffer
// while disconnected; t.Cleanup closes it.
func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, connOptions()...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

func connOptions() []nats.Option {
	return []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(20 * time.Millisecond),
		nats.ReconnectBufSize(-1),
	}
}

// open opens a ledger that t.Cleanup closes.
func open(t testing.TB, nc *nats.Conn, id string, opts ...natsledger.Option) *natsledger.Ledger {
	t.Helper()
	l, err := natsledger.Open(context.Background(), nc, id, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// uniqueID returns an entanglement ID no other test uses.
func uniqueID(t testing.TB) string {
	return fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
}
