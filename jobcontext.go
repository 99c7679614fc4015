package qpool

import (
	"context"
	"strconv"
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
// context.Cause(ctx) as if the context had existed all along. The same
// holds for the job's end: a context first looked at after the job was
// resolved (by a goroutine the function started, say) is already done.
type jobContext job

// lazyContext is the part of a job's context that most jobs never need,
// kept in the job's extra part so that a job stays small. Guarded by the
// extra part's mutex.
type lazyContext struct {
	inner  context.Context // built on demand from the pool's base context
	cancel context.CancelCauseFunc
	cause  error // cancellation that came before inner was built
}

var _ context.Context = (*jobContext)(nil)

// asContext returns the context j's function receives: the job itself, so
// that running a job allocates no context.
func (j *job) asContext() *jobContext { return (*jobContext)(j) }

// String implements [fmt.Stringer], so that printing the context shows
// the job it belongs to rather than the job's fields.
func (c *jobContext) String() string { return "qpool job " + strconv.Quote(c.id) + " context" }

// built returns the real context, building it if needed.
func (c *jobContext) built() context.Context {
	j := (*job)(c)
	x := j.more()
	x.mu.Lock()
	defer x.mu.Unlock()
	l := &x.ctx
	if l.inner == nil {
		l.inner, l.cancel = context.WithCancelCause(c.parent())
		j.set(flagCtxBuilt)
		switch {
		case l.cause != nil:
			l.cancel(l.cause)
		case j.state.Load() >= stateResolving:
			// The job has ended, and release may have looked for a
			// built context before the flag was set: it sets the state
			// before it looks, this sets the flag before it looks.
			l.cancel(context.Canceled)
		}
	}
	return l.inner
}

// parent is the context the job's context is built from: its group's, or
// the pool's base context (the pool's values, never cancelled), carrying
// before them the values of the job's [WithParent] context, if any.
func (c *jobContext) parent() context.Context {
	if p := c.cfg.withParent; p != nil {
		return p
	}
	if c.cfg.group != nil {
		return c.cfg.group
	}
	return c.cfg.pool.baseCtx
}

// Deadline implements [context.Context]: the parent's deadline (none for
// a job of no group), without building the context. WithTimeout gives
// each attempt a child context with a deadline of its own.
func (c *jobContext) Deadline() (time.Time, bool) { return c.parent().Deadline() }

// Done implements [context.Context].
func (c *jobContext) Done() <-chan struct{} { return c.built().Done() }

// Err implements [context.Context] without building the context.
func (c *jobContext) Err() error {
	f := (*job)(c).flags.Load()
	switch {
	case f&flagCtxBuilt != 0:
		return c.built().Err()
	case c.cfg.group != nil && c.cfg.group.Err() != nil:
		return c.built().Err() // its group's context has ended
	case f&flagCtxCanceled != 0, c.state.Load() >= stateResolving:
		return context.Canceled
	}
	return nil
}

// Value implements [context.Context]. A value is found without building
// the context: the built one (a cancelCtx over parent) would only pass the
// lookup on to parent. Only the context package's own key, with which
// context.Cause, WithCancel and AfterFunc find the cancellation, needs the
// built context. The job's entanglement comes first; a group's job looks
// in the group's context, then in the pool's.
func (c *jobContext) Value(key any) any {
	if _, ok := key.(entanglementKey); ok && c.cfg.entanglement != nil {
		return c.cfg.entanglement
	}
	if key == cancelKey {
		return c.built().Value(key)
	}
	v := c.parent().Value(key)
	if v == nil && c.cfg.group != nil {
		v = c.cfg.pool.baseCtx.Value(key)
	}
	return v
}

// cancelWith ends the context with cause err.
func (c *jobContext) cancelWith(err error) {
	j := (*job)(c)
	x := j.more()
	x.mu.Lock()
	l := &x.ctx
	cancel := l.cancel
	if cancel == nil && l.cause == nil {
		l.cause = err
		j.set(flagCtxCanceled)
	}
	x.mu.Unlock()
	if cancel != nil {
		cancel(err)
	}
}

// release cancels a built context once the job has been resolved, as
// context.WithCancel's contract asks, so it frees its resources. A context
// built later is cancelled as it is built (see built).
func (c *jobContext) release() {
	j := (*job)(c)
	if !j.has(flagCtxBuilt) {
		return
	}
	x := j.more()
	x.mu.Lock()
	cancel := x.ctx.cancel
	x.mu.Unlock()
	cancel(context.Canceled)
}
