package natsledger

import "errors"

// Sentinel errors. Errors from this package also wrap the qpool sentinels
// the ledger seam names (qpool.ErrClosed, qpool.ErrConflict).
var (
	// ErrUnavailable is returned when JetStream did not answer within the
	// ledger's timeout: the server is down, restarting or unreachable, or
	// the stream is gone. The error also wraps the last error seen, and
	// context.DeadlineExceeded when the time ran out. The change may still
	// have been stored if only its acknowledgement was lost: every Append
	// error that wraps ErrUnavailable is an [*UnconfirmedError], whose
	// Retry stores the change at most once.
	ErrUnavailable = errors.New("natsledger: jetstream unavailable")

	// ErrInvalidConfig is returned by Open for a nil connection, a
	// [WithReplicas] outside 1..[MaxReplicas] (or above 1 for a new
	// stream on a server that is not in a cluster) or a stream that
	// exists with subjects the ledger cannot use, and by
	// Retry on an [UnconfirmedError] that no Append returned.
	ErrInvalidConfig = errors.New("natsledger: invalid configuration")

	// ErrConfigMismatch is returned by Open when the stream exists with a
	// configuration that contradicts an option given explicitly: a
	// [WithReplicas] count other than the stream's. Nothing is changed on
	// the server.
	ErrConfigMismatch = errors.New("natsledger: existing stream differs from the options")
)
