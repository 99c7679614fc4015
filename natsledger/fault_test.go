package natsledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsledger"
	"github.com/stretchr/testify/require"
)

// TestDuplicateMessageID publishes one change twice with the same message
// ID, as a publisher does after a lost acknowledgement: it is stored once
// and both acknowledgements name the same sequence.
func TestDuplicateMessageID(t *testing.T) {
	ctx := context.Background()
	ts := startServer(t)
	nc := connect(t, ts.url())
	id := uniqueID(t)
	l := open(t, nc, id)
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	data, err := json.Marshal("once")
	require.NoError(t, err)
	msg := &nats.Msg{Subject: natsledger.Subject(id, "k"), Data: data}
	first, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID("retry-me"))
	require.NoError(t, err)
	second, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID("retry-me"))
	require.NoError(t, err)
	require.False(t, first.Duplicate)
	require.True(t, second.Duplicate)
	require.Equal(t, first.Sequence, second.Sequence)

	_, err = l.Append(ctx, qpool.Mutation{Key: "after", Value: "x"})
	require.NoError(t, err)
	h, err := l.Read(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, h, 2)
	require.Equal(t, "once", h[0].Value)
	require.Equal(t, "after", h[1].Key)
}

// TestServerDown stops the server: Append fails within the ledger's
// timeout with ErrUnavailable, nothing is recorded while the server is
// down, and appends work again once it is back on the same port and
// store. The next append first settles the unconfirmed one (settle.go),
// so that it can never be stored after it: the failed change is stored
// just before the next.
func TestServerDown(t *testing.T) {
	ctx := context.Background()
	ts := startServer(t)
	id := uniqueID(t)
	l := open(t, connect(t, ts.url()), id, natsledger.WithTimeout(500_000_000))
	_, err := l.Append(ctx, qpool.Mutation{Key: "k", Value: "before"})
	require.NoError(t, err)
	first, next := l.Bounds()

	ts.stop()
	_, err = l.Append(ctx, qpool.Mutation{Key: "k", Value: "lost"})
	require.ErrorIs(t, err, natsledger.ErrUnavailable)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	v, _, _ := l.Get("k")
	require.Equal(t, "before", v)
	f, n := l.Bounds()
	require.Equal(t, [2]uint64{first, next}, [2]uint64{f, n})

	ts.start()
	var c qpool.StateChange
	c, err = l.Append(ctx, qpool.Mutation{Key: "k", Value: "after"})
	for attempt := 0; err != nil && attempt < 40; attempt++ { // until the connection is back
		// An unconfirmed append may be stored: retry it, not a new one.
		var u *natsledger.UnconfirmedError
		require.ErrorAs(t, err, &u)
		c, err = u.Retry(ctx)
	}
	require.NoError(t, err)
	require.Equal(t, next+1, c.Sequence, "the unconfirmed append was settled first")
	h, err := l.Read(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, h, 3)
	require.Equal(t, []any{"before", "lost", "after"}, []any{h[0].Value, h[1].Value, h[2].Value})
}

// TestServerRestartMidRun restarts the server while four writers append:
// every acknowledged change is in the history once, at the sequence its
// acknowledgement gave, and no change is stored twice.
func TestServerRestartMidRun(t *testing.T) {
	ctx := context.Background()
	ts := startServer(t)
	id := uniqueID(t)
	l := open(t, connect(t, ts.url()), id, natsledger.WithTimeout(3_000_000_000))

	var (
		mu      sync.Mutex
		acked   = map[string]uint64{} // value → sequence
		failed  int
		count   atomic.Int64
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		restart = make(chan struct{})
	)
	for w := range 4 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				v := fmt.Sprintf("w%d-%d", w, n)
				c, err := l.Append(ctx, qpool.Mutation{Key: fmt.Sprintf("w%d", w), Value: v})
				mu.Lock()
				if err != nil {
					require.ErrorIs(t, err, natsledger.ErrUnavailable)
					failed++
				} else {
					acked[v] = c.Sequence
				}
				mu.Unlock()
				if count.Add(1) == 200 {
					close(restart)
				}
			}
		})
	}
	<-restart
	ts.restart()
	for count.Load() < 600 {
		_, err := l.Append(ctx, qpool.Mutation{Key: "main", Value: fmt.Sprintf("m%d", count.Load())})
		if err == nil {
			count.Add(50)
		}
	}
	close(stop)
	wg.Wait()

	_, next := l.Bounds()
	h, err := l.Read(ctx, 0, 0)
	require.NoError(t, err)
	require.Len(t, h, int(next))
	stored := map[string]uint64{}
	for i, c := range h {
		require.Equal(t, uint64(i), c.Sequence)
		v := c.Value.(string)
		require.NotContains(t, stored, v, "change %q stored twice", v)
		stored[v] = c.Sequence
	}
	for v, seq := range acked {
		got, ok := stored[v]
		require.True(t, ok, "acknowledged change %q lost", v)
		require.Equal(t, seq, got, "change %q", v)
	}
	t.Logf("%d acknowledged, %d failed during the restart, %d stored", len(acked), failed, len(h))
}

func TestOpenErrors(t *testing.T) {
	_, err := natsledger.Open(context.Background(), nil, "x")
	require.ErrorIs(t, err, natsledger.ErrInvalidConfig)

	ts := startServer(t)
	nc := connect(t, ts.url())
	l := open(t, nc, uniqueID(t))
	require.NoError(t, l.Close())
	_, err = l.Append(context.Background(), qpool.Mutation{Key: "k"})
	require.ErrorIs(t, err, qpool.ErrClosed)

	l = open(t, nc, uniqueID(t))
	_, err = l.Append(context.Background(), qpool.Mutation{Key: "k", Value: func() {}})
	var unsupported *json.UnsupportedTypeError
	require.True(t, errors.As(err, &unsupported), "%v", err)
	_, next := l.Bounds()
	require.Zero(t, next)

	_, err = l.Append(context.Background(), qpool.Mutation{Key: "k", Value: strings.Repeat("x", 2<<20)})
	require.ErrorIs(t, err, nats.ErrMaxPayload)
	require.NotErrorIs(t, err, natsledger.ErrUnavailable)
	_, err = l.Append(context.Background(), qpool.Mutation{Key: "k", Value: "fits"})
	require.NoError(t, err, "the connection survived")
	_, next = l.Bounds()
	require.Equal(t, uint64(1), next)
}
