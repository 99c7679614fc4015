package natsjobs_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/qpool/qpool/natsjobs"
)

// A final review (2026-12-07) of this session's changes (da3751a..77a0420):
// the results bucket is made with the retention plus outcomeMargin (2 s).

// TestReview7LongestRetention: WithRetention takes any positive duration
// ("it also bounds how long an ID stays unique"): a namespace made with
// the longest one a time.Duration holds, to keep IDs unique for good,
// works like any other. The results bucket's TTL, the retention plus the
// margin, must not overflow into a negative TTL that the server refuses
// (NewClient failing with a raw server error).
func TestReview7LongestRetention(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	ret := natsjobs.WithRetention(time.Duration(math.MaxInt64))
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "echo", func(_ context.Context, n int) (int, error) { return n, nil })
	c := newClient(t, ts.connect(t), ns, ret, quiet)
	newWorker(t, ts.connect(t), reg, ns, ret, quiet)
	ctx := wctx(t, 10*time.Second)
	v, err := h.Submit(ctx, c, "forever", 7).Wait(ctx)
	switch {
	case ctx.Err() != nil:
		t.Fatal("watchdog: the job never resolved")
	case err != nil || v != 7:
		t.Fatalf("job: %v, %v", v, err)
	}
	st, err := c.Status(ctx, "forever")
	if err != nil || st.Result == nil {
		t.Fatalf("Status: %+v, %v", st, err)
	}
}

// TestReview7RetentionBelowTheServersMinimum: a retention below the
// server's shortest MaxAge (100 ms) is bad input, which gets a clear
// sentinel error: NewClient and NewWorker fail with ErrInvalidOption, not
// with the server's raw refusal of the bucket.
func TestReview7RetentionBelowTheServersMinimum(t *testing.T) {
	ts := startServer(t)
	js := ts.connect(t)
	ctx := wctx(t, 10*time.Second)
	for _, d := range []time.Duration{time.Nanosecond, 50 * time.Millisecond, 100*time.Millisecond - 1} {
		ret := natsjobs.WithRetention(d)
		c, err := natsjobs.NewClient(ctx, js, natsjobs.WithNamespace(namespace()), ret, quiet)
		if c != nil {
			_ = c.Close()
		}
		if !errors.Is(err, natsjobs.ErrInvalidOption) {
			t.Errorf("NewClient, WithRetention(%v): %v, want ErrInvalidOption", d, err)
		}
		w, err := natsjobs.NewWorker(ctx, js, natsjobs.NewRegistry(), natsjobs.WithNamespace(namespace()), ret, quiet)
		if w != nil {
			_ = w.Shutdown(ctx)
		}
		if !errors.Is(err, natsjobs.ErrInvalidOption) {
			t.Errorf("NewWorker, WithRetention(%v): %v, want ErrInvalidOption", d, err)
		}
	}
	// The shortest the server takes works.
	newClient(t, js, natsjobs.WithNamespace(namespace()), natsjobs.WithRetention(100*time.Millisecond), quiet)
}
