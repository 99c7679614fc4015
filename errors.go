package qpool

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// Sentinel errors. Every error this package returns wraps one of these (or a
// [*PanicError]), so callers test with [errors.Is] and [errors.As] rather than
// by message.
var (
	// ErrPoolClosed is returned for a job submitted after Close or Shutdown
	// began, and for a queued job that Shutdown's deadline or the end of the
	// pool's context failed before it ran.
	ErrPoolClosed = errors.New("qpool: pool closed")

	// ErrInvalidPool is returned by the methods of a nil *Pool or of a
	// Pool that [NewPool] did not make (a zero value), and resolves the
	// futures that [Submit] and [Pool.Schedule] return for one.
	ErrInvalidPool = errors.New("qpool: pool not made by NewPool")

	// ErrInvalidFuture is returned by Wait of a nil *Future or of a Future
	// that no pool made (a zero value).
	ErrInvalidFuture = errors.New("qpool: future not made by a pool")

	// ErrQueueFull is returned by a pool built with [WithNonBlocking] when its
	// queue has no room for another job.
	ErrQueueFull = errors.New("qpool: queue full")

	// ErrDuplicateJob is returned for a job whose ID is already queued,
	// waiting for dependencies or running in the same pool.
	ErrDuplicateJob = errors.New("qpool: duplicate job id")

	// ErrDependencyFailed is returned for a job that did not run because a job
	// it depends on failed. The error is a [*DependencyError], which names the
	// failed dependency and wraps the root cause.
	ErrDependencyFailed = errors.New("qpool: dependency failed")

	// ErrUnknownDependency is returned for a job that names a dependency
	// the pool does not know: an ID never submitted to it, or one whose job
	// finished longer ago than [WithDependencyWindow] (or that the window's
	// bound pushed out).
	ErrUnknownDependency = errors.New("qpool: unknown dependency")

	// ErrInvalidJob is returned for a job the pool cannot accept: an empty
	// ID, a nil function, a dependency on itself; and by a [Group] for an
	// explicit ID of its generated form, a nil or zero Group, or a nil pool.
	ErrInvalidJob = errors.New("qpool: invalid job")

	// ErrGoexit is returned for a job whose function called
	// [runtime.Goexit]. The worker that ran it is replaced.
	ErrGoexit = errors.New("qpool: job called runtime.Goexit")

	// ErrInvalidEntanglement is returned by an entanglement made with an
	// empty ID, or on a ledger opened for another entanglement (see
	// [NewEntanglement]).
	ErrInvalidEntanglement = errors.New("qpool: invalid entanglement")

	// ErrClosed is returned by an entanglement, or by a ledger, after Close.
	ErrClosed = errors.New("qpool: entanglement closed")

	// ErrExpired is returned by an entanglement whose TTL ran out.
	ErrExpired = errors.New("qpool: entanglement expired")

	// ErrInvalidKey is returned for an empty state key.
	ErrInvalidKey = errors.New("qpool: invalid state key")

	// ErrNilFunc is returned for a nil function: by [Entanglement.Update],
	// and (wrapped together with [ErrInvalidJob]) by the pool.
	ErrNilFunc = errors.New("qpool: nil function")

	// ErrEncode is returned for a value that a ledger's codec cannot
	// encode (a channel or a function, for JSON): by an entanglement built
	// [WithCodecCheck], and, wrapped in their own errors, by boltledger and
	// natsledger. Nothing is recorded.
	ErrEncode = errors.New("qpool: value cannot be encoded")

	// ErrConflict is returned by [Ledger.Append] when a guarded mutation finds
	// that the key changed since the revision it names. [Entanglement.Update]
	// handles it by retrying; it reaches callers only from a ledger.
	ErrConflict = errors.New("qpool: revision conflict")
)

// PanicError is the error of a job whose function panicked. Panics are never
// retried.
type PanicError struct {
	// JobID is the ID of the job that panicked.
	JobID string
	// Value is what the function passed to panic.
	Value any
	// Stack is the goroutine's stack at the panic, as [runtime/debug.Stack]
	// formats it.
	Stack []byte
}

// newPanicError records a panic recovered from job id's function, with the
// stack of the goroutine that recovered it.
func newPanicError(id string, r any) *PanicError {
	return &PanicError{JobID: id, Value: r, Stack: debug.Stack()}
}

// Error names the job and reports the panic value; the stack is in the
// Stack field.
func (e *PanicError) Error() string {
	return fmt.Sprintf("qpool: job %q panicked: %v", e.JobID, e.Value)
}

// Unwrap returns the panic value when it is an error, so that
// errors.Is(err, io.EOF) holds for a job that called panic(io.EOF).
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// DependencyError is the error of a job that did not run because a job it
// depends on failed. It matches [ErrDependencyFailed] and its Cause with
// [errors.Is] and [errors.As].
//
// It does not nest. When the dependency failed because of a dependency of
// its own, Origin and Cause are copied from the dependency's error: the last
// job of a failed chain of any length has an error as long as the first
// dependent's, naming its own dependency, the job that failed first and that
// job's error once each.
type DependencyError struct {
	// ID is the job that did not run.
	ID string
	// Dependency is the job it depended on (one of the IDs given to
	// [WithDependencies]) that failed.
	Dependency string
	// Origin is the job whose failure is the root cause: Dependency itself,
	// or, when Dependency failed because of a dependency, the job up the
	// chain that failed for a reason of its own (its function's error, a
	// cancellation, the pool's shutdown).
	Origin string
	// Cause is the error Origin failed with, as its own future reports it.
	Cause error
}

// Error names the job, its failed dependency, the origin when that is
// another job, and the cause.
func (e *DependencyError) Error() string {
	if e.Origin == e.Dependency {
		return fmt.Sprintf("qpool: job %q: dependency failed: %q: %v", e.ID, e.Dependency, e.Cause)
	}
	return fmt.Sprintf("qpool: job %q: dependency failed: %q, because %q failed: %v", e.ID, e.Dependency, e.Origin, e.Cause)
}

// Unwrap returns [ErrDependencyFailed] and the root cause.
func (e *DependencyError) Unwrap() []error { return []error{ErrDependencyFailed, e.Cause} }

// jobError adds the job's ID to err.
func jobError(id string, err error) error {
	return fmt.Errorf("qpool: job %q: %w", id, err)
}
