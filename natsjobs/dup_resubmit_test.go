package natsjobs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
)

// TestSimultaneousDuplicatesAllButOneRefused: the same ID submitted at once by three
// clients (own connections) on ONE server: exactly one submission may be
// accepted; the others must fail with ErrDuplicateJob ("a second submission
// of the ID fails with ErrDuplicateJob").
func TestSimultaneousDuplicatesAllButOneRefused(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "dup", func(ctx context.Context, in string) (string, error) { return in, nil })
	clients := make([]*natsjobs.Client, 3)
	for i := range clients {
		clients[i] = newClient(t, ts.connect(t), ns, quiet)
	}
	newWorker(t, ts.connect(t), reg, ns, quiet, natsjobs.WithConcurrency(16))
	ctx := wctx(t, 15*time.Second)
	var bad []string
	const n = 300
	for i := range n {
		id := fmt.Sprint("d", i)
		futs := make([]*qpool.Future[string], 3)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for k := range 3 {
			wg.Go(func() {
				<-start
				futs[k] = h.Submit(ctx, clients[k], id, fmt.Sprintf("%s/%d", id, k))
			})
		}
		close(start)
		wg.Wait()
		var seen []string
		winners := 0
		for k, f := range futs {
			v, err := f.Wait(ctx)
			if ctx.Err() != nil {
				t.Fatalf("watchdog: %s via %d", id, k)
			}
			seen = append(seen, fmt.Sprintf("via %d: (%q, %v)", k, v, err))
			if errors.Is(err, natsjobs.ErrDuplicateJob) {
				continue
			}
			if err != nil {
				t.Fatalf("%s via %d: %v", id, k, err)
			}
			winners++
		}
		if winners != 1 {
			bad = append(bad, fmt.Sprintf("%s: %d accepted: %v", id, winners, seen))
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%d of %d IDs had more or fewer than one accepted submission; first: %s", len(bad), n, bad[0])
	}
}

// TestResubmissionThroughAnotherClientIsDuplicate: an ID whose job has finished is
// submitted again (another client, another input) within the retention: the
// second submission must fail with ErrDuplicateJob, not resolve with the
// first job's outcome.
func TestResubmissionThroughAnotherClientIsDuplicate(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "dup", func(ctx context.Context, in string) (string, error) { return in, nil })
	c0 := newClient(t, ts.connect(t), ns, quiet)
	c1 := newClient(t, ts.connect(t), ns, quiet)
	newWorker(t, ts.connect(t), reg, ns, quiet)
	ctx := wctx(t, 15*time.Second)
	var bad []string
	const n = 200
	for i := range n {
		id := fmt.Sprint("s", i)
		if _, err := h.Submit(ctx, c0, id, "first").Wait(ctx); err != nil {
			t.Fatal(err)
		}
		c := c1
		if i%2 == 0 {
			c = c0
		}
		v, err := h.Submit(ctx, c, id, "second").Wait(ctx)
		if ctx.Err() != nil {
			t.Fatal("watchdog")
		}
		if !errors.Is(err, natsjobs.ErrDuplicateJob) {
			bad = append(bad, fmt.Sprintf("%s (same client %v): second Submit resolved with (%q, %v)", id, i%2 == 0, v, err))
		}
	}
	if len(bad) > 0 {
		same := 0
		for _, b := range bad {
			if strings.Contains(b, "same client true") {
				same++
			}
		}
		t.Fatalf("%d of %d resubmissions did not fail with ErrDuplicateJob (%d through the client that submitted first, %d through another); first: %s", len(bad), n, same, len(bad)-same, bad[0])
	}
}
