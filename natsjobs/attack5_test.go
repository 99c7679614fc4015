package natsjobs_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
)

// An attack (2026-12-06) on natsjobs, through the public API
// only: the promise "a claim expires before its job's outcome; a
// submission made in between resolves with the outcome that is kept,
// without running", and the duplicate and cancel promises around it.
//
// Every handler call is numbered (r#N#) and its value or error carries
// the number, so an outcome names the call that produced it. An outcome
// is then bounded in time: it was recorded after its call returned (lo)
// and before the first waiter saw it (hi); a cancellation after its Cancel
// call began and before it returned. A claim lives for the retention R
// after it was written, an outcome for R+M, M the 2 s by which an outcome
// outlives its claim (outcomeMargin; the server's clock is the test's:
// one machine), never less. From these bounds alone:
//
//   - no handler call of an ID may start after an outcome of the ID was
//     recorded (hi) and before it could have expired (lo+R+M): the job ran
//     while its outcome was kept;
//   - two different outcomes of one ID must have been recorded at least
//     R+M apart: otherwise the later one was recorded while the earlier
//     was kept (a waiter saw a second outcome);
//   - two accepted submissions of one ID must have claimed it at least R
//     apart;
//   - the payload of a submission refused with ErrDuplicateJob never runs;
//   - every future resolves (watchdog).

const attackMargin = 250 * time.Millisecond // for timer jitter only: bounds below are conservative

type attackIn struct {
	ID        string `json:"id"`
	Tag       string `json:"tag"`   // unique per submission
	SleepMs   int    `json:"sleep"` // how long each call takes
	FailUntil int    `json:"fail"`  // calls of this tag that fail
}

type attackRun struct {
	id, tag    string
	start, end time.Time
}

type attackSub struct {
	id, tag, kind string
	client        int
	start, end    time.Time // the Submit call
	dup           bool
	err           error
	ident         string
	resolved      time.Time
}

type attackObs struct {
	id, ident, who string
	at             time.Time
}

type attackCancel struct {
	id         string
	start, end time.Time
	err        error
}

type attackLog struct {
	mu      sync.Mutex
	runs    map[int]*attackRun
	calls   map[string]int // per tag
	subs    []*attackSub
	obs     []attackObs
	cancels []attackCancel
	odd     []string // unexpected errors
}

var runNum = regexp.MustCompile(`r#(\d+)#`)

// ident names an outcome: "ok N", "fail N", "dep N" (a dependency whose
// call N failed), "canceled"; "" for ErrDuplicateJob.
func attackIdent(value string, err error) (string, error) {
	if err == nil {
		m := runNum.FindStringSubmatch(value)
		if m == nil {
			return "", fmt.Errorf("value %q names no call", value)
		}
		return "ok " + m[1], nil
	}
	if errors.Is(err, natsjobs.ErrDuplicateJob) {
		return "", nil
	}
	var de *qpool.DependencyError
	if errors.As(err, &de) {
		m := runNum.FindStringSubmatch(err.Error())
		if m == nil {
			return "", fmt.Errorf("dependency error names no call: %v", err)
		}
		return "dep " + m[1], nil
	}
	if errors.Is(err, context.Canceled) {
		return "canceled", nil
	}
	m := runNum.FindStringSubmatch(err.Error())
	if m == nil {
		return "", fmt.Errorf("error names no call: %v", err)
	}
	return "fail " + m[1], nil
}

// TestAttackExpiryGapHammer: IDs submitted again and again through three
// clients (own connections) at random moments before, in and after the gap
// between the claim's and the outcome's expiry (retention 2 s), as plain,
// delayed and dependent jobs, with retries of failing attempts, Cancel
// racing, and Handle.Future / Client.Result waiting from another client.
//
// Every defect it found has a test of its own: a job with dependencies
// submitted again after its ID's records expired never ran
// (TestAttackResubmitAfterExpiryWithDependencies); a submission after a
// cancellation of its ID never resolved on a worker that saw the cancel
// (TestAttackGapResubmissionAfterCancel, TestAttackResubmitAfterCancelExpired);
// a duplicate refused at its claim's expiry ran
// (TestAttackDuplicateDeliveredAfterClaimExpiry); a gap submission with
// dependencies ran after it resolved (TestAttackGapDependentRunsAfterResolving);
// and a submission made just after an earlier claim's expiry, whose
// message a worker got while the server still had that claim, was dropped
// as a duplicate's and never resolved
// (TestSubmissionRacingTheOldClaimsExpiryResolves).
func TestAttackExpiryGapHammer(t *testing.T) {
	const (
		retention = 2 * time.Second
		ids       = 24
		window    = 4 * time.Second // first submissions' spread
	)
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("QPOOL_ATTACK_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d", seed)
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	ret := natsjobs.WithRetention(retention)
	L := &attackLog{runs: map[int]*attackRun{}, calls: map[string]int{}}
	var seq atomic.Int64
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "a5", func(ctx context.Context, in attackIn) (string, error) {
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
		L.mu.Unlock()
		switch {
		case err != nil:
			return "", fmt.Errorf("r#%d# %w", n, err)
		case fail:
			return "", fmt.Errorf("r#%d# fails", n)
		}
		return fmt.Sprintf("r#%d#", n), nil
	})
	clients := make([]*natsjobs.Client, 3)
	for i := range clients {
		clients[i] = newClient(t, ts.connect(t), ns, ret, quiet)
	}
	for range 2 {
		newWorker(t, ts.connect(t), reg, ns, ret, quiet, natsjobs.WithConcurrency(16))
	}
	ctx := wctx(t, 25*time.Second)
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
			odd("watchdog: %s (%s) never resolved", id, who)
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
	// waitElsewhere waits for id's outcome through client k, with a typed
	// future or Result, after a pause well under the retention (so that the
	// outcome cannot have expired before the lookup).
	waitElsewhere := func(rng *rand.Rand, id string, k int) {
		pause := time.Duration(rng.IntN(400)) * time.Millisecond
		useResult := rng.IntN(2) == 0
		wg.Go(func() {
			time.Sleep(pause)
			c := clients[k]
			if useResult {
				rec, err := c.Result(ctx, id)
				if err != nil {
					odd("Result(%s) via %d: %v", id, k, err)
					return
				}
				observe(id, fmt.Sprintf("Result via %d", k), string(rec.Value), rec.Err)
				return
			}
			v, err := h.Future(ctx, c, id).Wait(ctx)
			observe(id, fmt.Sprintf("Future via %d", k), v, err)
		})
	}
	// submit submits id once, as kind, through a random client, and waits.
	var submit func(rng *rand.Rand, id string, depth int)
	submit = func(rng *rand.Rand, id string, depth int) {
		k := rng.IntN(len(clients))
		c := clients[k]
		tag := "s" + strconv.FormatInt(tagSeq.Add(1), 10)
		in := attackIn{ID: id, Tag: tag, SleepMs: rng.IntN(1200)}
		var opts []qpool.JobOption
		switch rng.IntN(4) {
		case 1:
			in.FailUntil = 1
		case 2:
			in.FailUntil = 2
		case 3:
			in.FailUntil = 99 // fails after its attempts
		}
		if rng.IntN(3) > 0 {
			opts = append(opts, qpool.WithRetry(3, time.Duration(50+rng.IntN(400))*time.Millisecond))
		}
		kind := []string{"plain", "at", "deps"}[rng.IntN(3)]
		s := &attackSub{id: id, tag: tag, kind: kind, client: k}
		var f *qpool.Future[string]
		switch kind {
		case "plain":
			s.start = time.Now()
			f = h.Submit(ctx, c, id, in, opts...)
		case "at":
			at := time.Now().Add(time.Duration(rng.IntN(1500)) * time.Millisecond)
			s.start = time.Now()
			f = h.SubmitAt(ctx, c, id, in, at, opts...)
		case "deps":
			// A dependency of its own, never submitted again: it
			// succeeds or fails (then the job fails with it), and is
			// submitted before or after its dependent.
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
		if s.dup || ctx.Err() != nil {
			return
		}
		if rng.IntN(2) == 0 {
			waitElsewhere(rng, id, (k+1+rng.IntN(len(clients)-1))%len(clients))
		}
		// Aim one more submission at this job's gap: its claim expires
		// R after it was made, its outcome R after it was recorded.
		if depth < 2 {
			aim := s.start.Add(retention + time.Duration(rng.IntN(int(s.resolved.Sub(s.start)/time.Millisecond)+400))*time.Millisecond)
			time.Sleep(time.Until(aim))
			submit(rng, id, depth+1)
		}
	}
	for i := range ids {
		id := fmt.Sprintf("g%d", i)
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		offsets := []time.Duration{time.Duration(rng.IntN(300)) * time.Millisecond}
		for range 3 {
			offsets = append(offsets, time.Duration(rng.Int64N(int64(window))))
		}
		for j, off := range offsets {
			srng := rand.New(rand.NewPCG(seed, uint64(i*100+j+1)))
			wg.Go(func() {
				time.Sleep(time.Until(t0.Add(off)))
				submit(srng, id, 0)
			})
		}
		if rng.IntN(3) == 0 {
			off := time.Duration(rng.Int64N(int64(window)))
			k := rng.IntN(len(clients))
			wg.Go(func() {
				time.Sleep(time.Until(t0.Add(off)))
				cs := time.Now()
				err := clients[k].Cancel(ctx, id)
				L.mu.Lock()
				L.cancels = append(L.cancels, attackCancel{id: id, start: cs, end: time.Now(), err: err})
				L.mu.Unlock()
			})
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		<-done // every Wait ends with ctx
	}
	L.mu.Lock()
	defer L.mu.Unlock()
	attackCheck(t, L, retention, t0)
}

// attackCheck applies the checks described at the top of the file.
func attackCheck(t *testing.T, L *attackLog, retention time.Duration, t0 time.Time) {
	t.Helper()
	rel := func(at time.Time) string { return fmt.Sprintf("%.3fs", at.Sub(t0).Seconds()) }
	keep := retention - attackMargin                                 // a claim's life, at least
	keepOutcome := retention + natsjobs.OutcomeMargin - attackMargin // an outcome's
	var bad []string
	bad = append(bad, L.odd...)

	// Outcomes seen, per ID: identity -> [lo, hi].
	type span struct {
		lo, hi time.Time
		who    []string
	}
	outs := map[string]map[string]*span{}
	for _, o := range L.obs {
		m := outs[o.id]
		if m == nil {
			m = map[string]*span{}
			outs[o.id] = m
		}
		sp := m[o.ident]
		if sp == nil {
			sp = &span{hi: o.at}
			if o.ident == "canceled" {
				first := true
				for _, c := range L.cancels {
					if c.id == o.id && (first || c.start.Before(sp.lo)) {
						sp.lo, first = c.start, false
					}
				}
				if first {
					bad = append(bad, fmt.Sprintf("%s: canceled without a Cancel", o.id))
					continue
				}
			} else {
				n, _ := strconv.Atoi(strings.Fields(o.ident)[1])
				r := L.runs[n]
				if r == nil {
					bad = append(bad, fmt.Sprintf("%s: outcome %q names no call", o.id, o.ident))
					continue
				}
				want := o.id
				if strings.HasPrefix(o.ident, "dep ") {
					want = r.id[:strings.LastIndex(r.id, "~")]
				}
				if want != o.id {
					bad = append(bad, fmt.Sprintf("%s: outcome %q is a call of %s", o.id, o.ident, r.id))
				}
				sp.lo = r.end
			}
			m[o.ident] = sp
		}
		if o.at.Before(sp.hi) {
			sp.hi = o.at
		}
		sp.who = append(sp.who, o.who+" at "+rel(o.at))
	}
	// Two different outcomes of one ID recorded less than R apart.
	for id, m := range outs {
		var idents []string
		for k := range m {
			idents = append(idents, k)
		}
		sort.Strings(idents)
		for i, a := range idents {
			for _, b := range idents[i+1:] {
				A, B := m[a], m[b]
				if B.hi.Sub(A.lo) < keepOutcome && A.hi.Sub(B.lo) < keepOutcome {
					bad = append(bad, fmt.Sprintf("%s: two outcomes recorded less than the outcome's life apart: %q in [%s, %s] seen by %v; %q in [%s, %s] seen by %v",
						id, a, rel(A.lo), rel(A.hi), A.who, b, rel(B.lo), rel(B.hi), B.who))
				}
			}
		}
	}
	// A call started while an outcome of its ID was kept. A worker decides
	// to run on its read of the outcome, a moment before the handler is
	// entered: a call entered within attackMargin of the outcome's being
	// seen raced it (a Cancel racing the start: the run is then cancelled
	// through its context, as Cancel says).
	nums := make([]int, 0, len(L.runs))
	for n := range L.runs {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	for _, n := range nums {
		r := L.runs[n]
		for ident, sp := range outs[r.id] {
			if !r.start.Before(sp.hi.Add(attackMargin)) && r.start.Sub(sp.lo) < keepOutcome {
				bad = append(bad, fmt.Sprintf("%s: call r#%d# (tag %s) started at %s while outcome %q (recorded in [%s, %s]) was kept",
					r.id, n, r.tag, rel(r.start), ident, rel(sp.lo), rel(sp.hi)))
			}
		}
	}
	// Duplicates: refused payloads never run; accepted claims R apart.
	ranTag := map[string]bool{}
	for _, r := range L.runs {
		ranTag[r.tag] = true
	}
	byID := map[string][]*attackSub{}
	stats := map[string]int{}
	for _, s := range L.subs {
		byID[s.id] = append(byID[s.id], s)
		switch {
		case s.dup:
			stats["duplicate"]++
			if !ranTag[s.tag] {
				break
			}
			// A duplicate refused in the last moments of the claim that
			// refused it ran once its message found no claim, before its
			// client retracted it (TestAttackDuplicateDeliveredAfterClaimExpiry).
			bad = append(bad, fmt.Sprintf("%s: the payload of submission %s (%s), refused as a duplicate, ran", s.id, s.tag, s.kind))
		case s.err == nil:
			stats["ok"]++
		default:
			stats["failed"]++
		}
	}
	for id, subs := range byID {
		for i, a := range subs {
			for _, b := range subs[i+1:] {
				if a.dup || b.dup || a.resolved.IsZero() || b.resolved.IsZero() {
					continue
				}
				if b.end.Sub(a.start) < keep && a.end.Sub(b.start) < keep {
					bad = append(bad, fmt.Sprintf("%s: submissions %s (%s, [%s, %s]) and %s (%s, [%s, %s]) both accepted less than the retention apart",
						id, a.tag, a.kind, rel(a.start), rel(a.end), b.tag, b.kind, rel(b.start), rel(b.end)))
				}
			}
		}
	}
	// A submission resolved with another submission's outcome must not run
	// afterwards (TestAttackGapDependentRunsAfterResolving).
	for _, sb := range L.subs {
		if sb.dup || sb.err != nil && !strings.Contains(sb.err.Error(), "r#") || sb.resolved.IsZero() {
			continue
		}
		ident, _ := attackIdent("r#0#", nil)
		for _, o := range L.obs {
			if o.who == "submitter "+sb.tag {
				ident = o.ident
			}
		}
		if ident == "canceled" || strings.HasPrefix(ident, "dep ") {
			continue
		}
		n, _ := strconv.Atoi(strings.Fields(ident)[1])
		if r := L.runs[n]; r == nil || r.tag == sb.tag {
			continue
		}
		for m, r := range L.runs {
			if r.tag == sb.tag && r.start.After(sb.resolved) {
				bad = append(bad, fmt.Sprintf("%s: submission %s (%s) resolved at %s with %q, then its payload ran (r#%d# at %s)",
					sb.id, sb.tag, sb.kind, rel(sb.resolved), ident, m, rel(r.start)))
			}
		}
	}
	// Resubmissions that resolved with an outcome of another submission:
	// the ones in the gap (and duplicates' futures, which resolve with
	// ErrDuplicateJob).
	inGap := 0
	for _, o := range L.obs {
		if !strings.HasPrefix(o.who, "submitter ") || o.ident == "canceled" {
			continue
		}
		n, _ := strconv.Atoi(strings.Fields(o.ident)[1])
		if r := L.runs[n]; r != nil && "submitter "+r.tag != o.who && !strings.HasPrefix(o.ident, "dep ") {
			inGap++
		}
	}
	cancelErrs := map[string]int{}
	for _, c := range L.cancels {
		switch {
		case c.err == nil:
			cancelErrs["nil"]++
		case errors.Is(c.err, natsjobs.ErrUnknownJob):
			cancelErrs["unknown"]++
			// An outcome known to be kept at the time: Cancel of a
			// finished job returns nil.
			for ident, sp := range outs[c.id] {
				if !c.start.Before(sp.hi) && c.end.Sub(sp.lo) < keepOutcome {
					bad = append(bad, fmt.Sprintf("%s: Cancel at [%s, %s] said ErrUnknownJob while outcome %q (recorded in [%s, %s]) was kept",
						c.id, rel(c.start), rel(c.end), ident, rel(sp.lo), rel(sp.hi)))
				}
			}
		default:
			cancelErrs["other"]++
			bad = append(bad, fmt.Sprintf("%s: Cancel: %v", c.id, c.err))
		}
	}
	t.Logf("%d submissions %v, %d handler calls, %d outcomes seen, %d accepted submissions resolved with another's outcome, cancels %v",
		len(L.subs), stats, len(L.runs), len(L.obs), inGap, cancelErrs)
	if len(bad) > 0 {
		attackTimeline(t, L, bad, t0)
		for i, b := range bad {
			if i == 30 {
				t.Errorf("... and %d more", len(bad)-30)
				break
			}
			t.Error(b)
		}
	}
}

// attackTimeline logs what happened to the IDs named in bad, in order.
func attackTimeline(t *testing.T, L *attackLog, bad []string, t0 time.Time) {
	t.Helper()
	rel := func(at time.Time) string { return fmt.Sprintf("%7.3fs", at.Sub(t0).Seconds()) }
	named := map[string]bool{}
	for _, b := range bad {
		for _, f := range strings.FieldsFunc(b, func(r rune) bool { return r == ' ' || r == ':' || r == '(' || r == ')' }) {
			if strings.HasPrefix(f, "g") {
				if _, err := strconv.Atoi(f[1:]); err == nil {
					named[f] = true
				}
			}
		}
	}
	for id := range named {
		type ev struct {
			at   time.Time
			what string
		}
		var evs []ev
		for _, s := range L.subs {
			if s.id == id || strings.HasPrefix(s.id, id+"~") {
				evs = append(evs, ev{s.start, fmt.Sprintf("submit %s %s %s via %d, returned %s, resolved %s: dup=%v err=%v", s.id, s.tag, s.kind, s.client, rel(s.end), rel(s.resolved), s.dup, s.err)})
			}
		}
		for n, r := range L.runs {
			if r.id == id || strings.HasPrefix(r.id, id+"~") {
				evs = append(evs, ev{r.start, fmt.Sprintf("call r#%d# of %s tag %s, ended %s", n, r.id, r.tag, rel(r.end))})
			}
		}
		for _, o := range L.obs {
			if o.id == id || strings.HasPrefix(o.id, id+"~") {
				evs = append(evs, ev{o.at, fmt.Sprintf("seen %s: %q by %s", o.id, o.ident, o.who)})
			}
		}
		for _, c := range L.cancels {
			if c.id == id {
				evs = append(evs, ev{c.start, fmt.Sprintf("cancel, returned %s: %v", rel(c.end), c.err)})
			}
		}
		sort.Slice(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
		var b strings.Builder
		for _, e := range evs {
			fmt.Fprintf(&b, "\n  %s %s", rel(e.at), e.what)
		}
		t.Logf("timeline of %s:%s", id, b.String())
	}
}

// attackFixture is one server, a client and a worker on their own
// connections, sharing a namespace with a short retention, and a handler
// that counts its calls per input.
type attackFixture struct {
	js    jetstream.JetStream
	ns    string
	w     *natsjobs.Worker
	c, c2 *natsjobs.Client
	h     natsjobs.Handle[string, string]
	mu    sync.Mutex
	calls map[string]int
}

func newAttackFixture(t *testing.T, retention time.Duration) *attackFixture {
	ts := startServer(t)
	fx := &attackFixture{calls: map[string]int{}, ns: namespace()}
	ns := natsjobs.WithNamespace(fx.ns)
	ret := natsjobs.WithRetention(retention)
	fx.js = ts.connect(t)
	reg := natsjobs.NewRegistry()
	fx.h = natsjobs.Register(reg, "fx", func(ctx context.Context, in string) (string, error) {
		fx.mu.Lock()
		fx.calls[in]++
		fx.mu.Unlock()
		if in == "block" { // until cancelled
			<-ctx.Done()
			return "", ctx.Err()
		}
		if strings.HasPrefix(in, "slow/") {
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		return in, nil
	})
	fx.c = newClient(t, ts.connect(t), ns, ret, quiet)
	fx.c2 = newClient(t, ts.connect(t), ns, ret, quiet)
	fx.w = newWorker(t, ts.connect(t), reg, ns, ret, quiet)
	return fx
}

// queue describes the queue's stream and the worker's counters, for a
// failure's message.
func (fx *attackFixture) queue(t *testing.T) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := fx.js.Stream(ctx, fx.ns+"_q_default")
	if err != nil {
		return err.Error()
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("queue stream: %d messages, last sequence %d, duplicate window %v; worker %+v",
		info.State.Msgs, info.State.LastSeq, info.Config.Duplicates, fx.w.Stats())
}

func (fx *attackFixture) ran(in string) int {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return fx.calls[in]
}

// waitGone waits until the server knows nothing of id any more (claim and
// outcome expired).
func (fx *attackFixture) waitGone(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	waitFor(t, 10*time.Second, id+" to expire", func() bool {
		_, err := fx.c.Status(ctx, id)
		return errors.Is(err, natsjobs.ErrUnknownJob)
	})
}

// TestAttackResubmitAfterExpiryWithDependencies: a job with a dependency
// runs; once its claim and outcome have both expired, the ID is free
// ("unique ... for the retention"), and a new submission of it, with a new
// dependency, must run and resolve like any new job.
func TestAttackResubmitAfterExpiryWithDependencies(t *testing.T) {
	fx := newAttackFixture(t, 2*time.Second)
	ctx := wctx(t, 15*time.Second)
	for gen := range 2 {
		dep := fmt.Sprintf("dep%d", gen)
		in := fmt.Sprintf("x/%d", gen)
		before := fx.queue(t)
		f := fx.h.Submit(ctx, fx.c, "x", in, qpool.WithDependencies(dep))
		if _, err := fx.h.Submit(ctx, fx.c, dep, dep).Wait(ctx); err != nil {
			t.Fatalf("generation %d: dependency: %v", gen, err)
		}
		v, err := f.Wait(ctx)
		if ctx.Err() != nil {
			st, serr := fx.c.Status(context.Background(), "x")
			t.Fatalf("watchdog: generation %d of x (submitted after the first had expired) never resolved; it ran %d times; status %+v, %v; before the submission: %s; now: %s", gen, fx.ran(in), st, serr, before, fx.queue(t))
		}
		if err != nil || v != in {
			t.Fatalf("generation %d: (%q, %v)", gen, v, err)
		}
		fx.waitGone(t, ctx, "x")
	}
}

// TestAttackResubmitAfterCancelExpired: a job cancelled while it waits
// (SubmitAt in the future) never runs; once its records expired, a new
// submission of the ID must run.
func TestAttackResubmitAfterCancelExpired(t *testing.T) {
	fx := newAttackFixture(t, 2*time.Second)
	ctx := wctx(t, 20*time.Second)
	f := fx.h.SubmitAt(ctx, fx.c, "y", "y/0", time.Now().Add(time.Hour))
	if err := fx.c.Cancel(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	fx.waitGone(t, ctx, "y")
	before := fx.queue(t)
	ctx = wctx(t, 5*time.Second)
	for i, submit := range []func() *qpool.Future[string]{
		func() *qpool.Future[string] { return fx.h.Submit(ctx, fx.c, "y", "y/1") },
	} {
		v, err := submit().Wait(ctx)
		if ctx.Err() != nil {
			st, serr := fx.c.Status(context.Background(), "y")
			t.Fatalf("watchdog: submission %d of y after its cancelled job expired never resolved (ran %d times); status %+v, %v; before the submission: %s; now: %s", i, fx.ran("y/1"), st, serr, before, fx.queue(t))
		}
		if err != nil || v != "y/1" {
			t.Fatalf("(%q, %v)", v, err)
		}
	}
}

// TestAttackResubmitAfterCancelExpiredFreshWorker is the control of
// TestAttackResubmitAfterCancelExpired: the same, with the worker started
// only after the cancelled job's records expired. It runs the new job, so
// what drops it in the other test is the cancel that a worker running at
// the time saw (and keeps after the marker expired), not the server's
// state.
func TestAttackResubmitAfterCancelExpiredFreshWorker(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	ret := natsjobs.WithRetention(2 * time.Second)
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "fx", func(ctx context.Context, in string) (string, error) { return in, nil })
	c := newClient(t, ts.connect(t), ns, ret, quiet)
	ctx := wctx(t, 15*time.Second)
	f := h.SubmitAt(ctx, c, "y", "y/0", time.Now().Add(time.Hour))
	if err := c.Cancel(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	waitFor(t, 10*time.Second, "expiry", func() bool {
		_, err := c.Status(ctx, "y")
		return errors.Is(err, natsjobs.ErrUnknownJob)
	})
	newWorker(t, ts.connect(t), reg, ns, ret, quiet)
	v, err := h.Submit(ctx, c, "y", "y/1").Wait(ctx)
	if ctx.Err() != nil {
		t.Fatal("watchdog: the new submission never resolved")
	}
	if err != nil || v != "y/1" {
		t.Fatalf("(%q, %v)", v, err)
	}
}

// TestAttackGapResubmissionAfterCancel: the outcome kept in the gap is a
// cancellation. A job is cancelled about a second after it was submitted
// (while it runs, or while it waits for its time), so its claim expires
// about a second before its outcome; a submission of the ID in that gap
// must resolve with the kept outcome (context.Canceled), as after any
// other outcome ("a submission made in between resolves with the outcome
// that is kept, without running").
func TestAttackGapResubmissionAfterCancel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first func(ctx context.Context, fx *attackFixture) *qpool.Future[string]
	}{
		{"Running", func(ctx context.Context, fx *attackFixture) *qpool.Future[string] {
			return fx.h.Submit(ctx, fx.c, "z", "block")
		}},
		{"Delayed", func(ctx context.Context, fx *attackFixture) *qpool.Future[string] {
			return fx.h.SubmitAt(ctx, fx.c, "z", "z/0", time.Now().Add(time.Hour))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fx := newAttackFixture(t, 2*time.Second)
			ctx := wctx(t, 15*time.Second)
			f := tc.first(ctx, fx)
			time.Sleep(time.Second)
			if err := fx.c2.Cancel(ctx, "z"); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Wait(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled: %v", err)
			}
			waitFor(t, 10*time.Second, "the claim to expire before the outcome", func() bool {
				st, err := fx.c.Status(ctx, "z")
				if errors.Is(err, natsjobs.ErrUnknownJob) {
					t.Fatal("the outcome expired with the claim: no gap to test")
				}
				return err == nil && st.Name == "" && st.Result != nil
			})
			before := fx.queue(t)
			wait := wctx(t, 4*time.Second)
			v, err := fx.h.Submit(ctx, fx.c2, "z", "z/1").Wait(wait)
			if wait.Err() != nil {
				st, serr := fx.c.Status(context.Background(), "z")
				t.Fatalf("watchdog: the submission in the gap after a cancellation never resolved (ran %d times); status %+v, %v; before: %s; now: %s",
					fx.ran("z/1"), st, serr, before, fx.queue(t))
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("the submission in the gap resolved with (%q, %v), not the kept cancellation", v, err)
			}
			if n := fx.ran("z/1"); n != 0 {
				t.Fatalf("the submission in the gap ran %d times", n)
			}
		})
	}
}

// TestAttackDuplicateDeliveredAfterClaimExpiry: a duplicate submission is
// refused (ErrDuplicateJob) shortly before the existing claim expires,
// while the existing job still runs; the worker that gets the duplicate's
// message is busy until after that claim has expired (or, DelayedDuplicate,
// the duplicate is a SubmitAt whose time comes after it). "A duplicate
// submission never runs": its payload must not run, and the first
// submission's future must resolve with its own job's value.
func TestAttackDuplicateDeliveredAfterClaimExpiry(t *testing.T) {
	for _, tc := range []struct {
		name    string
		first   time.Duration // how long the existing job runs
		delayed bool          // the duplicate is a SubmitAt for 2.5 s, no filler
	}{
		{"OutcomeDuringTheClaimWait", 4 * time.Second, false},
		{"OutcomeAfterTheClaimWait", 6 * time.Second, false},
		{"DelayedDuplicate", 6 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t)
			ns := natsjobs.WithNamespace(namespace())
			ret := natsjobs.WithRetention(2 * time.Second)
			var mu sync.Mutex
			ran := map[string]int{}
			var events []string
			var t0 time.Time
			note := func(format string, args ...any) {
				mu.Lock()
				defer mu.Unlock()
				events = append(events, fmt.Sprintf("%.2fs ", time.Since(t0).Seconds())+fmt.Sprintf(format, args...))
			}
			reg := natsjobs.NewRegistry()
			h := natsjobs.Register(reg, "d", func(ctx context.Context, in string) (string, error) {
				note("%s starts", in)
				defer note("%s returns", in)
				mu.Lock()
				ran[in]++
				mu.Unlock()
				var d time.Duration
				switch in {
				case "first":
					d = tc.first
				case "filler":
					d = 2800 * time.Millisecond
				}
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return "", ctx.Err()
				}
				return in, nil
			})
			c := newClient(t, ts.connect(t), ns, ret, quiet)
			c2 := newClient(t, ts.connect(t), ns, ret, quiet)
			newWorker(t, ts.connect(t), reg, ns, ret, quiet, natsjobs.WithConcurrency(2))
			ctx := wctx(t, 15*time.Second)
			mu.Lock()
			t0 = time.Now()
			mu.Unlock()
			first := h.Submit(ctx, c, "x", "first")
			fillerIn := "filler" // holds the other slot
			if tc.delayed {
				fillerIn = "short"
			}
			filler := h.Submit(ctx, c, "filler", fillerIn)
			waitFor(t, 5*time.Second, "both to run", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return ran["first"] == 1 && ran[fillerIn] == 1
			})
			time.Sleep(time.Until(t0.Add(1500 * time.Millisecond)))
			var df *qpool.Future[string]
			if tc.delayed {
				df = h.SubmitAt(ctx, c2, "x", "duplicate", t0.Add(2500*time.Millisecond))
			} else {
				df = h.Submit(ctx, c2, "x", "duplicate")
			}
			_, err := df.Wait(ctx)
			note("the duplicate refused: %v", err)
			if !errors.Is(err, natsjobs.ErrDuplicateJob) {
				t.Fatalf("the duplicate: %v (%.2fs after the first)", err, time.Since(t0).Seconds())
			}
			if _, err := filler.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			v, err := first.Wait(ctx)
			if ctx.Err() != nil {
				t.Fatal("watchdog: the first submission's future never resolved")
			}
			note("the first submission resolved")
			time.Sleep(2500 * time.Millisecond) // the duplicate's message: waited for its claim, then ran or not
			mu.Lock()
			defer mu.Unlock()
			if ran["duplicate"] != 0 {
				t.Errorf("the duplicate's payload ran %d times", ran["duplicate"])
			}
			if err != nil || v != "first" {
				t.Errorf("the first submission resolved with (%q, %v)", v, err)
			}
			if t.Failed() {
				t.Logf("what happened (retention 2 s, from the first submission):\n%s", strings.Join(events, "\n"))
			}
		})
	}
}

// TestAttackCancelHammer: jobs that wait in the queue (two workers of two
// slots for 120 jobs), delayed jobs and jobs between failed attempts are
// cancelled at random moments from another client than their submitter.
// "A queued, waiting or delayed job never runs": no handler call of a
// job whose outcome is the cancellation may start well after its Cancel
// returned, and one that starts around it has its context cancelled;
// every future (and Handle.Future through a third client) resolves with
// the one outcome, and the results bucket is written once per ID.
func TestAttackCancelHammer(t *testing.T) {
	const (
		jobs  = 120
		grace = 300 * time.Millisecond // a call the worker began before the marker reached it
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	ts := startServer(t)
	nsName := namespace()
	ns := natsjobs.WithNamespace(nsName)
	type call struct {
		start, end time.Time
		cancelled  bool // the call ended by its context
	}
	var mu sync.Mutex
	calls := map[string][]*call{}
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "c", func(ctx context.Context, in attackIn) (string, error) {
		c := &call{start: time.Now()}
		mu.Lock()
		calls[in.ID] = append(calls[in.ID], c)
		n := len(calls[in.ID])
		mu.Unlock()
		var err error
		select {
		case <-time.After(time.Duration(in.SleepMs) * time.Millisecond):
		case <-ctx.Done():
			err = ctx.Err()
		}
		mu.Lock()
		c.end, c.cancelled = time.Now(), err != nil
		mu.Unlock()
		if err != nil {
			return "", err
		}
		if n <= in.FailUntil {
			return "", fmt.Errorf("%s attempt %d fails", in.ID, n)
		}
		return fmt.Sprintf("%s#%d", in.ID, n), nil
	})
	clients := make([]*natsjobs.Client, 3)
	for i := range clients {
		clients[i] = newClient(t, ts.connect(t), ns, quiet)
	}
	for range 2 {
		newWorker(t, ts.connect(t), reg, ns, quiet, natsjobs.WithConcurrency(2))
	}
	ctx := wctx(t, 25*time.Second)
	type job struct {
		id, kind       string
		cancel         bool
		cs, ce         time.Time
		cerr           error
		v, fv          string
		err, ferr      error
		submitter, via int
	}
	all := make([]*job, jobs)
	var wg sync.WaitGroup
	for i := range jobs {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		j := &job{id: fmt.Sprintf("c%d", i), submitter: rng.IntN(3), cancel: rng.IntN(2) == 0}
		j.via = (j.submitter + 1 + rng.IntN(2)) % 3
		all[i] = j
		in := attackIn{ID: j.id, SleepMs: 20 + rng.IntN(200)}
		wg.Go(func() {
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
			var f *qpool.Future[string]
			switch rng.IntN(3) {
			case 0:
				j.kind = "plain"
				f = h.Submit(ctx, clients[j.submitter], j.id, in)
			case 1:
				j.kind = "at"
				f = h.SubmitAt(ctx, clients[j.submitter], j.id, in, time.Now().Add(time.Duration(rng.IntN(2000))*time.Millisecond))
			case 2:
				j.kind = "retry"
				in.FailUntil = 1 + rng.IntN(2)
				f = h.Submit(ctx, clients[j.submitter], j.id, in, qpool.WithRetry(3, time.Duration(100+rng.IntN(1000))*time.Millisecond))
			}
			other := h.Future(ctx, clients[j.via], j.id)
			if j.cancel {
				wg.Go(func() {
					time.Sleep(time.Duration(rng.IntN(2500)) * time.Millisecond)
					j.cs = time.Now()
					j.cerr = clients[(j.submitter+2)%3].Cancel(ctx, j.id)
					j.ce = time.Now()
				})
			}
			j.v, j.err = f.Wait(ctx)
			j.fv, j.ferr = other.Wait(ctx)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("watchdog: futures did not resolve")
	}
	mu.Lock()
	defer mu.Unlock()
	var bad []string
	cancelled := 0
	for _, j := range all {
		if j.cancel && j.cerr != nil {
			bad = append(bad, fmt.Sprintf("%s: Cancel: %v", j.id, j.cerr))
		}
		if fmt.Sprint(j.v, j.err) != fmt.Sprint(j.fv, j.ferr) {
			bad = append(bad, fmt.Sprintf("%s (%s): the submitter saw (%q, %v), Handle.Future via client %d (%q, %v)", j.id, j.kind, j.v, j.err, j.via, j.fv, j.ferr))
		}
		switch {
		case errors.Is(j.err, context.Canceled):
			cancelled++
			if !j.cancel {
				bad = append(bad, fmt.Sprintf("%s: cancelled without a Cancel", j.id))
				continue
			}
			for k, c := range calls[j.id] {
				switch {
				case c.start.After(j.ce.Add(grace)):
					bad = append(bad, fmt.Sprintf("%s (%s): call %d started %v after Cancel returned", j.id, j.kind, k+1, c.start.Sub(j.ce)))
				case c.start.After(j.ce) && !c.cancelled:
					bad = append(bad, fmt.Sprintf("%s (%s): call %d started %v after Cancel returned and ran to its end", j.id, j.kind, k+1, c.start.Sub(j.ce)))
				}
			}
		case j.err != nil:
			bad = append(bad, fmt.Sprintf("%s (%s): %v", j.id, j.kind, j.err))
		default:
			cs := calls[j.id]
			if want := fmt.Sprintf("%s#%d", j.id, len(cs)); j.v != want {
				bad = append(bad, fmt.Sprintf("%s (%s): resolved with %q after %d calls", j.id, j.kind, j.v, len(cs)))
			}
			if j.cancel && len(cs) > 0 && cs[len(cs)-1].start.After(j.ce) {
				bad = append(bad, fmt.Sprintf("%s (%s): Cancel returned nil at %v, then the job ran to its outcome", j.id, j.kind, j.ce))
			}
		}
	}
	info, err := func() (*jetstream.StreamInfo, error) {
		st, err := clientsJS(t, ts).Stream(ctx, "KV_"+nsName+"_results")
		if err != nil {
			return nil, err
		}
		return st.Info(ctx)
	}()
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != jobs || info.State.Msgs != jobs {
		bad = append(bad, fmt.Sprintf("results stream: %d messages, last sequence %d, for %d jobs", info.State.Msgs, info.State.LastSeq, jobs))
	}
	t.Logf("%d jobs, %d cancelled", jobs, cancelled)
	for i, b := range bad {
		if i == 30 {
			t.Errorf("... and %d more", len(bad)-30)
			break
		}
		t.Error(b)
	}
}

func clientsJS(t *testing.T, ts *testServer) jetstream.JetStream { return ts.connect(t) }

// TestAttackSimultaneousGapResubmissions: for 16 IDs at once, a job runs
// for a second (so its claim expires about a second before its outcome);
// in that gap three clients submit the ID at the same moment. Exactly one
// submission may be accepted (a new claim), and it resolves with the kept
// outcome without running; the others fail with ErrDuplicateJob; a
// Handle.Future through another client sees the kept outcome. Then the
// accepted submission's claim expires in turn (its outcome was written
// again just after it, so the outcome outlives it by moments): a
// submission at that edge must resolve too, with the kept outcome or with
// a run of its own if the outcome expired first. Between the two, the
// outcome must outlive its first retention ("which also starts the
// outcome's retention again").
func TestAttackSimultaneousGapResubmissions(t *testing.T) {
	const ids = 16
	fx := newAttackFixture(t, 2*time.Second)
	c3 := newClient(t, fx.js, natsjobs.WithNamespace(fx.ns), natsjobs.WithRetention(2*time.Second), quiet)
	clients := []*natsjobs.Client{fx.c, fx.c2, c3}
	ctx := wctx(t, 20*time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	fail := func(format string, args ...any) {
		mu.Lock()
		bad = append(bad, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	for i := range ids {
		id := fmt.Sprint("s", i)
		wg.Go(func() {
			first := "slow/" + id
			v, err := fx.h.Submit(ctx, clients[i%3], id, first).Wait(ctx)
			if err != nil || v != first {
				fail("%s: first run: (%q, %v)", id, v, err)
				return
			}
			recorded := time.Now() // the outcome was recorded before this
			// The gap: claim gone, outcome kept.
			for {
				st, err := fx.c.Status(ctx, id)
				if errors.Is(err, natsjobs.ErrUnknownJob) || ctx.Err() != nil {
					fail("%s: no gap seen (%v)", id, err)
					return
				}
				if err == nil && st.Name == "" && st.Result != nil {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			futs := make([]*qpool.Future[string], 3)
			var sw sync.WaitGroup
			start := make(chan struct{})
			for k := range 3 {
				sw.Go(func() {
					<-start
					futs[k] = fx.h.Submit(ctx, clients[k], id, fmt.Sprintf("again%d/%s", k, id))
				})
			}
			close(start)
			sw.Wait()
			accepted := 0
			for k, f := range futs {
				v, err := f.Wait(ctx)
				switch {
				case ctx.Err() != nil:
					fail("%s: watchdog: the gap submission via %d never resolved", id, k)
					return
				case errors.Is(err, natsjobs.ErrDuplicateJob):
				case err != nil || v != first:
					fail("%s: gap submission via %d resolved with (%q, %v), not the kept outcome", id, k, v, err)
					accepted++
				default:
					accepted++
				}
			}
			if accepted != 1 {
				fail("%s: %d of 3 simultaneous gap submissions accepted", id, accepted)
			}
			if v, err := fx.h.Future(ctx, clients[(i+1)%3], id).Wait(ctx); err != nil || v != first {
				fail("%s: Handle.Future after the gap submissions: (%q, %v)", id, v, err)
			}
			// "which also starts the outcome's retention again": written
			// again in the gap (about a second after it was recorded), the
			// outcome is still there well after its first retention.
			time.Sleep(time.Until(recorded.Add(2*time.Second + 400*time.Millisecond)))
			if st, err := fx.c.Status(ctx, id); err != nil || st.Result == nil {
				fail("%s: the outcome is gone 2.4 s after it was recorded, though written again in the gap: %+v, %v", id, st, err)
			}
			// The edge of the second gap.
			for {
				st, err := fx.c.Status(ctx, id)
				if ctx.Err() != nil {
					fail("%s: watchdog: the second claim never expired", id)
					return
				}
				if errors.Is(err, natsjobs.ErrUnknownJob) || err == nil && st.Name == "" {
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
			last := "last/" + id
			v, err = fx.h.Submit(ctx, clients[(i+2)%3], id, last).Wait(ctx)
			switch {
			case ctx.Err() != nil:
				fail("%s: watchdog: the submission at the second claim's expiry never resolved", id)
			case err != nil:
				fail("%s: the submission at the second claim's expiry: %v", id, err)
			case v != first && v != last:
				fail("%s: the submission at the second claim's expiry resolved with %q", id, v)
			case v == last:
				mu.Lock()
				bad = append(bad, "") // counted below: ran because the outcome had expired
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	reran := 0
	for _, b := range bad {
		if b == "" {
			reran++
			continue
		}
		t.Error(b)
	}
	for i := range ids {
		if n := fx.ran(fmt.Sprintf("again%d/s%d", i%3, i)); n != 0 {
			t.Errorf("s%d: a gap submission ran", i)
		}
	}
	t.Logf("%d IDs; at the second claim's expiry %d ran anew (their outcome gone), the rest resolved with the kept outcome", ids, reran)
}

// TestAttackDuplicateOfHeldJob: the existing job is held back by a
// dependency not yet submitted (its claim carries no nonce: "a nonce for a
// job with no dependencies"); a duplicate submission without dependencies
// (plain, or delayed) sends its message with a nonce of its own. "A
// duplicate submission never runs": its payload must not run, neither
// then nor after the dependency is submitted, and the held job must run
// with its own payload once the dependency succeeds.
func TestAttackDuplicateOfHeldJob(t *testing.T) {
	for _, kind := range []string{"Plain", "Delayed"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			fx := newAttackFixture(t, time.Hour)
			ctx := wctx(t, 15*time.Second)
			held := fx.h.Submit(ctx, fx.c, "h", "h/held", qpool.WithDependencies("h-dep"))
			var dup *qpool.Future[string]
			if kind == "Plain" {
				dup = fx.h.Submit(ctx, fx.c2, "h", "h/dup")
			} else {
				dup = fx.h.SubmitAt(ctx, fx.c2, "h", "h/dup", time.Now().Add(200*time.Millisecond))
			}
			if _, err := dup.Wait(ctx); !errors.Is(err, natsjobs.ErrDuplicateJob) {
				t.Fatalf("the duplicate: %v", err)
			}
			time.Sleep(3 * time.Second) // past a claim wait of 2 s
			if n := fx.ran("h/dup"); n != 0 {
				t.Fatalf("the duplicate's payload ran %d times while the held job waited", n)
			}
			if _, err := fx.h.Submit(ctx, fx.c, "h-dep", "h-dep").Wait(ctx); err != nil {
				t.Fatal(err)
			}
			v, err := held.Wait(ctx)
			if ctx.Err() != nil {
				t.Fatalf("watchdog: the held job never resolved (%s)", fx.queue(t))
			}
			if err != nil || v != "h/held" {
				t.Fatalf("the held job resolved with (%q, %v)", v, err)
			}
			if n := fx.ran("h/dup"); n != 0 {
				t.Fatalf("the duplicate's payload ran %d times", n)
			}
		})
	}
}

// TestAttackGapDependentRunsAfterResolving: a submission in the gap with a
// dependency not yet submitted resolves at once with the kept outcome (the
// client hands it over). Its claim and its link stay for the retention;
// the kept outcome expires before them. When the dependency then
// succeeds, the job must not run: its submission has resolved already,
// with another outcome ("Its job does not run again while the outcome is
// kept: its future resolves with that outcome"); running it records a
// second outcome for the same submission, so its submitter and a later
// Result see two different outcomes.
func TestAttackGapDependentRunsAfterResolving(t *testing.T) {
	fx := newAttackFixture(t, 2*time.Second)
	ctx := wctx(t, 20*time.Second)
	t0 := time.Now()
	at := func() string { return fmt.Sprintf("%.2fs", time.Since(t0).Seconds()) }
	if v, err := fx.h.Submit(ctx, fx.c, "x", "slow/x").Wait(ctx); err != nil || v != "slow/x" {
		t.Fatalf("first run: (%q, %v)", v, err)
	}
	recorded := at()
	waitFor(t, 10*time.Second, "the gap", func() bool {
		st, err := fx.c.Status(ctx, "x")
		return err == nil && st.Name == "" && st.Result != nil
	})
	v, err := fx.h.Submit(ctx, fx.c2, "x", "x/gap", qpool.WithDependencies("late")).Wait(ctx)
	if err != nil || v != "slow/x" {
		t.Fatalf("the gap submission resolved with (%q, %v), not the kept outcome", v, err)
	}
	resolved := at()
	// Wait until the kept outcome expired while the gap submission's claim
	// (and link) is still there, which is how it failed: the dependency
	// then released the job. Since the gap submission writes the outcome
	// again, its claim expires first: wait for either.
	waitFor(t, 10*time.Second, "the kept outcome or the gap submission's claim to expire", func() bool {
		st, err := fx.c.Status(ctx, "x")
		return errors.Is(err, natsjobs.ErrUnknownJob) || (err == nil && (st.Result == nil || st.Name == ""))
	})
	gone := at()
	if _, err := fx.h.Submit(ctx, fx.c, "late", "late").Wait(ctx); err != nil {
		t.Fatal(err)
	}
	released := at()
	time.Sleep(time.Second)
	rec, err := fx.c.Result(wctx(t, time.Second), "x")
	var now string
	if err == nil {
		now = string(rec.Value)
	} else {
		now = err.Error()
	}
	if n := fx.ran("x/gap"); n != 0 {
		t.Fatalf("the gap submission's job ran %d times after its future had resolved: first outcome recorded by %s, "+
			"the gap submission resolved with it at %s, it expired by %s (not written again), the dependency succeeded at %s; "+
			"Result of x now: %s", n, recorded, resolved, gone, released, now)
	}
}
