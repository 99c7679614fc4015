package natsjobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/qpool/qpool"
)

var (
	// ErrDuplicateJob is the error of a submission whose job ID exists
	// already (submitted by any process, and not yet past the retention).
	// It is [qpool.ErrDuplicateJob], so errors.Is matches either. The job
	// that holds the ID is left alone; its outcome is reachable with
	// [Client.Result] or [Handle.Future].
	ErrDuplicateJob = qpool.ErrDuplicateJob

	// ErrInvalidJob is the error of a submission that cannot be accepted:
	// an empty ID, a nil client, a dependency on itself. It is
	// [qpool.ErrInvalidJob].
	ErrInvalidJob = qpool.ErrInvalidJob

	// ErrUnknownJob is returned by [Client.Cancel] and [Client.Status] for
	// an ID no process submitted (or whose records passed the retention).
	ErrUnknownJob = errors.New("natsjobs: unknown job")

	// ErrPayloadTooLarge is the error of a submission whose encoded payload
	// does not fit in one message of the server's max_payload (less room
	// for the headers). Nothing is submitted.
	ErrPayloadTooLarge = errors.New("natsjobs: payload too large")

	// ErrLocalOption is the error of a submission given an option that
	// cannot cross processes: [qpool.WithRetryIf] (a function: give it to
	// [Register] instead, where every worker applies it) and
	// [qpool.WithEntanglement].
	ErrLocalOption = errors.New("natsjobs: option cannot cross processes")

	// ErrUnsupported is returned by [NewWorker] and [NewClient] when the
	// server lacks a feature natsjobs needs: JetStream message schedules,
	// which came with nats-server 2.12.
	ErrUnsupported = errors.New("natsjobs: unsupported by the server")

	// ErrTooManyDeliveries is the error recorded for a job whose message
	// was delivered more often than [WithMaxDeliveries] allows without an
	// outcome: mostly a job whose worker died each time it ran it, but the
	// count includes deliveries put back without running (see
	// [WithMaxDeliveries]).
	ErrTooManyDeliveries = errors.New("natsjobs: too many deliveries")

	// ErrClosed is returned by Submit, a future's Wait and Result after
	// [Client.Close], and is the cause of the context of a job that
	// [Worker.Shutdown] hands back.
	ErrClosed = errors.New("natsjobs: closed")

	// ErrInvalidOption is returned by NewWorker and NewClient for an option
	// they cannot use: a queue or namespace name with characters other than
	// letters, digits, '-' and '_', a [WithReplicas] outside 1..[MaxReplicas].
	ErrInvalidOption = errors.New("natsjobs: invalid option")

	// ErrConfigMismatch is returned by NewWorker and NewClient when a
	// stream or bucket they would make exists with a configuration that
	// contradicts an option given: [WithReplicas] other than its replicas.
	// Nothing is changed on the server.
	ErrConfigMismatch = errors.New("natsjobs: existing stream or bucket differs from the options")
)

// RemoteError is the error a job's function returned on a worker, as its
// record keeps it: the message, not the Go value, crossed the network.
// Errors with a meaning of their own come back as such instead: a job
// cancelled with [Client.Cancel] fails with [context.Canceled], one that
// ran out of time with [context.DeadlineExceeded], one whose dependency
// failed with a [*qpool.DependencyError], and a permanent one is wrapped
// in a [*qpool.PermanentError]; all of them wrap the RemoteError.
type RemoteError struct {
	// ID is the job.
	ID string
	// Message is what the job's error said.
	Message string
	// Kind is the error's class: "error", "permanent", "panic", "decode",
	// "deadline", "canceled", "dependency", "deliveries" or "too-large".
	Kind string
	// Attempts is how many attempts the job made.
	Attempts int
}

// Error returns the job's ID and the remote message.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("natsjobs: job %q (%s after %d attempts): %s", e.ID, e.Kind, e.Attempts, e.Message)
}

// Unwrap gives the sentinel that matches the error's kind, if it has one.
func (e *RemoteError) Unwrap() error {
	switch e.Kind {
	case kindCanceled:
		return context.Canceled
	case kindDeadline:
		return context.DeadlineExceeded
	case kindDeliveries:
		return ErrTooManyDeliveries
	case kindTooLarge:
		return ErrPayloadTooLarge
	}
	return nil
}

// Error kinds, as records keep them.
const (
	kindError      = "error"
	kindPermanent  = "permanent"
	kindPanic      = "panic"
	kindDecode     = "decode"
	kindDeadline   = "deadline"
	kindCanceled   = "canceled"
	kindDependency = "dependency"
	kindDeliveries = "deliveries"
	kindTooLarge   = "too-large" // a result too large to record
)
