// Package qpoolotel reports the jobs and entanglements of a [qpool.Pool] to
// OpenTelemetry: metrics (counters of submitted and completed jobs, retries,
// a duration histogram in seconds, and gauges read lazily from
// [qpool.Pool.Stats]) and traces (a span per job attempt, child of the
// submitter's span, linked across retries).
//
// It is built on the OpenTelemetry API only; the application chooses the SDK
// and the exporters (the Prometheus exporter in examples/otel, for one). It
// hooks into the pool through the root module's observer API, so a pool
// without it pays nothing:
//
//	tel, err := qpoolotel.New(qpoolotel.WithPoolName("mail"))
//	if err != nil { ... }
//	p := qpool.NewPool(qpool.WithObserver(tel.Observer()))
//	unregister, err := tel.Register(p) // the gauges
//	defer unregister()
//
//	// the job's span is a child of the span in ctx:
//	qpool.Submit(p, "send-42", send, qpool.WithParent(ctx))
//
// The names, units and attributes of every metric and span are listed in
// docs/observability.md ("OpenTelemetry"). Job IDs are put on spans
// (messaging.message.id), never on metric attributes: a label per job
// would make a time series per job.
//
// One Telemetry describes one pool (its name goes on every metric and span);
// make one per pool. Telemetry values share the instruments of their
// MeterProvider, so several pools report the same metrics with different
// messaging.destination.name attributes.
package qpoolotel
