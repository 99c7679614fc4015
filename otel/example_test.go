package qpoolotel_test

import (
	"context"
	"fmt"
	"slices"

	"github.com/qpool/qpool"
	qpoolotel "github.com/qpool/qpool/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A pool observed with SDK providers: a job submitted under the caller's
// span, then the metrics read and the spans listed. In an application the
// providers would have exporters (examples/otel serves the metrics to
// Prometheus).
func Example() {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())

	tel, err := qpoolotel.New(
		qpoolotel.WithPoolName("mail"),
		qpoolotel.WithMeterProvider(mp),
		qpoolotel.WithTracerProvider(tp),
	)
	if err != nil {
		panic(err)
	}
	p := qpool.NewPool(qpool.WithObserver(tel.Observer()))
	unregister, err := tel.Register(p)
	if err != nil {
		panic(err)
	}
	defer unregister()

	// The submitter's span is the parent of the job's attempt span.
	ctx, span := tp.Tracer("app").Start(context.Background(), "handle request")
	f := qpool.Submit(p, "send-42", func(ctx context.Context) (string, error) {
		return "sent", nil
	}, qpool.WithParent(ctx))
	v, _ := f.Wait(ctx)
	p.Close() // waits for the observer's Finished, which ends the job's span
	span.End()

	fmt.Println("result:", v)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	var names []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			names = append(names, m.Name+" ["+m.Unit+"]")
		}
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Println("metric:", n)
	}
	for _, s := range spans.Ended() {
		fmt.Printf("span: %q, child of the request's span: %v\n", s.Name(), s.Parent().SpanID() == span.SpanContext().SpanID())
	}
	// Output:
	// result: sent
	// metric: messaging.process.duration [s]
	// metric: qpool.job.duration [s]
	// metric: qpool.jobs.completed [{job}]
	// metric: qpool.jobs.running [{job}]
	// metric: qpool.jobs.submitted [{job}]
	// metric: qpool.jobs.waiting [{job}]
	// metric: qpool.queue.depth [{job}]
	// metric: qpool.queue.oldest_age [s]
	// metric: qpool.workers.limit [{worker}]
	// metric: qpool.workers.live [{worker}]
	// span: "process mail", child of the request's span: true
	// span: "handle request", child of the request's span: false
}
