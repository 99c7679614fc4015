package qpoolotel

import (
	"context"
	"errors"

	"github.com/qpool/qpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the meter and the tracer: the
// module's import path, as the OpenTelemetry guidelines ask.
const ScopeName = "github.com/qpool/qpool/otel"

// The attribute keys. The messaging.* and error.type keys are those of the
// OpenTelemetry messaging semantic conventions (v1.43.0); the qpool.* keys
// are this package's own, for what the conventions have no name for.
const (
	keyMessagingSystem        = attribute.Key("messaging.system")
	keyMessagingDestination   = attribute.Key("messaging.destination.name")
	keyMessagingOperationName = attribute.Key("messaging.operation.name")
	keyMessagingOperationType = attribute.Key("messaging.operation.type")
	keyMessagingMessageID     = attribute.Key("messaging.message.id")
	keyErrorType              = attribute.Key("error.type")

	keyOutcome    = attribute.Key("qpool.job.outcome")
	keyAttempt    = attribute.Key("qpool.job.attempt")
	keyRetryDelay = attribute.Key("qpool.job.retry.delay")

	keyEntID       = attribute.Key("qpool.entanglement.id")
	keyEntKey      = attribute.Key("qpool.entanglement.key")
	keyEntSequence = attribute.Key("qpool.entanglement.sequence")
	keyEntDeleted  = attribute.Key("qpool.entanglement.deleted")
)

// The metric names (OpenTelemetry names; the Prometheus exporter writes dots
// as underscores and adds the unit and _total suffixes, as
// docs/observability.md ("OpenTelemetry") lists).
const (
	MetricJobsSubmitted      = "qpool.jobs.submitted"       // counter {job}: submissions, rejected ones included
	MetricJobsCompleted      = "qpool.jobs.completed"       // counter {job}: resolutions, by qpool.job.outcome
	MetricJobsRetried        = "qpool.jobs.retried"         // counter {attempt}: failed attempts followed by another
	MetricJobDuration        = "qpool.job.duration"         // histogram s: submission to resolution, by qpool.job.outcome
	MetricProcessDuration    = "messaging.process.duration" // histogram s: one attempt's run time, error.type on failure
	MetricQueueDepth         = "qpool.queue.depth"          // observable up-down counter {job}: Stats.Queued
	MetricQueueOldestAge     = "qpool.queue.oldest_age"     // observable gauge s: Stats.OldestQueued
	MetricJobsRunning        = "qpool.jobs.running"         // observable up-down counter {job}: Stats.Running
	MetricJobsWaiting        = "qpool.jobs.waiting"         // observable up-down counter {job}: Stats.Waiting
	MetricWorkersLive        = "qpool.workers.live"         // observable up-down counter {worker}: Stats.Workers
	MetricWorkersLimit       = "qpool.workers.limit"        // observable up-down counter {worker}: Stats.MaxWorkers
	MetricEntanglementChange = "qpool.entanglement.changes" // counter {change}: entanglement changes recorded
)

// The span names. A job attempt's span is named after the messaging
// conventions' "{operation} {destination}": "process NAME", or "process" for
// a pool given no name.
const (
	SpanEntanglement       = "qpool.entanglement"        // an entanglement's root span, ended at once
	SpanEntanglementChange = "qpool.entanglement.change" // one recorded change, child of the root
	SpanEntanglementClose  = "qpool.entanglement.close"  // the close, child of the root
	SpanEntanglementExpire = "qpool.entanglement.expire" // the expiry, child of the root
	// EventNotRun is the event added to the submitter's span when a job
	// resolves without any attempt (canceled while queued, dependency failed,
	// rejected): no attempt span exists for it.
	EventNotRun = "qpool.job.not_run"
)

// systemName is the messaging.system value.
const systemName = "qpool"

// durationBuckets are the histogram bucket boundaries in seconds: the ones
// the messaging conventions recommend for their duration metrics. The SDK's
// default boundaries (0 to 10000) are meant for milliseconds.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// ErrNilPool is returned by [Telemetry.Register] for a nil pool.
var ErrNilPool = errors.New("qpoolotel: nil pool")

// Option configures [New].
type Option func(*config)

type config struct {
	mp    metric.MeterProvider
	tp    trace.TracerProvider
	name  string
	attrs []attribute.KeyValue
}

// WithMeterProvider sets the MeterProvider the metrics are made with. The
// default (and nil) is the global one, otel.GetMeterProvider(), taken when
// New is called; it forwards to a provider set later with
// otel.SetMeterProvider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// WithTracerProvider sets the TracerProvider the spans are made with. The
// default (and nil) is the global one, otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// WithPoolName names the pool: the name is the messaging.destination.name
// attribute of every metric and span, and the second word of the attempt
// spans' name ("process NAME"). Keep it a constant (a queue's name, not an
// ID): it is a metric label. The default is no name (no attribute).
func WithPoolName(name string) Option {
	return func(c *config) { c.name = name }
}

// WithAttributes adds constant attributes to every metric and span (a
// service's shard, say). They are metric labels: keep them few and bounded.
func WithAttributes(attrs ...attribute.KeyValue) Option {
	return func(c *config) { c.attrs = append(c.attrs, attrs...) }
}

// Telemetry reports one pool to OpenTelemetry. Make it with [New]; give
// [Telemetry.Observer] to the pool with qpool.WithObserver, call
// [Telemetry.Register] for the gauges, and give
// [Telemetry.EntanglementObserver] to entanglements with
// qpool.WithEntanglementObserver. Its methods are safe for concurrent use.
type Telemetry struct {
	tracer   trace.Tracer
	meter    metric.Meter
	spanName string

	// Precomputed attribute options: recording with a prepared attribute.Set
	// makes no allocation for the attributes on the hot path.
	base          []metric.AddOption     // constant attributes
	baseObserve   []metric.ObserveOption // the same, for the gauges
	byOutcome     [outcomeSlots][]metric.AddOption
	durByOutcome  [outcomeSlots][]metric.RecordOption
	procByOutcome [outcomeSlots][]metric.RecordOption // messaging.process.duration
	procRetried   [retryKinds][]metric.RecordOption
	spanStart     []trace.SpanStartOption // kind and constant attributes

	constAttrs []attribute.KeyValue

	submitted       metric.Int64Counter
	completed       metric.Int64Counter
	retried         metric.Int64Counter
	duration        metric.Float64Histogram
	processDuration metric.Float64Histogram
	entChanges      metric.Int64Counter

	queueDepth   metric.Int64ObservableUpDownCounter
	running      metric.Int64ObservableUpDownCounter
	waiting      metric.Int64ObservableUpDownCounter
	workersLive  metric.Int64ObservableUpDownCounter
	workersLimit metric.Int64ObservableUpDownCounter
	oldestAge    metric.Float64ObservableGauge

	retries retryTable
	ents    entTable
}

// outcomeSlots indexes the per-outcome options by qpool.Outcome (1..7), with
// slot 0 for an outcome this version does not know.
const outcomeSlots = 8

// New makes a Telemetry. It returns an error if an instrument cannot be made
// (the SDK's reason, joined); the Telemetry it returns with the error still
// works, with no-op instruments where they failed, as the OpenTelemetry API
// does.
func New(opts ...Option) (*Telemetry, error) {
	var c config
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	t := &Telemetry{
		tracer:   c.tp.Tracer(ScopeName),
		meter:    c.mp.Meter(ScopeName),
		spanName: "process",
	}
	constAttrs := []attribute.KeyValue{keyMessagingSystem.String(systemName)}
	if c.name != "" {
		constAttrs = append(constAttrs, keyMessagingDestination.String(c.name))
		t.spanName = "process " + c.name
	}
	constAttrs = append(constAttrs, c.attrs...)
	t.constAttrs = constAttrs

	base := attribute.NewSet(constAttrs...)
	t.base = []metric.AddOption{metric.WithAttributeSet(base)}
	t.baseObserve = []metric.ObserveOption{metric.WithAttributeSet(base)}
	procAttrs := append(append([]attribute.KeyValue(nil), constAttrs...),
		keyMessagingOperationName.String("process"),
		keyMessagingOperationType.String("process"))
	for i := range outcomeSlots {
		name := outcomeName(qpool.Outcome(i))
		set := attribute.NewSet(append(append([]attribute.KeyValue(nil), constAttrs...), keyOutcome.String(name))...)
		t.byOutcome[i] = []metric.AddOption{metric.WithAttributeSet(set)}
		t.durByOutcome[i] = []metric.RecordOption{metric.WithAttributeSet(set)}
		p := append([]attribute.KeyValue(nil), procAttrs...)
		if qpool.Outcome(i) != qpool.OutcomeOK {
			p = append(p, keyErrorType.String(name))
		}
		t.procByOutcome[i] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(p...))}
	}
	for k := range retryKinds {
		p := append(append([]attribute.KeyValue(nil), procAttrs...), keyErrorType.String(retryKindName[k]))
		t.procRetried[k] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(p...))}
	}
	t.spanStart = []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(append(append([]attribute.KeyValue(nil), constAttrs...),
			keyMessagingOperationName.String("process"),
			keyMessagingOperationType.String("process"))...),
	}

	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	m := t.meter
	t.submitted, err = m.Int64Counter(MetricJobsSubmitted, metric.WithUnit("{job}"),
		metric.WithDescription("Jobs submitted to the pool, rejected ones included."))
	add(err)
	t.completed, err = m.Int64Counter(MetricJobsCompleted, metric.WithUnit("{job}"),
		metric.WithDescription("Jobs resolved, by qpool.job.outcome."))
	add(err)
	t.retried, err = m.Int64Counter(MetricJobsRetried, metric.WithUnit("{attempt}"),
		metric.WithDescription("Failed attempts that were followed by another attempt."))
	add(err)
	t.duration, err = m.Float64Histogram(MetricJobDuration, metric.WithUnit("s"),
		metric.WithDescription("Time from a job's submission to its resolution, by qpool.job.outcome."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	add(err)
	t.processDuration, err = m.Float64Histogram(MetricProcessDuration, metric.WithUnit("s"),
		metric.WithDescription("Run time of one job attempt (the messaging conventions' process duration)."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	add(err)
	t.entChanges, err = m.Int64Counter(MetricEntanglementChange, metric.WithUnit("{change}"),
		metric.WithDescription("Entanglement state changes recorded."))
	add(err)
	t.queueDepth, err = m.Int64ObservableUpDownCounter(MetricQueueDepth, metric.WithUnit("{job}"),
		metric.WithDescription("Jobs in the pool's queue, waiting for a worker."))
	add(err)
	t.running, err = m.Int64ObservableUpDownCounter(MetricJobsRunning, metric.WithUnit("{job}"),
		metric.WithDescription("Jobs in their function now."))
	add(err)
	t.waiting, err = m.Int64ObservableUpDownCounter(MetricJobsWaiting, metric.WithUnit("{job}"),
		metric.WithDescription("Jobs waiting for their dependencies."))
	add(err)
	t.workersLive, err = m.Int64ObservableUpDownCounter(MetricWorkersLive, metric.WithUnit("{worker}"),
		metric.WithDescription("Live worker goroutines."))
	add(err)
	t.workersLimit, err = m.Int64ObservableUpDownCounter(MetricWorkersLimit, metric.WithUnit("{worker}"),
		metric.WithDescription("The pool's worker limit."))
	add(err)
	t.oldestAge, err = m.Float64ObservableGauge(MetricQueueOldestAge, metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest job in the queue; 0 when the queue is empty."))
	add(err)
	return t, errors.Join(errs...)
}

// Register reports p's gauges (queue depth, oldest queued age, running,
// waiting, live workers and the worker limit), read from p.Stats() when the
// MeterProvider collects, not before. It returns the function that stops
// reporting them; call it when the pool is closed. Register a pool once per
// Telemetry: two pools under one Telemetry would report under the same
// attributes.
func (t *Telemetry) Register(p *qpool.Pool) (unregister func() error, err error) {
	if p == nil {
		return nil, ErrNilPool
	}
	// The callback runs on the collecting goroutine (a scrape, a periodic
	// reader), never on the pool's hot path; Stats reads atomics and takes
	// no lock of the pool that a job could hold.
	reg, err := t.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := p.Stats()
		o.ObserveInt64(t.queueDepth, int64(s.Queued), t.baseObserve...)
		o.ObserveInt64(t.running, int64(s.Running), t.baseObserve...)
		o.ObserveInt64(t.waiting, int64(s.Waiting), t.baseObserve...)
		o.ObserveInt64(t.workersLive, int64(s.Workers), t.baseObserve...)
		o.ObserveInt64(t.workersLimit, int64(s.MaxWorkers), t.baseObserve...)
		o.ObserveFloat64(t.oldestAge, s.OldestQueued.Seconds(), t.baseObserve...)
		return nil
	}, t.queueDepth, t.running, t.waiting, t.workersLive, t.workersLimit, t.oldestAge)
	if err != nil {
		return nil, err
	}
	return reg.Unregister, nil
}

// outcomeName is the qpool.job.outcome value: the Outcome's String, or
// "unknown" for a value this version does not know.
func outcomeName(o qpool.Outcome) string {
	if o == 0 || o >= outcomeSlots {
		return "unknown"
	}
	return o.String()
}

// outcomeSlot is o's index into the per-outcome options.
func outcomeSlot(o qpool.Outcome) int {
	if o >= outcomeSlots {
		return 0
	}
	return int(o)
}
