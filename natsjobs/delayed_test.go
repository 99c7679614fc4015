package natsjobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
	"github.com/stretchr/testify/require"
)

// TestSubmitAt: a delayed job does not start before its time (it goes as
// a scheduled message when more than a second away), one in the past
// starts at once, a delayed dependent waits for both its time and its
// dependency, and a delayed job cancelled while it waits never runs.
func TestSubmitAt(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	stamp := natsjobs.Register(reg, "stamp", func(_ context.Context, s string) (time.Time, error) {
		if s == "never" {
			t.Error("a cancelled delayed job ran")
		}
		return time.Now(), nil
	})
	newWorker(t, ts.connect(t), reg, ns)
	c := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 20*time.Second)
	now := time.Now()
	far := now.Add(1500 * time.Millisecond) // scheduled
	near := now.Add(300 * time.Millisecond) // published at once, put back until then
	fFar := stamp.SubmitAt(ctx, c, "far", "far", far)
	fNear := stamp.SubmitAt(ctx, c, "near", "near", near)
	fPast := stamp.SubmitAt(ctx, c, "past", "past", now.Add(-time.Hour))
	fDep := stamp.SubmitAt(ctx, c, "dep", "dep", near, qpool.WithDependencies("far"))
	fNever := stamp.SubmitAt(ctx, c, "never", "never", far)
	require.NoError(t, c.Cancel(ctx, "never"))

	ranFar, err := fFar.Wait(ctx)
	require.NoError(t, err)
	require.False(t, ranFar.Before(far), "far ran at %v, before %v", ranFar, far)
	ranNear, err := fNear.Wait(ctx)
	require.NoError(t, err)
	require.False(t, ranNear.Before(near), "near ran at %v, before %v", ranNear, near)
	_, err = fPast.Wait(ctx)
	require.NoError(t, err)
	ranDep, err := fDep.Wait(ctx)
	require.NoError(t, err)
	require.False(t, ranDep.Before(ranFar), "dep ran before its dependency")
	_, err = fNever.Wait(ctx)
	require.ErrorIs(t, err, context.Canceled)
}
