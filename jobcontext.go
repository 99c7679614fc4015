package qpool

import (
	"context"
	"sync/atomic"
	"time"
)

// jobContext is the context a job's function receives. It lives inside the
// job, and builds a real cancellable context only when the function first
// needs one (Done, Value, Deadline): most jobs never look, and running them
// then allocates no context at all. Err and the entanglement value are
// answered without building anything.
//
// Cancellation before the context is built is remembered as the cause and
// applied when it is built, so the function still sees ctx.Err() and
// context.Cause(ctx) as if the context had existed all along.
type jobContext struct {
	j     *job
	phase atomic.Int32 // ctxPristine, ctxCanceled or ctxBuilt; lets Err skip the lock

	lazy *lazyContext // made when built or cancelled; guarded by j.mu
}

// lazyContext is the part of a jobContext that most jobs never need, kept
// out of line so that a job stays small.
type lazyContext struct {
	inner  context.Context // built on demand from the pool's base context
	cancel context.CancelCauseFunc
	cause  error // cancellation that came before inner was built
}

var _ context.Context = (*jobContext)(nil)

const (
	ctxPristine int32 = iota // not built, not cancelled
	ctxCanceled              // cancelled before it was built: cause is set
	ctxBuilt                 // inner exists
)

// built returns the real context, building it if needed.
func (c *jobContext) built() context.Context {
	j := c.j
	j.mu.Lock()
	defer j.mu.Unlock()
	if c.lazy == nil {
		c.lazy = new(lazyContext)
	}
	l := c.lazy
	if l.inner == nil {
		l.inner, l.cancel = context.WithCancelCause(j.pool.baseCtx)
		if l.cause != nil {
			l.cancel(l.cause)
		}
		c.phase.Store(ctxBuilt)
	}
	return l.inner
}

// Deadline implements [context.Context]. A job's own context has no
// deadline: WithTimeout gives each attempt a child context that has one.
func (c *jobContext) Deadline() (time.Time, bool) { return c.built().Deadline() }

// Done implements [context.Context].
func (c *jobContext) Done() <-chan struct{} { return c.built().Done() }

// Err implements [context.Context] without building the context.
func (c *jobContext) Err() error {
	switch c.phase.Load() {
	case ctxPristine:
		return nil
	case ctxCanceled:
		return context.Canceled
	}
	return c.built().Err()
}

// Value implements [context.Context]. The job's entanglement is found
// without building the context.
func (c *jobContext) Value(key any) any {
	if _, ok := key.(entanglementKey); ok && c.j.cfg.entanglement != nil {
		return c.j.cfg.entanglement
	}
	return c.built().Value(key)
}

// cancelWith ends the context with cause err.
func (c *jobContext) cancelWith(err error) {
	j := c.j
	j.mu.Lock()
	if c.lazy == nil {
		c.lazy = new(lazyContext)
	}
	l := c.lazy
	cancel := l.cancel
	if cancel == nil && l.cause == nil {
		l.cause = err
		c.phase.Store(ctxCanceled)
	}
	j.mu.Unlock()
	if cancel != nil {
		cancel(err)
	}
}

// release cancels a built context once the job has returned, as
// context.WithCancel's contract asks, so it frees its resources.
func (c *jobContext) release() {
	if c.phase.Load() != ctxBuilt {
		return
	}
	j := c.j
	j.mu.Lock()
	cancel := c.lazy.cancel
	j.mu.Unlock()
	cancel(context.Canceled)
}
