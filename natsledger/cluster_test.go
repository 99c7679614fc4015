package natsledger_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsledger"
	"github.com/stretchr/testify/require"
)

// A clustered server runs in a child process (mode "server"), configured
// by these variables, so that the test can SIGKILL it.
const (
	srvNameEnv    = "QPOOL_NATSLEDGER_SRV_NAME"
	srvPortEnv    = "QPOOL_NATSLEDGER_SRV_PORT"
	srvClusterEnv = "QPOOL_NATSLEDGER_SRV_CLUSTER_PORT"
	srvRoutesEnv  = "QPOOL_NATSLEDGER_SRV_ROUTES"
	srvDirEnv     = "QPOOL_NATSLEDGER_SRV_DIR"
)

// runServer runs one server of a JetStream cluster on loopback, says
// "ready" on stdout once it accepts connections, and shuts down when its
// stdin closes (the test ended, or died).
func runServer() error {
	port, _ := strconv.Atoi(os.Getenv(srvPortEnv))
	cport, _ := strconv.Atoi(os.Getenv(srvClusterEnv))
	srv, err := server.NewServer(&server.Options{
		ServerName: os.Getenv(srvNameEnv),
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   os.Getenv(srvDirEnv),
		NoLog:      true,
		NoSigs:     true,
		Cluster:    server.ClusterOpts{Name: "qpool", Host: "127.0.0.1", Port: cport},
		Routes:     server.RoutesFromStr(os.Getenv(srvRoutesEnv)),
	})
	if err != nil {
		return err
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		return errors.New("server not ready")
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	srv.Shutdown()
	srv.WaitForShutdown()
	return nil
}

// clusterServer is one server process of a test cluster.
type clusterServer struct {
	name string
	port int
	cmd  *exec.Cmd
	in   io.WriteCloser // closing it shuts the server down
}

func (s *clusterServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startCluster starts n clustered servers, each in its own process with
// its store in a temporary directory, and waits until JetStream answers
// on every one. t.Cleanup ends the processes still running.
func startCluster(t *testing.T, n int) []*clusterServer {
	t.Helper()
	servers := make([]*clusterServer, n)
	cports := make([]int, n)
	outs := make([]io.Reader, n)
	var routes []string
	for i := range n {
		servers[i] = &clusterServer{name: fmt.Sprintf("n%d", i), port: freePort(t)}
		cports[i] = freePort(t)
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(cports[i]))
	}
	for i, s := range servers {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=server",
			srvNameEnv+"="+s.name,
			srvPortEnv+"="+strconv.Itoa(s.port),
			srvClusterEnv+"="+strconv.Itoa(cports[i]),
			srvRoutesEnv+"="+strings.Join(routes, ","),
			srvDirEnv+"="+t.TempDir())
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		require.NoError(t, err)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		s.cmd, s.in, outs[i] = cmd, in, out
		t.Cleanup(func() { s.stop() })
	}
	for i, s := range servers {
		line, err := bufio.NewReader(outs[i]).ReadString('\n')
		require.NoError(t, err, "server %s", s.name)
		require.Equal(t, "ready\n", line)
	}
	t.Logf("servers ready")
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range servers {
		nc, err := nats.Connect(s.url())
		require.NoError(t, err)
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := js.AccountInfo(ctx)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("JetStream not ready on %s: %v", s.name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		nc.Close()
	}
	return servers
}

// kill ends the server's process with SIGKILL.
func (s *clusterServer) kill() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// stop shuts the server down (if it still runs) and waits for its process.
func (s *clusterServer) stop() {
	_ = s.in.Close()
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.kill()
		<-done
	}
}

// clusterWriter is one process's view of a shared entanglement: its own
// connection, ledger (replica and feed) and entanglement, updating a key
// of its own.
type clusterWriter struct {
	nc        *nats.Conn
	l         *natsledger.Ledger
	e         *qpool.Entanglement
	key       string
	successes atomic.Int64
	failures  atomic.Int64
	stored    atomic.Int64 // failures whose change JetStream had stored
}

// TestLeaderKilled runs a three-server JetStream cluster, each server a
// process of its own, and writers with their own connections and
// replicas on an R3 stream. It moves the stream's leader to the server
// that holds the most writers' feeds (their ordered consumers) and
// SIGKILLs it. Every UpdateState must either fail or be visible through
// GetState right after it returns (read-your-own-writes), every writer
// must make progress again while the killed server stays dead, and every
// replica must catch up with the stream.
func TestLeaderKilled(t *testing.T) {
	const writers = 6
	began := time.Now()
	servers := startCluster(t, 3)
	t.Logf("cluster up after %v", time.Since(began).Round(time.Millisecond))
	id := uniqueID(t)
	ctx := context.Background()

	ws := make([]*clusterWriter, writers)
	for i := range ws {
		home := servers[i%len(servers)]
		urls := []string{home.url()}
		for _, s := range servers {
			if s != home {
				urls = append(urls, s.url())
			}
		}
		nc, err := nats.Connect(strings.Join(urls, ","), append(connOptions(), nats.DontRandomize())...)
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		var l *natsledger.Ledger
		for attempt := 0; ; attempt++ { // the stream's first creation may need the cluster to settle
			l, err = natsledger.Open(ctx, nc, id, natsledger.WithReplicas(3))
			if err == nil || attempt == 20 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		require.NoError(t, err)
		e, err := qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(l))
		require.NoError(t, err)
		t.Cleanup(func() { _ = e.Close() })
		ws[i] = &clusterWriter{nc: nc, l: l, e: e, key: fmt.Sprintf("w%d", i)}
	}

	t.Logf("writers open after %v", time.Since(began).Round(time.Millisecond))

	// The R3 stream is opened as it is without WithReplicas; an explicit
	// other count is refused (TestWithReplicasMismatch does the reverse
	// on a single server, where an R3 stream cannot be made).
	l, err := natsledger.Open(ctx, ws[0].nc, id)
	require.NoError(t, err)
	require.NoError(t, l.Close())
	_, err = natsledger.Open(ctx, ws[0].nc, id, natsledger.WithReplicas(1))
	require.ErrorIs(t, err, natsledger.ErrConfigMismatch)
	require.ErrorContains(t, err, "has 3 replicas, WithReplicas(1)")
	victim := moveLeaderToFeeds(t, servers, ws[0].nc, natsledger.StreamName(id))
	t.Logf("leader moved after %v", time.Since(began).Round(time.Millisecond))

	var (
		stop   = make(chan struct{})
		wg     sync.WaitGroup
		mu     sync.Mutex
		broken []string
	)
	for i, w := range ws {
		wg.Go(func() {
			for n := 1; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				if i%2 == 0 {
					err = w.e.UpdateState(w.key, n)
				} else { // a guarded append
					err = w.e.Update(w.key, func(any, bool) (any, error) { return n, nil })
				}
				var u *natsledger.UnconfirmedError
				if errors.As(err, &u) && u.Stored {
					w.stored.Add(1)
				}
				if err != nil {
					if !errors.Is(err, natsledger.ErrUnavailable) {
						mu.Lock()
						broken = append(broken, fmt.Sprintf("writer %d: %v", i, err))
						mu.Unlock()
					}
					w.failures.Add(1)
					continue
				}
				if v, ok := w.e.GetState(w.key); !ok || v != float64(n) {
					mu.Lock()
					broken = append(broken, fmt.Sprintf("writer %d: UpdateState(%d) returned nil, GetState gives %v, %v", i, n, v, ok))
					mu.Unlock()
				}
				w.successes.Add(1)
			}
		})
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop) // a t.Fatal on the way
		}
		wg.Wait()
	}()
	waitProgress(t, ws, 20, 20*time.Second, "before the kill")

	victim.kill()
	killed := time.Now()
	t.Logf("killed %s, the stream leader, after %v", victim.name, killed.Sub(began).Round(time.Millisecond))
	waitProgress(t, ws, 10, 25*time.Second, "after the kill")
	t.Logf("every writer made progress %v after the kill", time.Since(killed).Round(time.Millisecond))

	close(stop)
	wg.Wait()
	mu.Lock()
	require.Empty(t, broken)
	mu.Unlock()
	for i, w := range ws {
		t.Logf("writer %d: %d updates, %d failed (%d of them stored)", i, w.successes.Load(), w.failures.Load(), w.stored.Load())
	}

	// Every replica catches up with the stream, the killed server still dead.
	js, err := jetstream.New(ws[0].nc)
	require.NoError(t, err)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := js.Stream(sctx, natsledger.StreamName(id))
	require.NoError(t, err)
	last := st.CachedInfo().State.LastSeq
	for i, w := range ws {
		for {
			if _, next := w.l.Bounds(); next >= last {
				break
			}
			if sctx.Err() != nil {
				_, next := w.l.Bounds()
				t.Fatalf("watchdog: writer %d's replica stuck at %d of %d", i, next, last)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// waitProgress waits until every writer has made at least n more
// successful updates, failing the test if one has not within d.
func waitProgress(t *testing.T, ws []*clusterWriter, n int64, d time.Duration, when string) {
	t.Helper()
	from := make([]int64, len(ws))
	for i, w := range ws {
		from[i] = w.successes.Load()
	}
	deadline := time.Now().Add(d)
	for i, w := range ws {
		for w.successes.Load() < from[i]+n {
			if time.Now().After(deadline) {
				t.Fatalf("watchdog %s: writer %d made %d of %d updates (%d failed)",
					when, i, w.successes.Load()-from[i], n, w.failures.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// moveLeaderToFeeds finds the server holding the most of the stream's
// consumers (the writers' feeds), makes it the stream's leader, and
// returns it.
func moveLeaderToFeeds(t *testing.T, servers []*clusterServer, nc *nats.Conn, stream string) *clusterServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	st, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	count := map[string]int{}
	lister := st.ListConsumers(ctx)
	for info := range lister.Info() {
		if info.Cluster != nil {
			count[info.Cluster.Leader]++
		}
	}
	require.NoError(t, lister.Err())
	best := ""
	for name, c := range count {
		if best == "" || c > count[best] {
			best = name
		}
	}
	require.NotEmpty(t, best, "no consumers found")
	t.Logf("feeds per server: %v", count)
	for {
		info, err := st.Info(ctx)
		if err == nil && info.Cluster != nil && info.Cluster.Leader == best {
			break
		}
		req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": best}})
		_, _ = nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, req)
		select {
		case <-ctx.Done():
			t.Fatalf("could not move the leader of %s to %s", stream, best)
		case <-time.After(200 * time.Millisecond):
		}
	}
	for _, s := range servers {
		if s.name == best {
			return s
		}
	}
	t.Fatalf("unknown server %q", best)
	return nil
}
