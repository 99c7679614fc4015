package natsjobs_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool/natsjobs"
	"github.com/stretchr/testify/require"
)

// TestBatchedReadsHammer: a worker's batched KV reads (one direct get for
// the reads waiting at one moment) give each caller what a plain get
// would: the value of a key that exists, "not found" for a key never
// written or deleted, and a key written (acknowledged) before the read
// began is seen, which the dependents' marker protocol relies on. Many
// goroutines read at random moments, some giving up early through their
// context; a watchdog bounds the whole.
func TestBatchedReadsHammer(t *testing.T) {
	ts := startServer(t)
	js := ts.connect(t)
	ctx := wctx(t, 30*time.Second)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "batched", Storage: jetstream.FileStorage})
	require.NoError(t, err)
	const keys = 200
	for i := range keys {
		_, err := kv.Put(ctx, fmt.Sprint("k", i), fmt.Append(nil, "v", i))
		require.NoError(t, err)
		if i%5 == 0 {
			require.NoError(t, kv.Delete(ctx, fmt.Sprint("k", i)))
		}
	}
	g, err := natsjobs.NewBatchGetter(ctx, ts.connect(t), kv)
	require.NoError(t, err)
	require.NotNil(t, g, "a KV bucket allows direct gets")
	defer g.Close()
	const readers, reads = 32, 150
	var wg sync.WaitGroup
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range reads {
				if rand.IntN(8) == 0 {
					time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
				}
				switch rand.IntN(10) {
				case 0: // written just now: seen
					k := fmt.Sprintf("new-%d-%d", r, n)
					if _, err := kv.Put(ctx, k, []byte(k)); err != nil {
						t.Error(err)
						return
					}
					v, ok, err := g.Get(ctx, k)
					if err != nil || !ok || string(v) != k {
						t.Errorf("%s after its put: %q %v %v", k, v, ok, err)
					}
				case 1: // given up at once: no answer, no hang
					cctx, cancel := context.WithCancel(ctx)
					cancel()
					_, _, _ = g.Get(cctx, fmt.Sprint("k", rand.IntN(keys)))
				default:
					i := rand.IntN(keys + 20) // some never written
					v, ok, err := g.Get(ctx, fmt.Sprint("k", i))
					switch {
					case err != nil:
						t.Errorf("k%d: %v", i, err)
					case i >= keys || i%5 == 0:
						if ok {
							t.Errorf("k%d: found %q, want not found", i, v)
						}
					case !ok || string(v) != fmt.Sprint("v", i):
						t.Errorf("k%d: %q %v, want v%d", i, v, ok, i)
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("watchdog: batched reads hung")
	}
	g.Close()
	_, _, err = g.Get(ctx, "k1")
	require.Error(t, err, "a read after Close fails")
}

// TestBatchedReadsCutShort: the server stops a batched reply at its
// max_pending bytes and says how many messages it left out; the keys not
// returned are read again, so no existing key passes for missing. The
// server here has a small max_pending and the values are large, so most
// batches are cut short.
func TestBatchedReadsCutShort(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true, MaxPending: 256 << 10, MaxPayload: 64 << 10})
	require.NoError(t, err)
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	require.True(t, srv.ReadyForConnections(10*time.Second))
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := wctx(t, 30*time.Second)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "big", Storage: jetstream.FileStorage})
	require.NoError(t, err)
	const keys = 64
	val := func(i int) []byte { return bytes.Repeat(fmt.Append(nil, i, ";"), 40<<10/len(fmt.Append(nil, i, ";"))) }
	for i := range keys {
		_, err := kv.Put(ctx, fmt.Sprint("k", i), val(i))
		require.NoError(t, err)
	}
	g, err := natsjobs.NewBatchGetter(ctx, js, kv)
	require.NoError(t, err)
	require.NotNil(t, g)
	defer g.Close()
	for round := range 5 {
		var wg sync.WaitGroup
		for i := range keys + 8 { // 8 never written
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, ok, err := g.Get(ctx, fmt.Sprint("k", i))
				switch {
				case err != nil:
					t.Errorf("round %d, k%d: %v", round, i, err)
				case i >= keys:
					if ok {
						t.Errorf("round %d, k%d: found, want not found", round, i)
					}
				case !ok || !bytes.Equal(v, val(i)):
					t.Errorf("round %d, k%d: found %v, %d bytes, want %d", round, i, ok, len(v), len(val(i)))
				}
			}()
		}
		wg.Wait()
	}
}
