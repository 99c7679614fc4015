package qpool

import (
	"context"
	"time"
)

// jobContext is the context a job's function receives: the job itself,
// seen through a type whose methods are those of a [context.Context]. It
// builds a real cancellable context only when the function first needs one
// (Done, Value, Deadline): most jobs never look, and running them then
// allocates no context at all. Err and the entanglement value are answered
// without building anything.
//
// Cancellation before the context is built is remembered as the cause and
// applied when it is built, so the function still sees ctx.Err() and
// context.Cause(ctx) as if the context had existed all along.
type jobContext job

// lazyContext is the part of a job's context that most jobs never need,
// kept in the job's extra part so that a job stays small. Guarded by the
// job's mutex.
type lazyContext struct {
	inner  context.Context // built on demand from the pool's base context
	cancel context.CancelCauseFunc
	cause  error // cancellation that came before inner was built
}

var _ context.Context = (*jobContext)(nil)

// asContext returns the context j's function receives.
func (j *job) asContext() *jobContext { return (*jobContext)(j) }

// built returns the real context, building it if needed.
func (c *jobContext) built() context.Context {
	j := (*job)(c)
	j.mu.Lock()
	defer j.mu.Unlock()
	l := &j.more().ctx
	if l.inner == nil {
		l.inner, l.cancel = context.WithCancelCause(j.pool.baseCtx)
		if l.cause != nil {
			l.cancel(l.cause)
		}
		j.set(flagCtxBuilt)
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
	f := (*job)(c).flags.Load()
	switch {
	case f&flagCtxBuilt != 0:
		return c.built().Err()
	case f&flagCtxCanceled != 0:
		return context.Canceled
	}
	return nil
}

// Value implements [context.Context]. The job's entanglement is found
// without building the context.
func (c *jobContext) Value(key any) any {
	if _, ok := key.(entanglementKey); ok && c.cfg.entanglement != nil {
		return c.cfg.entanglement
	}
	return c.built().Value(key)
}

// cancelWith ends the context with cause err.
func (c *jobContext) cancelWith(err error) {
	j := (*job)(c)
	j.mu.Lock()
	l := &j.more().ctx
	cancel := l.cancel
	if cancel == nil && l.cause == nil {
		l.cause = err
		j.set(flagCtxCanceled)
	}
	j.mu.Unlock()
	if cancel != nil {
		cancel(err)
	}
}

// release cancels a built context once the job has returned, as
// context.WithCancel's contract asks, so it frees its resources.
func (c *jobContext) release() {
	j := (*job)(c)
	if !j.has(flagCtxBuilt) {
		return
	}
	j.mu.Lock()
	cancel := j.more().ctx.cancel
	j.mu.Unlock()
	cancel(context.Canceled)
}
