package natsjobs

import (
	"context"
	"fmt"
	"sync"

	"github.com/qpool/qpool"
)

// Registry maps job names to handlers. A worker runs the jobs whose names
// its registry knows; a client needs no registry. Registering is safe at
// any time, also while workers use the registry: a name registered later
// is run from then on. The zero value is not usable: use [NewRegistry].
type Registry struct {
	mu       sync.RWMutex
	handlers map[string]*handler
}

// handler is a registered function behind the codec.
type handler struct {
	run  func(ctx context.Context, codec qpool.Codec, payload []byte) (out []byte, decodeFailed bool, err error)
	spec qpool.JobSpec // the options given to Register
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{handlers: map[string]*handler{}} }

func (r *Registry) lookup(name string) *handler {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.handlers[name]
}

// Handle is a registered job type: [Register] returns it, and it submits
// jobs of its name with typed inputs and outputs. A process that only
// submits may make one with [Declare], without a function.
type Handle[In, Out any] struct {
	name string
}

// Name returns the job name.
func (h Handle[In, Out]) Name() string { return h.name }

// Declare returns the handle of a job name without registering a function,
// for producer processes: the workers that run the name register it.
func Declare[In, Out any](name string) Handle[In, Out] { return Handle[In, Out]{name: name} }

// Register adds fn to reg under name and returns its typed handle. A name
// registered again is replaced. Workers decode each job's payload into an
// In with their codec (a payload that does not decode fails the job
// permanently, without calling fn) and encode fn's Out the same way.
//
// opts apply on every worker that runs the name, and are how the options
// that cannot cross processes reach the job: [qpool.WithRetryIf] given here
// narrows the retries of every job of the name. [qpool.WithTimeout] and
// [qpool.WithRetry] given here are the defaults for jobs submitted without
// them.
func Register[In, Out any](reg *Registry, name string, fn func(ctx context.Context, in In) (Out, error), opts ...qpool.JobOption) Handle[In, Out] {
	h := &handler{spec: qpool.SpecOf(opts...)}
	h.run = func(ctx context.Context, codec qpool.Codec, payload []byte) (out []byte, decodeFailed bool, err error) {
		var in In
		if err := codec.Unmarshal(payload, &in); err != nil {
			return nil, true, fmt.Errorf("natsjobs: decode payload of %q: %w", name, err)
		}
		v, err := fn(ctx, in)
		if err != nil {
			return nil, false, err
		}
		b, err := codec.Marshal(v)
		if err != nil {
			return nil, false, qpool.Permanent(fmt.Errorf("natsjobs: encode result of %q: %w", name, err))
		}
		return b, false, nil
	}
	if reg != nil && fn != nil {
		reg.mu.Lock()
		reg.handlers[name] = h
		reg.mu.Unlock()
	}
	return Handle[In, Out]{name: name}
}
