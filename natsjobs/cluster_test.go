package natsjobs_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
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
	"github.com/qpool/qpool/natsjobs"
	"github.com/stretchr/testify/require"
)

// A clustered server runs in a child process (childEnv "server"),
// configured by these variables, so that a test can SIGKILL it. The
// approach is natsledger's (natsledger/cluster_test.go).
const (
	srvNameEnv    = "QPOOL_NATSJOBS_SRV_NAME"
	srvPortEnv    = "QPOOL_NATSJOBS_SRV_PORT"
	srvClusterEnv = "QPOOL_NATSJOBS_SRV_CLUSTER_PORT"
	srvRoutesEnv  = "QPOOL_NATSJOBS_SRV_ROUTES"
	srvDirEnv     = "QPOOL_NATSJOBS_SRV_DIR"
)

// runClusterServer runs one server of a JetStream cluster on loopback,
// says "ready" on stdout once it accepts connections, and shuts down when
// its stdin closes (the test ended, or died).
func runClusterServer() error {
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
		Cluster:    server.ClusterOpts{Name: "qpjobs", Host: "127.0.0.1", Port: cport},
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
	in   io.WriteCloser // its stdin: the server shuts down when it closes (the test process ended)
	once sync.Once
}

func (s *clusterServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// kill ends the server's process with SIGKILL and waits for it.
func (s *clusterServer) kill() {
	s.once.Do(func() {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startCluster starts n clustered servers, each in a process of its own
// with its store in a temporary directory, and waits until JetStream
// answers on every one. t.Cleanup kills the processes still running.
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
		t.Cleanup(s.kill) // the store is temporary: no need to wait for a graceful shutdown
	}
	for i, s := range servers {
		line, err := bufio.NewReader(outs[i]).ReadString('\n')
		require.NoError(t, err, "server %s", s.name)
		require.Equal(t, "ready\n", line)
	}
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
				nc.Close()
				t.Fatalf("watchdog: JetStream not ready on %s: %v", s.name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		nc.Close()
	}
	return servers
}

// connectHome connects to home first and to the other servers after it,
// in that order, and returns the JetStream context; t.Cleanup closes the
// connection.
func connectHome(t *testing.T, servers []*clusterServer, home int) jetstream.JetStream {
	t.Helper()
	urls := []string{servers[home].url()}
	for i, s := range servers {
		if i != home {
			urls = append(urls, s.url())
		}
	}
	nc, err := nats.Connect(strings.Join(urls, ","), append(connOptions(), nats.DontRandomize())...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// newClusterClient is newClient, retried while a new cluster settles (the
// first creation of a replicated stream can fail while it does).
func newClusterClient(t *testing.T, js jetstream.JetStream, opts ...natsjobs.Option) *natsjobs.Client {
	t.Helper()
	var c *natsjobs.Client
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err = natsjobs.NewClient(ctx, js, append([]natsjobs.Option{quiet}, opts...)...)
		cancel()
		if err == nil || errors.Is(err, natsjobs.ErrInvalidOption) || errors.Is(err, natsjobs.ErrConfigMismatch) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// quiet drops the warnings of the clients and workers of the cluster
// tests: they log every outcome they fail to record while the cluster
// elects leaders, hundreds of lines.
var quiet = natsjobs.WithLogger(slog.New(slog.DiscardHandler))

// clusterJob is the input of the cluster tests' "cjob".
type clusterJob struct {
	ID    string   `json:"id"`
	Fail  float64  `json:"fail"` // probability of a transient failure
	Sleep int      `json:"sleep_ms"`
	Deps  []string `json:"deps,omitempty"`
}

// clusterFleet is a set of in-process workers, each connected to a server
// of its own first, that run "cjob": it counts its executions per ID, and
// checks that every dependency had succeeded before it started.
type clusterFleet struct {
	mu      sync.Mutex
	runs    map[string]int  // guarded by mu: executions per ID
	ok      map[string]bool // guarded by mu: jobs whose function succeeded
	broken  []string        // guarded by mu
	last    time.Time       // guarded by mu: when a job's function last succeeded
	workers []*natsjobs.Worker
	cjob    natsjobs.Handle[clusterJob, string]
}

func newClusterFleet(t *testing.T, servers []*clusterServer, n int, opts ...natsjobs.Option) *clusterFleet {
	t.Helper()
	fl := &clusterFleet{runs: map[string]int{}, ok: map[string]bool{}}
	reg := natsjobs.NewRegistry()
	fl.cjob = natsjobs.Register(reg, "cjob", func(ctx context.Context, in clusterJob) (string, error) {
		fl.mu.Lock()
		fl.runs[in.ID]++
		for _, d := range in.Deps {
			if !fl.ok[d] {
				fl.broken = append(fl.broken, fmt.Sprintf("%s started before its dependency %s succeeded", in.ID, d))
			}
		}
		fl.mu.Unlock()
		select {
		case <-time.After(time.Duration(in.Sleep) * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		if rand.Float64() < in.Fail {
			return "", fmt.Errorf("%s: transient", in.ID)
		}
		fl.mu.Lock()
		fl.ok[in.ID] = true
		fl.last = time.Now()
		fl.mu.Unlock()
		return in.ID, nil
	})
	for i := range n {
		js := connectHome(t, servers, i%len(servers))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		w, err := natsjobs.NewWorker(ctx, js, reg, append([]natsjobs.Option{
			natsjobs.WithWorkerName(fmt.Sprintf("w%d@%s", i, servers[i%len(servers)].name)),
			natsjobs.WithConcurrency(8), natsjobs.WithAckWait(time.Second), quiet,
		}, opts...)...)
		cancel()
		require.NoError(t, err)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = w.Shutdown(ctx)
		})
		fl.workers = append(fl.workers, w)
	}
	return fl
}

// check fails t if a job started before its dependencies succeeded, and
// returns how often the functions ran, all IDs together.
func (fl *clusterFleet) check(t *testing.T) (executions int) {
	t.Helper()
	fl.mu.Lock()
	defer fl.mu.Unlock()
	require.Empty(t, fl.broken)
	for _, n := range fl.runs {
		executions += n
	}
	return executions
}

// checkNoSecondOutcome checks that no job ID of namespace ns got a second
// outcome: the results bucket keeps one value per key, so a second write
// shows only as a stream sequence beyond the count of keys. It returns the
// count of outcomes.
func checkNoSecondOutcome(t *testing.T, ctx context.Context, js jetstream.JetStream, ns string) uint64 {
	t.Helper()
	st, err := js.Stream(ctx, "KV_"+ns+"_results")
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, info.State.Msgs, info.State.LastSeq, "outcome writes: one per job, no second outcome")
	return info.State.Msgs
}

// namespaceStreams are the streams natsjobs makes for namespace ns and the
// default queue.
func namespaceStreams(ns string) []string {
	return []string{ns + "_q_default", "KV_" + ns + "_jobs", "KV_" + ns + "_results", "KV_" + ns + "_deps", "KV_" + ns + "_cancels"}
}

// TestCluster runs natsjobs on a three-server JetStream cluster, each
// server a process of its own, with every stream and bucket replicated on
// all three (WithReplicas(3)); clients and workers connect to different
// servers. The subtests share the cluster, each with a namespace of its
// own; the last one SIGKILLs a server. At full scale (QPOOL_NATSJOBS_FULL=1)
// they run more jobs.
func TestCluster(t *testing.T) {
	began := time.Now()
	servers := startCluster(t, 3)
	t.Logf("cluster up after %v", time.Since(began).Round(time.Millisecond))
	r3 := natsjobs.WithReplicas(3)

	// Every stream and bucket is made with three replicas, and a process
	// that asks for another count is refused rather than handed R3 ones.
	t.Run("Replicas", func(t *testing.T) {
		nsName := namespace()
		ns := natsjobs.WithNamespace(nsName)
		js := connectHome(t, servers, 0)
		newClusterClient(t, js, ns, r3)
		ctx := wctx(t, 20*time.Second)
		for _, name := range namespaceStreams(nsName) {
			st, err := js.Stream(ctx, name)
			require.NoError(t, err, name)
			require.Equal(t, 3, st.CachedInfo().Config.Replicas, name)
		}
		_, err := natsjobs.NewClient(ctx, js, ns, natsjobs.WithReplicas(1))
		require.ErrorIs(t, err, natsjobs.ErrConfigMismatch)
		_, err = natsjobs.NewClient(ctx, js, ns, natsjobs.WithReplicas(6))
		require.ErrorIs(t, err, natsjobs.ErrInvalidOption)
		c := newClusterClient(t, js, ns) // no WithReplicas: uses what exists
		_, err = c.Status(ctx, "nobody")
		require.ErrorIs(t, err, natsjobs.ErrUnknownJob)
	})

	// What one process wrote and the server acknowledged, a process on
	// another server reads at once: Status never says ErrUnknownJob for a
	// job whose Submit has returned; and Result on another server returns
	// once a job's future has resolved.
	t.Run("ReadAfterWrite", func(t *testing.T) {
		ns := natsjobs.WithNamespace(namespace())
		clients := make([]*natsjobs.Client, len(servers))
		for i := range servers {
			clients[i] = newClusterClient(t, connectHome(t, servers, i), ns, r3)
		}
		fl := newClusterFleet(t, servers, 3, ns, r3)
		ctx := wctx(t, time.Duration(scale(40, 600))*time.Second)
		n := scale(300, 3000)
		var next atomic.Int64
		var wg sync.WaitGroup
		var mu sync.Mutex
		var stale []string
		var late atomic.Int64
		report := func(format string, args ...any) {
			mu.Lock()
			stale = append(stale, fmt.Sprintf(format, args...))
			mu.Unlock()
		}
		for g := range 8 {
			wg.Go(func() {
				for i := int(next.Add(1)); i <= n && ctx.Err() == nil; i = int(next.Add(1)) {
					id := fmt.Sprint("r", i)
					from, other := clients[(g+i)%3], clients[(g+i+1+i%2)%3]
					f := fl.cjob.Submit(ctx, from, id, clusterJob{ID: id})
					if st, err := other.Status(ctx, id); err != nil {
						report("Status(%s) after its Submit returned: %v", id, err)
					} else if st.Name != "cjob" {
						report("Status(%s) after its Submit returned: name %q", id, st.Name)
					}
					if _, err := f.Wait(ctx); err != nil {
						report("%s: %v", id, err)
						continue
					}
					// A future resolves when its client's watcher sees the
					// outcome, which may come from a replica before the
					// leader answers for it (the worker's write is not yet
					// acknowledged then): a Status that misses it is
					// counted, not failed. Result must return all the same.
					if st, err := other.Status(ctx, id); err != nil || st.Result == nil {
						late.Add(1)
					}
					rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
					if _, err := other.Result(rctx, id); err != nil {
						report("Result(%s) after its future resolved: %v", id, err)
					}
					cancel()
				}
			})
		}
		wg.Wait()
		require.NoError(t, ctx.Err(), "watchdog")
		require.Empty(t, stale, "%d reads of %d jobs missed an acknowledged write", len(stale), n)
		t.Logf("%d jobs; %d Status calls right after a future resolved did not show the outcome yet", n, late.Load())
	})

	// Jobs submitted through every server and worked by workers on every
	// server, with transient failures and retries, resolve exactly once:
	// every future resolves, with the one outcome recorded for its ID.
	t.Run("ExactlyOnce", func(t *testing.T) {
		nsName := namespace()
		ns := natsjobs.WithNamespace(nsName)
		clients := make([]*natsjobs.Client, len(servers))
		for i := range servers {
			clients[i] = newClusterClient(t, connectHome(t, servers, i), ns, r3)
		}
		fl := newClusterFleet(t, servers, 3, ns, r3)
		ctx := wctx(t, time.Duration(scale(60, 600))*time.Second)
		n := scale(150, 5000)
		futs := submitAll(t, ctx, n, func(i int) *qpool.Future[string] {
			id := fmt.Sprint("e", i)
			return fl.cjob.Submit(ctx, clients[i%3], id, clusterJob{ID: id, Fail: 0.2, Sleep: i % 3}, qpool.WithRetry(3, time.Millisecond))
		})
		failed, attempts := 0, 0
		for i, f := range futs {
			v, err := f.Wait(ctx)
			require.NoError(t, ctx.Err(), "watchdog: future %s did not resolve", f.ID())
			rec, rerr := clients[(i+1)%3].Result(ctx, f.ID())
			require.NoError(t, rerr)
			attempts += rec.Attempts
			if err != nil {
				failed++
				var re *natsjobs.RemoteError
				require.ErrorAs(t, err, &re)
				require.Equal(t, 3, re.Attempts, f.ID())
				require.EqualError(t, rec.Err, err.Error(), "the future and the record agree")
				continue
			}
			require.Equal(t, f.ID(), v)
			require.NoError(t, rec.Err, "the future and the record agree")
		}
		require.Equal(t, uint64(n), checkNoSecondOutcome(t, ctx, connectHome(t, servers, 2), nsName))
		runs := fl.check(t)
		require.GreaterOrEqual(t, runs, attempts, "every recorded attempt ran")
		t.Logf("%d jobs on 3 servers: %d failed after 3 attempts; %d executions for %d recorded attempts", n, failed, runs, attempts)
	})

	// A chain and a diamond, their jobs submitted through different
	// servers (most before the job they depend on) and worked by workers
	// on different servers, run in order and all succeed; a chain whose
	// head fails fails throughout.
	t.Run("Dependencies", func(t *testing.T) {
		ns := natsjobs.WithNamespace(namespace())
		clients := make([]*natsjobs.Client, len(servers))
		for i := range servers {
			clients[i] = newClusterClient(t, connectHome(t, servers, i), ns, r3)
		}
		fl := newClusterFleet(t, servers, 3, ns, r3)
		ctx := wctx(t, time.Duration(scale(60, 600))*time.Second)
		length := scale(20, 300)
		submit := func(i int, id string, in clusterJob) *qpool.Future[string] {
			in.ID = id
			return fl.cjob.Submit(ctx, clients[i%3], id, in, qpool.WithRetry(1, 0), qpool.WithDependencies(in.Deps...))
		}
		var chain, failing []*qpool.Future[string]
		for i := length - 1; i >= 0; i-- { // last link first
			var deps, fdeps []string
			if i > 0 {
				deps, fdeps = []string{fmt.Sprint("c", i-1)}, []string{fmt.Sprint("f", i-1)}
			}
			fail := 0.0
			if i == 0 {
				fail = 1
			}
			chain = append(chain, submit(i, fmt.Sprint("c", i), clusterJob{Deps: deps}))
			failing = append(failing, submit(i+1, fmt.Sprint("f", i), clusterJob{Deps: fdeps, Fail: fail}))
		}
		// The diamond: d0 -> d1..dk -> dz, the sink submitted first.
		k := scale(8, 50)
		var mids []string
		for i := 1; i <= k; i++ {
			mids = append(mids, fmt.Sprint("d", i))
		}
		sink := submit(0, "dz", clusterJob{Deps: mids})
		var middle []*qpool.Future[string]
		for i, id := range mids {
			middle = append(middle, submit(i, id, clusterJob{Deps: []string{"d0"}, Sleep: i % 3}))
		}
		head := submit(2, "d0", clusterJob{})
		for _, f := range append(append(chain, middle...), head, sink) {
			v, err := f.Wait(ctx)
			require.NoError(t, ctx.Err(), "watchdog: %s did not resolve", f.ID())
			require.NoError(t, err, f.ID())
			require.Equal(t, f.ID(), v)
		}
		for _, f := range failing {
			_, err := f.Wait(ctx)
			require.NoError(t, ctx.Err(), "watchdog: %s did not resolve", f.ID())
			require.Error(t, err, f.ID())
			if f.ID() != "f0" {
				require.ErrorIs(t, err, qpool.ErrDependencyFailed, f.ID())
			}
		}
		fl.check(t)
	})

	// The server that leads every stream and bucket is killed with SIGKILL
	// while jobs run: no job is lost, none gets a second outcome, every
	// future resolves, and jobs submitted after the kill run too.
	t.Run("LeaderKilled", func(t *testing.T) {
		nsName := namespace()
		ns := natsjobs.WithNamespace(nsName)
		clients := make([]*natsjobs.Client, len(servers))
		jss := make([]jetstream.JetStream, len(servers))
		for i := range servers {
			jss[i] = connectHome(t, servers, i)
			clients[i] = newClusterClient(t, jss[i], ns, r3)
		}
		fl := newClusterFleet(t, servers, 3, ns, r3)
		victim := moveLeaders(t, servers, jss[0], namespaceStreams(nsName))
		t.Logf("leaders on %s after %v", servers[victim].name, time.Since(began).Round(time.Millisecond))
		ctx := wctx(t, time.Duration(scale(90, 600))*time.Second)
		n := scale(100, 3000)
		futs := submitAll(t, ctx, n, func(i int) *qpool.Future[string] {
			id := fmt.Sprint("k", i)
			return fl.cjob.Submit(ctx, clients[i%3], id, clusterJob{ID: id, Sleep: 5 + i%20})
		})
		for _, f := range futs {
			select {
			case <-f.Done():
				_, err := f.Wait(ctx)
				require.NoError(t, err, "submit %s", f.ID())
			default:
			}
		}
		waitFor(t, 30*time.Second, "a third of the jobs to start", func() bool {
			fl.mu.Lock()
			defer fl.mu.Unlock()
			return len(fl.runs) >= n/3
		})
		servers[victim].kill()
		killed := time.Now()
		t.Logf("killed %s, every stream's leader, after %v", servers[victim].name, killed.Sub(began).Round(time.Millisecond))
		// Submissions after the kill, through the servers left, until
		// each is accepted: an attempt fails while the streams elect new
		// leaders. A submission whose outcome is unknown is not retried
		// (its ID may be taken) and not counted.
		var later []*qpool.Future[string]
		unknown := 0
		for i := range scale(10, 200) {
			id := fmt.Sprint("after", i)
			c := clients[(victim+1+i%2)%3]
			for {
				// A request the dead leader took is not answered: each
				// attempt has a deadline of its own.
				sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				f := fl.cjob.Submit(sctx, c, id, clusterJob{ID: id})
				cancel()
				var err error
				select {
				case <-f.Done():
					_, err = f.Wait(ctx)
				default:
				}
				if err == nil {
					later = append(later, f)
					break
				}
				require.NoError(t, ctx.Err(), "watchdog: submitting after the kill: %v", err)
				if strings.Contains(err.Error(), "outcome unknown") || errors.Is(err, natsjobs.ErrDuplicateJob) {
					unknown++
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		t.Logf("submitting after the kill took %v", time.Since(killed).Round(time.Millisecond))
		lookupErrs := 0
		for i, f := range append(futs, later...) {
			v, err := f.Wait(ctx)
			require.NoError(t, ctx.Err(), "watchdog: future %s did not resolve", f.ID())
			require.NoError(t, err, f.ID())
			require.Equal(t, f.ID(), v)
			if i%10 == 0 { // any process reads the same outcome
				// Its lookup goes to the results stream's leader, and
				// fails (after the 5 s bound of a server operation) when
				// no leader answers: try again.
				for {
					rec, err := clients[(victim+1+i%2)%3].Result(ctx, f.ID())
					if err == nil {
						require.NoError(t, rec.Err)
						break
					}
					lookupErrs++
					t.Logf("Result(%s) %v after the kill: %v", f.ID(), time.Since(killed).Round(time.Millisecond), err)
					require.NoError(t, ctx.Err(), "watchdog: Result(%s): %v", f.ID(), err)
				}
			}
		}
		fl.mu.Lock()
		last := fl.last
		fl.mu.Unlock()
		t.Logf("all futures resolved %v after the kill; the last job ran until %v after it; %d Result lookups failed and were tried again",
			time.Since(killed).Round(time.Millisecond), last.Sub(killed).Round(time.Millisecond), lookupErrs)
		outcomes := checkNoSecondOutcome(t, ctx, jss[(victim+1)%3], nsName)
		require.GreaterOrEqual(t, outcomes, uint64(n+len(later)))
		require.LessOrEqual(t, outcomes, uint64(n+len(later)+unknown))
		st, err := jss[(victim+1)%3].Stream(ctx, nsName+"_q_default")
		require.NoError(t, err)
		waitFor(t, 20*time.Second, "the queue's stream to empty", func() bool {
			info, err := st.Info(ctx)
			return err == nil && info.State.Msgs == 0
		})
		t.Logf("%d+%d jobs (%d submissions of unknown outcome): %d executions", n, len(later), unknown, fl.check(t))
	})
}

// moveLeaders makes one server the leader of every stream in names and
// returns its index.
func moveLeaders(t *testing.T, servers []*clusterServer, js jetstream.JetStream, names []string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	target := rand.IntN(len(servers))
	best := servers[target].name
	nc := js.Conn()
	for _, name := range names {
		for {
			st, err := js.Stream(ctx, name)
			if err == nil && st.CachedInfo().Cluster != nil {
				if st.CachedInfo().Cluster.Leader == best {
					break
				}
				// Ask for a step-down only while there is a leader, not
				// during the election the last one began.
				if st.CachedInfo().Cluster.Leader != "" {
					req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": best}})
					_, _ = nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+name, req)
				}
			}
			select {
			case <-ctx.Done():
				t.Fatalf("watchdog: could not move the leader of %s to %s", name, best)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return target
}

// TestLeaderReads runs, on one server, the reads a client makes of
// replicated buckets (through the streams' leader): a claim and an
// outcome are found, a missing or deleted key is not, and the dependents
// of a job are listed.
func TestLeaderReads(t *testing.T) {
	ts := startServer(t)
	js := ts.connect(t)
	nsName := namespace()
	ns := natsjobs.WithNamespace(nsName)
	c := newClient(t, js, ns)
	natsjobs.ReadThroughLeader(c, true)
	ctx := wctx(t, 20*time.Second)
	cjob := natsjobs.Declare[clusterJob, string]("cjob")
	for _, id := range []string{"a", "gone"} {
		f := cjob.Submit(ctx, c, id, clusterJob{ID: id})
		select {
		case <-f.Done():
			_, err := f.Wait(ctx)
			t.Fatalf("submit %s: %v", id, err)
		default:
		}
	}
	for _, id := range []string{"b", "c"} {
		f := cjob.Submit(ctx, c, id, clusterJob{ID: id}, qpool.WithDependencies("a"))
		select {
		case <-f.Done():
			_, err := f.Wait(ctx)
			t.Fatalf("submit %s: %v", id, err)
		default:
		}
	}
	st, err := c.Status(ctx, "b")
	require.NoError(t, err)
	require.Equal(t, "cjob", st.Name)
	require.Equal(t, []string{"a"}, st.Dependencies)
	require.Nil(t, st.Result)
	deps, err := natsjobs.Dependents(ctx, c, "a")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"b", "c"}, deps)
	deps, err = natsjobs.Dependents(ctx, c, "b")
	require.NoError(t, err)
	require.Empty(t, deps)
	_, err = c.Status(ctx, "nobody")
	require.ErrorIs(t, err, natsjobs.ErrUnknownJob)
	jobs, err := js.KeyValue(ctx, nsName+"_jobs")
	require.NoError(t, err)
	require.NoError(t, jobs.Delete(ctx, base64.RawURLEncoding.EncodeToString([]byte("gone"))))
	_, err = c.Status(ctx, "gone")
	require.ErrorIs(t, err, natsjobs.ErrUnknownJob, "a deleted claim is no claim")
	require.NoError(t, c.Cancel(ctx, "a"))
	st, err = c.Status(ctx, "a")
	require.NoError(t, err)
	require.NotNil(t, st.Result)
	require.ErrorIs(t, st.Result.Err, context.Canceled)
	st, err = c.Status(ctx, "c")
	require.NoError(t, err)
	require.NotNil(t, st.Result, "a cancelled dependency fails its dependents")
	require.ErrorIs(t, st.Result.Err, qpool.ErrDependencyFailed)
}

// BenchmarkReads measures, on one server, what reading through the
// stream's leader (as replicated buckets are read) costs beside direct
// gets and an ordered consumer's listing (as a single replica is read):
// Status makes two gets, dependents a get and a listing.
func BenchmarkReads(b *testing.B) {
	ts := startServer(b)
	js := ts.connect(b)
	c := newClient(b, js, natsjobs.WithNamespace(namespace()))
	ctx := context.Background()
	cjob := natsjobs.Declare[clusterJob, string]("cjob")
	cjob.Submit(ctx, c, "a", clusterJob{ID: "a"})
	cjob.Submit(ctx, c, "b", clusterJob{ID: "b"}, qpool.WithDependencies("a"))
	for _, mode := range []string{"direct", "leader"} {
		natsjobs.ReadThroughLeader(c, mode == "leader")
		b.Run(mode+"/Status", func(b *testing.B) {
			for b.Loop() {
				if _, err := c.Status(ctx, "b"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(mode+"/dependents", func(b *testing.B) {
			for b.Loop() {
				if d, err := natsjobs.Dependents(ctx, c, "a"); err != nil || len(d) != 1 {
					b.Fatal(d, err)
				}
			}
		})
	}
}
