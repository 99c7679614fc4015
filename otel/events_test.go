package qpoolotel

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// These tests drive the observer with events made by hand, in the order the
// pool promises, for the cases a real pool makes only by timing: a job
// canceled during its backoff, and a job submitted from inside another job's
// function that resolves without running.

// TestCanceledDuringBackoff: Retried ends attempt 1's span; the job is then
// canceled in its backoff and Finished gets attempt 1's context again. The
// span must end once, the attempt's run time count once, and the retry
// table's entry go.
func TestCanceledDuringBackoff(t *testing.T) {
	h := newHarness(t, WithPoolName("mail"))
	o := h.tel.Observer()
	t0 := time.Now()
	ev := qpool.JobEvent{ID: "job-1", Seq: 7, Time: t0}
	o.Submitted(context.Background(), ev)
	ev.Attempt, ev.Time = 1, t0.Add(time.Millisecond)
	ctx := o.Started(context.Background(), ev)
	if !trace.SpanContextFromContext(ctx).IsValid() {
		t.Fatal("Started's context carries no span")
	}
	ev.Time, ev.Duration, ev.Err, ev.Delay = t0.Add(3*time.Millisecond), 2*time.Millisecond, errors.New("boom"), time.Second
	o.Retried(ctx, ev)
	if n := h.tel.retries.len(); n != 1 {
		t.Fatalf("retry table holds %d entries during the backoff, want 1", n)
	}
	ev.Time, ev.Duration, ev.Outcome, ev.Err = t0.Add(5*time.Millisecond), 5*time.Millisecond, qpool.OutcomeCanceled, context.Canceled
	o.Finished(ctx, ev)

	if n := h.tel.retries.len(); n != 0 {
		t.Errorf("retry table holds %d entries after Finished, want 0", n)
	}
	spans := h.spansNamed("process mail")
	if len(spans) != 1 {
		t.Fatalf("%d attempt spans ended, want 1", len(spans))
	}
	s := spans[0]
	if s.Status().Code != codes.Error {
		t.Errorf("status %v, want Error", s.Status())
	}
	if v, _ := attr(s, keyErrorType); v != "error" {
		t.Errorf("error.type %q, want %q (the retried attempt's)", v, "error")
	}
	if v, _ := attr(s, keyRetryDelay); v != "1" {
		t.Errorf("%s %q, want 1", keyRetryDelay, v)
	}
	if !s.EndTime().Equal(ev.Time.Add(-2 * time.Millisecond)) {
		t.Errorf("span ended at %v, want the Retried event's time %v", s.EndTime(), ev.Time.Add(-2*time.Millisecond))
	}
	ms := h.collect(t)
	byErr := histCountBy(t, ms[MetricProcessDuration], keyErrorType)
	if len(byErr) != 1 || byErr["error"] != 1 {
		t.Errorf("%s counts %v, want one attempt with error.type=error", MetricProcessDuration, byErr)
	}
	if got := sumBy(t, ms[MetricJobsCompleted], keyOutcome); got["canceled"] != 1 || len(got) != 1 {
		t.Errorf("%s %v, want canceled:1", MetricJobsCompleted, got)
	}
}

// TestNestedUnstartedJob: a job submitted with WithParent(ctx) from inside
// another job's function, then canceled before it starts, gets Finished with
// Attempt 0 and the other job's attempt context. It must not end the other
// job's span; it adds a not_run event to it (the submitter's span) instead.
func TestNestedUnstartedJob(t *testing.T) {
	h := newHarness(t)
	o := h.tel.Observer()
	now := time.Now()
	outer := qpool.JobEvent{ID: "outer", Seq: 1, Attempt: 1, Time: now}
	octx := o.Started(context.Background(), outer)

	inner := qpool.JobEvent{ID: "inner", Seq: 2, Time: now}
	o.Submitted(octx, inner)
	inner.Outcome, inner.Err = qpool.OutcomeDependencyFailed, qpool.ErrDependencyFailed
	o.Finished(octx, inner)
	if got := len(h.spans.Ended()); got != 0 {
		t.Fatalf("%d spans ended by the inner job's Finished, want 0 (the outer attempt runs on)", got)
	}

	outer.Outcome = qpool.OutcomeOK
	o.Finished(octx, outer)
	spans := h.spansNamed("process")
	if len(spans) != 1 {
		t.Fatalf("%d attempt spans, want 1", len(spans))
	}
	if spans[0].Status().Code == codes.Error {
		t.Errorf("outer span's status %v, want unset", spans[0].Status())
	}
	var found bool
	for _, ev := range spans[0].Events() {
		if ev.Name == EventNotRun {
			found = true
			for _, kv := range ev.Attributes {
				if kv.Key == keyMessagingMessageID && kv.Value.AsString() != "inner" {
					t.Errorf("event's job ID %q, want inner", kv.Value.AsString())
				}
				if kv.Key == keyOutcome && kv.Value.AsString() != "dependency_failed" {
					t.Errorf("event's outcome %q, want dependency_failed", kv.Value.AsString())
				}
			}
		}
	}
	if !found {
		t.Errorf("the outer span has no %s event: %v", EventNotRun, spans[0].Events())
	}
}

// TestForeignAttemptContext: Retried and Finished given a context whose
// attempt state is another job's (or another attempt's) leave its span alone.
func TestForeignAttemptContext(t *testing.T) {
	h := newHarness(t)
	o := h.tel.Observer()
	ctx := o.Started(context.Background(), qpool.JobEvent{Seq: 1, Attempt: 1, Time: time.Now()})
	o.Retried(ctx, qpool.JobEvent{Seq: 2, Attempt: 1, Time: time.Now(), Err: errors.New("x")})
	o.Finished(ctx, qpool.JobEvent{Seq: 1, Attempt: 2, Time: time.Now(), Outcome: qpool.OutcomeOK})
	if got := len(h.spans.Ended()); got != 0 {
		t.Fatalf("%d spans ended by events of other jobs/attempts, want 0", got)
	}
	if n := h.tel.retries.len(); n != 0 {
		t.Errorf("retry table holds %d entries, want 0", n)
	}
}

// TestRegisterNilPool: bad input gets the sentinel.
func TestRegisterNilPool(t *testing.T) {
	h := newHarness(t)
	if _, err := h.tel.Register(nil); !errors.Is(err, ErrNilPool) {
		t.Fatalf("Register(nil) = %v, want ErrNilPool", err)
	}
}

// TestNilTelemetry: a nil *Telemetry gives observers that do nothing.
func TestNilTelemetry(t *testing.T) {
	var tel *Telemetry
	if o := tel.Observer(); o.Started != nil || o.Finished != nil {
		t.Error("nil Telemetry's Observer has functions")
	}
	if o := tel.EntanglementObserver(); o.Changed != nil {
		t.Error("nil Telemetry's EntanglementObserver has functions")
	}
}

// TestEntanglementTableBound: entanglements that never report Closed or
// Expired (dropped, or a change delivered after the expiry) cannot grow the
// table past its bound.
func TestEntanglementTableBound(t *testing.T) {
	h := newHarness(t)
	o := h.tel.EntanglementObserver()
	for i := range maxEntanglements + 100 {
		o.Changed("ent-"+strconv.Itoa(i), qpool.StateChange{Key: "k", Timestamp: time.Now()})
	}
	if n := h.tel.entLen(); n != maxEntanglements {
		t.Fatalf("%d entanglements remembered, want the bound %d", n, maxEntanglements)
	}
	o.Closed("ent-" + strconv.Itoa(maxEntanglements+99))
	if n := h.tel.entLen(); n != maxEntanglements-1 {
		t.Fatalf("%d remembered after a Closed, want %d", n, maxEntanglements-1)
	}
}
