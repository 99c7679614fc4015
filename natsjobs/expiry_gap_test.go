package natsjobs_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
)

// TestResubmissionBetweenExpiriesResolves: a claim is written before its
// outcome, so with one retention for both it expires first. A submission
// of the ID in the gap is accepted (the claim is gone), and a worker drops
// its message because the job has an outcome. Its future must still
// resolve: with the outcome that is kept, as a duplicate submission's
// may, or with a run of its own if that outcome expired too. Before the
// fix it never resolved (the outcome it waits for was recorded before it
// registered, and nothing recorded another).
func TestResubmissionBetweenExpiriesResolves(t *testing.T) {
	for _, tc := range []struct {
		name   string
		submit func(ctx context.Context, h natsjobs.Handle[int, int64], c *natsjobs.Client) *qpool.Future[int64]
	}{
		{"Plain", func(ctx context.Context, h natsjobs.Handle[int, int64], c *natsjobs.Client) *qpool.Future[int64] {
			return h.Submit(ctx, c, "gap", 0)
		}},
		{"Delayed", func(ctx context.Context, h natsjobs.Handle[int, int64], c *natsjobs.Client) *qpool.Future[int64] {
			return h.SubmitAt(ctx, c, "gap", 0, time.Now().Add(50*time.Millisecond))
		}},
		{"WithDependency", func(ctx context.Context, h natsjobs.Handle[int, int64], c *natsjobs.Client) *qpool.Future[int64] {
			return h.Submit(ctx, c, "gap", 0, qpool.WithDependencies("dep"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testResubmissionBetweenExpiries(t, tc.submit)
		})
	}
}

func testResubmissionBetweenExpiries(t *testing.T, submit func(context.Context, natsjobs.Handle[int, int64], *natsjobs.Client) *qpool.Future[int64]) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	retention := natsjobs.WithRetention(2 * time.Second)
	var runs atomic.Int64
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "slow", func(ctx context.Context, _ int) (int64, error) {
		n := runs.Add(1)
		if n == 1 {
			// The outcome is recorded about a second after the claim, so
			// the claim expires about a second before it.
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		return n, nil
	})
	dep := natsjobs.Register(reg, "dep", func(context.Context, int) (int, error) { return 0, nil })
	c := newClient(t, ts.connect(t), ns, retention, quiet)
	newWorker(t, ts.connect(t), reg, ns, retention, quiet)
	ctx := wctx(t, 20*time.Second)

	if _, err := dep.Submit(ctx, c, "dep", 0).Wait(ctx); err != nil {
		t.Fatalf("dependency: %v", err)
	}
	v, err := submit(ctx, h, c).Wait(ctx)
	if err != nil || v != 1 {
		t.Fatalf("first run: %v, %v", v, err)
	}
	waitForGap(ctx, t, c, "gap")
	got, err := submit(ctx, h, c).Wait(ctx)
	if ctx.Err() != nil {
		t.Fatal("watchdog: the resubmission's future never resolved")
	}
	switch {
	case err != nil:
		t.Fatalf("resubmission: %v", err)
	case got != 1:
		t.Fatalf("resubmission resolved with %d: the job ran again while its outcome was kept", got)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("the handler ran %d times", n)
	}
}

// TestSubmissionRacingTheOldClaimsExpiryResolves: a job's message is sent
// before its claim is created, so a worker may read the ID's claim while
// an earlier submission's is still there, in its last moments, and the
// new claim is created once that one expired. The new submission is
// accepted; its message must not be dropped as a duplicate's. Before the
// fix the worker dropped it (the claim it read had another nonce) and the
// future never resolved: found by TestAttackExpiryGapHammer
// (seed 1796596970301139357, a plain submission 0.2 s after a claim's
// expiry). Here the client pauses between the message and the claim
// (WithClaimDelay), so that the worker reads the old claim.
func TestSubmissionRacingTheOldClaimsExpiryResolves(t *testing.T) {
	const retention = 2 * time.Second
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	ret := natsjobs.WithRetention(retention)
	var runs atomic.Int64
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "quick", func(context.Context, int) (int64, error) { return runs.Add(1), nil })
	c := newClient(t, ts.connect(t), ns, ret, quiet)
	late := newClient(t, ts.connect(t), ns, ret, quiet, natsjobs.WithClaimDelay(1500*time.Millisecond))
	newWorker(t, ts.connect(t), reg, ns, ret, quiet)
	ctx := wctx(t, 20*time.Second)

	start := time.Now()
	if v, err := h.Submit(ctx, c, "racing", 0).Wait(ctx); err != nil || v != 1 {
		t.Fatalf("first run: %v, %v", v, err)
	}
	// The message half a second before the first claim's expiry; the
	// claim a second after it.
	time.Sleep(time.Until(start.Add(retention - 500*time.Millisecond)))
	got, err := h.Submit(ctx, late, "racing", 0).Wait(ctx)
	switch {
	case ctx.Err() != nil:
		t.Fatal("watchdog: the submission's future never resolved")
	case errors.Is(err, natsjobs.ErrDuplicateJob):
		t.Fatalf("refused as a duplicate: the first claim outlived its retention by over a second (%v)", err)
	case err != nil:
		t.Fatalf("second submission: %v", err)
	case got == 1 && runs.Load() != 1, got == 2 && runs.Load() != 2, got < 1 || got > 2:
		t.Fatalf("resolved with %d after %d runs", got, runs.Load())
	}
}

// TestShutdownDuringAGapMessagesClaimWait: a worker that got the message of
// a submission made in the gap (the ID's claim expired, its outcome kept)
// waits for that submission's claim before it writes the outcome again.
// Shutdown, its context ended, must hand the message back at once rather
// than wait for the claim (before, it waited for the claim, up to 5 s past
// its context); the submission then resolves through another worker.
func TestShutdownDuringAGapMessagesClaimWait(t *testing.T) {
	const retention = 2 * time.Second
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	ret := natsjobs.WithRetention(retention)
	var runs atomic.Int64
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "slow", func(ctx context.Context, _ int) (int64, error) {
		n := runs.Add(1)
		if n == 1 { // the outcome a second after the claim: a gap of a second
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		return n, nil
	})
	var armed atomic.Bool
	got := make(chan struct{}, 1)
	c := newClient(t, ts.connect(t), ns, ret, quiet)
	late := newClient(t, ts.connect(t), ns, ret, quiet, natsjobs.WithClaimDelay(1500*time.Millisecond))
	w1 := newWorker(t, ts.connect(t), reg, ns, ret, quiet, natsjobs.WithBeforeBegin(func(string) {
		if armed.Load() {
			select {
			case got <- struct{}{}:
			default:
			}
		}
	}))
	ctx := wctx(t, 20*time.Second)

	if v, err := h.Submit(ctx, c, "gap", 0).Wait(ctx); err != nil || v != 1 {
		t.Fatalf("first run: %v, %v", v, err)
	}
	waitForGap(ctx, t, c, "gap")
	armed.Store(true)
	submitted := make(chan *qpool.Future[int64], 1)
	go func() { submitted <- h.Submit(ctx, late, "gap", 0) }() // returns once its claim is made
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("watchdog: the gap submission's message never reached the worker")
	}
	time.Sleep(100 * time.Millisecond) // into the wait for its claim, 1.5 s away
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	_ = w1.Shutdown(ended)
	select {
	case <-submitted:
		t.Fatal("Shutdown returned only after the submission's claim was made: it waited for the claim")
	default:
	}
	newWorker(t, ts.connect(t), reg, ns, ret, quiet)
	var f *qpool.Future[int64]
	select {
	case f = <-submitted:
	case <-ctx.Done():
		t.Fatal("watchdog: Submit never returned")
	}
	v, err := f.Wait(ctx)
	switch {
	case ctx.Err() != nil:
		t.Fatal("watchdog: the gap submission never resolved")
	case err != nil:
		t.Fatalf("gap submission: %v", err)
	case v != runs.Load() && v != 1:
		t.Fatalf("resolved with %d after %d runs", v, runs.Load())
	}
}

// waitForGap waits until job id's claim has expired while its outcome is
// still kept.
func waitForGap(ctx context.Context, t *testing.T, c *natsjobs.Client, id string) {
	t.Helper()
	waitFor(t, 10*time.Second, "the claim to expire before the outcome", func() bool {
		st, err := c.Status(ctx, id)
		if errors.Is(err, natsjobs.ErrUnknownJob) {
			t.Fatal("the outcome expired with the claim: no gap to test")
		}
		return err == nil && st.Name == "" && st.Result != nil
	})
}
