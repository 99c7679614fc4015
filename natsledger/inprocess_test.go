package natsledger

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
)

// TestDuplicateInProcessIsUnknown: JetStream's "duplicate message id is
// in process" (a replicated stream's leader has the first copy in a
// proposal not yet applied) decides nothing, so a publish that gets it is
// retried, and one whose retries run out is unconfirmed, never refused.
// Seen in TestLeaderKilled: an UpdateState failed with this API error
// during a leader change, as if JetStream had refused the change.
func TestDuplicateInProcessIsUnknown(t *testing.T) {
	inProc := fmt.Errorf("publish: %w", &jetstream.APIError{Code: 409, ErrorCode: 10158, Description: "duplicate message id is in process"})
	refused := &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}
	require.True(t, retryable(inProc))
	require.False(t, retryable(refused))

	l := &Ledger{stream: "s"}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var u *UnconfirmedError
	require.True(t, errors.As(l.unavailable(ctx, "id", qpool.Mutation{Key: "k"}, inProc), &u), "an in-process duplicate is unconfirmed")
	require.ErrorIs(t, u, ErrUnavailable)
	require.False(t, errors.As(l.unavailable(ctx, "id", qpool.Mutation{Key: "k"}, refused), &u), "a refusal is not")
}
