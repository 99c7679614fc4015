package qpool_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
)

// recorder is an observer that records every event, by kind.
type recorder struct {
	mu     sync.Mutex
	events []recEvent
}

type recEvent struct {
	kind string
	e    qpool.JobEvent
	ctx  context.Context
}

func (r *recorder) add(kind string, ctx context.Context, e qpool.JobEvent) {
	r.mu.Lock()
	r.events = append(r.events, recEvent{kind, e, ctx})
	r.mu.Unlock()
}

func (r *recorder) observer() qpool.Observer {
	return qpool.Observer{
		Submitted: func(ctx context.Context, e qpool.JobEvent) { r.add("submitted", ctx, e) },
		Started: func(ctx context.Context, e qpool.JobEvent) context.Context {
			r.add("started", ctx, e)
			return nil
		},
		Retried:  func(ctx context.Context, e qpool.JobEvent) { r.add("retried", ctx, e) },
		Finished: func(ctx context.Context, e qpool.JobEvent) { r.add("finished", ctx, e) },
	}
}

// byID returns the kinds of the events of the job with this ID, in order.
func (r *recorder) byID(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		if ev.e.ID == id {
			out = append(out, ev.kind)
		}
	}
	return out
}

// finished returns the Finished event of the job with this ID.
func (r *recorder) finished(t *testing.T, id string) qpool.JobEvent {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var found []qpool.JobEvent
	for _, ev := range r.events {
		if ev.e.ID == id && ev.kind == "finished" {
			found = append(found, ev.e)
		}
	}
	if len(found) != 1 {
		t.Fatalf("job %q: %d Finished events, want 1", id, len(found))
	}
	return found[0]
}

func TestObserverOutcomes(t *testing.T) {
	rec := &recorder{}
	p := qpool.NewPool(qpool.WithWorkers(2), qpool.WithObserver(rec.observer()), qpool.WithLogger(discardLogger()))
	boom := errors.New("boom")
	ok := p.Schedule("ok", func() (any, error) { return 1, nil })
	fail := p.Schedule("fail", func() (any, error) { return nil, boom })
	pan := p.Schedule("panic", func() (any, error) { panic("x") })
	tmo := qpool.Submit(p, "timeout", func(ctx context.Context) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, qpool.WithTimeout(time.Millisecond))
	retry := 0
	rt := p.Schedule("retry", func() (any, error) {
		retry++
		if retry < 3 {
			return nil, boom
		}
		return nil, nil
	}, qpool.WithRetry(3, 0))
	gate := make(chan struct{})
	blocker := qpool.Submit(p, "blocker", func(ctx context.Context) (int, error) {
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return 0, ctx.Err()
	})
	dep := p.Schedule("dep", func() (any, error) { return nil, nil }, qpool.WithDependencies("fail"))
	dup := p.Schedule("blocker", func() (any, error) { return nil, nil })
	for _, f := range []*qpool.Future[any]{ok, fail, pan, rt, dep, dup} {
		_, _ = f.Wait(context.Background())
	}
	_, _ = tmo.Wait(context.Background())
	blocker.Cancel()
	_, _ = blocker.Wait(context.Background())
	close(gate)
	if err := p.Go(func() {}); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	late := p.Schedule("late", func() (any, error) { return nil, nil })
	_, _ = late.Wait(context.Background())

	want := map[string]qpool.Outcome{
		"ok": qpool.OutcomeOK, "fail": qpool.OutcomeError, "panic": qpool.OutcomePanic,
		"timeout": qpool.OutcomeTimeout, "retry": qpool.OutcomeOK,
		"dep": qpool.OutcomeDependencyFailed, "late": qpool.OutcomeRejected,
	}
	for id, o := range want {
		if got := rec.finished(t, id).Outcome; got != o {
			t.Errorf("%s: outcome %v, want %v", id, got, o)
		}
	}
	if got := strings.Join(rec.byID("retry"), ","); got != "submitted,started,retried,started,retried,started,finished" {
		t.Errorf("retry events: %s", got)
	}
	if e := rec.finished(t, "retry"); e.Attempt != 3 {
		t.Errorf("retry: Finished attempt %d, want 3", e.Attempt)
	}
	if e := rec.finished(t, "dep"); e.Attempt != 0 || !errors.Is(e.Err, qpool.ErrDependencyFailed) {
		t.Errorf("dep: %+v", e)
	}
	// The duplicate is the second job with ID "blocker": refused after
	// Submitted, so Finished says rejected.
	var blockerOutcomes []string
	rec.mu.Lock()
	for _, ev := range rec.events {
		if ev.e.ID == "blocker" && ev.kind == "finished" {
			blockerOutcomes = append(blockerOutcomes, ev.e.Outcome.String())
		}
	}
	rec.mu.Unlock()
	sort.Strings(blockerOutcomes)
	if got := strings.Join(blockerOutcomes, ","); got != "canceled,rejected" {
		t.Errorf("blocker and its duplicate: %s", got)
	}
	if got := strings.Join(rec.byID(""), ","); got != "submitted,started,finished" {
		t.Errorf("Go function events: %s", got)
	}
	if e := rec.finished(t, "late"); !errors.Is(e.Err, qpool.ErrPoolClosed) {
		t.Errorf("late: %v", e.Err)
	}
	if got := rec.byID("late"); len(got) != 2 || got[0] != "submitted" {
		t.Errorf("late: %v", got)
	}
	// Seqs are unique.
	seen := map[uint64]string{}
	rec.mu.Lock()
	for _, ev := range rec.events {
		if ev.kind != "submitted" {
			continue
		}
		if ev.e.Seq == 0 {
			t.Errorf("%s: Seq 0", ev.e.ID)
		}
		if other, dup := seen[ev.e.Seq]; dup {
			t.Errorf("Seq %d given to %q and %q", ev.e.Seq, other, ev.e.ID)
		}
		seen[ev.e.Seq] = ev.e.ID
	}
	rec.mu.Unlock()
}

type ctxKey string

func TestObserverContexts(t *testing.T) {
	var mu sync.Mutex
	got := map[string]any{}
	note := func(k string, v any) { mu.Lock(); got[k] = v; mu.Unlock() }
	obs := qpool.Observer{
		Submitted: func(ctx context.Context, e qpool.JobEvent) { note("submitted", ctx.Value(ctxKey("trace"))) },
		Started: func(ctx context.Context, e qpool.JobEvent) context.Context {
			note("started", ctx.Value(ctxKey("trace")))
			return context.WithValue(ctx, ctxKey("span"), fmt.Sprintf("span-%d", e.Attempt))
		},
		Finished: func(ctx context.Context, e qpool.JobEvent) { note("finished", ctx.Value(ctxKey("span"))) },
	}
	poolCtx := context.WithValue(context.Background(), ctxKey("pool"), "p")
	p := qpool.NewPool(qpool.WithObserver(obs), qpool.WithContext(poolCtx))
	defer p.Close()
	parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), ctxKey("trace"), "t1"))
	cancelParent() // the job must not inherit the parent's cancellation
	f := qpool.Submit(p, "ctx", func(ctx context.Context) (string, error) {
		if ctx.Err() != nil {
			return "", fmt.Errorf("job context inherited the parent's cancellation: %w", ctx.Err())
		}
		return fmt.Sprint(ctx.Value(ctxKey("trace")), ctx.Value(ctxKey("span")), ctx.Value(ctxKey("pool"))), nil
	}, qpool.WithParent(parent))
	v, err := f.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v != "t1span-1p" {
		t.Errorf("job saw %q, want t1span-1p", v)
	}
	p.Wait()
	mu.Lock()
	defer mu.Unlock()
	if got["submitted"] != "t1" || got["started"] != "t1" || got["finished"] != "span-1" {
		t.Errorf("observer saw %v", got)
	}
}

// The function's context follows the attempt's cancellation, not the
// context Started returned, also through context.Cause.
func TestObserverStartedContextValuesOnly(t *testing.T) {
	obs := qpool.Observer{
		Started: func(ctx context.Context, e qpool.JobEvent) context.Context {
			c, cancel := context.WithCancel(context.WithValue(ctx, ctxKey("k"), "v"))
			cancel() // cancelled at once: must not reach the job
			return c
		},
	}
	p := qpool.NewPool(qpool.WithObserver(obs))
	defer p.Close()
	f := qpool.Submit(p, "a", func(ctx context.Context) (string, error) {
		if ctx.Err() != nil || context.Cause(ctx) != nil {
			return "", fmt.Errorf("cancelled: %v %v", ctx.Err(), context.Cause(ctx))
		}
		return fmt.Sprint(ctx.Value(ctxKey("k"))), nil
	})
	v, err := f.Wait(context.Background())
	if err != nil || v != "v" {
		t.Fatalf("got %q, %v", v, err)
	}
	g := qpool.Submit(p, "b", func(ctx context.Context) (error, error) {
		<-ctx.Done()
		return context.Cause(ctx), nil
	}, qpool.WithTimeout(time.Millisecond))
	cause, _ := g.Wait(context.Background())
	if !errors.Is(cause, context.DeadlineExceeded) {
		t.Fatalf("cause %v, want the attempt's deadline", cause)
	}
}

func TestLiveView(t *testing.T) {
	p := qpool.NewPool(qpool.WithWorkers(1), qpool.WithResultTTL(time.Minute))
	defer p.Close()
	gate := make(chan struct{})
	running := make(chan struct{})
	r := p.Schedule("run", func() (any, error) { close(running); <-gate; return nil, nil })
	<-running
	q := p.Schedule("queued", func() (any, error) { return nil, nil })
	w := p.Schedule("waiting", func() (any, error) { return nil, nil }, qpool.WithDependencies("queued"))
	states := map[string]qpool.JobState{}
	for _, ji := range p.Jobs(0, 0) {
		states[ji.ID] = ji.State
	}
	want := map[string]qpool.JobState{"run": qpool.JobRunning, "queued": qpool.JobQueued, "waiting": qpool.JobWaiting}
	if fmt.Sprint(states) != fmt.Sprint(want) {
		t.Fatalf("Jobs: %v, want %v", states, want)
	}
	if got := p.Jobs(qpool.JobQueued, 0); len(got) != 1 || got[0].ID != "queued" {
		t.Fatalf("Jobs(JobQueued): %v", got)
	}
	if got := p.Jobs(0, 2); len(got) != 2 {
		t.Fatalf("Jobs(0, 2): %d jobs", len(got))
	}
	if ji, ok := p.Job("run"); !ok || ji.State != qpool.JobRunning || ji.Attempt != 1 {
		t.Fatalf("Job(run): %+v %v", ji, ok)
	}
	if _, ok := p.Job("nope"); ok {
		t.Fatal("Job(nope) found")
	}
	// The queued job has been queued since before this Stats' first
	// look, and is seen so by the next.
	p.Stats()
	time.Sleep(2 * time.Millisecond)
	if s := p.Stats(); s.Queued != 1 || s.OldestQueued <= 0 {
		t.Fatalf("Stats: Queued %d, OldestQueued %v", s.Queued, s.OldestQueued)
	}
	if !p.Cancel("queued") {
		t.Fatal("Cancel(queued) = false")
	}
	if p.Cancel("queued") || p.Cancel("nope") {
		t.Fatal("Cancel of a done or unknown job = true")
	}
	close(gate)
	for _, f := range []*qpool.Future[any]{r, q, w} {
		_, _ = f.Wait(context.Background())
	}
	if ji, ok := p.Job("queued"); !ok || ji.State != qpool.JobDone || !errors.Is(ji.Err, context.Canceled) || ji.Attempt != 0 {
		t.Fatalf("Job(queued) after cancel: %+v %v", ji, ok)
	}
	if ji, ok := p.Job("run"); !ok || ji.State != qpool.JobDone || ji.Err != nil || ji.Attempt != 1 {
		t.Fatalf("Job(run) after end: %+v %v", ji, ok)
	}
	if s := p.Stats(); s.OldestQueued != 0 {
		t.Fatalf("OldestQueued %v with an empty queue", s.OldestQueued)
	}
}

func TestLiveViewObservedTimes(t *testing.T) {
	p := qpool.NewPool(qpool.WithWorkers(1), qpool.WithObserver(qpool.Observer{}))
	defer p.Close()
	gate := make(chan struct{})
	running := make(chan struct{})
	before := time.Now()
	f := p.Schedule("run", func() (any, error) { close(running); <-gate; return nil, nil }, qpool.WithRetry(2, 0))
	<-running
	ji, ok := p.Job("run")
	if !ok || ji.Submitted.Before(before) || ji.Started.Before(ji.Submitted) || ji.Attempt != 1 {
		t.Fatalf("Job(run): %+v", ji)
	}
	close(gate)
	_, _ = f.Wait(context.Background())
}

func TestEntanglementObserver(t *testing.T) {
	var mu sync.Mutex
	var log []string
	add := func(s string) { mu.Lock(); log = append(log, s); mu.Unlock() }
	obs := qpool.EntanglementObserver{
		Changed: func(id string, c qpool.StateChange) { add(fmt.Sprintf("%s:%d:%s", id, c.Sequence, c.Key)) },
		Expired: func(id string) { add("expired:" + id) },
		Closed:  func(id string) { add("closed:" + id) },
	}
	e := qpool.NewEntanglement("e1", nil, 0, qpool.WithEntanglementObserver(obs),
		qpool.WithEntanglementObserver(qpool.EntanglementObserver{Changed: func(string, qpool.StateChange) { panic("x") }}),
		qpool.WithLogger(discardLogger()))
	for _, k := range []string{"a", "b", "c"} {
		if err := e.UpdateState(k, 1); err != nil {
			t.Fatal(err)
		}
	}
	_ = e.Close()
	_ = e.Close()
	x := qpool.NewEntanglement("e2", nil, time.Millisecond, qpool.WithEntanglementObserver(obs))
	waitFor(t, x.IsExpired)
	_ = x.Close()
	mu.Lock()
	defer mu.Unlock()
	got := strings.Join(log, " ")
	if !strings.HasPrefix(got, "e1:0:a e1:1:b e1:2:c closed:e1") || !strings.Contains(got, "expired:e2") || strings.Contains(got, "closed:e2") {
		t.Fatalf("events: %s", got)
	}
}

// A group's jobs get the group's context as their parent: Submitted sees
// it, and an explicit WithParent wins and reaches the job's context.
func TestObserverGroupParent(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]any{}
	p := qpool.NewPool(qpool.WithObserver(qpool.Observer{
		Submitted: func(ctx context.Context, e qpool.JobEvent) {
			mu.Lock()
			seen[e.ID] = ctx.Value(ctxKey("who"))
			mu.Unlock()
		},
	}))
	defer p.Close()
	gctx := context.WithValue(context.Background(), ctxKey("who"), "group")
	g := qpool.NewGroup[any](gctx, p)
	g.Submit("implicit", func(ctx context.Context) (any, error) { return ctx.Value(ctxKey("who")), nil })
	own := context.WithValue(context.Background(), ctxKey("mine"), "parent")
	g.Submit("explicit", func(ctx context.Context) (any, error) {
		return fmt.Sprint(ctx.Value(ctxKey("who")), ctx.Value(ctxKey("mine"))), nil
	}, qpool.WithParent(context.WithValue(own, ctxKey("who"), "own")))
	vals, err := g.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if vals[0] != "group" || vals[1] != "groupparent" {
		t.Errorf("job contexts saw %v", vals)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["implicit"] != "group" || seen["explicit"] != "own" {
		t.Errorf("Submitted saw %v", seen)
	}
}

// TestOldestQueuedNeverOverstates: while jobs queue behind a blocked
// worker, every OldestQueued is at most the time since the submission of
// the oldest job still queued began, and once two reads have seen it
// queued the age is no longer zero.
func TestOldestQueuedNeverOverstates(t *testing.T) {
	for round := range 5 {
		p := qpool.NewPool(qpool.WithWorkers(1), qpool.WithQueueSize(1024))
		gate := make(chan struct{})
		running := make(chan struct{})
		p.Schedule("blocker", func() (any, error) { close(running); <-gate; return nil, nil })
		<-running
		var before []time.Time // before[i]: just before job i's Submit
		for i := range 20 + round {
			before = append(before, time.Now())
			p.Schedule(fmt.Sprintf("q%d", i), func() (any, error) { return nil, nil })
			if rand.IntN(3) == 0 {
				time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
			}
			s := p.Stats()
			if limit := time.Since(before[0]); s.OldestQueued > limit || s.OldestQueued < 0 {
				t.Fatalf("OldestQueued %v, the oldest job was submitted at most %v ago", s.OldestQueued, limit)
			}
		}
		time.Sleep(time.Millisecond)
		if s := p.Stats(); s.OldestQueued <= 0 || s.OldestQueued > time.Since(before[0]) {
			t.Fatalf("OldestQueued %v after the jobs sat queued, limit %v", s.OldestQueued, time.Since(before[0]))
		}
		close(gate)
		p.Wait()
		if s := p.Stats(); s.OldestQueued != 0 {
			t.Fatalf("OldestQueued %v with an empty queue", s.OldestQueued)
		}
		_ = p.Close()
	}
}

// The live view of a nil or zero pool answers without panicking.
func TestLiveViewInvalidPool(t *testing.T) {
	for _, p := range []*qpool.Pool{nil, {}} {
		if got := p.Jobs(0, 0); got != nil {
			t.Errorf("Jobs: %v", got)
		}
		if _, ok := p.Job("x"); ok {
			t.Error("Job found a job")
		}
		if p.Cancel("x") {
			t.Error("Cancel reported a job")
		}
		if s := p.Stats(); s.OldestQueued != 0 {
			t.Errorf("OldestQueued %v", s.OldestQueued)
		}
	}
	if qpool.JobState(9).String() != "JobState(9)" || qpool.Outcome(0).String() != "Outcome(0)" || qpool.OutcomeDependencyFailed.String() != "dependency_failed" {
		t.Error("String of an unknown state or outcome")
	}
}

// The pool notes the queue's position itself, each idle timeout while jobs
// are queued: the first Stats call already sees a queued job's age.
func TestOldestQueuedWithoutPolling(t *testing.T) {
	p := qpool.NewPool(qpool.WithWorkers(1), qpool.WithIdleTimeout(time.Millisecond))
	defer p.Close()
	gate := make(chan struct{})
	running := make(chan struct{})
	p.Schedule("blocker", func() (any, error) { close(running); <-gate; return nil, nil })
	<-running
	before := time.Now()
	p.Schedule("queued", func() (any, error) { return nil, nil })
	time.Sleep(50 * time.Millisecond) // many idle timeouts
	s := p.Stats()
	close(gate)
	if s.OldestQueued <= 0 || s.OldestQueued > time.Since(before) {
		t.Fatalf("OldestQueued %v on the first Stats call, %v after the submission", s.OldestQueued, time.Since(before))
	}
}

// TestObserverCancelDuringAttempt: a job cancelled while its function runs
// is OutcomeCanceled if the function then returns an error, and OutcomeOK
// if it returns nil anyway, as its future says (an adversarial review
// read the godoc's "whatever the function then returned" as canceled in
// both cases; the godoc now says which).
func TestObserverCancelDuringAttempt(t *testing.T) {
	rec := &recorder{}
	p := qpool.NewPool(qpool.WithWorkers(2), qpool.WithObserver(rec.observer()))
	defer p.Close()
	for _, c := range []struct {
		id      string
		viaPool bool
		fail    bool
		want    qpool.Outcome
	}{
		{"future-nil", false, false, qpool.OutcomeOK},
		{"future-err", false, true, qpool.OutcomeCanceled},
		{"pool-nil", true, false, qpool.OutcomeOK},
		{"pool-err", true, true, qpool.OutcomeCanceled},
	} {
		running := make(chan struct{})
		f := qpool.Submit(p, c.id, func(ctx context.Context) (int, error) {
			close(running)
			<-ctx.Done()
			if c.fail {
				return 0, ctx.Err()
			}
			return 1, nil
		})
		<-running
		if c.viaPool {
			if !p.Cancel(c.id) {
				t.Fatalf("%s: Pool.Cancel found no live job", c.id)
			}
		} else {
			f.Cancel()
		}
		_, err := f.Wait(context.Background())
		if (err != nil) != c.fail {
			t.Fatalf("%s: Wait: %v", c.id, err)
		}
		p.Wait()
		if got := rec.finished(t, c.id).Outcome; got != c.want {
			t.Errorf("%s: outcome %v, want %v", c.id, got, c.want)
		}
	}
}
