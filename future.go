package qpool

import (
	"context"
)

// Future is the pending result of a job submitted with [Submit] or
// [Pool.Schedule]. Every future resolves exactly once: with the job's value
// and error, or with the error that kept the job from running. All methods
// are safe for concurrent use. The zero value is not usable; futures come
// only from a pool.
type Future[T any] struct {
	j *job // its call is a *call[T], or any call when T is any (Pool.Result)
}

// call is a function submitted with Submit, with its job and future in one
// allocation.
type call[T any] struct {
	job
	fn    func(context.Context) (T, error)
	value T
	fut   Future[T]
}

func (c *call[T]) run(ctx context.Context) (err error) {
	c.value, err = c.fn(ctx)
	return err
}

func (c *call[T]) anyFuture() *Future[any] {
	if f, ok := any(&c.fut).(*Future[any]); ok {
		return f
	}
	return &Future[any]{j: &c.job}
}

func (c *call[T]) anyValue() any { return c.value }

func (c *call[T]) forget() { c.fn = nil }

func (c *call[T]) ran() bool { return c.fn == nil }

// plainCall is a function scheduled with Schedule: call[any] for a function
// without a context, a type of its own so that neither needs a field for
// the other's function.
type plainCall struct {
	job
	fn    func() (any, error)
	value any
	fut   Future[any]
}

func (c *plainCall) run(context.Context) (err error) {
	c.value, err = c.fn()
	return err
}

func (c *plainCall) anyFuture() *Future[any] { return &c.fut }
func (c *plainCall) anyValue() any           { return c.value }
func (c *plainCall) forget()                 { c.fn = nil }
func (c *plainCall) ran() bool               { return c.fn == nil }

// Submit schedules fn on p under id and returns its future. fn receives a
// context that ends when the job's timeout passes ([WithTimeout]), when the
// future is cancelled, when the pool shuts down, and once the job has ended;
// it carries the values of the pool's context ([WithContext]).
//
// Submit blocks while the queue is full, unless the pool was built with
// [WithNonBlocking]. It never panics on bad input: an empty id, a nil fn, a
// duplicate id, a closed pool and a pool NewPool did not make (nil, or a
// zero value) resolve the returned future with [ErrInvalidJob],
// [ErrDuplicateJob], [ErrPoolClosed] or [ErrInvalidPool].
func Submit[T any](p *Pool, id string, fn func(ctx context.Context) (T, error), opts ...JobOption) *Future[T] {
	c := &call[T]{fn: fn}
	c.fut.j = &c.job
	p.start(&c.job, c, id, fn == nil, opts)
	return &c.fut
}

// Schedule schedules fn under id and returns its future: the context-free
// form of [Submit], for functions that need no context. It shares Submit's
// path and semantics.
func (p *Pool) Schedule(id string, fn func() (any, error), opts ...JobOption) *Future[any] {
	c := &plainCall{fn: fn}
	c.fut.j = &c.job
	p.start(&c.job, c, id, fn == nil, opts)
	return &c.fut
}

// start fills in a new job, which r embeds, and submits it: the one path
// that Submit's and Schedule's call types share.
func (p *Pool) start(j *job, r runner, id string, nilFn bool, opts []JobOption) {
	p.startWith(j, r, id, nilFn, nil, opts)
}

// startWith is start with opts applied to base (a group's job
// configuration) rather than to the pool's defaults, when base is not nil.
func (p *Pool) startWith(j *job, r runner, id string, nilFn bool, base *jobConfig, opts []JobOption) {
	j.id, j.r = id, r
	j.resolved.Add(1)
	if !p.valid() {
		j.cfg = &noPool
		j.tryResolve(jobError(id, ErrInvalidPool))
		j.wake()
		return
	}
	if base == nil {
		base = &p.jobDefaults
	}
	j.cfg = base.with(opts)
	p.submit(j, nilFn)
}

// noPool is the configuration of a job that has no pool (one submitted to
// a pool NewPool did not make, refused by a group before it reached one,
// or a promise's). Future.Cancel reaches the pool through it: such a job is
// resolved at once, so Cancel finds it resolved and looks no further; a
// promise's job stays in stateRunning until it resolves, so
// Pool.cancelJob (with a nil pool) only marks it cancelled and never
// touches the nil pool (see NewPromise).
var noPool = jobConfig{attempts: 1}

// valid reports whether a pool made f: not nil, and not a zero value.
func (f *Future[T]) valid() bool { return f != nil && f.j != nil }

// ID returns the job's ID ("" for a future no pool made).
func (f *Future[T]) ID() string {
	if !f.valid() {
		return ""
	}
	return f.j.id
}

// Done returns a channel that is closed once the future has resolved: at
// once for a future no pool made, whose Wait fails.
func (f *Future[T]) Done() <-chan struct{} {
	if !f.valid() {
		return closedChan
	}
	return f.j.doneChan()
}

// Wait blocks until the job has resolved or ctx ends, and returns the job's
// value and error. When ctx ends first it returns ctx's error and leaves the
// job alone; call Cancel to stop the job too. A nil ctx waits without limit.
// A nil or zero future returns [ErrInvalidFuture].
func (f *Future[T]) Wait(ctx context.Context) (T, error) {
	if !f.valid() {
		var zero T
		return zero, ErrInvalidFuture
	}
	if !f.j.isDone() {
		var stop <-chan struct{}
		if ctx != nil {
			stop = ctx.Done()
		}
		if stop == nil {
			f.j.resolved.Wait() // nothing to select on: park without a channel
		} else {
			select {
			case <-f.j.doneChan():
			case <-stop:
				var zero T
				return zero, context.Cause(ctx)
			}
		}
	}
	err := f.j.result()
	switch c := f.j.r.(type) {
	case *call[T]:
		return c.value, err
	case *gcall[T]:
		return c.value, err
	}
	v, _ := f.j.r.anyValue().(T) // Schedule's call, or a Pool.Result view
	return v, err
}

// Cancel stops the job. A job that has not started yet never runs, and its
// future resolves with [context.Canceled]. A running job's context is
// cancelled; its future resolves with whatever the function then returns,
// and it is not retried. Cancel of a resolved future, or of one no pool
// made, does nothing.
func (f *Future[T]) Cancel() {
	if f.valid() {
		f.j.cfg.pool.cancelJob(f.j)
	}
}
