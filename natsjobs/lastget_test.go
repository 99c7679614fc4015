package natsjobs_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

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
