package qpool

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// Observer receives a pool's job lifecycle events: give it to [NewPool]
// with [WithObserver]. Every field is optional, and no event is built for
// a field no observer sets. A pool without an observer pays one nil check
// per submission and per attempt; a pool with one records each job's
// submission and attempt times (a clock read each, and one allocation per
// job), which [Pool.Jobs] reports too (docs/observability.md has the
// measurements).
//
// Each function is called outside every lock of the pool, on the
// goroutine named in its field's comment: the submitter's for Submitted,
// the job's worker for Started and Retried, and for Finished whichever
// goroutine resolves the job (its worker once it has run; otherwise the
// goroutine that cancelled it, the dependency that failed it, or the one
// that closed the pool). So a slow observer delays only that goroutine:
// a slow Submitted delays the Submit call that made it; a slow Started or
// Retried delays the attempt that follows and holds the worker; a slow
// Finished holds the goroutine that resolved the job, and [Pool.Wait],
// [Pool.Close] and [Pool.Shutdown], which wait for it, but not the job's
// [Future], which is resolved before Finished is called. Nothing else of
// the pool waits for an observer.
//
// A panic in an observer function is recovered and logged with the pool's
// logger ([WithLogger]); the job, and the other observers, are unaffected.
// An observer may call the pool's methods (Stats, Jobs, Job, Submit...),
// but not Wait, Close or Shutdown, which wait for it; a Submit from
// Started, Retried or Finished that blocks on a full queue blocks the
// worker that called it.
//
// Events of one job come in the order Submitted, then for each attempt
// Started and, unless it is the last, Retried, then Finished; each has
// returned before the next is called. Events of different jobs come in
// any order, concurrently. Once [Pool.Close], or a [Pool.Shutdown] that
// returns nil, has returned, no observer function is called again except
// for submissions made after it, which are rejected on their submitter's
// goroutine (Submitted with an error, then Finished with
// [OutcomeRejected]). A Shutdown that returns an error leaves running jobs
// behind, whose Finished comes when they end.
type Observer struct {
	// Submitted is called once per job submitted with [Submit],
	// [Pool.Schedule] or [Group.Go] (and [Group.Submit]), and once per
	// function given to [Pool.Go] (with ID ""), on the submitter's
	// goroutine, before the job can start. ctx is the context given with
	// [WithParent] (the group's context for a group's job), or
	// [context.Background]. e.Err is set when the submission was refused
	// before the job was registered (an invalid ID or function, a closed
	// pool, a closed or cancelled group); a refusal found after this call
	// (a duplicate ID, an unknown dependency, a full queue with
	// [WithNonBlocking], the pool closing while the submitter waits for
	// room) is reported by Finished with [OutcomeRejected].
	Submitted func(ctx context.Context, e JobEvent)
	// Started is called on the worker before each attempt of a job runs.
	// ctx is the attempt's context (it carries the values of the
	// [WithParent] context and, with [WithTimeout], the attempt's
	// deadline). The context it returns (nil: ctx unchanged) is the one
	// the job's function receives for this attempt, and the one passed to
	// Retried and Finished for it. Only its values are used: the
	// function's context still ends when the pool ends the attempt, not
	// when the returned context ends. A [Pool.Go] function takes no
	// context: the returned context only reaches Retried and Finished.
	Started func(ctx context.Context, e JobEvent) context.Context
	// Retried is called on the worker after a failed attempt that the
	// job's retry policy will follow with another, before the backoff
	// sleep (e.Delay). A job cancelled during that sleep makes no further
	// attempt: Finished follows with the same Attempt.
	Retried func(ctx context.Context, e JobEvent)
	// Finished is called once per job when it resolves, whatever the way:
	// also for jobs that never started (cancelled while waiting or queued,
	// failed by a dependency, failed by a closing pool, refused at
	// submission); then ctx is the Submitted context and e.Attempt is 0.
	// It is called after the job's future has resolved.
	Finished func(ctx context.Context, e JobEvent)
}

// JobEvent describes one lifecycle event of a job.
type JobEvent struct {
	ID       string        // the job's ID; "" for a Pool.Go function
	Seq      uint64        // unique per submission in this pool, from 1 (never reused): key per-job state on it
	Attempt  int           // 1-based attempt for Started, Retried and Finished; 0 if it never started
	Time     time.Time     // when the event happened
	Duration time.Duration // Retried: the attempt's run time; Finished: the time since Submitted
	Outcome  Outcome       // Finished only
	Err      error         // Retried and Finished: the attempt's or job's error; Submitted: the refusal
	Delay    time.Duration // Retried: the backoff before the next attempt
}

// Outcome is how a job ended, as [Observer.Finished] reports it.
type Outcome uint8

// Outcomes. Exactly one applies to each finished job.
const (
	// OutcomeOK: the job's last attempt returned a nil error.
	OutcomeOK Outcome = iota + 1
	// OutcomeError: the job's function returned an error (none of the
	// cases below), or called runtime.Goexit ([ErrGoexit]).
	OutcomeError
	// OutcomePanic: the function panicked (or the [WithRetryIf] predicate
	// did): the error is a [*PanicError].
	OutcomePanic
	// OutcomeCanceled: [Future.Cancel], [Pool.Cancel], the pool's context,
	// a Shutdown past its deadline, or the job's group ended the job:
	// before it started, during a retry's backoff, or during the attempt
	// when the function then returned an error. A function that returns
	// nil although its context was cancelled succeeded, and its future
	// says so: that is OutcomeOK.
	OutcomeCanceled
	// OutcomeTimeout: [WithTimeout]'s deadline ended the last attempt,
	// which returned an error matching [context.DeadlineExceeded].
	OutcomeTimeout
	// OutcomeDependencyFailed: a dependency failed, so the job never ran
	// ([ErrDependencyFailed]).
	OutcomeDependencyFailed
	// OutcomeRejected: refused at submission (invalid job, duplicate ID,
	// unknown dependency, pool closed, queue full...): it never ran.
	OutcomeRejected
)

var outcomeNames = [...]string{"", "ok", "error", "panic", "canceled", "timeout", "dependency_failed", "rejected"}

// String returns the outcome's name: "ok", "error", "panic", "canceled",
// "timeout", "dependency_failed" or "rejected" (fit for a metric label).
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) && o != 0 {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

type observerOption struct{ o Observer }

// WithObserver registers o for the pool's job lifecycle events (see
// [Observer]). Several WithObserver options add several observers, called
// in the order given, each event to all of them. With an observer the pool
// also records each job's submission and start times, which [Pool.Jobs]
// and [Pool.Job] then report: WithObserver(Observer{}) turns on just that.
func WithObserver(o Observer) Option { return observerOption{o} }

func (o observerOption) applyPool(c *poolConfig) { c.observers = append(c.observers, o.o) }
func (o observerOption) String() string          { return "WithObserver(observer)" }

type parentOption struct{ ctx context.Context }

// WithParent makes parent the job's parent context: the job's context
// carries parent's values (looked up before the pool's context's), not its
// cancellation or deadline, and [Observer.Submitted] gets parent as its
// context. It is how a value such as a trace span crosses from the
// submitter to the job, as Submit takes no context of its own. A nil
// parent is ignored. A [Group]'s jobs get the group's context as their
// parent unless they are given one.
func WithParent(parent context.Context) JobOption { return parentOption{parent} }

func (o parentOption) applyJob(c *jobConfig) {
	if o.ctx != nil {
		c.parent = o.ctx
	}
}
func (parentOption) String() string { return "WithParent(ctx)" }

// observerSet is a pool's observers, kept apart from the pool so that a
// pool without one holds a nil pointer and nothing else.
type observerSet struct {
	list  []Observer
	seq   atomic.Uint64 // the last Seq given
	epoch time.Time     // with a monotonic reading: jobs' times are kept as offsets from it
	// Whether any observer has each function: the pool skips the work of
	// building an event nobody wants.
	submitted, started, retried, finished bool
}

func newObserverSet(list []Observer) *observerSet {
	if len(list) == 0 {
		return nil
	}
	s := &observerSet{list: list, epoch: time.Now()}
	for _, o := range list {
		s.submitted = s.submitted || o.Submitted != nil
		s.started = s.started || o.Started != nil
		s.retried = s.retried || o.Retried != nil
		s.finished = s.finished || o.Finished != nil
	}
	return s
}

// jobObs is what the pool records of one job for its observers and the
// live view. An observed job has one from its submission; an unobserved
// one only from its second attempt (the attempt count, for the live view).
type jobObs struct {
	seq    uint64          // 0 when unobserved
	parent context.Context // the Submitted context; nil when unobserved
	// The times, as offsets from the observers' epoch (see
	// observerSet.now): 8 bytes each instead of a time.Time's 24, and
	// read from the monotonic clock only. 0 when not recorded.
	submitted int64
	started   atomic.Int64 // the current attempt's start
	attempt   atomic.Int32 // attempts started so far
	rejected  atomic.Bool  // refused after Submitted: Finished reports OutcomeRejected

	// Written and read only by the goroutine that runs the job's attempts,
	// which is also the one that resolves a job that has run.
	timedOut bool // the last attempt ended by its own timeout
	canceled bool // the last attempt ended with the job's context cancelled

	announced bool // Submitted was called; written and read by the submitter only

	ctx context.Context // the last attempt's context, as Started returned it; as timedOut
}

// now returns the time since the epoch, at least 1 (0 means "not
// recorded"), and the time it stands for.
func (s *observerSet) now() (int64, time.Time) {
	d := max(time.Since(s.epoch), 1)
	return int64(d), s.epoch.Add(d)
}

// at returns the time that offset d stands for.
func (s *observerSet) at(d int64) time.Time { return s.epoch.Add(time.Duration(d)) }

// obsOf returns j's record, or nil.
func (j *job) obsOf() *jobObs {
	if x := j.extra.Load(); x != nil {
		return x.obs.Load()
	}
	return nil
}

// obsFor returns j's record, making it if needed (a job's attempts, and
// before that its submitter, are the only makers, one after the other).
func (j *job) obsFor() *jobObs {
	x := j.more()
	if o := x.obs.Load(); o != nil {
		return o
	}
	o := new(jobObs)
	x.obs.Store(o)
	return o
}

// observeNew gives a job just submitted its record: its Seq, its parent
// context and its submission time. A group's job comes with a record that
// holds the group's context as its parent (see Group.submit), used when
// the job has no parent of its own.
func (p *Pool) observeNew(j *job) *jobObs {
	o := j.obsOf()
	var fresh *observedExtra
	if o == nil {
		fresh = new(observedExtra)
		o = &fresh.o
	}
	o.seq = p.obs.seq.Add(1)
	o.submitted, _ = p.obs.now()
	switch {
	case j.cfg != nil && j.cfg.parent != nil:
		o.parent = j.cfg.parent
	case j.cfg != nil && j.cfg.group != nil:
		o.parent = j.cfg.group // a group's job: the group's context, unless WithParent
	case o.parent == nil:
		o.parent = context.Background()
	}
	if fresh != nil {
		fresh.x.obs.Store(o)
		if !j.extra.CompareAndSwap(nil, &fresh.x) {
			j.extra.Load().obs.Store(o) // has an extra part already
		}
	}
	return o
}

// observedExtra is an observed job's extra part and record in one
// allocation.
type observedExtra struct {
	x jobExtra
	o jobObs
}

// announce calls Submitted for j, once. err is the refusal, if any.
func (p *Pool) announce(j *job, o *jobObs, err error) {
	if o.announced {
		return
	}
	o.announced = true
	if !p.obs.submitted {
		return
	}
	e := JobEvent{ID: j.id, Seq: o.seq, Time: p.obs.at(o.submitted), Err: err}
	for i := range p.obs.list {
		if f := p.obs.list[i].Submitted; f != nil {
			p.callEvent("Submitted", f, o.parent, e)
		}
	}
}

// observeRefused reports a job refused at submission, resolved already:
// Submitted (unless it was called) and Finished with OutcomeRejected. It
// runs on the submitter's goroutine.
func (p *Pool) observeRefused(j *job, err error) {
	o := j.obsOf()
	if o == nil || o.seq == 0 {
		o = p.observeNew(j)
	}
	p.announce(j, o, err)
	p.finishedEvent(j, o, OutcomeRejected, err)
}

// observeStart records the start of attempt n of j and calls Started. It
// returns the context the attempt's function receives.
func (p *Pool) observeStart(ctx context.Context, j *job, o *jobObs, n int) context.Context {
	d, now := p.obs.now()
	o.attempt.Store(int32(n))
	o.started.Store(d)
	o.ctx = ctx
	if !p.obs.started {
		return ctx
	}
	e := JobEvent{ID: j.id, Seq: o.seq, Attempt: n, Time: now}
	fctx := ctx
	for i := range p.obs.list {
		if f := p.obs.list[i].Started; f != nil {
			if c := p.callStarted(f, fctx, e); c != nil {
				fctx = c
			}
		}
	}
	if fctx == ctx {
		return ctx
	}
	o.ctx = fctx
	return valuesContext{Context: ctx, values: fctx}
}

// observeEnd records how attempt ended: by its own timeout, or with the
// job's context cancelled. actx is the attempt's context (with its
// timeout), jctx the job's.
func (o *jobObs) observeEnd(actx, jctx context.Context, timeout bool, err error) {
	o.canceled = jctx.Err() != nil
	o.timedOut = timeout && !o.canceled && errors.Is(err, context.DeadlineExceeded) &&
		errors.Is(actx.Err(), context.DeadlineExceeded)
}

// observeRetry calls Retried for attempt n of j, which failed with err
// and will be followed by another after delay.
func (p *Pool) observeRetry(j *job, o *jobObs, n int, err error, delay time.Duration) {
	if !p.obs.retried {
		return
	}
	d, now := p.obs.now()
	e := JobEvent{ID: j.id, Seq: o.seq, Attempt: n, Time: now, Err: err, Delay: delay,
		Duration: time.Duration(d - o.started.Load())}
	for i := range p.obs.list {
		if f := p.obs.list[i].Retried; f != nil {
			p.callEvent("Retried", f, o.ctx, e)
		}
	}
}

// observeFinished calls Finished for j, resolved with err. It runs on the
// goroutine that resolved j, after j's waiters were woken and before the
// pool counts j finished (so Close waits for it).
func (p *Pool) observeFinished(j *job, err error, panicked bool) {
	o := j.obsOf()
	if o == nil || o.seq == 0 {
		return // not submitted through this pool's observed paths: nothing to report
	}
	p.finishedEvent(j, o, classify(j, o, err, panicked), err)
}

func (p *Pool) finishedEvent(j *job, o *jobObs, out Outcome, err error) {
	if !p.obs.finished {
		return
	}
	d, now := p.obs.now()
	n := int(o.attempt.Load())
	ctx := o.parent
	if n > 0 && o.ctx != nil {
		ctx = o.ctx
	}
	e := JobEvent{ID: j.id, Seq: o.seq, Attempt: n, Time: now, Duration: time.Duration(d - o.submitted), Outcome: out, Err: err}
	for i := range p.obs.list {
		if f := p.obs.list[i].Finished; f != nil {
			p.callEvent("Finished", f, ctx, e)
		}
	}
}

// classify tells how j ended (see the Outcome constants).
func classify(j *job, o *jobObs, err error, panicked bool) Outcome {
	ran := o.attempt.Load() > 0
	switch {
	case o.rejected.Load():
		return OutcomeRejected
	case err == nil:
		return OutcomeOK
	case panicked:
		return OutcomePanic
	case !ran:
		if _, ok := err.(*DependencyError); ok && j.has(flagDepFailed) {
			return OutcomeDependencyFailed
		}
		return OutcomeCanceled
	case o.canceled, j.wasCanceled():
		return OutcomeCanceled
	case o.timedOut:
		return OutcomeTimeout
	}
	return OutcomeError
}

// callEvent calls f, recovering and logging a panic.
func (p *Pool) callEvent(event string, f func(context.Context, JobEvent), ctx context.Context, e JobEvent) {
	defer p.recoverObserver(event, e)
	f(ctx, e)
}

// callStarted calls f, recovering and logging a panic (then the context
// is left unchanged).
func (p *Pool) callStarted(f func(context.Context, JobEvent) context.Context, ctx context.Context, e JobEvent) context.Context {
	defer p.recoverObserver("Started", e)
	return f(ctx, e)
}

func (p *Pool) recoverObserver(event string, e JobEvent) {
	if r := recover(); r != nil {
		p.cfg.logger.Error("qpool: recovered panic in observer", "event", event, "job", e.ID, "seq", e.Seq,
			"panic", r, "stack", string(debug.Stack()))
	}
}

// valuesContext is an attempt's context with the values of the context
// Started returned: its cancellation and deadline are the attempt's.
// Lookups that the context package makes for its own cancellation (see
// cancelKey) go to the attempt's context, so that context.Cause and
// contexts derived from this one follow the attempt's cancellation.
type valuesContext struct {
	context.Context
	values context.Context
}

func (c valuesContext) Value(key any) any {
	if key == cancelKey {
		return c.Context.Value(key)
	}
	if v := c.values.Value(key); v != nil {
		return v
	}
	return c.Context.Value(key)
}

// cancelKey is the key with which the context package finds a context's
// cancellation (context.Cause looks it up): learned once, by asking
// context.Cause about a context that records the key it is asked for.
var cancelKey = func() any {
	k := &keyProbe{Context: context.Background()}
	_ = context.Cause(k)
	if k.key == nil {
		// A context package that finds causes otherwise: a key nobody
		// uses, so lookups go to the observer's context first
		// (TestObserverStartedContextValuesOnly would fail).
		return new(int)
	}
	return k.key
}()

type keyProbe struct {
	context.Context
	key any
}

func (k *keyProbe) Err() error { return context.Canceled } // Cause looks up the key only when Err is set

func (k *keyProbe) Value(key any) any {
	if k.key == nil {
		k.key = key
	}
	return nil
}

// parentContext is a job's base context when it has a parent
// ([WithParent]): the base's cancellation and deadline, never the
// parent's, and the parent's values before the pool's. A group's job (its
// base is the group's context) sees the group's values first: the group's
// context is its real parent, WithParent only lends values.
type parentContext struct {
	context.Context // the group's context, or the pool's base context (never done)
	parent          context.Context
	group           bool // Context is a group's: its values come first
}

func (c parentContext) Value(key any) any {
	if key == cancelKey {
		return c.Context.Value(key) // the base's cancellation, never the parent's
	}
	if c.group {
		if v := c.Context.Value(key); v != nil {
			return v
		}
		return c.parent.Value(key)
	}
	if v := c.parent.Value(key); v != nil {
		return v
	}
	return c.Context.Value(key)
}

// goCall is a function from Pool.Go in an observed pool: a job with no ID,
// so that its events carry a Seq and its end is seen however it comes.
type goCall struct {
	job
	fn func()
	observedExtra
}

func (c *goCall) run(context.Context) error {
	defer func() {
		if r := recover(); r != nil {
			c.cfg.pool.cfg.logger.Error("qpool: recovered panic", "panic", r, "stack", string(debug.Stack()))
			panic(r) // on to attempt, which makes it the job's *PanicError
		}
	}()
	c.fn()
	return nil
}

func (c *goCall) anyFuture() *Future[any] { return &Future[any]{j: &c.job} }
func (c *goCall) anyValue() any           { return nil }
func (c *goCall) forget()                 { c.fn = nil }
func (c *goCall) ran() bool               { return c.fn == nil }

// goObserved is Pool.Go in an observed pool.
func (p *Pool) goObserved(fn func()) error {
	c := &goCall{fn: fn}
	j := &c.job
	j.r, j.cfg = c, &p.jobDefaults
	j.resolved.Add(1)
	c.x.obs.Store(&c.o)
	j.extra.Store(&c.x)
	o := p.observeNew(j)
	if fn == nil {
		err := fmt.Errorf("%w: %w", ErrInvalidJob, ErrNilFunc)
		j.tryResolve(err)
		j.wake()
		p.observeRefused(j, err)
		return err
	}
	if !p.accept() {
		err := p.closedErr()
		j.tryResolve(err)
		j.wake()
		p.observeRefused(j, err)
		return err
	}
	p.stats.submitted.Add(1) // before a worker can count its outcome
	j.state.Store(stateQueued)
	p.announce(j, o, nil)
	if err := p.enqueue(task{j: j}); err != nil {
		p.stats.submitted.Add(^uint64(0)) // not accepted after all
		j.tryResolve(err)
		j.wake()
		p.finishedEvent(j, o, OutcomeRejected, err)
		p.done()
		return err
	}
	return nil
}

// observedAttempt is attempt for a job of an observed pool: Started
// before it, and a record of how it ended.
func (p *Pool) observedAttempt(jctx context.Context, j *job, o *jobObs, n int) (err error, panicked bool) {
	ctx := jctx
	if j.cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, j.cfg.timeout)
		defer cancel()
	}
	fctx := p.observeStart(ctx, j, o, n)
	defer func() {
		if r := recover(); r != nil {
			err, panicked = newPanicError(j.id, r), true
		}
		o.observeEnd(ctx, jctx, j.cfg.timeout > 0, err)
	}()
	return j.r.run(fctx), false
}
