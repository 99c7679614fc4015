package natsledger_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsledger"
	"github.com/stretchr/testify/require"
)

// TestWithReplicasOutOfRange: a replica count JetStream cannot have is
// refused by Open with ErrInvalidConfig, naming the count, before anything
// is made on the server (it used to be turned into 1, or passed to the
// server as is).
func TestWithReplicasOutOfRange(t *testing.T) {
	ts := startServer(t)
	nc := connect(t, ts.url())
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	for _, n := range []int{0, -1, 6, 100} {
		id := uniqueID(t)
		l, err := natsledger.Open(ctx, nc, id, natsledger.WithReplicas(n))
		if err == nil {
			_ = l.Close()
		}
		require.ErrorIs(t, err, natsledger.ErrInvalidConfig, "WithReplicas(%d)", n)
		require.ErrorContains(t, err, fmt.Sprintf("WithReplicas(%d)", n))
		_, err = js.Stream(ctx, natsledger.StreamName(id))
		require.ErrorIs(t, err, jetstream.ErrStreamNotFound, "WithReplicas(%d) made the stream", n)
	}
	// The bounds themselves are valid (5 needs a cluster: see
	// TestLeaderKilled for an R3 stream).
	open(t, nc, uniqueID(t), natsledger.WithReplicas(1))
}

// TestWithReplicasMismatch: a stream made with the default replica count
// and opened again with an explicit other count is refused with
// ErrConfigMismatch naming both counts, and left as it was; an explicit
// equal count, or none, opens it.
func TestWithReplicasMismatch(t *testing.T) {
	ts := startServer(t)
	nc := connect(t, ts.url())
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	id := uniqueID(t)

	first := open(t, nc, id) // made with the default, one replica
	_, err = first.Append(ctx, qpool.Mutation{Key: "k", Value: "v"})
	require.NoError(t, err)
	require.NoError(t, first.Close())

	for _, n := range []int{3, 2, 5} {
		l, err := natsledger.Open(ctx, nc, id, natsledger.WithReplicas(n))
		if err == nil {
			_ = l.Close()
		}
		require.ErrorIs(t, err, natsledger.ErrConfigMismatch, "WithReplicas(%d)", n)
		require.ErrorContains(t, err, "has 1 replicas")
		require.ErrorContains(t, err, fmt.Sprintf("WithReplicas(%d)", n))
	}
	st, err := js.Stream(ctx, natsledger.StreamName(id))
	require.NoError(t, err)
	require.Equal(t, 1, st.CachedInfo().Config.Replicas, "the refused Open changed the stream")

	for _, opts := range [][]natsledger.Option{{natsledger.WithReplicas(1)}, nil} {
		l := open(t, nc, id, opts...)
		snap, _ := l.Snapshot()
		require.Len(t, snap, 1, "the reopened ledger replays the stream")
		require.NoError(t, l.Close())
	}
}

// TestWithReplicasConcurrentOpens races the find-or-create of one stream:
// in each round opens with no WithReplicas, WithReplicas(1) and
// WithReplicas(3) start together on a single server. Whichever process
// makes the stream, it has one replica: the first two kinds always open
// it, and the third always fails (the server refuses to make an R3 stream
// without a cluster, or the stream exists with one replica:
// ErrConfigMismatch), never hanging.
func TestWithReplicasConcurrentOpens(t *testing.T) {
	const (
		rounds = 8
		opens  = 6
	)
	ts := startServer(t)
	nc := connect(t, ts.url())
	ctx := context.Background()
	for round := range rounds {
		id := uniqueID(t)
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			problems []string
		)
		for i := range opens {
			kind := (i + round) % 3
			wg.Go(func() {
				time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
				var opts []natsledger.Option
				if kind > 0 {
					opts = append(opts, natsledger.WithReplicas(2*kind-1)) // 1 or 3
				}
				l, err := natsledger.Open(ctx, nc, id, opts...)
				if err == nil {
					_ = l.Close()
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case kind < 2 && err != nil:
					problems = append(problems, fmt.Sprintf("kind %d: %v", kind, err))
				case kind == 2 && err == nil:
					problems = append(problems, "WithReplicas(3) opened a single server's stream")
				}
			})
		}
		within(t, fmt.Sprintf("round %d", round), func() error {
			wg.Wait()
			return nil
		})
		require.Empty(t, problems, "round %d", round)
	}
}
