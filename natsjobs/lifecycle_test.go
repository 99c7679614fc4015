package natsjobs_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
	"github.com/stretchr/testify/require"
)

// TestCancelQueued: a job cancelled while it waits in the stream (no
// worker yet) and one cancelled while it waits for a dependency never
// run; a dependent of the cancelled job fails with ErrDependencyFailed.
func TestCancelQueued(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	c1 := newClient(t, ts.connect(t), ns)
	c2 := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 20*time.Second)
	reg := natsjobs.NewRegistry()
	var ran atomic.Int32
	job := natsjobs.Register(reg, "job", func(_ context.Context, s string) (string, error) {
		ran.Add(1)
		return s, nil
	})
	queued := job.Submit(ctx, c1, "queued", "q")
	waiting := job.Submit(ctx, c1, "waiting", "w", qpool.WithDependencies("later"))
	dependent := job.Submit(ctx, c1, "dependent", "d", qpool.WithDependencies("queued"))
	require.NoError(t, c2.Cancel(ctx, "queued"))
	require.NoError(t, c2.Cancel(ctx, "waiting"))
	require.NoError(t, c2.Cancel(ctx, "queued"), "cancel of a finished job does nothing")
	require.ErrorIs(t, c2.Cancel(ctx, "nobody"), natsjobs.ErrUnknownJob)
	for _, f := range []*qpool.Future[string]{queued, waiting} {
		_, err := f.Wait(ctx)
		require.ErrorIs(t, err, context.Canceled, f.ID())
	}
	_, err := dependent.Wait(ctx)
	require.ErrorIs(t, err, qpool.ErrDependencyFailed)
	require.ErrorIs(t, err, context.Canceled)

	w := newWorker(t, ts.connect(t), reg, ns)
	later := job.Submit(ctx, c1, "later", "l")
	marker := job.Submit(ctx, c1, "marker", "m")
	_, err = later.Wait(ctx)
	require.NoError(t, err)
	_, err = marker.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, int32(2), ran.Load(), "cancelled jobs never ran")
	// The cancelled job's message was delivered and dropped, not run.
	waitFor(t, 5*time.Second, "the cancelled message dropped", func() bool { return w.Stats().Dropped >= 1 })
}

// TestCancelRunning: cancelling from another client ends a running job's
// context on its worker; the future fails with context.Canceled and what
// the function returned is discarded.
func TestCancelRunning(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	started := make(chan struct{})
	saw := make(chan error, 1)
	block := natsjobs.Register(reg, "block", func(ctx context.Context, _ int) (int, error) {
		close(started)
		<-ctx.Done()
		saw <- context.Cause(ctx)
		return 42, nil // discarded: the job was cancelled
	})
	newWorker(t, ts.connect(t), reg, ns)
	c1 := newClient(t, ts.connect(t), ns)
	c2 := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 20*time.Second)
	f := block.Submit(ctx, c1, "run", 1)
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("watchdog: job did not start")
	}
	require.NoError(t, c2.Cancel(ctx, "run"))
	select {
	case err := <-saw:
		require.ErrorIs(t, err, context.Canceled)
	case <-ctx.Done():
		t.Fatal("watchdog: running job's context was not cancelled")
	}
	_, err := f.Wait(ctx)
	require.ErrorIs(t, err, context.Canceled)
}

// TestShutdownHandsBack: a worker shut down with a short deadline hands its
// running job back at once; another worker finishes it.
func TestShutdownHandsBack(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	reg1 := natsjobs.NewRegistry()
	started := make(chan struct{})
	natsjobs.Register(reg1, "long", func(ctx context.Context, n int) (int, error) {
		close(started)
		<-ctx.Done()
		return -1, ctx.Err()
	})
	// A long AckWait: a job handed back comes again at once, not after it.
	w1 := newWorker(t, ts.connect(t), reg1, ns, natsjobs.WithAckWait(time.Minute))
	c := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 20*time.Second)
	long := natsjobs.Declare[int, int]("long")
	f := long.Submit(ctx, c, "l1", 7)
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("watchdog: job did not start")
	}
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, w1.Shutdown(sctx), context.DeadlineExceeded)
	require.NoError(t, w1.Shutdown(ctx), "Shutdown is idempotent")

	reg2 := natsjobs.NewRegistry()
	natsjobs.Register(reg2, "long", func(_ context.Context, n int) (int, error) { return n * 2, nil })
	w2 := newWorker(t, ts.connect(t), reg2, ns, natsjobs.WithAckWait(time.Minute))
	v, err := f.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, 14, v)
	rec, err := c.Result(ctx, "l1")
	require.NoError(t, err)
	require.Equal(t, w2.Name(), rec.Worker)
	require.Equal(t, int64(1), w2.Stats().Redelivered)

	// A worker whose jobs finish in time shuts down cleanly.
	require.NoError(t, w2.Shutdown(ctx))
}

// TestUnhandledWaits: a job whose name no running worker knows waits,
// visibly (Status.Unhandled), without burning attempts, and runs once a
// worker that registers the name starts.
func TestUnhandledWaits(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	other := natsjobs.NewRegistry()
	natsjobs.Register(other, "other", func(_ context.Context, n int) (int, error) { return n, nil })
	w1 := newWorker(t, ts.connect(t), other, ns, natsjobs.WithUnhandledDelay(200*time.Millisecond))
	c := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 20*time.Second)
	f := natsjobs.Declare[int, int]("rare").Submit(ctx, c, "r1", 5, qpool.WithRetry(1, 0))
	waitFor(t, 10*time.Second, "the job to show as unhandled", func() bool {
		st, err := c.Status(ctx, "r1")
		return err == nil && st.Unhandled && st.UnhandledBy == w1.Name()
	})
	waitFor(t, 10*time.Second, "a second offer", func() bool { return w1.Stats().Unhandled >= 2 })
	select {
	case <-f.Done():
		t.Fatal("an unhandled job resolved")
	default:
	}
	reg := natsjobs.NewRegistry()
	natsjobs.Register(reg, "rare", func(_ context.Context, n int) (int, error) { return n + 1, nil })
	newWorker(t, ts.connect(t), reg, ns)
	v, err := f.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, 6, v)
	rec, err := c.Result(ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, 1, rec.Attempts, "waiting for a handler burns no attempt")
}

// TestBadInput: a payload that does not decode fails permanently without
// calling the function; an oversized payload, an empty ID and a nil client
// fail at submit; a client closed, and a server down, fail submissions
// within the caller's context.
func TestBadInput(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	var called atomic.Int32
	natsjobs.Register(reg, "typed", func(_ context.Context, in resizeArgs) (int, error) {
		called.Add(1)
		return in.Width, nil
	})
	natsjobs.Register(reg, "huge", func(_ context.Context, in resizeArgs) (string, error) {
		return strings.Repeat("y", in.Width), nil
	})
	newWorker(t, ts.connect(t), reg, ns)
	c := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 20*time.Second)

	_, err := natsjobs.Declare[string, int]("typed").Submit(ctx, c, "bad", "not an object").Wait(ctx)
	require.True(t, qpool.IsPermanent(err), "got %v", err)
	var re *natsjobs.RemoteError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "decode", re.Kind)
	require.Zero(t, called.Load())

	big := strings.Repeat("x", 2<<20)
	_, err = natsjobs.Declare[string, int]("typed").Submit(ctx, c, "big", big).Wait(ctx)
	require.ErrorIs(t, err, natsjobs.ErrPayloadTooLarge)
	_, err = c.Status(ctx, "big")
	require.ErrorIs(t, err, natsjobs.ErrUnknownJob, "nothing of a rejected job is stored")

	_, err = natsjobs.Declare[string, int]("typed").Submit(ctx, c, "big-dep", big[:800<<10], qpool.WithDependencies("bad")).Wait(ctx)
	require.ErrorIs(t, err, natsjobs.ErrPayloadTooLarge, "a job with dependencies keeps its payload in its claim")
	_, err = natsjobs.Declare[resizeArgs, int]("huge").Submit(ctx, c, "huge", resizeArgs{Width: 1 << 20}).Wait(ctx)
	require.ErrorIs(t, err, natsjobs.ErrPayloadTooLarge, "a result too large to record fails the job")
	require.True(t, qpool.IsPermanent(err))

	_, err = natsjobs.Declare[string, int]("typed").Submit(ctx, c, "", "x").Wait(ctx)
	require.ErrorIs(t, err, natsjobs.ErrInvalidJob)
	_, err = natsjobs.Declare[string, int]("typed").Submit(ctx, nil, "x", "x").Wait(ctx)
	require.ErrorIs(t, err, natsjobs.ErrInvalidJob)

	c2 := newClient(t, ts.connect(t), ns)
	require.NoError(t, c2.Close())
	_, err = natsjobs.Declare[string, int]("typed").Submit(ctx, c2, "closed", "x").Wait(ctx)
	require.ErrorIs(t, err, natsjobs.ErrClosed)

	ts.stop()
	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	f := natsjobs.Declare[resizeArgs, int]("typed").Submit(sctx, c, "down", resizeArgs{Width: 1})
	select {
	case <-f.Done():
	case <-ctx.Done():
		t.Fatal("watchdog: submit with the server down did not return")
	}
	_, err = f.Wait(ctx)
	require.Error(t, err)
	require.False(t, errors.Is(err, natsjobs.ErrDuplicateJob))
}

// TestShutdownHandsBackUnbegun: a job the local pool has taken but not yet
// begun when Shutdown starts handing back is handed back too, not run
// after Shutdown's deadline: another worker finishes it.
func TestShutdownHandsBackUnbegun(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	ctx := wctx(t, 20*time.Second)
	reg1 := natsjobs.NewRegistry()
	started := make(chan struct{})
	handedBack := make(chan struct{}) // closed when Shutdown cancels the long job
	natsjobs.Register(reg1, "long", func(ctx context.Context, n int) (int, error) {
		close(started)
		<-ctx.Done()
		close(handedBack)
		return -1, ctx.Err()
	})
	var ranHere atomic.Int32
	natsjobs.Register(reg1, "quick", func(_ context.Context, n int) (int, error) {
		ranHere.Add(1)
		return n, nil
	})
	entered := make(chan struct{})
	hold := natsjobs.WithBeforeBegin(func(id string) {
		if id != "q1" {
			return
		}
		close(entered)
		// Taken by the pool, not begun: until Shutdown is handing back.
		select {
		case <-handedBack:
		case <-ctx.Done():
		}
	})
	w1 := newWorker(t, ts.connect(t), reg1, ns, hold, natsjobs.WithConcurrency(2), natsjobs.WithAckWait(time.Minute))
	c := newClient(t, ts.connect(t), ns)
	long := natsjobs.Declare[int, int]("long").Submit(ctx, c, "l1", 1)
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("watchdog: long job did not start")
	}
	quick := natsjobs.Declare[int, int]("quick").Submit(ctx, c, "q1", 2)
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("watchdog: quick job was not taken")
	}
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, w1.Shutdown(sctx), context.DeadlineExceeded)
	require.Zero(t, ranHere.Load(), "a job not begun when Shutdown handed back ran on the shut-down worker")

	reg2 := natsjobs.NewRegistry()
	natsjobs.Register(reg2, "long", func(_ context.Context, n int) (int, error) { return n * 10, nil })
	natsjobs.Register(reg2, "quick", func(_ context.Context, n int) (int, error) { return n * 10, nil })
	w2 := newWorker(t, ts.connect(t), reg2, ns)
	for _, f := range []*qpool.Future[int]{long, quick} {
		v, err := f.Wait(ctx)
		require.NoError(t, err, f.ID())
		rec, err := c.Result(ctx, f.ID())
		require.NoError(t, err)
		require.Equal(t, w2.Name(), rec.Worker, f.ID())
		require.Positive(t, v)
	}
}
