package natsjobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/qpool/qpool"
)

// ErrNoEntanglements is returned by [Entanglement] called with a context
// that is not a handler's on a worker made [WithEntanglements].
var ErrNoEntanglements = errors.New("natsjobs: no entanglements here (a handler's context on a worker made WithEntanglements)")

// EntanglementOpener opens the entanglement named id for a worker's
// handlers: typically a natsledger ledger for id and
// [qpool.OpenEntanglement] on it, so that every worker process (and any
// other process) shares the entanglement's state.
type EntanglementOpener func(ctx context.Context, id string) (*qpool.Entanglement, error)

// WithEntanglements lets the worker's handlers open entanglements by ID
// with [Entanglement]: open opens each ID once per worker, and the
// worker's handlers share what it returns until [Worker.Shutdown], which
// closes them after the last handler returned.
func WithEntanglements(open EntanglementOpener) Option {
	return func(c *config) { c.openEntanglement = open }
}

type workerCtxKey struct{}

// Entanglement returns the entanglement named id for the handler whose
// context ctx is: opened by the worker's [EntanglementOpener] on first
// use, shared by the worker's handlers after (a job may share state with
// the jobs of every process through it, as with [qpool.WithEntanglement]
// in a pool). It fails with [ErrNoEntanglements] for a context that is
// not a handler's on a worker made [WithEntanglements], with [ErrClosed]
// once the worker has shut down, and with the opener's error (a later
// call opens again). A job runs at least once: make its updates
// idempotent by the job's ID (see docs/jobs.md).
func Entanglement(ctx context.Context, id string) (*qpool.Entanglement, error) {
	w, _ := ctx.Value(workerCtxKey{}).(*Worker)
	if w == nil || w.cfg.openEntanglement == nil {
		return nil, ErrNoEntanglements
	}
	return w.entanglement(ctx, id)
}

// entangled is one entanglement of a worker: opened once, by the first
// caller, outside the worker's lock; the others wait for done.
type entangled struct {
	done chan struct{} // closed when e and err are set
	e    *qpool.Entanglement
	err  error
}

func (w *Worker) entanglement(ctx context.Context, id string) (*qpool.Entanglement, error) {
	w.mu.Lock()
	if w.entsClosed {
		w.mu.Unlock()
		return nil, ErrClosed
	}
	en, ok := w.ents[id]
	if !ok {
		en = &entangled{done: make(chan struct{})}
		w.ents[id] = en
	}
	w.mu.Unlock()
	if !ok {
		// The opener is the user's: it runs outside the lock. A failed
		// open is forgotten, so that a later call tries again.
		en.e, en.err = w.cfg.openEntanglement(ctx, id)
		if en.err != nil {
			en.err = fmt.Errorf("natsjobs: open entanglement %q: %w", id, en.err)
			w.mu.Lock()
			delete(w.ents, id)
			w.mu.Unlock()
		}
		close(en.done)
	}
	select {
	case <-en.done:
		return en.e, en.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// closeEntanglements closes the worker's entanglements; Shutdown calls it
// once no handler runs. Invariant: only handlers open entanglements, and
// Shutdown has waited for every handler, so no open is under way; calls
// after this one get ErrClosed.
func (w *Worker) closeEntanglements() {
	w.mu.Lock()
	w.entsClosed = true
	ents := w.ents
	w.ents = nil
	w.mu.Unlock()
	for _, en := range ents {
		<-en.done
		if en.e != nil {
			_ = en.e.Close()
		}
	}
}
