package natsledger_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsledger"
	"github.com/stretchr/testify/require"
)

// An attack (2026-12-06) on natsledger's WithReplicas, through
// the public API: "A value outside 1..MaxReplicas fails Open with
// ErrInvalidConfig before anything is made on the server"; "Given, n must
// match the stream that exists, or Open fails with ErrConfigMismatch
// naming both counts and changes nothing"; "Without WithReplicas, Open uses
// a stream that exists with whatever replicas it has".

// TestAttackReplicasRefusedOpensChangeNothing: while a ledger appends to
// its stream without pause, opens with other counts (2 to 5) race it from
// other connections and are refused with ErrConfigMismatch (not
// ErrInvalidConfig), and opens with counts out of range are refused with
// ErrInvalidConfig (not ErrConfigMismatch), also for a stream that exists.
// The writer never fails, every append is in the state afterwards, and the
// stream's configuration is what it was.
func TestAttackReplicasRefusedOpensChangeNothing(t *testing.T) {
	ts := startServer(t)
	nc := connect(t, ts.url())
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id := uniqueID(t)
	w := open(t, nc, id, natsledger.WithReplicas(1))
	st, err := js.Stream(ctx, natsledger.StreamName(id))
	require.NoError(t, err)
	before := st.CachedInfo().Config

	var (
		appended atomic.Int64
		stop     = make(chan struct{})
		werr     = make(chan error, 1)
	)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				werr <- nil
				return
			default:
			}
			if _, err := w.Append(ctx, qpool.Mutation{Key: fmt.Sprint("k", i%50), Value: i}); err != nil {
				werr <- fmt.Errorf("append %d: %w", i, err)
				return
			}
			appended.Add(1)
		}
	}()

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		problems []string
	)
	for g := range 6 {
		gnc := connect(t, ts.url())
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
			for range 15 {
				n := []int{2, 3, 4, 5, 0, -1, 6, natsledger.MaxReplicas + 1}[rng.IntN(8)]
				l, err := natsledger.Open(ctx, gnc, id, natsledger.WithReplicas(n))
				if err == nil {
					_ = l.Close()
				}
				mu.Lock()
				switch {
				case n >= 1 && n <= natsledger.MaxReplicas:
					if !errors.Is(err, natsledger.ErrConfigMismatch) || errors.Is(err, natsledger.ErrInvalidConfig) {
						problems = append(problems, fmt.Sprintf("WithReplicas(%d) on an R1 stream: %v", n, err))
					} else if !strings.Contains(err.Error(), fmt.Sprintf("WithReplicas(%d)", n)) || !strings.Contains(err.Error(), "1") {
						problems = append(problems, fmt.Sprintf("WithReplicas(%d): the error does not name both counts: %v", n, err))
					}
				default:
					if !errors.Is(err, natsledger.ErrInvalidConfig) || errors.Is(err, natsledger.ErrConfigMismatch) {
						problems = append(problems, fmt.Sprintf("WithReplicas(%d) on an existing stream: %v", n, err))
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	require.NoError(t, <-werr, "the writer")
	require.Empty(t, problems)

	st, err = js.Stream(ctx, natsledger.StreamName(id))
	require.NoError(t, err)
	require.Equal(t, before, st.CachedInfo().Config, "a refused Open changed the stream's configuration")
	// A new ledger (no option) replays everything appended.
	r := open(t, connect(t, ts.url()), id)
	_, next := r.Bounds()
	require.Equal(t, uint64(appended.Load()), next, "appends in the stream")
	t.Logf("%d appends while 90 opens were refused", appended.Load())
}

// TestAttackReplicasUnmakeableStream: on a single server a stream with more
// than one replica cannot be made. Open of a new ID with WithReplicas(2..5)
// must fail within its context, leave no stream behind (in particular not
// one with a count nobody asked for), and leave the ID free for an Open
// without the option. Also: the validation comes first, so an out-of-range
// count fails with ErrInvalidConfig even with a nil connection or a
// context that has ended.
func TestAttackReplicasUnmakeableStream(t *testing.T) {
	ts := startServer(t)
	nc := connect(t, ts.url())
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	for n := 2; n <= natsledger.MaxReplicas; n++ {
		id := uniqueID(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		l, err := natsledger.Open(ctx, nc, id, natsledger.WithReplicas(n))
		cancel()
		if err == nil {
			_ = l.Close()
			t.Fatalf("WithReplicas(%d) opened on a single server", n)
		}
		t.Logf("WithReplicas(%d) on a single server, new stream: %v (%v)", n, err, time.Since(start).Round(time.Millisecond))
		// In range, but more than a server outside a cluster can hold.
		require.ErrorIs(t, err, natsledger.ErrInvalidConfig, "WithReplicas(%d) on a single server", n)
		_, serr := js.Stream(context.Background(), natsledger.StreamName(id))
		require.ErrorIs(t, serr, jetstream.ErrStreamNotFound, "WithReplicas(%d) left a stream behind", n)
		l = open(t, nc, id)
		_, err = l.Append(context.Background(), qpool.Mutation{Key: "k", Value: n})
		require.NoError(t, err)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for _, n := range []int{0, -3, natsledger.MaxReplicas + 1} {
		_, err := natsledger.Open(ended, nil, uniqueID(t), natsledger.WithReplicas(n))
		require.ErrorIs(t, err, natsledger.ErrInvalidConfig, "nil connection, WithReplicas(%d)", n)
		_, err = natsledger.Open(ended, nc, uniqueID(t), natsledger.WithReplicas(n))
		require.ErrorIs(t, err, natsledger.ErrInvalidConfig, "ended context, WithReplicas(%d)", n)
	}
	// Not promised either way, reported: the last of two WithReplicas.
	for _, opts := range [][]natsledger.Option{
		{natsledger.WithReplicas(3), natsledger.WithReplicas(1)},
		{natsledger.WithReplicas(1), natsledger.WithReplicas(0)},
	} {
		l, err := natsledger.Open(context.Background(), nc, uniqueID(t), opts...)
		if err == nil {
			_ = l.Close()
		}
		t.Logf("two WithReplicas options: %v", err)
	}
}

// TestAttackReplicasClusterCreateRace: on a three-server cluster, where a
// stream of one and of three replicas can both be made, opens of a new ID
// with WithReplicas(3), WithReplicas(1), WithReplicas(5) and no option
// start together from connections to different servers. Whichever makes
// the stream decides its count c (1 or 3; five cannot be made on three
// servers). Every open with WithReplicas(c) or no option succeeds, every
// open with another count in range fails with ErrConfigMismatch (a create
// that loses to a create of another count is a mismatch too, not the
// server's "already in use" error), WithReplicas(5) never succeeds, and
// the ledgers that opened share the stream.
func TestAttackReplicasClusterCreateRace(t *testing.T) {
	servers := startCluster(t, 3)
	conns := make([]*nats.Conn, 6)
	for i := range conns {
		var urls []string
		for k := range servers {
			urls = append(urls, servers[(i+k)%len(servers)].url())
		}
		nc, err := nats.Connect(strings.Join(urls, ","), append(connOptions(), nats.DontRandomize())...)
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		conns[i] = nc
	}
	js, err := jetstream.New(conns[0])
	require.NoError(t, err)
	// Let the new cluster settle first: its first replicated stream can
	// fail to be made while it does.
	warm := uniqueID(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l, err := natsledger.Open(ctx, conns[0], warm, natsledger.WithReplicas(3))
		cancel()
		if err == nil {
			_ = l.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watchdog: the cluster never made an R3 stream: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	kinds := []int{3, 1, 0, 3, 1, 5} // 0: no option
	counts := map[int]int{}
	allProblems := 0
	for round := range 6 {
		id := uniqueID(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		type res struct {
			kind int
			l    *natsledger.Ledger
			err  error
		}
		results := make([]res, len(conns))
		var wg sync.WaitGroup
		for i, nc := range conns {
			kind := kinds[(i+round)%len(kinds)]
			wg.Go(func() {
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				var opts []natsledger.Option
				if kind > 0 {
					opts = append(opts, natsledger.WithReplicas(kind))
				}
				start := time.Now()
				l, err := natsledger.Open(ctx, nc, id, opts...)
				if err != nil {
					err = fmt.Errorf("after %v (ErrUnavailable: %v): %w", time.Since(start).Round(time.Millisecond), errors.Is(err, natsledger.ErrUnavailable), err)
				}
				results[i] = res{kind, l, err}
			})
		}
		wg.Wait()
		st, err := js.Stream(ctx, natsledger.StreamName(id))
		require.NoError(t, err, "round %d: no stream made; results %v", round, results)
		c := st.CachedInfo().Config.Replicas
		counts[c]++
		var problems []string
		var opened []*natsledger.Ledger
		for i, r := range results {
			if r.l != nil {
				opened = append(opened, r.l)
			}
			switch {
			case r.kind == 0 || r.kind == c:
				if r.err != nil {
					problems = append(problems, fmt.Sprintf("open %d (WithReplicas(%d), stream R%d): %v", i, r.kind, c, r.err))
				}
			case r.kind == 5:
				if r.err == nil {
					problems = append(problems, fmt.Sprintf("open %d: WithReplicas(5) opened an R%d stream", i, c))
				}
			default:
				if !errors.Is(r.err, natsledger.ErrConfigMismatch) {
					problems = append(problems, fmt.Sprintf("open %d (WithReplicas(%d), stream R%d): %v", i, r.kind, c, r.err))
				}
			}
		}
		for i, l := range opened {
			_, err := l.Append(ctx, qpool.Mutation{Key: fmt.Sprint("k", i), Value: i})
			if err != nil {
				problems = append(problems, fmt.Sprintf("append through ledger %d: %v", i, err))
			}
		}
		for _, l := range opened {
			deadline := time.Now().Add(10 * time.Second)
			for {
				snap, _ := l.Snapshot()
				if len(snap) == len(opened) {
					break
				}
				if time.Now().After(deadline) {
					problems = append(problems, fmt.Sprintf("a ledger sees %d of %d keys", len(snap), len(opened)))
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			_ = l.Close()
		}
		// The same opens one at a time, the stream settled.
		var steady []string
		for _, kind := range []int{0, 1, 3, 5} {
			var opts []natsledger.Option
			if kind > 0 {
				opts = append(opts, natsledger.WithReplicas(kind))
			}
			l, err := natsledger.Open(ctx, conns[(round+kind)%len(conns)], id, opts...)
			if l != nil {
				_ = l.Close()
			}
			switch {
			case kind == 0 || kind == c:
				if err != nil {
					steady = append(steady, fmt.Sprintf("WithReplicas(%d), stream R%d: %v", kind, c, err))
				}
			case !errors.Is(err, natsledger.ErrConfigMismatch):
				steady = append(steady, fmt.Sprintf("WithReplicas(%d), stream R%d: %v", kind, c, err))
			}
		}
		cancel()
		require.Empty(t, steady, "round %d, stream R%d, one open at a time", round, c)
		for _, p := range problems {
			t.Logf("round %d, stream R%d, racing opens: %s", round, c, p)
		}
		allProblems += len(problems)
		if allProblems > 0 {
			break // one failing round says enough, and keeps the test short
		}
	}
	t.Logf("streams made per replica count: %v", counts)
	if allProblems > 0 {
		t.Fatalf("%d racing opens failed otherwise than promised (logged above)", allProblems)
	}
}
