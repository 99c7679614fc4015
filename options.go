package qpool

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"
)

// Defaults used by [NewPool].
const (
	// DefaultQueueSize is the queue capacity when [WithQueueSize] is not given.
	DefaultQueueSize = 4096
	// DefaultResultTTL is how long a finished job's future stays reachable by
	// ID through [Pool.Result]: not at all unless asked for with
	// [WithResultTTL]. A dropped future then frees its job's value.
	DefaultResultTTL = 0
	// DefaultDependencyWindow is how long the outcome of a finished job is
	// remembered for jobs that name it in [WithDependencies].
	DefaultDependencyWindow = time.Minute
	// DefaultIdleTimeout is how long a worker waits for a job before it exits.
	DefaultIdleTimeout = time.Second
)

// Option configures a [Pool]. Options are values: they compare with == and
// print themselves, which keeps tests and logs readable.
type Option interface {
	applyPool(*poolConfig)
}

// JobOption configures one job submitted with [Submit] or [Pool.Schedule].
type JobOption interface {
	applyJob(*jobConfig)
}

type poolConfig struct {
	workers     int
	queueSize   int
	nonBlocking bool
	ctx         context.Context
	logger      *slog.Logger
	resultTTL   time.Duration
	depWindow   time.Duration
	idleTimeout time.Duration
	observers   []Observer // WithObserver, in order
}

func newPoolConfig(opts []Option) poolConfig {
	c := poolConfig{
		workers:     runtime.GOMAXPROCS(0),
		queueSize:   DefaultQueueSize,
		ctx:         context.Background(),
		resultTTL:   DefaultResultTTL,
		depWindow:   DefaultDependencyWindow,
		idleTimeout: DefaultIdleTimeout,
	}
	for _, o := range opts {
		if o != nil {
			o.applyPool(&c)
		}
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return c
}

type workersOption int

// WithWorkers sets how many jobs run at once (default GOMAXPROCS). Values
// below 1 are clamped to 1. [Pool.Resize] changes it later.
func WithWorkers(n int) Option { return workersOption(n) }

func (o workersOption) applyPool(c *poolConfig) { c.workers = max(int(o), 1) }
func (o workersOption) String() string          { return fmt.Sprintf("WithWorkers(%d)", int(o)) }

type queueSizeOption int

// WithQueueSize sets how many accepted jobs may wait for a worker (default
// [DefaultQueueSize]). Negative values are clamped to 0: a pool with no queue
// hands each job straight to a worker, so a submitter waits (or, with
// [WithNonBlocking], fails) until one is free. A queued job that is
// cancelled keeps its slot until a worker takes it from the queue (and
// drops it without running it).
func WithQueueSize(n int) Option { return queueSizeOption(n) }

func (o queueSizeOption) applyPool(c *poolConfig) { c.queueSize = max(int(o), 0) }
func (o queueSizeOption) String() string          { return fmt.Sprintf("WithQueueSize(%d)", int(o)) }

type nonBlockingOption struct{}

// WithNonBlocking makes a submission to a full queue fail at once with
// [ErrQueueFull] instead of waiting for room. A worker whose last job has
// resolved (its future, or [Pool.Wait]) counts as free: with no queue, a
// submission that follows it is handed to that worker, not refused.
func WithNonBlocking() Option { return nonBlockingOption{} }

func (nonBlockingOption) applyPool(c *poolConfig) { c.nonBlocking = true }
func (nonBlockingOption) String() string          { return "WithNonBlocking()" }

type contextOption struct{ ctx context.Context }

// WithContext ties the pool to ctx. Jobs' contexts carry ctx's values. When
// ctx ends the pool shuts down at once: it accepts nothing more, cancels the
// running jobs and fails the queued ones with an error that wraps both
// [ErrPoolClosed] and [context.Cause] of ctx; every submission refused once
// ctx has ended gets such an error too. A nil ctx is ignored.
func WithContext(ctx context.Context) Option { return contextOption{ctx} }

func (o contextOption) applyPool(c *poolConfig) {
	if o.ctx != nil {
		c.ctx = o.ctx
	}
}
func (contextOption) String() string { return "WithContext(ctx)" }

// LoggerOption is returned by [WithLogger]. It configures a [Pool] and an
// [Entanglement] alike.
type LoggerOption struct{ logger *slog.Logger }

// WithLogger sets where recovered panics (of [Pool.Go] functions and of
// entanglement callbacks) are logged. The default is [slog.Default]; nil keeps
// the default.
func WithLogger(l *slog.Logger) LoggerOption { return LoggerOption{l} }

func (o LoggerOption) applyPool(c *poolConfig)        { c.logger = o.logger }
func (o LoggerOption) applyEntanglement(c *entConfig) { c.logger = o.logger }

// String names the option.
func (o LoggerOption) String() string { return "WithLogger(logger)" }

type resultTTLOption time.Duration

// WithResultTTL keeps a finished job whole, value included, for d after it
// ends, so that [Pool.Result] finds it by its ID (default
// [DefaultResultTTL]: not kept). Every finished job's value then stays in
// memory for d whether or not its future is still held: set it only when
// results are fetched by ID. A retained job also satisfies later
// [WithDependencies], as an outcome does within [WithDependencyWindow].
// Retained jobs are dropped lazily once their TTL has passed: by later
// submissions and lookups and by the idle reaper; and all at once by
// Close. A TTL too long to add to the clock (math.MaxInt64) keeps them
// until Close.
func WithResultTTL(d time.Duration) Option { return resultTTLOption(d) }

func (o resultTTLOption) applyPool(c *poolConfig) { c.resultTTL = max(time.Duration(o), 0) }
func (o resultTTLOption) String() string          { return fmt.Sprintf("WithResultTTL(%v)", time.Duration(o)) }

type depWindowOption time.Duration

// WithDependencyWindow sets how long the pool remembers the outcome of a
// finished job (its ID, and whether it succeeded: its error) for jobs
// submitted later that depend on it (default [DefaultDependencyWindow]).
// So a DAG submitted in order works however quickly its first jobs finish:
// a job whose dependency succeeded within the window runs, one whose
// dependency failed fails with [ErrDependencyFailed]. The outcome is all
// that is kept: the job and its value belong to the future alone. A pool
// remembers at most 65,536 outcomes, however long the window
// (math.MaxInt64 keeps each until that bound or Close): 2,048 in each of
// the 32 shards its IDs are spread over by hash, the oldest of a shard
// going first past that. So the outcomes of the last 2,048 jobs to finish
// are always remembered, and of the last 65,536 about all but those of a
// shard that filled first; hold the future, or use [WithResultTTL], for a
// dependency on a job that finished longer ago in a busy pool. A
// dependency on an ID the pool no longer knows fails with
// [ErrUnknownDependency].
//
// Zero or less keeps no outcomes: a dependency then counts only while it
// waits, queues or runs (or is retained with [WithResultTTL]), and the
// registry lets finished jobs go lazily, in sweeps that cost the workers
// nothing: the cheapest setting, for throughput workloads that have no
// dependencies on finished jobs (see docs/pool.md for the memory it keeps
// meanwhile).
func WithDependencyWindow(d time.Duration) Option { return depWindowOption(d) }

func (o depWindowOption) applyPool(c *poolConfig) { c.depWindow = max(time.Duration(o), 0) }
func (o depWindowOption) String() string {
	return fmt.Sprintf("WithDependencyWindow(%v)", time.Duration(o))
}

type idleTimeoutOption time.Duration

// WithIdleTimeout sets how long the pool waits, with nothing submitted,
// before it retires its idle workers (default [DefaultIdleTimeout]); a
// worker exits between one and two idle timeouts after the last submission.
// Workers start again on demand, so an idle pool holds no goroutines. Zero
// or less makes workers exit as soon as the queue is empty.
func WithIdleTimeout(d time.Duration) Option { return idleTimeoutOption(d) }

func (o idleTimeoutOption) applyPool(c *poolConfig) { c.idleTimeout = max(time.Duration(o), 0) }
func (o idleTimeoutOption) String() string {
	return fmt.Sprintf("WithIdleTimeout(%v)", time.Duration(o))
}

type jobConfig struct {
	pool         *Pool // the job's pool: here rather than in every job
	timeout      time.Duration
	attempts     int
	backoff      time.Duration
	retryIf      func(error) bool // nil: every error but a permanent one is retried
	deps         []string
	entanglement *Entanglement
	parent       context.Context // WithParent: values only
	withParent   context.Context // the job's context's parent when parent is set; see jobContext.parent

	// Set by a Group for its jobs (nil otherwise): the parent of the job's
	// context instead of the pool's base context (see jobContext), and
	// whom settle tells of each resolution of an accepted job.
	group     context.Context
	onResolve resolveHook
}

// resolveHook is told by settle of each resolution of an accepted job
// whose configuration names it: a Group's count of its jobs.
type resolveHook interface {
	resolved(j *job)
}

// jobConfig applies opts to a configuration of their own, or returns the
// pool's default (Pool.jobDefaults) when there are none. Jobs point to
// their configuration, so that most share one and a job stays small (a job
// is allocated per submission).
func (p *Pool) jobConfig(opts []JobOption) *jobConfig { return p.jobDefaults.with(opts) }

// with returns base itself when opts is empty, else a copy with opts
// applied.
func (base *jobConfig) with(opts []JobOption) *jobConfig {
	if len(opts) == 0 {
		return base
	}
	c := *base
	for _, o := range opts {
		if o != nil {
			o.applyJob(&c)
		}
	}
	c.attempts = max(c.attempts, 1)
	if c.parent != nil && c.pool != nil {
		// Made once per submission here, not at each lookup of a value.
		base := c.pool.baseCtx
		if c.group != nil {
			base = c.group
		}
		c.withParent = parentContext{Context: base, parent: c.parent, group: c.group != nil}
	}
	return &c
}

type timeoutOption time.Duration

// WithTimeout bounds each attempt of a job: its context ends d after the
// attempt starts, with [context.DeadlineExceeded]. Zero or less means no
// timeout.
func WithTimeout(d time.Duration) JobOption { return timeoutOption(d) }

func (o timeoutOption) applyJob(c *jobConfig) { c.timeout = max(time.Duration(o), 0) }
func (o timeoutOption) String() string        { return fmt.Sprintf("WithTimeout(%v)", time.Duration(o)) }

type retryOption struct {
	attempts int
	backoff  time.Duration
}

// WithRetry runs a failing job again, at most maxAttempts times in all.
// Between attempts the worker sleeps backoff, doubled after each attempt,
// with up to half of it added at random (jitter); the sleep ends early if the
// job is cancelled. A panic, an error marked with [Permanent], a cancelled
// job and a job of an aborting pool ([Pool.Shutdown] past its deadline, or
// the end of [WithContext]'s context, which also ends the backoff's sleep)
// are not retried; [WithRetryIf] narrows the retried errors further.
// [Pool.Close] lets a running job finish: it waits for its attempts and
// their backoffs, so bound a long backoff with Shutdown's deadline.
// maxAttempts below 1 is treated as 1.
func WithRetry(maxAttempts int, backoff time.Duration) JobOption {
	return retryOption{max(maxAttempts, 1), max(backoff, 0)}
}

func (o retryOption) applyJob(c *jobConfig) { c.attempts, c.backoff = o.attempts, o.backoff }
func (o retryOption) String() string {
	return fmt.Sprintf("WithRetry(%d, %v)", o.attempts, o.backoff)
}

type retryIfOption func(error) bool

// WithRetryIf retries a failed attempt only when retry(err) returns true,
// within the attempts [WithRetry] allows; err is the attempt's error (a
// deadline of [WithTimeout] shows as [context.DeadlineExceeded]). retry runs
// on the worker, outside every lock of the pool; a panic in it ends the job
// with a [*PanicError]. A [*PermanentError] is never retried, whatever retry
// says, and neither is a panic. A nil retry restores the default: retry
// every error.
func WithRetryIf(retry func(err error) bool) JobOption { return retryIfOption(retry) }

func (o retryIfOption) applyJob(c *jobConfig) { c.retryIf = o }
func (o retryIfOption) String() string        { return "WithRetryIf(fn)" }

type depsOption []string

// WithDependencies makes a job wait until every named job has succeeded. The
// job does not hold a worker while it waits. If a dependency fails, the job
// fails without running, with a [*DependencyError] that matches
// [ErrDependencyFailed] and the root cause, and so do the jobs that depend
// on it. A dependency that has already finished counts by its outcome,
// remembered for [WithDependencyWindow] (or by its retained result,
// [WithResultTTL]). An ID that is neither waiting, queued, running nor
// remembered fails the job with [ErrUnknownDependency]; the job's own ID
// fails it with [ErrInvalidJob].
func WithDependencies(ids ...string) JobOption { return depsOption(ids) }

func (o depsOption) applyJob(c *jobConfig) { c.deps = append(c.deps, o...) }
func (o depsOption) String() string        { return fmt.Sprintf("WithDependencies(%q)", []string(o)) }

type entanglementOption struct{ e *Entanglement }

// WithEntanglement adds the job to e (see [Entanglement.AddJob]) and makes e
// reachable from the job's context through [EntanglementFrom]. A job has one
// entanglement: given more than once, the last one counts. The job stays
// listed after it ends, so an entanglement that outlives millions of such
// jobs keeps a list entry for each; call [Entanglement.RemoveJob] to drop
// one.
func WithEntanglement(e *Entanglement) JobOption { return entanglementOption{e} }

func (o entanglementOption) applyJob(c *jobConfig) { c.entanglement = o.e }
func (o entanglementOption) String() string        { return "WithEntanglement(e)" }

// EntanglementOption configures an [Entanglement].
type EntanglementOption interface {
	applyEntanglement(*entConfig)
}

type entConfig struct {
	ledger        Ledger
	logger        *slog.Logger
	retention     int
	onExpire      func(id string)
	onChange      func(StateChange)
	onStateChange func(oldState, newState map[string]any)
	copy          func(any) any
	check         Codec // WithCodecCheck: values must encode with it
	observers     []EntanglementObserver
}

func newEntConfig(opts []EntanglementOption) entConfig {
	var c entConfig
	for _, o := range opts {
		if o != nil {
			o.applyEntanglement(&c)
		}
	}
	if c.ledger == nil {
		c.ledger = NewMemoryLedger()
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return c
}

type ledgerOption struct{ l Ledger }

// WithLedger makes the entanglement keep its state and history in l
// instead of a new [MemoryLedger]. The entanglement owns l from then on and
// closes it (or drops it, on expiry).
func WithLedger(l Ledger) EntanglementOption { return ledgerOption{l} }

func (o ledgerOption) applyEntanglement(c *entConfig) { c.ledger = o.l }
func (o ledgerOption) String() string                 { return fmt.Sprintf("WithLedger(%T)", o.l) }

type retentionOption int

// WithRetention keeps at least the last n changes of the history, and at
// most a quarter more, for long-running entanglements; the current state
// always stays whole. n ≤ 0 keeps everything (the default). Reads of
// older sequences start at the oldest retained change. Changes that the
// callbacks have yet to get are kept, however many, until delivered.
func WithRetention(n int) EntanglementOption { return retentionOption(n) }

func (o retentionOption) applyEntanglement(c *entConfig) { c.retention = max(int(o), 0) }
func (o retentionOption) String() string                 { return fmt.Sprintf("WithRetention(%d)", int(o)) }

type onExpireOption func(id string)

// WithOnExpire sets a function the reaper calls, with the entanglement's ID,
// after the TTL ran out and the state was released. A panic in it is
// recovered and logged. It may call Close, which then does not wait for
// it.
func WithOnExpire(fn func(id string)) EntanglementOption { return onExpireOption(fn) }

func (o onExpireOption) applyEntanglement(c *entConfig) { c.onExpire = o }

type onChangeOption func(StateChange)

// WithOnChange sets a callback that gets each change as a [StateChange],
// exactly once and in sequence order, with the delivery guarantees of
// OnStateChange but O(1) per change whatever the size of the state.
func WithOnChange(fn func(StateChange)) EntanglementOption { return onChangeOption(fn) }

func (o onChangeOption) applyEntanglement(c *entConfig) { c.onChange = o }

type onStateChangeOption func(oldState, newState map[string]any)

// WithOnStateChange sets the OnStateChange callback at construction; see
// [Entanglement.SetOnStateChange] to change it later.
func WithOnStateChange(fn func(oldState, newState map[string]any)) EntanglementOption {
	return onStateChangeOption(fn)
}

func (o onStateChangeOption) applyEntanglement(c *entConfig) { c.onStateChange = o }

type valueCopyOption func(any) any

// WithValueCopy makes the entanglement record copy(v) instead of v on every
// update, for values the caller keeps mutating (maps, slices): the ledger
// then holds a value nobody else can change. Without it values are stored
// as given, and mutating a stored map changes what GetState and the history
// return.
func WithValueCopy(copy func(v any) any) EntanglementOption { return valueCopyOption(copy) }

func (o valueCopyOption) applyEntanglement(c *entConfig) { c.copy = o }

type codecCheckOption struct{ c Codec }

// WithCodecCheck makes every update encode its value with c first, and
// refuse a value c cannot encode with an error wrapping [ErrEncode],
// recording nothing, as a ledger that stores values with c would. The
// in-memory ledger stores any Go value, a channel or a function included;
// boltledger and natsledger refuse what their codec cannot encode. A
// program on the in-memory ledger that may move to one of them later can
// catch such values now with WithCodecCheck(qpool.JSONCodec{}). The value
// is stored as given, not encoded: the check costs one encoding per
// update. A nil c checks nothing.
func WithCodecCheck(c Codec) EntanglementOption { return codecCheckOption{c} }

func (o codecCheckOption) applyEntanglement(c *entConfig) { c.check = o.c }
