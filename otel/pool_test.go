package qpoolotel

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"
)

// These tests run real pools with the observer and read what the SDK
// recorded, as a user's exporter would.

// wantMetric says what one instrument must look like.
type wantMetric struct {
	unit string
	kind string // "counter", "updown", "gauge", "histogram"
}

var wantMetrics = map[string]wantMetric{
	MetricJobsSubmitted:      {"{job}", "counter"},
	MetricJobsCompleted:      {"{job}", "counter"},
	MetricJobsRetried:        {"{attempt}", "counter"},
	MetricJobDuration:        {"s", "histogram"},
	MetricProcessDuration:    {"s", "histogram"},
	MetricQueueDepth:         {"{job}", "updown"},
	MetricQueueOldestAge:     {"s", "gauge"},
	MetricJobsRunning:        {"{job}", "updown"},
	MetricJobsWaiting:        {"{job}", "updown"},
	MetricWorkersLive:        {"{worker}", "updown"},
	MetricWorkersLimit:       {"{worker}", "updown"},
	MetricEntanglementChange: {"{change}", "counter"},
}

func kindOf(m metricdata.Metrics) string {
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		if d.IsMonotonic {
			return "counter"
		}
		return "updown"
	case metricdata.Sum[float64]:
		if d.IsMonotonic {
			return "counter"
		}
		return "updown"
	case metricdata.Gauge[int64], metricdata.Gauge[float64]:
		return "gauge"
	case metricdata.Histogram[float64]:
		return "histogram"
	}
	return fmt.Sprintf("%T", m.Data)
}

// watchdog fails the test if it is still running after d: a hang is a
// failure, not a test timeout.
func watchdog(t *testing.T, d time.Duration) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-done:
		case <-time.After(d):
			panic(fmt.Sprintf("%s: watchdog: still running after %v", t.Name(), d))
		}
	}()
	return func() { close(done); wg.Wait() }
}

// TestMetrics runs jobs of every outcome a pool makes by itself and checks
// every metric's name, unit, kind, attributes and counts, and that no job ID
// is on any metric.
func TestMetrics(t *testing.T) {
	defer watchdog(t, 20*time.Second)()
	h := newHarness(t, WithPoolName("mail"), WithAttributes(attribute.String("shard", "eu")))
	p := qpool.NewPool(qpool.WithObserver(h.tel.Observer()))
	unregister, err := h.tel.Register(p)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unregister(); err != nil {
			t.Error(err)
		}
	}()
	ctx := context.Background()
	var ids []string
	submit := func(id string, fn func(context.Context) (int, error), opts ...qpool.JobOption) *qpool.Future[int] {
		ids = append(ids, id)
		return qpool.Submit(p, id, fn, opts...)
	}
	const nOK = 5
	var futs []*qpool.Future[int]
	for i := range nOK {
		futs = append(futs, submit("ok-"+strconv.Itoa(i), func(context.Context) (int, error) { return 1, nil }))
	}
	futs = append(futs, submit("err-1", func(context.Context) (int, error) { return 0, errors.New("failed") }))
	futs = append(futs, submit("panic-1", func(context.Context) (int, error) { panic("boom") }))
	var tries atomic.Int32
	futs = append(futs, submit("retry-1", func(context.Context) (int, error) {
		if tries.Add(1) < 3 {
			return 0, errors.New("not yet")
		}
		return 1, nil
	}, qpool.WithRetry(3, time.Millisecond)))
	futs = append(futs, submit("timeout-1", func(ctx context.Context) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, qpool.WithTimeout(time.Millisecond)))
	for _, f := range futs {
		_, _ = f.Wait(ctx)
	}
	// err-1 failed: a job depending on it fails without running.
	dep := submit("dep-1", func(context.Context) (int, error) { return 1, nil }, qpool.WithDependencies("err-1"))
	if _, err := dep.Wait(ctx); !errors.Is(err, qpool.ErrDependencyFailed) {
		t.Fatalf("dep-1: %v, want ErrDependencyFailed", err)
	}
	// A job on an unknown dependency is rejected at submission.
	rej := submit("rej-1", func(context.Context) (int, error) { return 1, nil }, qpool.WithDependencies("no-such-job"))
	rejErr := func() error { _, err := rej.Wait(ctx); return err }()
	p.Wait()

	ms := h.collect(t)
	for name, w := range wantMetrics {
		m, ok := ms[name]
		if name == MetricEntanglementChange {
			continue // no entanglement here: TestEntanglementSpans
		}
		if !ok {
			t.Errorf("metric %s missing; got %v", name, keys(ms))
			continue
		}
		if m.Unit != w.unit {
			t.Errorf("%s: unit %q, want %q", name, m.Unit, w.unit)
		}
		if k := kindOf(m); k != w.kind {
			t.Errorf("%s: kind %s, want %s", name, k, w.kind)
		}
		if m.Description == "" {
			t.Errorf("%s: no description", name)
		}
	}
	for name, m := range ms {
		if _, ok := wantMetrics[name]; !ok {
			t.Errorf("unexpected metric %s", name)
		}
		sets := attrSets(m)
		if len(sets) == 0 {
			t.Errorf("%s: no data points", name)
		}
		for _, set := range sets {
			if v, _ := set.Value(keyMessagingSystem); v.AsString() != "qpool" {
				t.Errorf("%s: messaging.system %q, want qpool", name, v.Emit())
			}
			if v, _ := set.Value(keyMessagingDestination); v.AsString() != "mail" {
				t.Errorf("%s: messaging.destination.name %q, want mail", name, v.Emit())
			}
			if v, _ := set.Value("shard"); v.AsString() != "eu" {
				t.Errorf("%s: shard %q, want eu (WithAttributes)", name, v.Emit())
			}
			// Job IDs go on spans only.
			for _, kv := range set.ToSlice() {
				if kv.Key == keyMessagingMessageID || kv.Key == keyAttempt {
					t.Errorf("%s: per-job attribute %s on a metric", name, kv.Key)
				}
				for _, id := range ids {
					if kv.Value.Emit() == id {
						t.Errorf("%s: job ID %q as the value of %s", name, id, kv.Key)
					}
				}
			}
		}
	}

	if got := sumBy(t, ms[MetricJobsSubmitted], "")[""]; got != int64(len(ids)) {
		t.Errorf("%s = %d, want %d", MetricJobsSubmitted, got, len(ids))
	}
	if got := sumBy(t, ms[MetricJobsRetried], "")[""]; got != 2 {
		t.Errorf("%s = %d, want 2", MetricJobsRetried, got)
	}
	wantOutcomes := map[string]int64{"ok": nOK + 1, "error": 1, "panic": 1, "timeout": 1, "dependency_failed": 1}
	if errors.Is(rejErr, qpool.ErrUnknownDependency) {
		wantOutcomes["rejected"] = 1
	} else {
		t.Errorf("rej-1: %v, want ErrUnknownDependency", rejErr)
	}
	gotOutcomes := sumBy(t, ms[MetricJobsCompleted], keyOutcome)
	if fmt.Sprint(gotOutcomes) != fmt.Sprint(wantOutcomes) {
		t.Errorf("%s by outcome %v, want %v", MetricJobsCompleted, gotOutcomes, wantOutcomes)
	}
	gotDur := histCountBy(t, ms[MetricJobDuration], keyOutcome)
	if fmt.Sprint(gotDur) != fmt.Sprint(wantOutcomes) {
		t.Errorf("%s counts by outcome %v, want %v", MetricJobDuration, gotDur, wantOutcomes)
	}
	// One process duration per attempt that ran: error.type absent for the
	// successes, the kind of failure otherwise (retry-1's two failed
	// attempts count as errors).
	gotProc := histCountBy(t, ms[MetricProcessDuration], keyErrorType)
	wantProc := map[string]uint64{"": nOK + 1, "error": 3, "panic": 1, "timeout": 1}
	if fmt.Sprint(gotProc) != fmt.Sprint(wantProc) {
		t.Errorf("%s counts by error.type %v, want %v", MetricProcessDuration, gotProc, wantProc)
	}
	for _, set := range attrSets(ms[MetricProcessDuration]) {
		if v, _ := set.Value(keyMessagingOperationType); v.AsString() != "process" {
			t.Errorf("%s: messaging.operation.type %q, want process", MetricProcessDuration, v.Emit())
		}
	}
	if d := ms[MetricJobDuration].Data.(metricdata.Histogram[float64]); len(d.DataPoints) > 0 {
		if b := d.DataPoints[0].Bounds; len(b) == 0 || b[0] != 0.005 || b[len(b)-1] != 10 {
			t.Errorf("%s bounds %v, want the seconds buckets 0.005..10", MetricJobDuration, b)
		}
	}
	p.Close()
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestSpans: each attempt's span is a child of the submitter's span (given
// with WithParent), is in the job function's context (a span the function
// starts is its child), and links to the previous attempt's span.
func TestSpans(t *testing.T) {
	defer watchdog(t, 20*time.Second)()
	h := newHarness(t, WithPoolName("mail"))
	p := qpool.NewPool(qpool.WithObserver(h.tel.Observer()))
	defer p.Close()
	tracer := h.tp.Tracer("test")

	ctx, submitSpan := tracer.Start(context.Background(), "submit")
	var tries atomic.Int32
	var innerParents sync.Map // attempt -> the span context the function saw
	f := qpool.Submit(p, "send-42", func(jctx context.Context) (int, error) {
		n := tries.Add(1)
		innerParents.Store(int(n), trace.SpanContextFromContext(jctx))
		_, inner := tracer.Start(jctx, "inner")
		inner.SetAttributes(attribute.Int("try", int(n)))
		inner.End()
		if n < 3 {
			return 0, errors.New("flaky")
		}
		return 42, nil
	}, qpool.WithParent(ctx), qpool.WithRetry(3, time.Millisecond))
	if v, err := f.Wait(context.Background()); err != nil || v != 42 {
		t.Fatalf("Wait = %v, %v", v, err)
	}
	submitSpan.End()
	p.Wait()

	attempts := h.spansNamed("process mail")
	if len(attempts) != 3 {
		t.Fatalf("%d attempt spans, want 3", len(attempts))
	}
	sortByAttempt(t, attempts)
	for i, s := range attempts {
		n := i + 1
		if attemptOf(t, s) != strconv.Itoa(n) {
			t.Errorf("span %d: attempt %s", i, attemptOf(t, s))
		}
		wantParent(t, s, submitSpan.SpanContext())
		if s.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("attempt %d: kind %v, want consumer", n, s.SpanKind())
		}
		for key, want := range map[attribute.Key]string{
			keyMessagingMessageID:     "send-42",
			keyMessagingSystem:        "qpool",
			keyMessagingDestination:   "mail",
			keyMessagingOperationName: "process",
			keyMessagingOperationType: "process",
		} {
			if v, _ := attr(s, key); v != want {
				t.Errorf("attempt %d: %s = %q, want %q", n, key, v, want)
			}
		}
		if n < 3 {
			if s.Status().Code != codes.Error {
				t.Errorf("attempt %d: status %v, want Error", n, s.Status())
			}
			if v, _ := attr(s, keyErrorType); v != "error" {
				t.Errorf("attempt %d: error.type %q, want error", n, v)
			}
		} else {
			if s.Status().Code == codes.Error {
				t.Errorf("attempt 3: status %v, want unset", s.Status())
			}
			if v, _ := attr(s, keyOutcome); v != "ok" {
				t.Errorf("attempt 3: outcome %q, want ok", v)
			}
		}
		// Links across retries: attempt n links to attempt n-1 only.
		links := s.Links()
		if n == 1 {
			if len(links) != 0 {
				t.Errorf("attempt 1: %d links, want 0", len(links))
			}
		} else if len(links) != 1 || links[0].SpanContext.SpanID() != attempts[i-1].SpanContext().SpanID() {
			t.Errorf("attempt %d: links %v, want one to attempt %d (%s)", n, links, n-1, attempts[i-1].SpanContext().SpanID())
		}
		// The function's context carries its attempt's span.
		v, ok := innerParents.Load(n)
		if !ok || v.(trace.SpanContext).SpanID() != s.SpanContext().SpanID() {
			t.Errorf("attempt %d: the function's context has span %v, want the attempt's %s", n, v, s.SpanContext().SpanID())
		}
	}
	inners := h.spansNamed("inner")
	if len(inners) != 3 {
		t.Fatalf("%d inner spans, want 3", len(inners))
	}
	for _, in := range inners {
		n := attrInt(in, "try")
		wantParent(t, in, attempts[n-1].SpanContext())
	}
	if n := h.tel.retries.len(); n != 0 {
		t.Errorf("retry table holds %d entries after the job finished, want 0", n)
	}
}

// TestSpanWithoutParent: a job submitted without WithParent starts a trace
// of its own; a Pool.Go function gets a span with no job ID.
func TestSpanWithoutParent(t *testing.T) {
	defer watchdog(t, 20*time.Second)()
	h := newHarness(t)
	p := qpool.NewPool(qpool.WithObserver(h.tel.Observer()))
	defer p.Close()
	if _, err := qpool.Submit(p, "solo", func(context.Context) (int, error) { return 1, nil }).Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Go(func() {}); err != nil {
		t.Fatal(err)
	}
	p.Wait()
	spans := h.spansNamed("process")
	if len(spans) != 2 {
		t.Fatalf("%d spans named process, want 2", len(spans))
	}
	var withID, withoutID int
	for _, s := range spans {
		if s.Parent().IsValid() {
			t.Errorf("span has parent %s, want a root span", s.Parent().SpanID())
		}
		if v, ok := attr(s, keyMessagingMessageID); ok {
			if v != "solo" {
				t.Errorf("job ID %q, want solo", v)
			}
			withID++
		} else {
			withoutID++
		}
	}
	if withID != 1 || withoutID != 1 {
		t.Errorf("%d spans with a job ID and %d without, want 1 and 1", withID, withoutID)
	}
}

// TestGauges: the gauges read Pool.Stats when collected; Unregister stops
// them.
func TestGauges(t *testing.T) {
	defer watchdog(t, 20*time.Second)()
	h := newHarness(t, WithPoolName("mail"))
	p := qpool.NewPool(qpool.WithWorkers(1), qpool.WithObserver(h.tel.Observer()))
	defer p.Close()
	unregister, err := h.tel.Register(p)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	started := make(chan struct{})
	first := p.Schedule("block", func() (any, error) { close(started); <-release; return nil, nil })
	<-started
	const queued = 3
	for i := range queued {
		p.Schedule("q-"+strconv.Itoa(i), func() (any, error) { return nil, nil })
	}
	gauge := func(ms map[string]metricdata.Metrics, name string) float64 {
		t.Helper()
		switch d := ms[name].Data.(type) {
		case metricdata.Sum[int64]:
			if len(d.DataPoints) == 1 {
				return float64(d.DataPoints[0].Value)
			}
		case metricdata.Gauge[float64]:
			if len(d.DataPoints) == 1 {
				return d.DataPoints[0].Value
			}
		}
		t.Fatalf("%s: want one data point, got %+v", name, ms[name].Data)
		return 0
	}
	// Stats.OldestQueued is a lower bound from the queue positions stamped
	// at each Stats call: the first call after a quiet spell reports 0, so
	// collect once to stamp and once to read the age.
	h.collect(t)
	ms := h.collect(t)
	if v := gauge(ms, MetricQueueDepth); v != queued {
		t.Errorf("%s = %v, want %d", MetricQueueDepth, v, queued)
	}
	if v := gauge(ms, MetricJobsRunning); v != 1 {
		t.Errorf("%s = %v, want 1", MetricJobsRunning, v)
	}
	if v := gauge(ms, MetricWorkersLimit); v != 1 {
		t.Errorf("%s = %v, want 1", MetricWorkersLimit, v)
	}
	if v := gauge(ms, MetricWorkersLive); v != 1 {
		t.Errorf("%s = %v, want 1", MetricWorkersLive, v)
	}
	if v := gauge(ms, MetricQueueOldestAge); v <= 0 {
		t.Errorf("%s = %v with %d jobs queued, want > 0", MetricQueueOldestAge, v, queued)
	}
	if v := gauge(ms, MetricJobsWaiting); v != 0 {
		t.Errorf("%s = %v, want 0", MetricJobsWaiting, v)
	}
	close(release)
	_, _ = first.Wait(context.Background())
	p.Wait()
	ms = h.collect(t)
	if v := gauge(ms, MetricQueueDepth); v != 0 {
		t.Errorf("after Wait: %s = %v, want 0", MetricQueueDepth, v)
	}
	if v := gauge(ms, MetricQueueOldestAge); v != 0 {
		t.Errorf("after Wait: %s = %v, want 0", MetricQueueOldestAge, v)
	}
	if err := unregister(); err != nil {
		t.Fatal(err)
	}
	ms = h.collect(t)
	for _, name := range []string{MetricQueueDepth, MetricQueueOldestAge, MetricJobsRunning, MetricWorkersLive} {
		if sets := attrSets(ms[name]); len(sets) != 0 {
			t.Errorf("after unregister: %s still has %d data points", name, len(sets))
		}
	}
}

// TestNoLeakHammer: many submitters, flaky jobs with retries, cancels at
// random times and a close while jobs run; afterwards every attempt span
// that started has ended and the retry table is empty.
func TestNoLeakHammer(t *testing.T) {
	defer watchdog(t, 30*time.Second)()
	for round := range 8 {
		h := newHarness(t)
		p := qpool.NewPool(qpool.WithWorkers(4), qpool.WithObserver(h.tel.Observer()))
		var wg sync.WaitGroup
		const submitters, perSubmitter = 8, 40
		for g := range submitters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				for i := range perSubmitter {
					fail := r.IntN(3)
					var tries atomic.Int32
					f := qpool.Submit(p, fmt.Sprintf("r%d-g%d-%d", round, g, i), func(ctx context.Context) (int, error) {
						if r := rand.IntN(4); r == 0 {
							time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
						}
						if int(tries.Add(1)) <= fail {
							return 0, errors.New("flaky")
						}
						return 1, nil
					}, qpool.WithRetry(3, time.Duration(r.IntN(500))*time.Microsecond))
					if r.IntN(5) == 0 {
						go f.Cancel()
					}
				}
			}()
		}
		wg.Wait()
		if round%2 == 1 {
			p.Close() // close while jobs run or back off
		} else {
			p.Wait()
			p.Close()
		}
		var started, ended int
		for _, s := range h.spans.Started() {
			if s.Name() == "process" {
				started++
			}
		}
		ended = len(h.spansNamed("process"))
		if started != ended {
			t.Errorf("round %d: %d attempt spans started, %d ended", round, started, ended)
		}
		if n := h.tel.retries.len(); n != 0 {
			t.Errorf("round %d: retry table holds %d entries after Close", round, n)
		}
		if n := h.tel.retries.n.Load(); n != 0 {
			t.Errorf("round %d: retry table count %d after Close, want 0", round, n)
		}
		ms := h.collect(t)
		sub := sumBy(t, ms[MetricJobsSubmitted], "")[""]
		var done int64
		for _, v := range sumBy(t, ms[MetricJobsCompleted], keyOutcome) {
			done += v
		}
		if sub != submitters*perSubmitter || done != sub {
			t.Errorf("round %d: %d submitted, %d completed, want %d each", round, sub, done, submitters*perSubmitter)
		}
	}
}

// TestEntanglementSpans: each change is a short span, child of the
// entanglement's root span, with ID, key, sequence and deletion but no
// value; the close is a span too, and the entanglement is then forgotten.
func TestEntanglementSpans(t *testing.T) {
	defer watchdog(t, 20*time.Second)()
	h := newHarness(t, WithPoolName("mail"))
	e := qpool.NewEntanglement("order-7", nil, time.Hour, qpool.WithEntanglementObserver(h.tel.EntanglementObserver()))
	if err := e.UpdateState("status", "secret-value"); err != nil {
		t.Fatal(err)
	}
	if err := e.UpdateState("total", 12); err != nil {
		t.Fatal(err)
	}
	if err := e.DeleteState("status"); err != nil {
		t.Fatal(err)
	}
	// Changed rides the entanglement's change delivery, which may run on
	// another goroutine, and a change not yet delivered when the
	// entanglement closes is never delivered: wait for the three before
	// closing, bounded by the watchdog.
	for len(h.spansNamed(SpanEntanglementChange)) < 3 {
		time.Sleep(time.Millisecond)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for len(h.spansNamed(SpanEntanglementClose)) == 0 {
		time.Sleep(time.Millisecond)
	}
	roots := h.spansNamed(SpanEntanglement)
	if len(roots) != 1 {
		t.Fatalf("%d root spans, want 1", len(roots))
	}
	root := roots[0]
	if root.Parent().IsValid() {
		t.Errorf("root span has a parent")
	}
	if v, _ := attr(root, keyEntID); v != "order-7" {
		t.Errorf("root %s = %q", keyEntID, v)
	}
	changes := h.spansNamed(SpanEntanglementChange)
	if len(changes) != 3 {
		t.Fatalf("%d change spans, want 3", len(changes))
	}
	want := []struct{ key, seq, deleted string }{{"status", "0", "false"}, {"total", "1", "false"}, {"status", "2", "true"}}
	for i, s := range changes {
		wantParent(t, s, root.SpanContext())
		got := struct{ key, seq, deleted string }{}
		got.key, _ = attr(s, keyEntKey)
		got.seq, _ = attr(s, keyEntSequence)
		got.deleted, _ = attr(s, keyEntDeleted)
		if got != want[i] {
			t.Errorf("change %d: %+v, want %+v", i, got, want[i])
		}
		if v, _ := attr(s, keyEntID); v != "order-7" {
			t.Errorf("change %d: %s = %q", i, keyEntID, v)
		}
		for _, kv := range s.Attributes() {
			if kv.Value.Emit() == "secret-value" {
				t.Errorf("change %d: the value is on the span as %s", i, kv.Key)
			}
		}
	}
	wantParent(t, h.spansNamed(SpanEntanglementClose)[0], root.SpanContext())
	if n := h.tel.entLen(); n != 0 {
		t.Errorf("%d entanglements remembered after Close, want 0", n)
	}
	ms := h.collect(t)
	if got := sumBy(t, ms[MetricEntanglementChange], "")[""]; got != 3 {
		t.Errorf("%s = %d, want 3", MetricEntanglementChange, got)
	}
	if m := ms[MetricEntanglementChange]; m.Unit != "{change}" {
		t.Errorf("%s unit %q", MetricEntanglementChange, m.Unit)
	}
}

// TestEntanglementExpire: an expiry is a span and forgets the entanglement.
func TestEntanglementExpire(t *testing.T) {
	defer watchdog(t, 20*time.Second)()
	h := newHarness(t)
	e := qpool.NewEntanglement("short", nil, 20*time.Millisecond, qpool.WithEntanglementObserver(h.tel.EntanglementObserver()))
	defer e.Close()
	if err := e.UpdateState("k", 1); err != nil {
		t.Fatal(err)
	}
	for len(h.spansNamed(SpanEntanglementChange)) == 0 {
		time.Sleep(time.Millisecond)
	}
	for len(h.spansNamed(SpanEntanglementExpire)) == 0 {
		time.Sleep(time.Millisecond)
	}
	roots := h.spansNamed(SpanEntanglement)
	if len(roots) != 1 {
		t.Fatalf("%d root spans, want 1", len(roots))
	}
	wantParent(t, h.spansNamed(SpanEntanglementExpire)[0], roots[0].SpanContext())
	if n := h.tel.entLen(); n != 0 {
		t.Errorf("%d entanglements remembered after expiry, want 0", n)
	}
}

// TestTwoPools: two Telemetry values on one MeterProvider report two pools
// under the same metrics, told apart by messaging.destination.name.
func TestTwoPools(t *testing.T) {
	defer watchdog(t, 20*time.Second)()
	h := newHarness(t, WithPoolName("a"))
	telB, err := New(WithMeterProvider(h.mp), WithTracerProvider(h.tp), WithPoolName("b"))
	if err != nil {
		t.Fatal(err)
	}
	pa := qpool.NewPool(qpool.WithObserver(h.tel.Observer()))
	defer pa.Close()
	pb := qpool.NewPool(qpool.WithObserver(telB.Observer()))
	defer pb.Close()
	for _, r := range []struct {
		tel *Telemetry
		p   *qpool.Pool
	}{{h.tel, pa}, {telB, pb}} {
		unregister, err := r.tel.Register(r.p)
		if err != nil {
			t.Fatal(err)
		}
		defer unregister()
	}
	fn := func(context.Context) (int, error) { return 1, nil }
	for i := range 3 {
		qpool.Submit(pa, "a-"+strconv.Itoa(i), fn)
	}
	qpool.Submit(pb, "b-0", fn)
	pa.Wait()
	pb.Wait()
	ms := h.collect(t)
	if got := sumBy(t, ms[MetricJobsSubmitted], keyMessagingDestination); fmt.Sprint(got) != "map[a:3 b:1]" {
		t.Errorf("%s by pool %v, want map[a:3 b:1]", MetricJobsSubmitted, got)
	}
	if got := sumBy(t, ms[MetricWorkersLimit], keyMessagingDestination); len(got) != 2 || got["a"] == 0 || got["b"] == 0 {
		t.Errorf("%s by pool %v, want one data point per pool", MetricWorkersLimit, got)
	}
}
