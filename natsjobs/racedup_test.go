package natsjobs_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
	"github.com/stretchr/testify/require"
)

// TestSimultaneousSubmissionsRunOnlyTheWinner: clients submitting one new
// ID at the same moment, each with its own payload. One Submit wins (nil),
// the others get ErrDuplicateJob, and only the winner's payload ever runs
// ("A duplicate submission never runs"), even when a loser's message is
// stored, and delivered, before the winner's claim.
func TestSimultaneousSubmissionsRunOnlyTheWinner(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	ran := &payloadLog{}
	echo := ran.register(reg)
	newWorker(t, ts.connect(t), reg, ns, natsjobs.WithConcurrency(32))
	const submitters, ids = 4, 60
	clients := make([]*natsjobs.Client, submitters)
	for i := range clients {
		clients[i] = newClient(t, ts.connect(t), ns)
	}
	ctx := wctx(t, 60*time.Second)
	winners := map[string]int{}
	for i := range ids {
		id := fmt.Sprint("race", i)
		start := make(chan struct{})
		var wg sync.WaitGroup
		futs := make([]*qpool.Future[int], submitters)
		for g := range submitters {
			wg.Go(func() {
				<-start
				time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
				futs[g] = echo.Submit(ctx, clients[g], id, resizeArgs{Name: id, Width: g + 1})
			})
		}
		close(start)
		wg.Wait()
		own := false // a submitter whose future resolved holds the payload that gave the outcome
		for g, f := range futs {
			v, err := f.Wait(ctx)
			switch {
			case errors.Is(err, natsjobs.ErrDuplicateJob):
			case err == nil:
				if w, ok := winners[id]; ok && w != v {
					t.Errorf("%s: two futures resolved with %d and %d", id, w, v)
				}
				winners[id] = v
				own = own || v == g+1
			default:
				t.Fatalf("%s: submitter %d: %v", id, g, err)
			}
		}
		if !own {
			t.Errorf("%s: the outcome %d is the payload of a submitter that got ErrDuplicateJob", id, winners[id])
		}
	}
	for id, w := range winners {
		for _, v := range ran.of(id) {
			if v != w {
				t.Errorf("%s: ran the payload of submitter %d, but the job's outcome is submitter %d's", id, v, w)
			}
		}
	}
	require.Len(t, winners, ids)
}

// TestDuplicateDeliveredBeforeTheClaimNeverRuns: a duplicate submission
// whose message is stored, and delivered, before the first submission's
// claim, while its own claim create comes only later (and fails), must not
// run: the worker waits for the claim a message's first delivery does not
// find, rather than run the message at once.
func TestDuplicateDeliveredBeforeTheClaimNeverRuns(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	ran := &payloadLog{}
	echo := ran.register(reg)
	newWorker(t, ts.connect(t), reg, ns, natsjobs.WithConcurrency(8))
	late := newClient(t, ts.connect(t), ns, natsjobs.WithClaimDelay(300*time.Millisecond))
	first := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 15*time.Second)
	for i := range 3 {
		id := fmt.Sprint("early", i)
		// The late client's message goes now, its claim in 300 ms; the
		// first client's claim and message go in 100 ms, so its claim is
		// stored first and the late client's create fails.
		type result struct {
			v   int
			err error
		}
		dup := make(chan result, 1)
		go func() {
			v, err := echo.Submit(ctx, late, id, resizeArgs{Name: id, Width: 2}).Wait(ctx)
			dup <- result{v, err}
		}()
		time.Sleep(100 * time.Millisecond)
		v, err := echo.Submit(ctx, first, id, resizeArgs{Name: id, Width: 1}).Wait(ctx)
		require.NoError(t, err, id)
		require.Equal(t, 1, v, "%s: the outcome is the first submission's", id)
		// The duplicate fails with ErrDuplicateJob, although its client's
		// watcher may deliver the existing job's outcome before its claim
		// is refused (the waiter is held until then).
		d := <-dup
		require.ErrorIs(t, d.err, natsjobs.ErrDuplicateJob, "%s: got %v", id, d.v)
		require.Equal(t, []int{1}, ran.of(id), "%s: only the first submission's payload runs", id)
	}
}

// payloadLog records, per job ID, the Width of each payload that its echo
// handler ran: which submission's input a job ran with.
type payloadLog struct {
	mu  sync.Mutex
	ran map[string][]int
}

// register registers the recording "echo" handler in reg.
func (l *payloadLog) register(reg *natsjobs.Registry) natsjobs.Handle[resizeArgs, int] {
	return natsjobs.Register(reg, "echo", func(ctx context.Context, in resizeArgs) (int, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.ran == nil {
			l.ran = map[string][]int{}
		}
		l.ran[in.Name] = append(l.ran[in.Name], in.Width)
		return in.Width, nil
	})
}

// of returns the payloads job id ran with, in order.
func (l *payloadLog) of(id string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ran[id])
}
