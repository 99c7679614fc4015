package natsjobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/qpool/qpool/natsjobs"
)

// TestDuplicateRedeliveredBeforeTheClaim: a duplicate's message whose
// first delivery is handed back (Shutdown) before the first submission's
// claim is stored must not run on its second delivery: a message stored
// less than claimWait ago waits for the claim whatever its delivery count.
// (Found by a review: the second delivery ran the duplicate, and the first
// submission's future never resolved.)
func TestDuplicateRedeliveredBeforeTheClaim(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	ctx := wctx(t, 20*time.Second)
	ran := &payloadLog{}
	reg1 := natsjobs.NewRegistry()
	echo := ran.register(reg1)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	hold := natsjobs.WithBeforeBegin(func(id string) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	})
	w1 := newWorker(t, ts.connect(t), reg1, ns, hold, natsjobs.WithConcurrency(1))
	late := newClient(t, ts.connect(t), ns, natsjobs.WithClaimDelay(600*time.Millisecond))
	first := newClient(t, ts.connect(t), ns)
	id := "early"
	dup := make(chan error, 1)
	go func() {
		_, err := echo.Submit(ctx, late, id, resizeArgs{Name: id, Width: 2}).Wait(ctx)
		dup <- err
	}()
	<-entered // w1 holds the duplicate's first delivery
	sctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	go func() { time.Sleep(20 * time.Millisecond); close(release) }()
	_ = w1.Shutdown(sctx) // hands back: Nak, redelivered at once
	cancel()
	reg2 := natsjobs.NewRegistry()
	ran.register(reg2)
	newWorker(t, ts.connect(t), reg2, ns)
	time.Sleep(200 * time.Millisecond) // the first submission comes later
	v, err := echo.Submit(ctx, first, id, resizeArgs{Name: id, Width: 1}).Wait(ctx)
	t.Logf("first: %v %v; dup: %v", v, err, <-dup)
	if got := ran.of(id); len(got) != 1 || got[0] != 1 {
		t.Errorf("ran %v, want only the first submission's payload [1]", got)
	}
}
