package natsjobs_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
	"github.com/stretchr/testify/require"
)

// depFixture has a worker whose "step" job records the order it ran jobs
// in and fails the IDs it is told to.
type depFixture struct {
	mu    sync.Mutex
	order []string
	step  natsjobs.Handle[stepIn, string]
}

type stepIn struct {
	ID   string
	Fail bool
}

func newDepFixture(t *testing.T, ts *testServer, ns natsjobs.Option) *depFixture {
	fx := &depFixture{}
	reg := natsjobs.NewRegistry()
	fx.step = natsjobs.Register(reg, "step", func(_ context.Context, in stepIn) (string, error) {
		fx.mu.Lock()
		fx.order = append(fx.order, in.ID)
		fx.mu.Unlock()
		if in.Fail {
			return "", qpool.Permanent(fmt.Errorf("%s failed", in.ID))
		}
		return in.ID, nil
	})
	newWorker(t, ts.connect(t), reg, ns, natsjobs.WithConcurrency(4))
	return fx
}

func (fx *depFixture) ran() []string {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return append([]string(nil), fx.order...)
}

func (fx *depFixture) pos(id string) int {
	for i, x := range fx.ran() {
		if x == id {
			return i
		}
	}
	return -1
}

// TestDependencyChain: a chain submitted from two clients, each job
// submitted before the job it depends on, runs in order, released by the
// finishing jobs (there is no polling to do it).
func TestDependencyChain(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	fx := newDepFixture(t, ts, ns)
	clients := []*natsjobs.Client{newClient(t, ts.connect(t), ns), newClient(t, ts.connect(t), ns)}
	ctx := wctx(t, 30*time.Second)
	const n = 30
	futs := make([]*qpool.Future[string], n)
	for i := n - 1; i >= 0; i-- { // dependents first: they wait for IDs not yet submitted
		var opts []qpool.JobOption
		if i > 0 {
			opts = append(opts, qpool.WithDependencies(fmt.Sprint("c", i-1)))
		}
		futs[i] = fx.step.Submit(ctx, clients[i%2], fmt.Sprint("c", i), stepIn{ID: fmt.Sprint("c", i)}, opts...)
	}
	for i, f := range futs {
		v, err := f.Wait(ctx)
		require.NoError(t, err, "c%d", i)
		require.Equal(t, fmt.Sprint("c", i), v)
	}
	order := fx.ran()
	require.Len(t, order, n)
	for i, id := range order {
		require.Equal(t, fmt.Sprint("c", i), id, "chain ran out of order")
	}
}

// TestDependencyDiamond: d waits for b and c, which wait for a.
func TestDependencyDiamond(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	fx := newDepFixture(t, ts, ns)
	c := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 20*time.Second)
	d := fx.step.Submit(ctx, c, "d", stepIn{ID: "d"}, qpool.WithDependencies("b", "c"))
	b := fx.step.Submit(ctx, c, "b", stepIn{ID: "b"}, qpool.WithDependencies("a"))
	cc := fx.step.Submit(ctx, c, "c", stepIn{ID: "c"}, qpool.WithDependencies("a"))
	a := fx.step.Submit(ctx, c, "a", stepIn{ID: "a"})
	for _, f := range []*qpool.Future[string]{a, b, cc, d} {
		_, err := f.Wait(ctx)
		require.NoError(t, err, f.ID())
	}
	require.Len(t, fx.ran(), 4)
	require.Less(t, fx.pos("a"), fx.pos("b"))
	require.Less(t, fx.pos("a"), fx.pos("c"))
	require.Less(t, fx.pos("b"), fx.pos("d"))
	require.Less(t, fx.pos("c"), fx.pos("d"))
}

// TestDependencyFailedHead: the head of a chain fails; every job down the
// chain fails with ErrDependencyFailed naming the head as origin, and none
// of them runs. A job submitted after the head failed fails at once.
func TestDependencyFailedHead(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	fx := newDepFixture(t, ts, ns)
	c := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 20*time.Second)
	const n = 20
	futs := make([]*qpool.Future[string], n)
	for i := n - 1; i >= 0; i-- {
		var opts []qpool.JobOption
		if i > 0 {
			opts = append(opts, qpool.WithDependencies(fmt.Sprint("f", i-1)))
		}
		futs[i] = fx.step.Submit(ctx, c, fmt.Sprint("f", i), stepIn{ID: fmt.Sprint("f", i), Fail: i == 0}, opts...)
	}
	_, err := futs[0].Wait(ctx)
	require.True(t, qpool.IsPermanent(err), "head: %v", err)
	for i := 1; i < n; i++ {
		_, err := futs[i].Wait(ctx)
		require.ErrorIs(t, err, qpool.ErrDependencyFailed, "f%d", i)
		var de *qpool.DependencyError
		require.ErrorAs(t, err, &de)
		require.Equal(t, fmt.Sprint("f", i-1), de.Dependency)
		require.Equal(t, "f0", de.Origin)
		require.Contains(t, de.Cause.Error(), "f0 failed")
	}
	late := fx.step.Submit(ctx, c, "late", stepIn{ID: "late"}, qpool.WithDependencies("f5"))
	_, err = late.Wait(ctx)
	require.ErrorIs(t, err, qpool.ErrDependencyFailed)
	require.Equal(t, []string{"f0"}, fx.ran(), "no dependent of a failed job runs")
	_, err = fx.step.Submit(ctx, c, "self", stepIn{}, qpool.WithDependencies("self")).Wait(ctx)
	require.ErrorIs(t, err, natsjobs.ErrInvalidJob)
}

// TestDependencyCycle: a cycle (possible, since a dependency may be
// submitted later) never runs, and a failure that reaches it ends.
func TestDependencyCycle(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	fx := newDepFixture(t, ts, ns)
	c := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 20*time.Second)
	x := fx.step.Submit(ctx, c, "x", stepIn{ID: "x"}, qpool.WithDependencies("y", "head"))
	y := fx.step.Submit(ctx, c, "y", stepIn{ID: "y"}, qpool.WithDependencies("x"))
	head := fx.step.Submit(ctx, c, "head", stepIn{ID: "head", Fail: true})
	_, err := head.Wait(ctx)
	require.Error(t, err)
	for _, f := range []*qpool.Future[string]{x, y} {
		_, err := f.Wait(ctx)
		require.ErrorIs(t, err, qpool.ErrDependencyFailed, f.ID())
	}
	require.Equal(t, []string{"head"}, fx.ran())
}

// TestLongReleaseKeepsItsMessage: the worker that records a failure walks
// the failed chain before it acknowledges the message, which takes longer
// than AckWait for a long chain; it keeps the message alive meanwhile, so
// the server does not give it to another worker, which would walk the
// chain again (and count a delivery towards WithMaxDeliveries).
func TestLongReleaseKeepsItsMessage(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	step := natsjobs.Register(reg, "step", func(_ context.Context, in stepIn) (string, error) {
		if in.Fail {
			return "", qpool.Permanent(fmt.Errorf("%s failed", in.ID))
		}
		return in.ID, nil
	})
	ack := natsjobs.WithAckWait(300 * time.Millisecond)
	w1 := newWorker(t, ts.connect(t), reg, ns, ack)
	w2 := newWorker(t, ts.connect(t), reg, ns, ack)
	c := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 30*time.Second)
	const n = 150 // a walk of several AckWaits under -race
	futs := make([]*qpool.Future[string], n)
	for i := n - 1; i >= 1; i-- { // the chain first: it waits for its head
		futs[i] = step.Submit(ctx, c, fmt.Sprint("k", i), stepIn{ID: fmt.Sprint("k", i)}, qpool.WithDependencies(fmt.Sprint("k", i-1)))
	}
	start := time.Now()
	futs[0] = step.Submit(ctx, c, "k0", stepIn{ID: "k0", Fail: true})
	for i, f := range futs {
		_, err := f.Wait(ctx)
		require.Error(t, err, "k%d", i)
	}
	t.Logf("the failed chain of %d was walked in %v (AckWait 300ms)", n, time.Since(start))
	// The walker acknowledges after the walk: until then the message is
	// its own (a redelivery would be counted by now, at its delivery).
	redelivered := w1.Stats().Redelivered + w2.Stats().Redelivered
	dropped := w1.Stats().Dropped + w2.Stats().Dropped
	require.Zero(t, redelivered, "the head's message was redelivered during the walk")
	require.Zero(t, dropped)
}
