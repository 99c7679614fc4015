package natsjobs_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
)

// The third attack on natsjobs (brief H10), through the public API only,
// with a retention of 2 s: bursts of submissions of one ID from several
// clients at once, aimed at the moment its claim expires (some clients
// pause between a job's message and its claim, WithClaimDelay), as plain,
// delayed and dependent jobs; Cancel racing them; Handle.Future and
// Client.Result from a third client, some started before the burst; and
// workers shut down (a short ctx, or one that has ended: killed) while
// messages wait at the edge of an expiry. The checks are attack5's
// (attackCheck: a refused duplicate's payload never runs, two accepted
// submissions are at least the retention apart, one outcome at a time,
// nothing runs while an outcome is kept, every future resolves), plus:
// no outcome is the result of a call whose context a Shutdown had
// cancelled (its result is discarded), and every Shutdown returns.

// a7Config is one variant of the hammer.
type a7Config struct {
	delays  []time.Duration // one client per entry, with WithClaimDelay when > 0
	kinds   []string        // "plain", "at", "deps"
	cancels bool
	churn   string // "": none; "shutdown": Shutdown with a short ctx; "kill": with an ended ctx
	ids     int
	// retention is the buckets' retention: 2 s when zero.
	retention time.Duration
}

func attack7Seed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("QPOOL_ATTACK_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (QPOOL_ATTACK_SEED)", seed)
	return seed
}

func attack7Hammer(t *testing.T, cfg a7Config) {
	retention := cfg.retention
	if retention == 0 {
		retention = 2 * time.Second
	}
	seed := attack7Seed(t)
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	ret := natsjobs.WithRetention(retention)
	L := &attackLog{runs: map[int]*attackRun{}, calls: map[string]int{}}
	var seq atomic.Int64
	cut := map[int]bool{} // calls whose context ended (under L.mu)
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "a7", func(ctx context.Context, in attackIn) (string, error) {
		n := int(seq.Add(1))
		r := &attackRun{id: in.ID, tag: in.Tag, start: time.Now()}
		L.mu.Lock()
		L.runs[n] = r
		L.calls[in.Tag]++
		fail := L.calls[in.Tag] <= in.FailUntil
		L.mu.Unlock()
		var err error
		select {
		case <-time.After(time.Duration(in.SleepMs) * time.Millisecond):
		case <-ctx.Done():
			err = ctx.Err()
		}
		L.mu.Lock()
		r.end = time.Now()
		if err != nil {
			cut[n] = true
		}
		L.mu.Unlock()
		switch {
		case err != nil:
			return "", fmt.Errorf("r#%d# %w", n, err)
		case fail:
			return "", fmt.Errorf("r#%d# fails", n)
		}
		return fmt.Sprintf("r#%d#", n), nil
	})
	clients := make([]*natsjobs.Client, len(cfg.delays))
	for i, d := range cfg.delays {
		opts := []natsjobs.Option{ns, ret, quiet}
		if d > 0 {
			opts = append(opts, natsjobs.WithClaimDelay(d))
		}
		clients[i] = newClient(t, ts.connect(t), opts...)
	}
	// The third party: a client that never submits, only waits.
	watcher := newClient(t, ts.connect(t), ns, ret, quiet)
	wopts := []natsjobs.Option{ns, ret, quiet, natsjobs.WithConcurrency(16), natsjobs.WithAckWait(2 * time.Second)}
	var wmu sync.Mutex
	workers := []*natsjobs.Worker{newWorker(t, ts.connect(t), reg, wopts...), newWorker(t, ts.connect(t), reg, wopts...)}
	ctx := wctx(t, 17*time.Second+2*(retention-2*time.Second))
	t0 := time.Now()

	var wg sync.WaitGroup
	var tagSeq atomic.Int64
	odd := func(format string, args ...any) {
		L.mu.Lock()
		L.odd = append(L.odd, fmt.Sprintf(format, args...))
		L.mu.Unlock()
	}
	observe := func(id, who string, value string, err error) {
		now := time.Now()
		if ctx.Err() != nil {
			odd("watchdog: %s (%s) never resolved (at %.3fs)", id, who, now.Sub(t0).Seconds())
			return
		}
		ident, ierr := attackIdent(value, err)
		if ierr != nil {
			odd("%s (%s): %v", id, who, ierr)
			return
		}
		if ident == "" {
			return
		}
		L.mu.Lock()
		L.obs = append(L.obs, attackObs{id: id, ident: ident, who: who, at: now})
		L.mu.Unlock()
	}
	// thirdParty waits for id's outcome through the watcher client, for up
	// to 8 s (every job here records an outcome well within that). A wait
	// that began with a burst may rightly wait for ever when every
	// submission of the burst was refused and the kept outcome expired
	// before the lookup: mayHang then says so, and the hang is counted,
	// not an error.
	var idleWaits atomic.Int64
	thirdParty := func(rng *rand.Rand, id string, pause time.Duration, mayHang func() bool) {
		useResult := rng.IntN(2) == 0
		wg.Go(func() {
			time.Sleep(pause)
			began := time.Now()
			wc, cancel := context.WithTimeout(ctx, 8*time.Second)
			defer cancel()
			var who, value string
			var err error
			if useResult {
				who = "Result via the third client"
				var rec *natsjobs.Record
				if rec, err = watcher.Result(wc, id); err == nil {
					value, err = string(rec.Value), rec.Err
				}
			} else {
				who = "Future via the third client"
				value, err = h.Future(wc, watcher, id).Wait(wc)
			}
			if wc.Err() != nil {
				if mayHang() {
					idleWaits.Add(1)
					return
				}
				odd("watchdog: %s of %s, begun at %.3fs, never resolved", who, id, began.Sub(t0).Seconds())
				return
			}
			observe(id, who, value, err)
		})
	}
	// submitOne submits id once through client k as kind, waits for its
	// future and returns the submission.
	submitOne := func(rng *rand.Rand, id string, k int, kind string) *attackSub {
		c := clients[k]
		tag := "s" + strconv.FormatInt(tagSeq.Add(1), 10)
		in := attackIn{ID: id, Tag: tag, SleepMs: rng.IntN(900)}
		var opts []qpool.JobOption
		switch rng.IntN(4) {
		case 1:
			in.FailUntil = 1
		case 2:
			in.FailUntil = 99
		}
		if rng.IntN(2) == 0 {
			opts = append(opts, qpool.WithRetry(3, time.Duration(50+rng.IntN(300))*time.Millisecond))
		}
		s := &attackSub{id: id, tag: tag, kind: kind, client: k}
		var f *qpool.Future[string]
		switch kind {
		case "plain":
			s.start = time.Now()
			f = h.Submit(ctx, c, id, in, opts...)
		case "at":
			at := time.Now().Add(time.Duration(rng.IntN(1200)) * time.Millisecond)
			s.start = time.Now()
			f = h.SubmitAt(ctx, c, id, in, at, opts...)
		case "deps":
			dep := id + "~" + tag
			din := attackIn{ID: dep, Tag: tag + "d", SleepMs: rng.IntN(300)}
			if rng.IntN(4) == 0 {
				din.FailUntil = 99
			}
			ds := &attackSub{id: dep, tag: din.Tag, kind: "dep", client: k}
			submitDep := func() {
				ds.start = time.Now()
				df := h.Submit(ctx, c, dep, din)
				ds.end = time.Now()
				L.mu.Lock()
				L.subs = append(L.subs, ds)
				L.mu.Unlock()
				wg.Go(func() {
					v, err := df.Wait(ctx)
					ds.err = err
					observe(dep, "dependency", v, err)
				})
			}
			before := rng.IntN(2) == 0
			if before {
				submitDep()
			}
			s.start = time.Now()
			f = h.Submit(ctx, c, id, in, append(opts, qpool.WithDependencies(dep))...)
			s.end = time.Now()
			if !before {
				submitDep()
			}
		}
		if s.end.IsZero() {
			s.end = time.Now()
		}
		L.mu.Lock()
		L.subs = append(L.subs, s)
		L.mu.Unlock()
		v, err := f.Wait(ctx)
		s.resolved = time.Now()
		s.err = err
		s.dup = errors.Is(err, natsjobs.ErrDuplicateJob)
		observe(id, "submitter "+tag, v, err)
		return s
	}
	kindOf := func(rng *rand.Rand) string { return cfg.kinds[rng.IntN(len(cfg.kinds))] }
	// burst submits id from 2 or 3 clients at once, at aim (each a few ms
	// apart), with maybe a Cancel and a third party's wait racing them;
	// the accepted submission aims the next burst at its own claim's
	// expiry.
	var burst func(rng *rand.Rand, id string, aim time.Time, depth int)
	burst = func(rng *rand.Rand, id string, aim time.Time, depth int) {
		n := 2 + rng.IntN(2)
		perm := rng.Perm(len(clients))
		var next atomic.Pointer[attackSub]
		var bw sync.WaitGroup
		for i := range n {
			k := perm[i%len(perm)]
			kind := kindOf(rng)
			srng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
			at := aim.Add(time.Duration(rng.IntN(40)) * time.Millisecond)
			bw.Go(func() {
				time.Sleep(time.Until(at))
				s := submitOne(srng, id, k, kind)
				if !s.dup && ctx.Err() == nil {
					next.Store(s)
				}
			})
		}
		if cfg.cancels && rng.IntN(2) == 0 {
			k := rng.IntN(len(clients))
			at := aim.Add(time.Duration(rng.IntN(700)-200) * time.Millisecond)
			wg.Go(func() {
				time.Sleep(time.Until(at))
				cs := time.Now()
				err := clients[k].Cancel(ctx, id)
				L.mu.Lock()
				L.cancels = append(L.cancels, attackCancel{id: id, start: cs, end: time.Now(), err: err})
				L.mu.Unlock()
			})
		}
		var settled atomic.Bool // the burst is over and nothing of it was accepted
		if rng.IntN(2) == 0 {
			// Started with the burst: it may resolve with the outcome that
			// is kept, or with the new job's.
			thirdParty(rng, id, time.Until(aim.Add(time.Duration(rng.IntN(300))*time.Millisecond)), settled.Load)
		}
		bw.Wait()
		s := next.Load()
		settled.Store(s == nil)
		if s == nil || ctx.Err() != nil {
			return
		}
		if rng.IntN(2) == 0 {
			thirdParty(rng, id, time.Duration(rng.IntN(400))*time.Millisecond, func() bool { return false })
		}
		if depth < 1 {
			// The next burst's messages go out from 800 ms before to 400
			// ms after the claim's expiry (the claim is made in [start,
			// end] of its Submit, later for a delayed client).
			burst(rng, id, s.start.Add(retention+time.Duration(rng.IntN(1200)-800)*time.Millisecond), depth+1)
		}
	}
	for i := range cfg.ids {
		id := fmt.Sprintf("g%d", i)
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		off := time.Duration(rng.IntN(1500)) * time.Millisecond
		wg.Go(func() {
			time.Sleep(time.Until(t0.Add(off)))
			first := submitOne(rng, id, rng.IntN(len(clients)), kindOf(rng))
			if first.dup || ctx.Err() != nil {
				odd("%s: the first submission failed: %v", id, first.err)
				return
			}
			burst(rng, id, first.start.Add(retention+time.Duration(rng.IntN(1200)-800)*time.Millisecond), 0)
		})
	}
	// Worker churn: at the edges of the first bursts' expiries, one of the
	// workers is shut down (a short ctx, or an ended one) and replaced.
	var shutdowns []string
	if cfg.churn != "" {
		crng := rand.New(rand.NewPCG(seed, 1<<40))
		wg.Go(func() {
			for round := range 4 {
				time.Sleep(time.Until(t0.Add(retention - 500*time.Millisecond + time.Duration(round*1000+crng.IntN(600))*time.Millisecond)))
				if ctx.Err() != nil {
					return
				}
				wmu.Lock()
				i := crng.IntN(len(workers))
				w := workers[i]
				wmu.Unlock()
				sctx, cancel := context.WithTimeout(context.Background(), time.Duration(50+crng.IntN(250))*time.Millisecond)
				if cfg.churn == "kill" {
					cancel()
				}
				done := make(chan error, 1)
				began := time.Now()
				go func() { done <- w.Shutdown(sctx) }()
				select {
				case err := <-done:
					shutdowns = append(shutdowns, fmt.Sprintf("%.3fs %v after %v, %+v", began.Sub(t0).Seconds(), err, time.Since(began).Round(time.Millisecond), w.Stats()))
				case <-time.After(8 * time.Second):
					odd("watchdog: Shutdown of a worker at %.3fs did not return within 8 s", began.Sub(t0).Seconds())
					cancel()
					return
				}
				cancel()
				nw, err := attack7Worker(t, ts, reg, wopts)
				if err != nil {
					odd("a new worker at %.3fs: %v", time.Since(t0).Seconds(), err)
					return
				}
				wmu.Lock()
				workers[i] = nw
				wmu.Unlock()
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		<-done // every wait ends with ctx
	}
	// A refused duplicate's message may reach a worker after the wait
	// above: give the workers the claim wait and the retraction's second,
	// then look at the calls.
	time.Sleep(3500 * time.Millisecond)
	if len(shutdowns) > 0 {
		t.Logf("shutdowns: %v", shutdowns)
	}
	wmu.Lock()
	for i, w := range workers {
		t.Logf("worker %d: %+v", i, w.Stats())
	}
	wmu.Unlock()
	L.mu.Lock()
	defer L.mu.Unlock()
	// An outcome that is the result of a call a Shutdown cut short (its
	// context ended without a Cancel of the ID: no timeouts here).
	cancelled := map[string]bool{}
	for _, c := range L.cancels {
		cancelled[c.id] = true
	}
	for _, o := range L.obs {
		f := strings.Fields(o.ident)
		if len(f) != 2 || f[0] == "dep" {
			continue
		}
		n, _ := strconv.Atoi(f[1])
		if cut[n] && !cancelled[o.id] {
			L.odd = append(L.odd, fmt.Sprintf("%s: outcome %q (seen by %s) is the result of a call handed back by Shutdown", o.id, o.ident, o.who))
		}
	}
	// Calls per accepted submission, for the log: more than its attempts
	// are duplicate executions (handed back, or redelivered).
	extra := 0
	for _, s := range L.subs {
		if s.dup {
			continue
		}
		if c := L.calls[s.tag]; c > 3 {
			extra += c - 3
		}
	}
	t.Logf("cut calls %d; calls beyond 3 for one submission: %d; third-party waits begun with a burst that was all refused, never resolved (allowed): %d",
		len(cut), extra, idleWaits.Load())
	attackCheck(t, L, retention, t0)
}

// TestAttack7ExpiryEdgeHammer: bursts from three clients (no claim delay)
// at the claims' expiries, plain, delayed and dependent, with Cancel and
// a third client waiting.
func TestAttack7ExpiryEdgeHammer(t *testing.T) {
	attack7Hammer(t, a7Config{
		delays: []time.Duration{0, 0, 0}, kinds: []string{"plain", "at", "deps"}, cancels: true, ids: 14,
	})
}

// TestAttack7ClaimDelayHammer: the same with clients that pause between
// a job's message and its claim (0, 0.4, 0.9 and 1.5 s), plain jobs
// mostly (the pause applies to them only).
func TestAttack7ClaimDelayHammer(t *testing.T) {
	attack7Hammer(t, a7Config{
		delays: []time.Duration{0, 400 * time.Millisecond, 900 * time.Millisecond, 1500 * time.Millisecond},
		kinds:  []string{"plain", "plain", "plain", "at", "deps"}, cancels: true, ids: 14,
	})
}

// TestAttack7ShutdownAtExpiryEdge: claim delays, and a worker shut down
// with a short ctx (50-300 ms) four times while messages wait at the edge
// of an expiry, replaced each time.
func TestAttack7ShutdownAtExpiryEdge(t *testing.T) {
	attack7Hammer(t, a7Config{
		delays: []time.Duration{0, 400 * time.Millisecond, 900 * time.Millisecond, 1500 * time.Millisecond},
		kinds:  []string{"plain", "plain", "at", "deps"}, cancels: false, churn: "shutdown", ids: 12,
	})
}

// TestAttack7KillAtExpiryEdge: the same, the worker shut down with a ctx
// that has ended (everything handed back at once), and Cancel racing.
func TestAttack7KillAtExpiryEdge(t *testing.T) {
	attack7Hammer(t, a7Config{
		delays: []time.Duration{0, 400 * time.Millisecond, 900 * time.Millisecond, 1500 * time.Millisecond},
		kinds:  []string{"plain", "plain", "at", "deps"}, cancels: true, churn: "kill", ids: 12,
	})
}

// attack7Worker starts a worker from a goroutine other than the test's
// (newWorker's require would call FailNow there); t.Cleanup shuts it down.
func attack7Worker(t *testing.T, ts *testServer, reg *natsjobs.Registry, opts []natsjobs.Option) (*natsjobs.Worker, error) {
	nc, err := nats.Connect(ts.url(), connOptions()...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := natsjobs.NewWorker(ctx, js, reg, opts...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.Shutdown(ctx)
	})
	return w, nil
}

// TestAttack7KillAtExpiryEdge3s: TestAttack7KillAtExpiryEdge with a
// retention of 3 s.
func TestAttack7KillAtExpiryEdge3s(t *testing.T) {
	attack7Hammer(t, a7Config{
		delays: []time.Duration{0, 400 * time.Millisecond, 900 * time.Millisecond, 1500 * time.Millisecond},
		kinds:  []string{"plain", "plain", "at", "deps"}, cancels: true, churn: "kill", ids: 12, retention: 3 * time.Second,
	})
}

// TestAttack7HandBackDuringExpiringClaimWait: a worker reads a job's
// claim while an earlier submission's is in its last moments (the new
// client pauses 1.5 s between message and claim), so it reads the claim
// again until the new one shows ("A submission is not taken for a
// duplicate because of a claim that expires under it"). Shutdown then
// hands the message back (a short ctx, or one that has ended): the job
// must not run on the worker that handed it back, Shutdown must return,
// and the submission must resolve through another worker.
func TestAttack7HandBackDuringExpiringClaimWait(t *testing.T) {
	for _, kill := range []bool{false, true} {
		name := "Short"
		if kill {
			name = "Ended"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			const retention = 2 * time.Second
			ts := startServer(t)
			ns := natsjobs.WithNamespace(namespace())
			ret := natsjobs.WithRetention(retention)
			var on1, on2 atomic.Int32
			var cut1 atomic.Int32
			reg1, reg2 := natsjobs.NewRegistry(), natsjobs.NewRegistry()
			h := natsjobs.Register(reg1, "x", func(ctx context.Context, in string) (string, error) {
				on1.Add(1)
				if ctx.Err() != nil {
					cut1.Add(1)
				}
				if in == "first" {
					time.Sleep(time.Second) // its outcome outlives its claim by a second
				}
				return in, nil
			})
			natsjobs.Register(reg2, "x", func(ctx context.Context, in string) (string, error) {
				on2.Add(1)
				return in, nil
			})
			var deliveries atomic.Int32
			entered := make(chan struct{}, 4)
			hook := natsjobs.WithBeforeBegin(func(id string) {
				if deliveries.Add(1) == 2 {
					entered <- struct{}{}
				}
			})
			w1 := newWorker(t, ts.connect(t), reg1, ns, ret, quiet, hook)
			c := newClient(t, ts.connect(t), ns, ret, quiet)
			slow := newClient(t, ts.connect(t), ns, ret, quiet, natsjobs.WithClaimDelay(1500*time.Millisecond))
			ctx := wctx(t, 20*time.Second)
			start := time.Now()
			if v, err := h.Submit(ctx, c, "x", "first").Wait(ctx); err != nil || v != "first" {
				t.Fatalf("first: %q, %v", v, err)
			}
			time.Sleep(time.Until(start.Add(retention - 500*time.Millisecond)))
			var f *qpool.Future[string]
			var returned time.Time // when the second Submit returned: its claim is stored
			submitted := make(chan struct{})
			go func() {
				defer close(submitted)
				f = h.Submit(ctx, slow, "x", "second")
				returned = time.Now()
			}()
			select {
			case <-entered:
			case <-ctx.Done():
				t.Fatal("watchdog: the second message never reached the worker")
			}
			time.Sleep(200 * time.Millisecond) // reading the expiring claim again now
			select {
			case <-submitted:
				t.Fatal("the second Submit returned before the Shutdown: the client did not pause between message and claim")
			default:
			}
			sctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if kill {
				cancel()
			}
			began := time.Now()
			done := make(chan error, 1)
			go func() { done <- w1.Shutdown(sctx) }()
			var serr error
			select {
			case serr = <-done:
			case <-time.After(8 * time.Second):
				t.Fatal("watchdog: Shutdown did not return within 8 s")
			}
			took := time.Since(began)
			shutAt := time.Now()
			ranHere := on1.Load() - 1
			newWorker(t, ts.connect(t), reg2, ns, ret, quiet)
			<-submitted
			v, err := f.Wait(ctx)
			if ctx.Err() != nil {
				t.Fatalf("watchdog: the second submission never resolved (ran on the shut-down worker %d, on the other %d)", ranHere, on2.Load())
			}
			t.Logf("Shutdown returned %v after %v; second resolved %q, %v; ran on the shut-down worker %d times (%d with its context ended), on the other %d",
				serr, took.Round(time.Millisecond), v, err, ranHere, cut1.Load(), on2.Load())
			if ranHere != 0 {
				t.Errorf("the job handed back by Shutdown ran %d times on the worker that handed it back", ranHere)
			}
			if err != nil {
				t.Errorf("the second submission failed: %v", err)
			}
			// Nothing of the user's was running: the hand-back ends the
			// claim wait at once (TestHandBackDuringClaimWait), and must
			// end the reads of an expiring claim as well, not hold
			// Shutdown until the new claim shows up.
			if !shutAt.Before(returned) {
				t.Errorf("Shutdown (ctx %s) began %v before the second Submit returned (its claim stored 1.5 s after its message) and returned %v after it: the hand-back did not end the worker's reads of the expiring claim",
					name, returned.Sub(began).Round(time.Millisecond), shutAt.Sub(returned).Round(time.Millisecond))
			}
		})
	}
}

// TestAttack7ResultAfterRefusalAtClaimsEnd: ErrDuplicateJob says "The job
// that holds the ID is left alone; its outcome is reachable with
// Client.Result or Handle.Future". From 300 ms before the claim of the
// job holding an ID expires, another client submits the ID every 10 ms,
// and each refused submission asks Result at once (through a third
// client). Each Result must return the outcome of the job that held the
// ID; it may not wait for ever (that outcome expired before the claim that
// refused the submission) nor return a later submission's outcome. The
// holder is a plain job (First), or a submission accepted in the gap
// after a first job's claim expired, which resolved with that job's kept
// outcome (GapPlain, GapAt, GapDeps): its outcome is the first job's,
// written again when the gap submission was settled.
func TestAttack7ResultAfterRefusalAtClaimsEnd(t *testing.T) {
	for _, holder := range []string{"First", "GapPlain", "GapAt", "GapDeps"} {
		t.Run(holder, func(t *testing.T) {
			t.Parallel()
			testResultAfterRefusal(t, holder)
		})
	}
}

func testResultAfterRefusal(t *testing.T, holder string) {
	const retention = 2 * time.Second
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	ret := natsjobs.WithRetention(retention)
	reg := natsjobs.NewRegistry()
	var calls sync.Map
	h := natsjobs.Register(reg, "echo", func(ctx context.Context, in string) (string, error) {
		n, _ := calls.LoadOrStore(in, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		if in == "first" && holder != "First" {
			time.Sleep(time.Second) // the outcome outlives the claim by a second: the gap
		}
		return in, nil
	})
	c := newClient(t, ts.connect(t), ns, ret, quiet)
	c2 := newClient(t, ts.connect(t), ns, ret, quiet)
	third := newClient(t, ts.connect(t), ns, ret, quiet)
	newWorker(t, ts.connect(t), reg, ns, ret, quiet)
	ctx := wctx(t, 20*time.Second)
	const rounds = 3
	type refusal struct {
		id, got string
		at      time.Duration // after the holder's Submit began
	}
	var (
		mu      sync.Mutex
		bad     []refusal
		good    int
		orphans []time.Duration // refusals after which Status showed the claim without an outcome
		refused []string        // payloads of refused submissions
	)
	var wg sync.WaitGroup
	for r := range rounds {
		wg.Go(func() {
			id := fmt.Sprintf("e%d", r)
			fail := func(format string, args ...any) {
				mu.Lock()
				bad = append(bad, refusal{id: id, got: fmt.Sprintf(format, args...)})
				mu.Unlock()
			}
			time.Sleep(time.Duration(r) * 150 * time.Millisecond)
			start := time.Now()
			if v, err := h.Submit(ctx, c, id, "first").Wait(ctx); err != nil || v != "first" {
				fail("first submission: %q, %v", v, err)
				return
			}
			if holder != "First" {
				if holder == "GapDeps" {
					if _, err := h.Submit(ctx, c, id+"-dep", "dep").Wait(ctx); err != nil {
						fail("dependency: %v", err)
						return
					}
				}
				// The gap: the first claim gone (at about R), its outcome
				// kept until about R+1s.
				first := start
				time.Sleep(time.Until(first.Add(retention + 300*time.Millisecond)))
				for {
					// The server removes the expired claim at its next
					// age check, late under load (a full -race run of
					// the package: refused 300 ms after the expiry): a
					// refusal until then, as in
					// TestAttack7CancelAfterTheHoldersOutcomeExpired.
					start = time.Now()
					var f *qpool.Future[string]
					switch holder {
					case "GapPlain":
						f = h.Submit(ctx, c, id, "gap")
					case "GapAt":
						f = h.SubmitAt(ctx, c, id, "gap", time.Now().Add(100*time.Millisecond))
					case "GapDeps":
						f = h.Submit(ctx, c, id, "gap", qpool.WithDependencies(id+"-dep"))
					}
					v, err := f.Wait(ctx)
					if errors.Is(err, natsjobs.ErrDuplicateJob) && time.Since(first) < retention+1500*time.Millisecond {
						time.Sleep(20 * time.Millisecond)
						continue
					}
					if err != nil || v != "first" {
						fail("gap submission (%v after the first's claim expired) resolved %q, %v; want the kept outcome", start.Sub(first.Add(retention)).Round(time.Millisecond), v, err)
						return
					}
					break
				}
			}
			time.Sleep(time.Until(start.Add(retention - 300*time.Millisecond)))
			var rw sync.WaitGroup
			for i := 0; time.Since(start) < retention+2*time.Second; i++ {
				tag := fmt.Sprintf("%s/later%d", id, i)
				f := h.Submit(ctx, c2, id, tag)
				_, err := f.Wait(ctx)
				if !errors.Is(err, natsjobs.ErrDuplicateJob) {
					break // accepted: the ID was free
				}
				mu.Lock()
				refused = append(refused, tag)
				mu.Unlock()
				at := time.Since(start)
				// What the server holds right after the refusal: a claim
				// (it refused this submission) and, the holder having
				// finished, its outcome.
				if st, err := c2.Status(ctx, id); err == nil && st.Name != "" && st.Result == nil {
					mu.Lock()
					orphans = append(orphans, at)
					mu.Unlock()
				}
				rw.Go(func() {
					wc, cancel := context.WithTimeout(ctx, 3*time.Second)
					defer cancel()
					rec, err := third.Result(wc, id)
					got := ""
					switch {
					case err != nil:
						got = "Result: " + err.Error()
					case rec.Err != nil:
						got = "error " + rec.Err.Error()
					default:
						var s string
						_ = (qpool.JSONCodec{}).Unmarshal(rec.Value, &s)
						got = s
					}
					mu.Lock()
					defer mu.Unlock()
					if got != "first" {
						bad = append(bad, refusal{id, got, at})
					} else {
						good++
					}
				})
				time.Sleep(10 * time.Millisecond)
			}
			rw.Wait()
		})
	}
	wg.Wait()
	t.Logf("%d refusals whose Result returned the holder's outcome, %d did not", good, len(bad))
	if len(orphans) > 0 {
		t.Errorf("%d refusals were followed by a Status that showed the ID's claim without an outcome, although the holder had finished (at %v after the holder's Submit began): the outcome expired before the claim that refuses duplicates",
			len(orphans), orphans)
	}
	for _, b := range bad {
		t.Errorf("%s: refused as a duplicate %v after the holder's Submit began; Result then gave %q, not the holder's outcome \"first\"", b.id, b.at.Round(time.Millisecond), b.got)
	}
	if n, ok := calls.Load("gap"); ok && n.(*atomic.Int32).Load() > 0 {
		t.Errorf("the gap submission's payload ran %d times", n.(*atomic.Int32).Load())
	}
	// Refused duplicates never run: give the workers their claim wait and
	// the retraction's second first.
	time.Sleep(3500 * time.Millisecond)
	for _, tag := range refused {
		if n, ok := calls.Load(tag); ok && n.(*atomic.Int32).Load() > 0 {
			t.Errorf("the payload %s, refused as a duplicate, ran %d times", tag, n.(*atomic.Int32).Load())
		}
	}
	t.Logf("%d refused payloads checked", len(refused))
}

// TestAttack7CancelAfterTheHoldersOutcomeExpired: the claim of a
// submission accepted in the gap (GapPlain of
// TestAttack7ResultAfterRefusalAtClaimsEnd) outlives its outcome for a
// moment. A Cancel then, from another client, is the Cancel of a finished
// job ("Cancel of a finished job does nothing and returns nil"), whose
// futures resolved: it must not record a second outcome ("Only the first
// outcome recorded for an ID counts ... every future of the job sees the
// same one"). Result and Handle.Future after it must see the outcome the
// job's futures saw, or nothing (the outcome expired), never "canceled".
func TestAttack7CancelAfterTheHoldersOutcomeExpired(t *testing.T) {
	const retention = 2 * time.Second
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	ret := natsjobs.WithRetention(retention)
	reg := natsjobs.NewRegistry()
	var gapRuns atomic.Int32
	h := natsjobs.Register(reg, "echo", func(ctx context.Context, in string) (string, error) {
		if in == "first" {
			time.Sleep(time.Second) // the outcome outlives the claim by a second: the gap
		} else {
			gapRuns.Add(1)
		}
		return in, nil
	})
	c := newClient(t, ts.connect(t), ns, ret, quiet)
	c2 := newClient(t, ts.connect(t), ns, ret, quiet)
	third := newClient(t, ts.connect(t), ns, ret, quiet)
	newWorker(t, ts.connect(t), reg, ns, ret, quiet)
	ctx := wctx(t, 20*time.Second)
	var (
		mu       sync.Mutex
		problems []string
		windows  int
	)
	note := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			id := fmt.Sprintf("k%d", r)
			time.Sleep(time.Duration(r) * 120 * time.Millisecond)
			start := time.Now()
			if v, err := h.Submit(ctx, c, id, "first").Wait(ctx); err != nil || v != "first" {
				note("%s: first submission %q, %v", id, v, err)
				return
			}
			time.Sleep(time.Until(start.Add(retention + 300*time.Millisecond)))
			var gs time.Time
			for {
				// The server removes the expired claim at its next age
				// check, up to a few hundred ms late: a refusal until then.
				gs = time.Now()
				v, err := h.Submit(ctx, c, id, "gap").Wait(ctx)
				if errors.Is(err, natsjobs.ErrDuplicateJob) && time.Since(start) < retention+1500*time.Millisecond {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				if err != nil || v != "first" {
					note("%s: gap submission resolved %q, %v; want the kept outcome", id, v, err)
					return
				}
				break
			}
			time.Sleep(time.Until(gs.Add(retention - 300*time.Millisecond)))
			for time.Since(gs) < retention+time.Second {
				st, err := c2.Status(ctx, id)
				if errors.Is(err, natsjobs.ErrUnknownJob) {
					return // claim and outcome gone together: no window this time
				}
				if err != nil {
					note("%s: Status: %v", id, err)
					return
				}
				if st.Name == "" || st.Result != nil {
					time.Sleep(2 * time.Millisecond)
					continue
				}
				// The claim without its outcome: the window.
				at := time.Since(gs)
				cerr := c2.Cancel(ctx, id)
				wc, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				rec, rerr := third.Result(wc, id)
				got := ""
				switch {
				case rerr != nil:
					got = "no outcome (" + rerr.Error() + ")"
				case rec.Err != nil:
					got = "error: " + rec.Err.Error()
					if errors.Is(rec.Err, context.Canceled) {
						got = "canceled"
					}
				default:
					got = "ok " + string(rec.Value)
				}
				mu.Lock()
				windows++
				mu.Unlock()
				t.Logf("%s: at %v after the gap submission, Status showed its claim without an outcome; Cancel: %v; Result then: %s", id, at.Round(time.Millisecond), cerr, got)
				if got == "canceled" {
					note("%s: the gap submission resolved with \"first\"; a Cancel %v later (claim still there, outcome expired) returned %v and recorded a second outcome, \"canceled\", which Result returns",
						id, at.Round(time.Millisecond), cerr)
				}
				return
			}
		})
	}
	wg.Wait()
	t.Logf("%d IDs showed the window", windows)
	for _, p := range problems {
		t.Error(p)
	}
	if n := gapRuns.Load(); n != 0 {
		t.Errorf("the gap submissions' payloads ran %d times", n)
	}
}

// TestAttack7WorkerCutOffMidWait: a worker re-reading an expiring claim
// (a new submission whose client pauses 1.5 s between message and claim)
// loses its connection for good, as a killed process would. Its message
// must reach the other worker after AckWait and resolve ("a worker killed
// mid-job has its job redelivered to another after AckWait", "Nothing
// lost"); the cut-off worker must not run it, and its Shutdown must
// return.
func TestAttack7WorkerCutOffMidWait(t *testing.T) {
	const retention = 2 * time.Second
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	ret := natsjobs.WithRetention(retention)
	ack := natsjobs.WithAckWait(time.Second)
	var on1, on2 atomic.Int32
	reg1, reg2 := natsjobs.NewRegistry(), natsjobs.NewRegistry()
	h := natsjobs.Register(reg1, "x", func(ctx context.Context, in string) (string, error) {
		on1.Add(1)
		return in, nil
	})
	natsjobs.Register(reg2, "x", func(ctx context.Context, in string) (string, error) {
		on2.Add(1)
		return in, nil
	})
	var deliveries atomic.Int32
	entered := make(chan struct{}, 4)
	hook := natsjobs.WithBeforeBegin(func(id string) {
		if deliveries.Add(1) == 2 {
			entered <- struct{}{}
		}
	})
	nc1, err := nats.Connect(ts.url(), connOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc1.Close)
	js1, err := jetstream.New(nc1)
	if err != nil {
		t.Fatal(err)
	}
	w1 := newWorker(t, js1, reg1, ns, ret, quiet, hook, ack)
	c := newClient(t, ts.connect(t), ns, ret, quiet)
	slow := newClient(t, ts.connect(t), ns, ret, quiet, natsjobs.WithClaimDelay(1500*time.Millisecond))
	ctx := wctx(t, 20*time.Second)
	start := time.Now()
	if v, err := h.Submit(ctx, c, "x", "first").Wait(ctx); err != nil || v != "first" {
		t.Fatalf("first: %q, %v", v, err)
	}
	time.Sleep(time.Until(start.Add(retention - 500*time.Millisecond)))
	var f *qpool.Future[string]
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		f = h.Submit(ctx, slow, "x", "second")
	}()
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("watchdog: the second message never reached the worker")
	}
	time.Sleep(200 * time.Millisecond) // re-reading the expiring claim now
	nc1.Close()
	ranBefore := on1.Load()
	newWorker(t, ts.connect(t), reg2, ns, ret, quiet, ack)
	<-submitted
	v, err := f.Wait(ctx)
	if ctx.Err() != nil {
		t.Fatalf("watchdog: the second submission never resolved (ran on the cut-off worker %d, on the other %d)", on1.Load()-1, on2.Load())
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w1.Shutdown(sctx) }()
	var serr error
	select {
	case serr = <-done:
	case <-time.After(8 * time.Second):
		t.Fatal("watchdog: Shutdown of the cut-off worker did not return within 8 s")
	}
	t.Logf("second resolved %q, %v; ran on the cut-off worker %d times (%d before the cut), on the other %d; Shutdown of the cut-off worker: %v",
		v, err, on1.Load()-1, ranBefore-1, on2.Load(), serr)
	if err != nil {
		t.Errorf("the second submission failed: %v", err)
	}
	if n := on1.Load() - 1; n != 0 {
		t.Errorf("the second job ran %d times on the worker cut off while it waited", n)
	}
}

// TestAttack7CancelWhileTheClaimIsReadAgain: a submission whose message
// a worker holds while it reads an expiring claim again (the client
// pauses 1.5 s between message and claim) is cancelled from another
// client as soon as its Submit returns. "A job that has not started never
// runs": its payload must not run, and its future and Handle.Future both
// say cancelled, or both give the first job's outcome, kept past the
// first claim (a submission in the gap).
func TestAttack7CancelWhileTheClaimIsReadAgain(t *testing.T) {
	const retention = 2 * time.Second
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	ret := natsjobs.WithRetention(retention)
	var second atomic.Int32
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "x", func(ctx context.Context, in string) (string, error) {
		if in != "first" {
			second.Add(1)
		}
		return in, nil
	})
	c := newClient(t, ts.connect(t), ns, ret, quiet)
	c2 := newClient(t, ts.connect(t), ns, ret, quiet)
	slow := newClient(t, ts.connect(t), ns, ret, quiet, natsjobs.WithClaimDelay(1500*time.Millisecond))
	newWorker(t, ts.connect(t), reg, ns, ret, quiet)
	newWorker(t, ts.connect(t), reg, ns, ret, quiet)
	ctx := wctx(t, 20*time.Second)
	const n = 4
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("c%d", i)
			time.Sleep(time.Duration(i) * 70 * time.Millisecond)
			start := time.Now()
			if v, err := h.Submit(ctx, c, id, "first").Wait(ctx); err != nil || v != "first" {
				t.Errorf("%s first: %q, %v", id, v, err)
				return
			}
			// The message 400-100 ms before the first claim expires, the
			// claim 1.1-1.4 s after.
			time.Sleep(time.Until(start.Add(retention - time.Duration(400-i*100)*time.Millisecond)))
			f := h.Submit(ctx, slow, id, "second")
			cerr := c2.Cancel(ctx, id)
			v, err := f.Wait(ctx)
			if ctx.Err() != nil {
				t.Errorf("watchdog: %s's second submission never resolved", id)
				return
			}
			if errors.Is(err, natsjobs.ErrDuplicateJob) {
				t.Logf("%s: the second submission was refused (the first claim outlived the 1.5 s pause); Cancel: %v", id, cerr)
				return
			}
			fv, ferr := h.Future(ctx, c, id).Wait(ctx)
			t.Logf("%s: Cancel %v; the second's future %q, %v; Handle.Future %q, %v", id, cerr, v, err, fv, ferr)
			if cerr != nil {
				t.Errorf("%s: Cancel after the second Submit returned: %v", id, cerr)
			}
			switch {
			case errors.Is(err, context.Canceled) && errors.Is(ferr, context.Canceled):
			case err == nil && v == "first" && ferr == nil && fv == "first":
				// A submission in the gap (the first claim expired, its
				// outcome kept: outcomes outlive claims by outcomeMargin)
				// resolves with the kept outcome, and Cancel of a finished
				// job does nothing.
			default:
				t.Errorf("%s: cancelled after its Submit returned, the future said %q, %v and Handle.Future %q, %v", id, v, err, fv, ferr)
			}
		})
	}
	wg.Wait()
	time.Sleep(3500 * time.Millisecond) // any wait of a worker is over
	if k := second.Load(); k != 0 {
		t.Errorf("cancelled second submissions ran %d times", k)
	}
}
