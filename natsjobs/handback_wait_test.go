package natsjobs_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool/natsjobs"
)

// TestHandBackDuringClaimWait: a message waiting for its claim (a first
// delivery that found none) when Shutdown hands it back must not run on
// the worker that handed it back ("nothing runs after the hand-back"), and
// the wait ends with the hand-back. (Found by a review: the wait went on
// until the claim came, then the handler ran with a cancelled context.)
func TestHandBackDuringClaimWait(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	ctx := wctx(t, 20*time.Second)
	reg1 := natsjobs.NewRegistry()
	started := make(chan struct{})
	natsjobs.Register(reg1, "long", func(ctx context.Context, n int) (int, error) {
		close(started)
		<-ctx.Done()
		return -1, ctx.Err()
	})
	var ranHere, ranCancelled atomic.Int32
	natsjobs.Register(reg1, "quick", func(ctx context.Context, n int) (int, error) {
		ranHere.Add(1)
		if ctx.Err() != nil {
			ranCancelled.Add(1)
		}
		return n, nil
	})
	entered := make(chan struct{}, 1)
	hook := natsjobs.WithBeforeBegin(func(id string) {
		if id == "q1" {
			select {
			case entered <- struct{}{}:
			default:
			}
		}
	})
	w1 := newWorker(t, ts.connect(t), reg1, ns, hook, natsjobs.WithConcurrency(2), natsjobs.WithAckWait(time.Minute))
	c := newClient(t, ts.connect(t), ns)
	slow := newClient(t, ts.connect(t), ns, natsjobs.WithClaimDelay(1500*time.Millisecond))
	natsjobs.Declare[int, int]("long").Submit(ctx, c, "l1", 1)
	<-started
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		natsjobs.Declare[int, int]("quick").Submit(ctx, slow, "q1", 2)
	}()
	defer func() { <-submitted }()
	<-entered
	time.Sleep(100 * time.Millisecond) // in the claim wait now
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	err := w1.Shutdown(sctx)
	t.Logf("Shutdown(50ms) returned %v after %v; quick ran here %d times (%d with a cancelled ctx)", err, time.Since(t0), ranHere.Load(), ranCancelled.Load())
	if ranHere.Load() != 0 {
		t.Errorf("a job handed back by Shutdown ran on the shut-down worker")
	}
}
