package natsjobs_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
)

// The second attack on natsjobs (brief H8), through the public API only,
// with a retention of 2 s: retries crossing the claim's expiry, SubmitAt
// beyond the retention, chains and Cancel in the gap between the claim's
// and the outcome's expiry, Future/Result/Status in the gap, a worker shut
// down with gap submissions waiting, two workers and clients on their own
// connections. Each wait has a watchdog; every ID's waiters must see one
// outcome ("Only the first outcome recorded for an ID counts").

// a6In is a job's input: Tag names the submission; the first Fail calls
// of the tag fail, each call sleeps SleepMs.
type a6In struct {
	Tag     string `json:"tag"`
	Fail    int    `json:"fail"`
	SleepMs int    `json:"sleep"`
}

type a6Fixture struct {
	ts     *testServer
	ns     natsjobs.Option
	ret    natsjobs.Option
	reg    *natsjobs.Registry
	h      natsjobs.Handle[a6In, string]
	c, c2  *natsjobs.Client
	w1, w2 *natsjobs.Worker
	mu     sync.Mutex
	calls  map[string]int
	log    []string
	spans  map[string][2]time.Time // "tag#n": a call's start and end
	t0     time.Time
}

func newA6Fixture(t *testing.T, workers int) *a6Fixture {
	fx := &a6Fixture{ts: startServer(t), calls: map[string]int{}, spans: map[string][2]time.Time{}, t0: time.Now()}
	fx.ns = natsjobs.WithNamespace(namespace())
	fx.ret = natsjobs.WithRetention(2 * time.Second)
	fx.reg = natsjobs.NewRegistry()
	fx.h = natsjobs.Register(fx.reg, "a6", func(ctx context.Context, in a6In) (string, error) {
		fx.mu.Lock()
		fx.calls[in.Tag]++
		n := fx.calls[in.Tag]
		fx.log = append(fx.log, fmt.Sprintf("%s call %d of %s", fx.at(), n, in.Tag))
		start := time.Now()
		defer func() {
			fx.mu.Lock()
			fx.spans[fmt.Sprintf("%s#%d", in.Tag, n)] = [2]time.Time{start, time.Now()}
			fx.mu.Unlock()
		}()
		fx.mu.Unlock()
		if in.SleepMs > 0 {
			select {
			case <-time.After(time.Duration(in.SleepMs) * time.Millisecond):
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		if n <= in.Fail {
			return "", fmt.Errorf("%s#%d fails", in.Tag, n)
		}
		return fmt.Sprintf("%s#%d", in.Tag, n), nil
	})
	fx.c = newClient(t, fx.ts.connect(t), fx.ns, fx.ret, quiet)
	fx.c2 = newClient(t, fx.ts.connect(t), fx.ns, fx.ret, quiet)
	if workers > 0 {
		fx.w1 = newWorker(t, fx.ts.connect(t), fx.reg, fx.ns, fx.ret, quiet, natsjobs.WithAckWait(time.Second))
	}
	if workers > 1 {
		fx.w2 = newWorker(t, fx.ts.connect(t), fx.reg, fx.ns, fx.ret, quiet, natsjobs.WithAckWait(time.Second))
	}
	return fx
}

func (fx *a6Fixture) at() string { return fmt.Sprintf("%.2fs", time.Since(fx.t0).Seconds()) }

func (fx *a6Fixture) ran(tag string) int {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return fx.calls[tag]
}

func (fx *a6Fixture) history() string {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return fmt.Sprint(fx.log)
}

// outcome names a result: the value, or the error's message.
func a6Outcome(v string, err error) string {
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return "canceled"
		}
		return "err " + err.Error()
	}
	return "ok " + v
}

// wait waits for f with a watchdog of d and returns its outcome.
func (fx *a6Fixture) wait(t *testing.T, f *qpool.Future[string], d time.Duration, what string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	v, err := f.Wait(ctx)
	if ctx.Err() != nil {
		t.Fatalf("watchdog: %s never resolved within %v (at %s); calls: %s", what, d, fx.at(), fx.history())
	}
	return a6Outcome(v, err)
}

// result returns Client.Result's outcome of id, with a watchdog.
func (fx *a6Fixture) result(t *testing.T, c *natsjobs.Client, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, err := c.Result(ctx, id)
	if err != nil {
		t.Fatalf("watchdog: Result(%s): %v (at %s)", id, err, fx.at())
	}
	if rec.Err != nil {
		return a6Outcome("", rec.Err)
	}
	var s string
	if err := (qpool.JSONCodec{}).Unmarshal(rec.Value, &s); err != nil {
		t.Fatalf("Result(%s) value %q: %v", id, rec.Value, err)
	}
	return "ok " + s
}

// waitGap waits until id's claim has expired and its outcome is kept.
func (fx *a6Fixture) waitGap(t *testing.T, id string) {
	t.Helper()
	ctx := wctx(t, 10*time.Second)
	waitFor(t, 8*time.Second, id+"'s gap", func() bool {
		st, err := fx.c.Status(ctx, id)
		if errors.Is(err, natsjobs.ErrUnknownJob) {
			t.Fatalf("%s: claim and outcome expired together: no gap", id)
		}
		return err == nil && st.Name == "" && st.Result != nil
	})
}

// TestAttack6RetryBackoffCrossesClaimExpiry: a job fails its first
// attempts with a backoff that carries it past its claim's expiry (no
// outcome yet); a second submission of the ID, from another client, is
// then accepted. Whatever runs, every waiter of the ID (both futures,
// Result, Handle.Future on each client) must see one outcome.
func TestAttack6RetryBackoffCrossesClaimExpiry(t *testing.T) {
	fx := newA6Fixture(t, 2)
	ctx := wctx(t, 20*time.Second)
	fa := fx.h.Submit(ctx, fx.c, "r", a6In{Tag: "a", Fail: 2}, qpool.WithRetry(3, 1200*time.Millisecond))
	// Wait until the claim has expired while the job still retries.
	waitFor(t, 6*time.Second, "r's claim to expire", func() bool {
		st, err := fx.c.Status(ctx, "r")
		return errors.Is(err, natsjobs.ErrUnknownJob) || (err == nil && st.Name == "")
	})
	fb := fx.h.Submit(ctx, fx.c2, "r", a6In{Tag: "b"})
	fh := fx.h.Future(ctx, fx.c2, "r")
	a := fx.wait(t, fa, 15*time.Second, "first submission")
	b := fx.wait(t, fb, 15*time.Second, "second submission")
	h := fx.wait(t, fh, 15*time.Second, "Handle.Future")
	r1, r2 := fx.result(t, fx.c, "r"), fx.result(t, fx.c2, "r")
	if a != b || a != h || a != r1 || a != r2 {
		t.Fatalf("waiters of r saw different outcomes: first %q, second %q, Future %q, Result %q / %q; calls: %s",
			a, b, h, r1, r2, fx.history())
	}
}

// TestAttack6SubmitAtBeyondRetention: a job scheduled 4 s ahead with a
// retention of 2 s: its claim expires before it may start. It must not
// start early, must resolve, and a second submission of the ID accepted
// while it waits must agree with it.
func TestAttack6SubmitAtBeyondRetention(t *testing.T) {
	fx := newA6Fixture(t, 2)
	ctx := wctx(t, 20*time.Second)
	at := time.Now().Add(4 * time.Second)
	fa := fx.h.SubmitAt(ctx, fx.c, "s", a6In{Tag: "a"}, at)
	waitFor(t, 6*time.Second, "s's claim to expire", func() bool {
		_, err := fx.c.Status(ctx, "s")
		return errors.Is(err, natsjobs.ErrUnknownJob)
	})
	if time.Now().After(at) {
		t.Skip("the machine was too slow: the claim expired after the job's time")
	}
	if n := fx.ran("a"); n != 0 {
		t.Fatalf("the delayed job ran %d times before its time", n)
	}
	fb := fx.h.Submit(ctx, fx.c2, "s", a6In{Tag: "b"})
	a := fx.wait(t, fa, 15*time.Second, "the delayed submission")
	b := fx.wait(t, fb, 15*time.Second, "the second submission")
	r := fx.result(t, fx.c2, "s")
	if a != b || a != r {
		t.Fatalf("waiters of s saw different outcomes: delayed %q, second %q, Result %q; calls: %s", a, b, r, fx.history())
	}
}

// TestAttack6ChainResubmittedInGap: a chain A -> B -> C runs; in the gap of
// each ID, the chain is submitted again (last link first) with other
// payloads from another client. Each resubmission resolves with the kept
// outcome, and none of the new payloads runs, before or after the kept
// outcomes expire.
func TestAttack6ChainResubmittedInGap(t *testing.T) {
	fx := newA6Fixture(t, 2)
	ctx := wctx(t, 20*time.Second)
	fc := fx.h.Submit(ctx, fx.c, "C", a6In{Tag: "c0", SleepMs: 800}, qpool.WithDependencies("B"))
	fb := fx.h.Submit(ctx, fx.c, "B", a6In{Tag: "b0", SleepMs: 800}, qpool.WithDependencies("A"))
	fa := fx.h.Submit(ctx, fx.c, "A", a6In{Tag: "a0", SleepMs: 800})
	kept := map[string]string{
		"A": fx.wait(t, fa, 10*time.Second, "A"),
		"B": fx.wait(t, fb, 10*time.Second, "B"),
		"C": fx.wait(t, fc, 10*time.Second, "C"),
	}
	fx.waitGap(t, "C") // C was claimed first: wait for the last of the three
	fx.waitGap(t, "A")
	g := map[string]*qpool.Future[string]{
		"C": fx.h.Submit(ctx, fx.c2, "C", a6In{Tag: "c1"}, qpool.WithDependencies("B")),
		"B": fx.h.Submit(ctx, fx.c2, "B", a6In{Tag: "b1"}, qpool.WithDependencies("A")),
		"A": fx.h.Submit(ctx, fx.c2, "A", a6In{Tag: "a1"}),
	}
	for _, id := range []string{"A", "B", "C"} {
		got := fx.wait(t, g[id], 10*time.Second, "gap resubmission of "+id)
		if got != kept[id] && got != "err "+natsjobs.ErrDuplicateJob.Error() {
			t.Fatalf("gap resubmission of %s resolved with %q, kept outcome %q; calls: %s", id, got, kept[id], fx.history())
		}
	}
	// Let everything expire: no new payload may run meanwhile.
	for _, id := range []string{"A", "B", "C"} {
		waitFor(t, 10*time.Second, id+" to expire", func() bool {
			_, err := fx.c.Status(ctx, id)
			return errors.Is(err, natsjobs.ErrUnknownJob)
		})
	}
	time.Sleep(500 * time.Millisecond)
	for _, tag := range []string{"a1", "b1", "c1"} {
		if n := fx.ran(tag); n != 0 {
			t.Fatalf("the gap resubmission %s ran %d times; calls: %s", tag, n, fx.history())
		}
	}
}

// TestAttack6CancelInGap: in the gap, a resubmission races a Cancel of
// the ID from another client. The kept outcome is a success: Cancel of a
// finished job does nothing, so every waiter (the resubmission's future,
// Handle.Future, Result) must still see the kept outcome, and the
// resubmission's payload never runs.
func TestAttack6CancelInGap(t *testing.T) {
	fx := newA6Fixture(t, 2)
	ctx := wctx(t, 20*time.Second)
	const n = 4
	kept := make([]string, n)
	first := make([]*qpool.Future[string], n)
	for i := range n {
		id := fmt.Sprintf("k%d", i)
		first[i] = fx.h.Submit(ctx, fx.c, id, a6In{Tag: id + "/0", SleepMs: 1500})
	}
	for i := range n {
		kept[i] = fx.wait(t, first[i], 10*time.Second, fmt.Sprintf("k%d", i))
	}
	fx.waitGap(t, fmt.Sprintf("k%d", n-1))
	for i := range n {
		id := fmt.Sprintf("k%d", i)
		var f *qpool.Future[string]
		var cerr error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				time.Sleep(time.Duration(i) * 5 * time.Millisecond)
			}
			f = fx.h.Submit(ctx, fx.c2, id, a6In{Tag: id + "/1", SleepMs: 300})
		}()
		go func() {
			defer wg.Done()
			if i%2 == 1 {
				time.Sleep(time.Duration(i) * 5 * time.Millisecond)
			}
			cerr = fx.c.Cancel(ctx, id)
		}()
		wg.Wait()
		if cerr != nil && !errors.Is(cerr, natsjobs.ErrUnknownJob) {
			t.Fatalf("Cancel(%s) in the gap: %v", id, cerr)
		}
		got := fx.wait(t, f, 10*time.Second, "gap resubmission of "+id)
		fut := fx.wait(t, fx.h.Future(ctx, fx.c, id), 10*time.Second, "Handle.Future of "+id)
		res := fx.result(t, fx.c2, id)
		if got != kept[i] || fut != kept[i] || res != kept[i] {
			t.Fatalf("%s: kept %q; after a gap resubmission racing Cancel (%v): future %q, Handle.Future %q, Result %q; calls: %s",
				id, kept[i], cerr, got, fut, res, fx.history())
		}
	}
	time.Sleep(time.Second)
	for i := range n {
		if c := fx.ran(fmt.Sprintf("k%d/1", i)); c != 0 {
			t.Fatalf("gap resubmission of k%d ran %d times; calls: %s", i, c, fx.history())
		}
	}
}

// TestAttack6GapWithoutWorkers: the only worker shuts down; in the gap,
// IDs are submitted again (plain, delayed, with a dependency never
// submitted). Handle.Future resolves with the kept outcomes at once. A
// worker comes back while the outcomes are kept (Back) or only after they
// expired (Late): the gap submissions' futures must resolve with the kept
// outcomes ("a submission made in between resolves with the outcome that
// is kept, without running"), and their payloads never run. Except, as
// docs/jobs.md says, a plain submission whose message reaches a worker only
// after the kept outcome expired (Late's "p"): it is a new job then, runs
// once, and its future resolves with its own outcome.
func TestAttack6GapWithoutWorkers(t *testing.T) {
	for _, late := range []bool{false, true} {
		name := "Back"
		if late {
			name = "Late"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fx := newA6Fixture(t, 1)
			ctx := wctx(t, 20*time.Second)
			ids := []string{"p", "d", "q"}
			kept := map[string]string{}
			first := map[string]*qpool.Future[string]{}
			for _, id := range ids {
				first[id] = fx.h.Submit(ctx, fx.c, id, a6In{Tag: id + "/0", SleepMs: 1500})
			}
			for _, id := range ids {
				kept[id] = fx.wait(t, first[id], 10*time.Second, id)
			}
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := fx.w1.Shutdown(sctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			cancel()
			fx.waitGap(t, "q")
			gapAt := fx.at()
			fs := map[string]*qpool.Future[string]{
				"p": fx.h.Submit(ctx, fx.c2, "p", a6In{Tag: "p/1"}),
				"d": fx.h.SubmitAt(ctx, fx.c2, "d", a6In{Tag: "d/1"}, time.Now().Add(1200*time.Millisecond)),
				"q": fx.h.Submit(ctx, fx.c2, "q", a6In{Tag: "q/1"}, qpool.WithDependencies("never")),
			}
			for _, id := range ids {
				if fut := fx.wait(t, fx.h.Future(ctx, fx.c, id), 3*time.Second, "Handle.Future of "+id); fut != kept[id] {
					t.Fatalf("%s: kept %q; Handle.Future in the gap %q", id, kept[id], fut)
				}
			}
			if late {
				for _, id := range ids {
					waitFor(t, 6*time.Second, "the kept outcome of "+id+" to expire", func() bool {
						st, err := fx.c.Status(ctx, id)
						return errors.Is(err, natsjobs.ErrUnknownJob) || (err == nil && st.Result == nil)
					})
				}
			}
			backAt := fx.at()
			w := newWorker(t, fx.ts.connect(t), fx.reg, fx.ns, fx.ret, quiet)
			newJob := func(id string) bool { return late && id == "p" }
			for _, id := range ids {
				got := fx.wait(t, fs[id], 8*time.Second, "gap resubmission of "+id+" (submitted at "+gapAt+", worker back at "+backAt+")")
				if newJob(id) {
					if got == kept[id] || !strings.Contains(got, id+"/1") {
						t.Errorf("%s: a new job once the kept outcome %q expired, resolved %q; calls: %s", id, kept[id], got, fx.history())
					}
					continue
				}
				if got != kept[id] {
					t.Errorf("%s: kept %q (seen by Handle.Future in the gap); the gap resubmission (at %s, worker back at %s) resolved %q; calls: %s",
						id, kept[id], gapAt, backAt, got, fx.history())
				}
			}
			time.Sleep(1500 * time.Millisecond)
			for _, id := range ids {
				want := 0
				if newJob(id) {
					want = 1
				}
				if n := fx.ran(id + "/1"); n != want {
					t.Errorf("gap resubmission %s ran %d times on the new worker, want %d (%+v); calls: %s", id, n, want, w.Stats(), fx.history())
				}
			}
		})
	}
}

var a6Call = regexp.MustCompile(`(\S+#\d+)`)

// TestAttack6OneOutcomeHammer: two workers, two clients on their own
// connections; IDs submitted again and again at random moments (before,
// in and after the gap) as slow, retried-with-backoff and delayed jobs,
// with Handle.Future and Client.Result waiting from either client. Every
// wait has a watchdog. An outcome names the call that made it; it was
// recorded after that call ended (lo) and before it was first seen (hi),
// and is kept for the retention R from lo at least. So no call of the ID
// may start between hi and lo+R (a job ran while its outcome was kept,
// which is also how a waiter could see a second outcome).
func TestAttack6OneOutcomeHammer(t *testing.T) {
	fx := newA6Fixture(t, 2)
	const R = 2 * time.Second
	ctx := wctx(t, 25*time.Second)
	type seen struct {
		id, outcome string
		at          time.Time
	}
	var (
		mu   sync.Mutex
		obs  []seen
		hang []string
	)
	note := func(id, what string, v string, err error, wctx context.Context) {
		mu.Lock()
		defer mu.Unlock()
		if wctx.Err() != nil {
			hang = append(hang, fmt.Sprintf("%s of %s at %s", what, id, fx.at()))
			return
		}
		if errors.Is(err, natsjobs.ErrDuplicateJob) {
			return
		}
		o := a6Outcome(v, err)
		m := a6Call.FindString(strings.TrimPrefix(strings.TrimPrefix(o, "ok "), "err "))
		if err != nil {
			m = a6Call.FindString(err.Error())
		}
		obs = append(obs, seen{id, m, time.Now()})
	}
	var wg sync.WaitGroup
	tagN := 0
	const ids, subs = 6, 6
	for i := range ids {
		id := fmt.Sprintf("h%d", i)
		for j := range subs {
			tagN++
			tag := fmt.Sprintf("%s.%d", id, tagN)
			delay := time.Duration(j)*1100*time.Millisecond + time.Duration(rand.IntN(900))*time.Millisecond
			shape := rand.IntN(3)
			c := fx.c
			if rand.IntN(2) == 0 {
				c = fx.c2
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(delay)
				in := a6In{Tag: tag, SleepMs: 200 + rand.IntN(1300)}
				var f *qpool.Future[string]
				switch shape {
				case 0:
					f = fx.h.Submit(ctx, c, id, in)
				case 1:
					in.Fail = 1
					f = fx.h.Submit(ctx, c, id, in, qpool.WithRetry(2, 800*time.Millisecond))
				default:
					f = fx.h.SubmitAt(ctx, c, id, in, time.Now().Add(time.Duration(500+rand.IntN(2500))*time.Millisecond))
				}
				w, cancel := context.WithTimeout(ctx, 15*time.Second)
				defer cancel()
				v, err := f.Wait(w)
				note(id, "future of "+tag, v, err, w)
				if errors.Is(err, natsjobs.ErrDuplicateJob) || w.Err() != nil {
					// The ID's records may expire before another wait
					// begins, and nothing submits it again: such a wait
					// rightly waits for ever.
					return
				}
				if rand.IntN(2) == 0 {
					v, err = fx.h.Future(ctx, c, id).Wait(w)
					note(id, "Handle.Future after "+tag, v, err, w)
				} else if rec, err := c.Result(w, id); err == nil && rec.Err == nil {
					var s string
					_ = (qpool.JSONCodec{}).Unmarshal(rec.Value, &s)
					note(id, "Result after "+tag, s, nil, w)
				} else if err == nil {
					note(id, "Result after "+tag, "", rec.Err, w)
				} else {
					note(id, "Result after "+tag, "", err, w)
				}
			}()
		}
	}
	wg.Wait()
	if len(hang) > 0 {
		t.Fatalf("watchdog: waits never resolved: %v; calls: %s", hang, fx.history())
	}
	fx.mu.Lock()
	defer fx.mu.Unlock()
	first := map[string]time.Time{} // outcome -> first seen
	for _, o := range obs {
		if o.outcome == "" {
			t.Errorf("%s: an outcome that names no call", o.id)
			continue
		}
		if f, ok := first[o.outcome]; !ok || o.at.Before(f) {
			first[o.outcome] = o.at
		}
	}
	for out, hi := range first {
		span, ok := fx.spans[out]
		if !ok {
			t.Errorf("outcome %s names a call that never ended", out)
			continue
		}
		id := out[:strings.Index(out, ".")]
		for call, sp := range fx.spans {
			if !strings.HasPrefix(call, id+".") || call == out {
				continue
			}
			if sp[0].After(hi.Add(attackMargin)) && sp[0].Before(span[1].Add(R-attackMargin)) {
				t.Errorf("%s: call %s started at %.2fs, while the outcome %s (call ended %.2fs, first seen %.2fs) was kept",
					id, call, sp[0].Sub(fx.t0).Seconds(), out, span[1].Sub(fx.t0).Seconds(), hi.Sub(fx.t0).Seconds())
			}
		}
	}
	t.Logf("%d observations, %d distinct outcomes, %d calls", len(obs), len(first), len(fx.spans))
	if t.Failed() {
		t.Logf("calls: %v", fx.log)
	}
}

// TestAttack6GapSubmitAtBeyondKeptOutcome: with a worker running all the
// time, a SubmitAt made in the gap whose time comes after the kept
// outcome expires. Handle.Future in the gap sees the kept outcome; the
// SubmitAt's future must resolve with it too, without running ("a
// submission made in between resolves with the outcome that is kept,
// without running"). Also, Plain: a Submit in the gap, the control;
// DelayedCancelled: Client.Cancel of the ID right after the SubmitAt.
func TestAttack6GapSubmitAtBeyondKeptOutcome(t *testing.T) {
	for _, tc := range []struct {
		name            string
		delayed, cancel bool
	}{{"Plain", false, false}, {"Delayed", true, false}, {"DelayedCancelled", true, true}} {
		delayed := tc.delayed
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fx := newA6Fixture(t, 1)
			ctx := wctx(t, 20*time.Second)
			kept := fx.wait(t, fx.h.Submit(ctx, fx.c, "g", a6In{Tag: "g/0", SleepMs: 1000}), 10*time.Second, "g")
			fx.waitGap(t, "g")
			gapAt := fx.at()
			var f *qpool.Future[string]
			if delayed {
				f = fx.h.SubmitAt(ctx, fx.c2, "g", a6In{Tag: "g/1"}, time.Now().Add(3*time.Second))
			} else {
				f = fx.h.Submit(ctx, fx.c2, "g", a6In{Tag: "g/1"})
			}
			if fut := fx.wait(t, fx.h.Future(ctx, fx.c, "g"), 3*time.Second, "Handle.Future in the gap"); fut != kept {
				t.Fatalf("kept %q; Handle.Future in the gap %q", kept, fut)
			}
			if tc.cancel {
				// The ID has an outcome: Cancel does nothing and returns nil.
				if err := fx.c.Cancel(ctx, "g"); err != nil {
					t.Fatalf("Cancel in the gap: %v", err)
				}
			}
			got := fx.wait(t, f, 10*time.Second, "the gap submission")
			time.Sleep(500 * time.Millisecond)
			if got != kept || fx.ran("g/1") != 0 {
				t.Fatalf("kept %q (seen by Handle.Future in the gap); the gap submission at %s resolved %q and its payload ran %d times; calls: %s",
					kept, gapAt, got, fx.ran("g/1"), fx.history())
			}
		})
	}
}
