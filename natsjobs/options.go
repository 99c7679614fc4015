package natsjobs

import (
	"log/slog"
	"time"

	"github.com/qpool/qpool"
)

// Defaults of the options.
const (
	// DefaultNamespace prefixes every stream, bucket and subject natsjobs
	// makes.
	DefaultNamespace = "qpjobs"
	// DefaultQueue is the queue of [WithQueue]'s default.
	DefaultQueue = "default"
	// DefaultRetention is how long job claims, outcomes and dependency
	// links are kept ([WithRetention]); outcomes 2 s more, so that an
	// outcome outlives its job's claim.
	DefaultRetention = 24 * time.Hour
	// minRetention is the server's shortest TTL for a bucket (a stream's
	// MaxAge): a shorter WithRetention is ErrInvalidOption.
	minRetention = 100 * time.Millisecond
	// DefaultAckWait is how long a delivered job may go without a sign of
	// life before the server gives it to another worker ([WithAckWait]).
	DefaultAckWait = 30 * time.Second
	// DefaultMaxAckPending is the fleet-wide cap on jobs delivered and not
	// yet finished ([WithMaxAckPending]).
	DefaultMaxAckPending = 1000
	// DefaultMaxDeliveries is how often a job's message may be delivered
	// without an outcome ([WithMaxDeliveries]); it counts put-backs that
	// ran nothing as well as crashes.
	DefaultMaxDeliveries = 20
	// MaxReplicas is the most replicas [WithReplicas] accepts: a JetStream
	// stream has at most five.
	MaxReplicas = 5
	// DefaultUnhandledDelay is how long a job whose name the receiving
	// worker does not know waits before it is offered again.
	DefaultUnhandledDelay = 2 * time.Second
)

// Option configures a [Client] or a [Worker]. Options that only one of
// them uses are ignored by the other.
type Option func(*config)

type config struct {
	common
	queue            string
	concurrency      int
	ackWait          time.Duration
	maxAckPending    int
	maxDeliveries    int
	unhandledDelay   time.Duration
	name             string
	logger           *slog.Logger
	beforeBegin      func(id string) // tests only (export_test.go): called before a run registers
	claimDelay       time.Duration   // tests only (export_test.go): a pause between a job's message and its claim
	openEntanglement EntanglementOpener
}

func newConfig(opts []Option) config {
	c := config{
		common:         common{ns: DefaultNamespace, codec: qpool.JSONCodec{}, retention: DefaultRetention},
		queue:          DefaultQueue,
		concurrency:    64,
		ackWait:        DefaultAckWait,
		maxAckPending:  DefaultMaxAckPending,
		maxDeliveries:  DefaultMaxDeliveries,
		unhandledDelay: DefaultUnhandledDelay,
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return c
}

// WithQueue names the queue: the one a worker takes jobs from, and the one
// a client submits to (default [DefaultQueue]). Letters, digits, '-' and
// '_' only.
func WithQueue(name string) Option { return func(c *config) { c.queue = name } }

// WithConcurrency sets how many jobs a worker runs at once (default 64;
// below 1 means 1).
func WithConcurrency(n int) Option { return func(c *config) { c.concurrency = max(n, 1) } }

// WithNamespace prefixes the streams, buckets and subjects (default
// [DefaultNamespace]); clients and workers that work together use the
// same. Letters, digits, '-' and '_' only.
func WithNamespace(ns string) Option { return func(c *config) { c.ns = ns } }

// WithCodec sets how payloads and results are encoded (default
// [qpool.JSONCodec]); clients and workers that work together use the same.
func WithCodec(codec qpool.Codec) Option {
	return func(c *config) {
		if codec != nil {
			c.codec = codec
		}
	}
}

// WithRetention sets how long the KV buckets keep job claims, outcomes and
// dependency links (default [DefaultRetention]; outcomes are kept 2 s
// longer, so that an outcome outlives its job's claim). It applies when the
// buckets are made, by the first client or worker; it also bounds how long
// an ID stays unique and how long a job may wait for its dependencies. A
// retention below 100 ms (the server's shortest TTL for a bucket) fails
// [NewClient] and [NewWorker] with [ErrInvalidOption].
func WithRetention(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.retention = d
		}
	}
}

// WithReplicas sets how many servers of a JetStream cluster hold each
// stream and bucket natsjobs makes (the queues' streams and the jobs,
// results, deps and cancels buckets), from 1 to [MaxReplicas]; 3 survives
// the loss of one server. Like [WithRetention] it applies when they are
// made, by the first client or worker: without WithReplicas a process
// makes them with one replica and uses them with whatever replicas they
// have. Given, n must match the streams and buckets that exist, or
// [NewClient] and [NewWorker] fail with [ErrConfigMismatch] (change the
// replicas of existing ones with the nats tool, then restart every
// process). A value outside 1..MaxReplicas fails them with
// [ErrInvalidOption], and so does a value above 1 where a stream or bucket
// must be made on a server that is not in a cluster. Processes that start
// together race to make them: the losers wait for the winner's (up to 15
// s) and use them, or fail with ErrConfigMismatch if their WithReplicas
// differs; processes started together with different values may so leave
// a namespace with mixed counts.
//
// With more than one replica natsjobs reads its buckets through each
// stream's leader, not with direct gets, which any replica may answer
// from behind: see docs/jobs.md ("Failure modes").
func WithReplicas(n int) Option {
	return func(c *config) {
		c.replicas, c.replicasSet = n, true
	}
}

// WithAckWait sets the queue consumer's AckWait (default
// [DefaultAckWait]): how long after a worker was last heard of its job is
// given to another worker. A worker reports progress on its running jobs
// every third of it, so a job may run much longer than AckWait; a worker
// that dies has its jobs redelivered after about AckWait. The consumer is
// shared by the fleet: the last worker to start sets it.
func WithAckWait(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.ackWait = d
		}
	}
}

// WithMaxAckPending sets the queue consumer's MaxAckPending (default
// [DefaultMaxAckPending]): the most jobs delivered to the whole fleet and
// not yet finished, a fleet-wide concurrency cap.
func WithMaxAckPending(n int) Option { return func(c *config) { c.maxAckPending = max(n, 1) } }

// WithMaxDeliveries sets how often one message of a job may be delivered
// without an outcome before the job fails with [ErrTooManyDeliveries]
// (default [DefaultMaxDeliveries]); the guard is for a job that kills its
// worker each time it runs. The count is the server's, and every delivery
// of the message counts, whatever ended the one before: the worker died,
// lost the server or shut down while it ran the job, but also a worker
// put the message back without running it (it came before its time, which
// happens about once per attempt with a backoff or SubmitAt; or the
// outcome could not be looked up or written while the server was
// unreachable; or Shutdown handed it back before it began). Each retry is
// a new message, whose count starts again, and waits for an unknown
// handler do not count. Leave room for those put-backs: a value below
// about 5 can fail jobs that never crashed a worker.
func WithMaxDeliveries(n int) Option { return func(c *config) { c.maxDeliveries = max(n, 1) } }

// WithWorkerName names a worker in the records of the jobs it finished
// (default host-pid-random).
func WithWorkerName(name string) Option { return func(c *config) { c.name = name } }

// WithLogger sets where a client or worker logs what it cannot report to a future
// (a malformed message, a failed write of an outcome that it retries).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithUnhandledDelay sets how long a worker that has no handler for a
// job's name delays it before it is offered again (default
// [DefaultUnhandledDelay]).
func WithUnhandledDelay(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.unhandledDelay = d
		}
	}
}
