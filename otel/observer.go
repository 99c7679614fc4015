package qpoolotel

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qpool/qpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Observer returns the job observer to give the pool with
// qpool.WithObserver. It counts submissions, completions and retries,
// records the durations, and makes a span per attempt: a child of the span
// in the context the job was submitted with (qpool.WithParent), linked to the
// previous attempt's span, and put in the job function's context so that the
// function's own spans are its children.
//
// Give it to one pool only: the retry table is keyed on JobEvent.Seq, which
// is unique within a pool, not across pools.
//
// Its functions run on the pool's goroutines (see qpool.Observer). Of this
// package's locks they take only the short one of a shard of the retry
// table, and only while some job is between a failed attempt and its next
// one; otherwise they do what the OpenTelemetry provider does when a span
// starts or ends or a measurement is recorded (the SDK does no I/O there:
// its exporters run on their own goroutines).
func (t *Telemetry) Observer() qpool.Observer {
	if t == nil {
		return qpool.Observer{}
	}
	return qpool.Observer{
		Submitted: t.submittedEvent,
		Started:   t.startedEvent,
		Retried:   t.retriedEvent,
		Finished:  t.finishedEvent,
	}
}

// attempt is the state of one running attempt. It is also the context that
// Started returns (the pool hands that context to Retried and Finished for
// the same attempt), so the common case needs no shared table and one
// allocation: it wraps the context that carries the attempt's span and
// answers the lookup of attemptKey itself.
type attempt struct {
	context.Context           // the attempt's context with its span
	seq             uint64    // the job's JobEvent.Seq: the context may reach another job's event (see attemptFrom)
	n               int       // the attempt number
	start           time.Time // the Started event's time
	span            trace.Span
	// ended is set by whichever of Retried and Finished ends the span first:
	// a job canceled during its backoff gets Finished with the context of
	// the attempt that Retried ended already.
	ended atomic.Bool
}

type attemptKey struct{}

// Value answers attemptKey with the attempt; other keys go to the context.
func (a *attempt) Value(key any) any {
	if _, ok := key.(attemptKey); ok {
		return a
	}
	return a.Context.Value(key)
}

// attemptFrom returns the attempt state in ctx if it belongs to the job seq
// and to attempt n. A job submitted from inside another job's function
// with WithParent(ctx) gets that job's context in Submitted and, if it never
// starts, in Finished: the check keeps it from ending the other job's span.
func attemptFrom(ctx context.Context, seq uint64, n int) *attempt {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	if a == nil || a.seq != seq || a.n != n {
		return nil
	}
	return a
}

// endSpan ends an attempt's span at the event's time; a span that records
// nothing ends without the option (it would be an allocation for nothing).
func endSpan(span trace.Span, at time.Time) {
	if span.IsRecording() {
		span.End(trace.WithTimestamp(at))
		return
	}
	span.End()
}

func (t *Telemetry) submittedEvent(ctx context.Context, e qpool.JobEvent) {
	t.submitted.Add(ctx, 1, t.base...)
}

func (t *Telemetry) startedEvent(ctx context.Context, e qpool.JobEvent) context.Context {
	opts := t.spanStart
	if e.Attempt > 1 {
		if prev, ok := t.retries.take(e.Seq); ok {
			opts = append(opts[:len(opts):len(opts)], trace.WithLinks(trace.Link{
				SpanContext: prev,
				Attributes:  []attribute.KeyValue{keyAttempt.Int(e.Attempt - 1)},
			}))
		}
	}
	// ctx carries the values of the WithParent context: its span, if any,
	// is the parent of every attempt's span. The span starts now, a moment
	// after e.Time: a start timestamp option would cost two allocations per
	// job even with a no-op TracerProvider.
	ctx, span := t.tracer.Start(ctx, t.spanName, opts...)
	if span.IsRecording() {
		span.SetAttributes(keyAttempt.Int(e.Attempt))
		if e.ID != "" {
			span.SetAttributes(keyMessagingMessageID.String(e.ID))
		}
	}
	return &attempt{Context: ctx, seq: e.Seq, n: e.Attempt, start: e.Time, span: span}
}

func (t *Telemetry) retriedEvent(ctx context.Context, e qpool.JobEvent) {
	t.retried.Add(ctx, 1, t.base...)
	kind := retryKindOf(e.Err)
	t.processDuration.Record(ctx, e.Duration.Seconds(), t.procRetried[kind]...)
	a := attemptFrom(ctx, e.Seq, e.Attempt)
	if a == nil || !a.ended.CompareAndSwap(false, true) {
		return
	}
	if a.span.IsRecording() {
		// Kept until the next attempt starts or the job finishes (a job
		// canceled during its backoff never starts again). A span that
		// records nothing (a no-op provider, an unsampled trace) gets no
		// link: it is never exported, so a link to it would lead nowhere.
		t.retries.put(e.Seq, a.span.SpanContext())
	}
	if a.span.IsRecording() {
		a.span.SetAttributes(
			keyErrorType.String(retryKindName[kind]),
			keyRetryDelay.Float64(e.Delay.Seconds()))
		if e.Err != nil {
			a.span.RecordError(e.Err)
			a.span.SetStatus(codes.Error, e.Err.Error())
		} else {
			a.span.SetStatus(codes.Error, retryKindName[kind])
		}
	}
	endSpan(a.span, e.Time)
}

func (t *Telemetry) finishedEvent(ctx context.Context, e qpool.JobEvent) {
	slot := outcomeSlot(e.Outcome)
	t.completed.Add(ctx, 1, t.byOutcome[slot]...)
	t.duration.Record(ctx, e.Duration.Seconds(), t.durByOutcome[slot]...)
	t.retries.drop(e.Seq)
	if e.Attempt == 0 {
		// No attempt ran, so there is no attempt span: tell the submitter's
		// span, if it is still recording.
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			attrs := []attribute.KeyValue{keyOutcome.String(outcomeName(e.Outcome))}
			if e.ID != "" {
				attrs = append(attrs, keyMessagingMessageID.String(e.ID))
			}
			span.AddEvent(EventNotRun, trace.WithTimestamp(e.Time), trace.WithAttributes(attrs...))
		}
		return
	}
	a := attemptFrom(ctx, e.Seq, e.Attempt)
	if a == nil || !a.ended.CompareAndSwap(false, true) {
		return
	}
	t.processDuration.Record(ctx, e.Time.Sub(a.start).Seconds(), t.procByOutcome[slot]...)
	if a.span.IsRecording() {
		name := outcomeName(e.Outcome)
		a.span.SetAttributes(keyOutcome.String(name))
		if e.Outcome != qpool.OutcomeOK {
			a.span.SetAttributes(keyErrorType.String(name))
			if e.Err != nil {
				a.span.RecordError(e.Err)
				a.span.SetStatus(codes.Error, e.Err.Error())
			} else {
				a.span.SetStatus(codes.Error, name)
			}
		}
	}
	endSpan(a.span, e.Time)
}

// The kinds of a retried attempt's failure, for error.type (Retried carries
// the attempt's error, not an Outcome).
const (
	retryError = iota
	retryPanic
	retryTimeout
	retryKinds
)

var retryKindName = [retryKinds]string{"error", "panic", "timeout"}

func retryKindOf(err error) int {
	var pe *qpool.PanicError
	switch {
	case errors.As(err, &pe):
		return retryPanic
	case errors.Is(err, context.DeadlineExceeded):
		return retryTimeout
	}
	return retryError
}

// retryTable holds, per retried job (keyed on JobEvent.Seq, which the pool
// never reuses), the span context of its last ended attempt, for the link
// from the next attempt's span.
//
// Invariant: an entry exists only between a Retried event and the next
// Started or the Finished of the same job; Started takes it and Finished
// drops it, so the table holds at most one entry per job in its backoff and
// nothing after a job resolves. n counts the entries so that Finished, called
// for every job, skips the lock while no job is in a backoff; n is raised
// under the shard's lock before the entry is visible, so a drop that reads 0
// cannot miss an entry of its own job (its Retried ran before its Finished on
// the pool's side).
type retryTable struct {
	n      atomic.Int64
	shards [retryShards]retryShard
}

const retryShards = 16

type retryShard struct {
	mu sync.Mutex
	m  map[uint64]trace.SpanContext
	_  [40]byte // keep shards on separate cache lines
}

func (r *retryTable) shard(seq uint64) *retryShard { return &r.shards[seq%retryShards] }

func (r *retryTable) put(seq uint64, sc trace.SpanContext) {
	s := r.shard(seq)
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[uint64]trace.SpanContext)
	}
	if _, ok := s.m[seq]; !ok {
		r.n.Add(1)
	}
	s.m[seq] = sc
	s.mu.Unlock()
}

func (r *retryTable) take(seq uint64) (trace.SpanContext, bool) {
	if r.n.Load() == 0 {
		return trace.SpanContext{}, false
	}
	s := r.shard(seq)
	s.mu.Lock()
	sc, ok := s.m[seq]
	if ok {
		delete(s.m, seq)
		r.n.Add(-1)
	}
	s.mu.Unlock()
	return sc, ok
}

func (r *retryTable) drop(seq uint64) { r.take(seq) }

// len is the number of entries, for the tests' leak check.
func (r *retryTable) len() int {
	total := 0
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		total += len(s.m)
		s.mu.Unlock()
	}
	return total
}
