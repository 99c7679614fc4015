package natsjobs_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
)

// A review (2026-12-06) of dda00d4, Worker.otherClaim: "a claim of another
// nonce proves a duplicate only if its retention lasts past the message's
// storing time plus claimWait; otherwise re-read until the own claim, a
// long-lived claim, or the message's retraction". Checked against the
// opposite promise (docs/jobs.md "A duplicate submission never runs") and
// against a worker whose WithRetention is not the buckets' TTL ("set by
// whoever makes a bucket first", docs/jobs.md "Mapping").

// startServerNoDelete starts an embedded server with two users: "full",
// who may do anything, and "nodel", who may not delete a stream's
// message ($JS.API.STREAM.MSG.DELETE.>), as an operator may set up a
// producer. It returns a connect function for each user.
func startServerNoDelete(t *testing.T) (full, nodel func(t *testing.T) jetstream.JetStream) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "full", Password: "pw"},
			{Username: "nodel", Password: "pw", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"$JS.API.STREAM.MSG.DELETE.>"}},
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	url := "nats://127.0.0.1:" + strconv.Itoa(srv.Addr().(*net.TCPAddr).Port)
	connect := func(user string) func(t *testing.T) jetstream.JetStream {
		return func(t *testing.T) jetstream.JetStream {
			t.Helper()
			opts := append(connOptions(), nats.UserInfo(user, "pw"),
				nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // the denied deletes
			nc, err := nats.Connect(url, opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			return js
		}
	}
	return connect("full"), connect("nodel")
}

// TestReview6RefusedDuplicateInTheClaimsLastSecondsNeverRuns: a duplicate
// submission refused while the existing job's claim has under 2 s left
// (the job runs longer than the retention, so it has no outcome yet), by
// a client that cannot retract its message (no delete permission). A
// worker gets the duplicate's message while the existing claim is still
// there. Before dda00d4 it dropped it (the claim has another nonce).
// Since, otherClaim waits, sees the claim expire, sees no claim of the
// message's own and no retraction, and hands "no claim" to handle, which
// runs the message: the refused duplicate's payload ran, although its
// submitter got ErrDuplicateJob (every one of them, 2 runs of 2 before the
// fix). Several IDs at once, each duplicate at a random moment of the
// claim's second half.
func TestReview6RefusedDuplicateInTheClaimsLastSecondsNeverRuns(t *testing.T) {
	const (
		retention = 2 * time.Second
		ids       = 6
		firstRuns = 5 * time.Second // longer than the retention, and than the duplicate's 3 s wait
	)
	full, nodel := startServerNoDelete(t)
	ns := natsjobs.WithNamespace(namespace())
	ret := natsjobs.WithRetention(retention)
	var mu sync.Mutex
	ran := map[string]int{} // input -> calls
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "d", func(ctx context.Context, in string) (string, error) {
		mu.Lock()
		ran[in]++
		mu.Unlock()
		if in[0] == 'f' { // "first-<i>"
			select {
			case <-time.After(firstRuns):
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		return in, nil
	})
	c := newClient(t, full(t), ns, ret, quiet)
	dupC := newClient(t, nodel(t), ns, ret, quiet)
	newWorker(t, full(t), reg, ns, ret, quiet, natsjobs.WithConcurrency(2*ids))
	ctx := wctx(t, 18*time.Second)

	firsts := make([]*qpool.Future[string], ids)
	t0 := time.Now()
	for i := range ids {
		firsts[i] = h.Submit(ctx, c, fmt.Sprintf("x-%d", i), fmt.Sprintf("first-%d", i))
	}
	var wg sync.WaitGroup
	dupErrs := make([]error, ids)
	for i := range ids {
		// Half a second to 1.4 s after the claim: its expiry (2 s) comes
		// before the duplicate's create deadline (the message's storing
		// plus 2 s), so otherClaim waits.
		at := t0.Add(500*time.Millisecond + rand.N(900*time.Millisecond))
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(at))
			_, dupErrs[i] = h.Submit(ctx, dupC, fmt.Sprintf("x-%d", i), fmt.Sprintf("dup-%d", i)).Wait(ctx)
		}()
	}
	wg.Wait()
	for i, err := range dupErrs {
		if !errors.Is(err, natsjobs.ErrDuplicateJob) {
			t.Fatalf("duplicate %d: %v, want ErrDuplicateJob (no test)", i, err)
		}
	}
	for i, f := range firsts {
		v, err := f.Wait(ctx)
		if ctx.Err() != nil {
			t.Fatalf("watchdog: first submission %d never resolved", i)
		}
		if err != nil || v != fmt.Sprintf("first-%d", i) {
			t.Errorf("first submission %d resolved with (%q, %v)", i, v, err)
		}
	}
	// Every duplicate's wait (at most 2 s + 3 s from its delivery) ended
	// before the first jobs finished; give the stragglers a moment.
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for i := range ids {
		if n := ran[fmt.Sprintf("dup-%d", i)]; n != 0 {
			t.Errorf("refused duplicate %d ran %d times", i, n)
		}
		if n := ran[fmt.Sprintf("first-%d", i)]; n != 1 {
			t.Errorf("first submission %d ran %d times", i, n)
		}
	}
}

// TestReview6WorkerWithoutTheBucketsRetention: the buckets' TTL is set by
// whoever makes them first (WithRetention, docs/jobs.md "Mapping"); a
// worker started without the option uses buckets made with 2 s. A
// submission whose message is stored while the previous claim of its ID
// is in its last moments, and whose claim is created once that claim
// expired, is accepted, as in TestSubmissionRacingTheOldClaimsExpiryResolves.
// otherClaim judged the old claim's life by the worker's own option (a
// day), not the bucket's TTL, took it for one that outlives the create,
// dropped the message, and the future never resolved (watchdog, 2 runs of
// 2 before the fix).
func TestReview6WorkerWithoutTheBucketsRetention(t *testing.T) {
	const (
		retention = 2 * time.Second
		ids       = 4
	)
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	ret := natsjobs.WithRetention(retention)
	var mu sync.Mutex
	runs := map[string]int{}
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "quick", func(_ context.Context, id string) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		runs[id]++
		return runs[id], nil
	})
	c := newClient(t, ts.connect(t), ns, ret, quiet) // makes the buckets, with 2 s
	late := newClient(t, ts.connect(t), ns, ret, quiet, natsjobs.WithClaimDelay(1500*time.Millisecond))
	newWorker(t, ts.connect(t), reg, ns, quiet, natsjobs.WithConcurrency(2*ids)) // no WithRetention
	ctx := wctx(t, 12*time.Second)

	var wg sync.WaitGroup
	errs := make([]error, ids)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("racing-%d", i)
			time.Sleep(rand.N(200 * time.Millisecond))
			start := time.Now()
			if v, err := h.Submit(ctx, c, id, id).Wait(ctx); err != nil || v != 1 {
				errs[i] = fmt.Errorf("first run: %v, %v", v, err)
				return
			}
			// The message 0.3 to 0.7 s before the first claim's expiry;
			// the claim 1.5 s later, after it.
			time.Sleep(time.Until(start.Add(retention - 300*time.Millisecond - rand.N(400*time.Millisecond))))
			got, err := h.Submit(ctx, late, id, id).Wait(ctx)
			switch {
			case ctx.Err() != nil:
				errs[i] = errors.New("watchdog: the accepted submission's future never resolved")
			case errors.Is(err, natsjobs.ErrDuplicateJob):
				errs[i] = fmt.Errorf("refused as a duplicate: the first claim outlived its retention by over a second (%v)", err)
			case err != nil:
				errs[i] = fmt.Errorf("second submission: %v", err)
			case got < 1 || got > 2:
				errs[i] = fmt.Errorf("resolved with %d", got)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("racing-%d: %v", i, err)
		}
	}
}
