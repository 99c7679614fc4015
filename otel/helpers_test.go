package qpoolotel

import (
	"context"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// harness is a Telemetry on SDK providers whose output the test reads: a
// ManualReader for the metrics and a SpanRecorder for the spans.
type harness struct {
	tel    *Telemetry
	mp     *sdkmetric.MeterProvider
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
}

func newHarness(t testing.TB, opts ...Option) *harness {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	tel, err := New(append([]Option{WithMeterProvider(mp), WithTracerProvider(tp)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &harness{tel: tel, mp: mp, reader: reader, spans: sr, tp: tp}
}

// collect reads every metric of the package's scope, by name.
func (h *harness) collect(t testing.TB) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// attrSets returns the attribute sets of every data point of m.
func attrSets(m metricdata.Metrics) []attribute.Set {
	var out []attribute.Set
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Sum[float64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	}
	return out
}

// sumBy returns an int64 sum's value per value of key ("" when absent).
func sumBy(t testing.TB, m metricdata.Metrics, key attribute.Key) map[string]int64 {
	t.Helper()
	d, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s: data %T, want Sum[int64]", m.Name, m.Data)
	}
	out := map[string]int64{}
	for _, p := range d.DataPoints {
		v, _ := p.Attributes.Value(key)
		out[v.Emit()] += p.Value
	}
	return out
}

// histCountBy returns a histogram's count per value of key.
func histCountBy(t testing.TB, m metricdata.Metrics, key attribute.Key) map[string]uint64 {
	t.Helper()
	d, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s: data %T, want Histogram[float64]", m.Name, m.Data)
	}
	out := map[string]uint64{}
	for _, p := range d.DataPoints {
		v, _ := p.Attributes.Value(key)
		out[v.Emit()] += p.Count
	}
	return out
}

// spansNamed returns the ended spans with this name, in end order.
func (h *harness) spansNamed(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range h.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// attr returns a span's attribute value as a string ("" when absent).
func attr(s sdktrace.ReadOnlySpan, key attribute.Key) (string, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value.Emit(), true
		}
	}
	return "", false
}

// attemptOf returns the qpool.job.attempt of an attempt span.
func attemptOf(t testing.TB, s sdktrace.ReadOnlySpan) string {
	t.Helper()
	v, ok := attr(s, keyAttempt)
	if !ok {
		t.Fatalf("span %s has no %s", s.Name(), keyAttempt)
	}
	return v
}

// sortByAttempt orders attempt spans by attempt number (end order may differ).
func sortByAttempt(t testing.TB, spans []sdktrace.ReadOnlySpan) {
	slices.SortFunc(spans, func(a, b sdktrace.ReadOnlySpan) int {
		return attrInt(a, keyAttempt) - attrInt(b, keyAttempt)
	})
}

func attrInt(s sdktrace.ReadOnlySpan, key attribute.Key) int {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return int(kv.Value.AsInt64())
		}
	}
	return -1
}

// wantParent fails unless child's parent is parent.
func wantParent(t testing.TB, child sdktrace.ReadOnlySpan, parent trace.SpanContext) {
	t.Helper()
	if got := child.Parent(); got.SpanID() != parent.SpanID() || got.TraceID() != parent.TraceID() {
		t.Errorf("span %s (attempt %d): parent %s/%s, want %s/%s", child.Name(), attrInt(child, keyAttempt),
			got.TraceID(), got.SpanID(), parent.TraceID(), parent.SpanID())
	}
}
