package natsledger_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsledger"
	"github.com/stretchr/testify/require"
)

// zombieProxy forwards connections to a server. It can hold what the
// clients send on the connections open now, cut those clients off while
// keeping what they sent, and deliver it later on the old server-side
// connections: a publish a client gave up on then reaches the server after
// what the client sent since, on a new connection. This is the shape of a
// publish that a server held across a failover.
type zombieProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex // guards the fields below
	pairs []*zombiePair
	done  bool

	wg sync.WaitGroup
}

// zombiePair is one proxied connection: c to the client, s to the server.
type zombiePair struct {
	c, s net.Conn

	mu       sync.Mutex // guards the fields below
	held     bool       // what the client sends goes to pending
	detached bool       // c was closed on purpose; s stays open
	pending  []byte
	eof      chan struct{} // closed when the server has closed s
}

func startZombieProxy(t *testing.T, port int) *zombieProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &zombieProxy{ln: ln, target: "127.0.0.1:" + strconv.Itoa(port)}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *zombieProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *zombieProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		pr := &zombiePair{c: c, s: s, eof: make(chan struct{})}
		p.mu.Lock()
		if p.done {
			p.mu.Unlock()
			_ = c.Close()
			_ = s.Close()
			return
		}
		p.pairs = append(p.pairs, pr)
		p.mu.Unlock()
		p.wg.Go(pr.up)
		p.wg.Go(pr.down)
	}
}

// up forwards what the client sends, or keeps it while held.
func (pr *zombiePair) up() {
	buf := make([]byte, 32<<10)
	for {
		n, err := pr.c.Read(buf)
		pr.mu.Lock()
		if n > 0 && pr.held {
			pr.pending = append(pr.pending, buf[:n]...)
			n = 0
		}
		detached := pr.detached
		pr.mu.Unlock()
		if n > 0 {
			if _, werr := pr.s.Write(buf[:n]); werr != nil {
				_ = pr.c.Close()
				return
			}
		}
		if err != nil {
			if !detached {
				_ = pr.s.Close()
			}
			return
		}
	}
}

// down forwards what the server sends; once the client is cut off, it
// discards it until the server closes the connection.
func (pr *zombiePair) down() {
	defer close(pr.eof)
	buf := make([]byte, 32<<10)
	for {
		n, err := pr.s.Read(buf)
		if n > 0 {
			pr.mu.Lock()
			detached := pr.detached
			pr.mu.Unlock()
			if !detached {
				if _, werr := pr.c.Write(buf[:n]); werr != nil {
					pr.mu.Lock()
					detached = pr.detached
					pr.mu.Unlock()
					if !detached {
						_ = pr.s.Close()
						return
					}
				}
			}
		}
		if err != nil {
			_ = pr.c.Close()
			return
		}
	}
}

// hold keeps what the clients of the open connections send from now on.
func (p *zombieProxy) hold() []*zombiePair {
	p.mu.Lock()
	defer p.mu.Unlock()
	pairs := p.pairs
	p.pairs = nil
	for _, pr := range pairs {
		pr.mu.Lock()
		pr.held = true
		pr.mu.Unlock()
	}
	return pairs
}

// detach cuts the held connections' clients off: they reconnect through
// new connections, while the server-side ends stay open.
func detach(pairs []*zombiePair) {
	for _, pr := range pairs {
		pr.mu.Lock()
		pr.detached = true
		pr.mu.Unlock()
		_ = pr.c.Close()
	}
}

// deliver sends what the held connections kept to the server, closes
// their write side, and waits until the server has read everything and
// closed them.
func deliver(t *testing.T, pairs []*zombiePair) int {
	t.Helper()
	total := 0
	for _, pr := range pairs {
		pr.mu.Lock()
		data := pr.pending
		pr.mu.Unlock()
		total += len(data)
		if len(data) > 0 {
			_, _ = pr.s.Write(data)
		}
		_ = pr.s.(*net.TCPConn).CloseWrite()
	}
	for _, pr := range pairs {
		select {
		case <-pr.eof:
		case <-time.After(10 * time.Second):
			t.Fatal("watchdog: the server did not close a delivered connection")
		}
	}
	return total
}

func (p *zombieProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.done = true
	for _, pr := range p.pairs {
		_ = pr.c.Close()
		_ = pr.s.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestUnconfirmedAppendNeverOverwritesALaterOne: an UpdateState that
// failed with its outcome unknown, whose publish reaches the server only
// after a later UpdateState of the same key returned nil, must not
// overwrite the later value. (Before the fence in settle.go, the late
// publish was stored after the later change, and GetState went back to
// the failed update's value: the shape of TestLeaderKilled's failures
// after a SIGKILLed leader.)
func TestUnconfirmedAppendNeverOverwritesALaterOne(t *testing.T) {
	ctx := context.Background()
	ts := startServer(t)
	for round := range 3 {
		px := startZombieProxy(t, ts.port)
		id := uniqueID(t) + "-" + strconv.Itoa(round)
		l := open(t, connect(t, px.url()), id, natsledger.WithTimeout(300*time.Millisecond))
		e, err := qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(l))
		require.NoError(t, err)

		updateUntilStored(t, e, "k", 1)
		held := px.hold()
		err = e.UpdateState("k", 2)
		var u *natsledger.UnconfirmedError
		require.ErrorAs(t, err, &u, "an update whose publish is held")
		detach(held)

		// The client reconnects; a later update of the key succeeds.
		watchdog := time.Now().Add(20 * time.Second)
		for err = e.UpdateState("k", 3); err != nil; err = e.UpdateState("k", 3) {
			require.ErrorIs(t, err, natsledger.ErrUnavailable)
			require.True(t, time.Now().Before(watchdog), "watchdog: no update succeeded after the reconnect: %v", err)
			time.Sleep(20 * time.Millisecond)
		}
		v, ok := e.GetState("k")
		require.True(t, ok)
		require.Equal(t, float64(3), v)

		// The held publish of 2 reaches the server now. A marker published
		// afterwards on a connection of its own is stored after it.
		require.Positive(t, deliver(t, held), "the held connection kept what the client sent")
		marker := open(t, connect(t, ts.url()), id)
		me, err := qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(marker))
		require.NoError(t, err)
		require.NoError(t, me.UpdateState("marker", true))
		_, next := marker.Bounds()
		waitNext(t, l, next)

		v, ok = e.GetState("k")
		require.True(t, ok)
		require.Equal(t, float64(3), v, "round %d: the unconfirmed update of 2 overwrote the later 3", round)
		h, err := e.History(ctx, 0)
		require.NoError(t, err)
		var values []any
		for _, c := range h {
			if c.Key == "k" {
				values = append(values, c.Value)
			}
		}
		require.Equal(t, float64(3), values[len(values)-1], "history of k: %v", values)
		require.NoError(t, me.Close())
		require.NoError(t, e.Close())
	}
}

// heldUnconfirmed opens an entanglement on a ledger behind a zombie
// proxy, makes an update whose publish the proxy holds (so it fails with
// its outcome unknown), and cuts the client off so that it reconnects.
func heldUnconfirmed(t *testing.T, ts *testServer, update func(e *qpool.Entanglement) error, opts ...natsledger.Option) (*qpool.Entanglement, *natsledger.Ledger, *nats.Conn, *natsledger.UnconfirmedError, []*zombiePair) {
	t.Helper()
	px := startZombieProxy(t, ts.port)
	id := uniqueID(t)
	nc := connect(t, px.url())
	l := open(t, nc, id, append([]natsledger.Option{natsledger.WithTimeout(300 * time.Millisecond)}, opts...)...)
	e, err := qpool.OpenEntanglement(context.Background(), id, nil, 0, qpool.WithLedger(l))
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	updateUntilStored(t, e, "k", "v0")
	held := px.hold()
	var u *natsledger.UnconfirmedError
	require.ErrorAs(t, update(e), &u, "an update whose publish is held")
	detach(held)
	return e, l, nc, u, held
}

// updateUntilStored calls UpdateState(key, v) until it returns nil. With
// these tests' short timeouts an update may fail as unavailable on a loaded
// machine; the next one settles it first (settle.go), so the loop ends with
// v stored last.
func updateUntilStored(t *testing.T, e *qpool.Entanglement, key string, v any) {
	t.Helper()
	watchdog := time.Now().Add(20 * time.Second)
	for {
		err := e.UpdateState(key, v)
		if err == nil {
			return
		}
		require.ErrorIs(t, err, natsledger.ErrUnavailable)
		require.True(t, time.Now().Before(watchdog), "watchdog: UpdateState(%q) never succeeded: %v", key, err)
		time.Sleep(10 * time.Millisecond)
	}
}

// waitConnected waits until nc has reconnected.
func waitConnected(t *testing.T, nc *nats.Conn) {
	t.Helper()
	watchdog := time.Now().Add(20 * time.Second)
	for !nc.IsConnected() {
		require.True(t, time.Now().Before(watchdog), "watchdog: no reconnection")
		time.Sleep(10 * time.Millisecond)
	}
}

// keyOrder returns the keys and values of e's history, in order.
func keyOrder(t *testing.T, e *qpool.Entanglement) []string {
	t.Helper()
	h, err := e.History(context.Background(), 0)
	require.NoError(t, err)
	var out []string
	for _, c := range h {
		out = append(out, fmt.Sprintf("%s=%v", c.Key, c.Value))
	}
	return out
}

// TestUnconfirmedGuardedUpdateSettledFirst: a guarded Update whose
// outcome is unknown cannot overwrite a newer value of its own key, but
// without the fence its late publish came after a later change of another
// key (found by an adversarial review). The next append settles it first.
func TestUnconfirmedGuardedUpdateSettledFirst(t *testing.T) {
	ts := startServer(t)
	e, l, nc, _, held := heldUnconfirmed(t, ts, func(e *qpool.Entanglement) error {
		return e.Update("k", func(any, bool) (any, error) { return "a", nil })
	})
	waitConnected(t, nc)
	watchdog := time.Now().Add(20 * time.Second)
	for err := e.UpdateState("other", "b"); err != nil; err = e.UpdateState("other", "b") {
		require.ErrorIs(t, err, natsledger.ErrUnavailable)
		require.True(t, time.Now().Before(watchdog), "watchdog: %v", err)
	}
	require.Positive(t, deliver(t, held))
	marker := open(t, connect(t, ts.url()), l.ID())
	_, err := marker.Append(context.Background(), qpool.Mutation{Key: "marker", Value: true})
	require.NoError(t, err)
	_, next := marker.Bounds()
	waitNext(t, l, next)
	order := keyOrder(t, e)
	require.Equal(t, []string{"k=v0", "k=a", "other=b", "marker=true"}, order,
		"the unconfirmed Update is settled (stored) before the later change, and its late copy is refused")
}

// TestConcurrentRetriesOfOneChange: Retries of one unconfirmed change at
// once all return it as stored, at one sequence (before, all but one
// waited out the timeout and failed with Stored set: the replica's
// completion reached only the last of them); a Retry after the change was
// settled publishes nothing, even after the duplicate window.
func TestConcurrentRetriesOfOneChange(t *testing.T) {
	ts := startServer(t)
	const window = time.Second
	e, l, nc, u, held := heldUnconfirmed(t, ts, func(e *qpool.Entanglement) error {
		return e.UpdateState("k", "a")
	}, natsledger.WithDuplicateWindow(window))
	waitConnected(t, nc)
	const n = 8
	var (
		wg   sync.WaitGroup
		seqs [n]uint64
		errs [n]error
	)
	for i := range n {
		wg.Go(func() {
			c, err := u.Retry(context.Background())
			seqs[i], errs[i] = c.Sequence, err
		})
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i], "Retry %d", i)
		require.Equal(t, seqs[0], seqs[i], "Retry %d", i)
	}
	updateUntilStored(t, e, "k", "b")
	require.Positive(t, deliver(t, held))

	time.Sleep(window + window/2) // past the duplicate window: a publish would store again
	c, err := u.Retry(context.Background())
	require.NoError(t, err)
	require.Equal(t, seqs[0], c.Sequence)
	_, err = l.Append(context.Background(), qpool.Mutation{Key: "marker", Value: true})
	require.NoError(t, err)
	order := keyOrder(t, e)
	require.Equal(t, []string{"k=v0", "k=a", "k=b", "marker=true"}, order)
	v, _ := e.GetState("k")
	require.Equal(t, "b", v)
}

// TestRetryOfAFailedRetryAfterTheSettle: a failed Retry returns a new
// *UnconfirmedError (u2). A later append settles the change through the
// listed error u; u2 shares u's settlement, so its Retry returns the
// change as stored and publishes nothing, even past the duplicate window.
// (Found by a review: u2.Retry published again, and past the window the
// old value was stored after the later one.)
func TestRetryOfAFailedRetryAfterTheSettle(t *testing.T) {
	ts := startServer(t)
	const window = time.Second
	e, l, nc, u, held := heldUnconfirmed(t, ts, func(e *qpool.Entanglement) error {
		return e.UpdateState("k", "a")
	}, natsledger.WithDuplicateWindow(window))
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := u.Retry(cctx)
	var u2 *natsledger.UnconfirmedError
	require.True(t, errors.As(err, &u2), "err %v", err)
	require.NotSame(t, u, u2)
	waitConnected(t, nc)
	watchdog := time.Now().Add(20 * time.Second)
	for err = e.UpdateState("k", "b"); err != nil; err = e.UpdateState("k", "b") {
		require.ErrorIs(t, err, natsledger.ErrUnavailable)
		require.True(t, time.Now().Before(watchdog), "watchdog: %v", err)
		time.Sleep(20 * time.Millisecond)
	}
	require.Positive(t, deliver(t, held))
	c1, err := u.Retry(context.Background())
	require.NoError(t, err)
	time.Sleep(window + window/2)
	c2, err := u2.Retry(context.Background())
	require.NoError(t, err)
	_, err = l.Append(context.Background(), qpool.Mutation{Key: "marker", Value: true})
	require.NoError(t, err)
	t.Logf("u.Retry seq %d, u2.Retry seq %d, history %v", c1.Sequence, c2.Sequence, keyOrder(t, e))
	v, _ := e.GetState("k")
	require.Equal(t, "b", v, "the settled change a was stored again after b")
	require.Equal(t, c1.Sequence, c2.Sequence, "Retry of a settled change published again")
}
