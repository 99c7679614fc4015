package natsledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// raceAttempt bounds each request of findOrCreate: a request that gets no
// answer while processes race to make one stream on a cluster is better
// asked again than waited for.
const raceAttempt = 2 * time.Second

// findOrCreate returns the ledger's stream, found or else created. Lookup
// comes first, so that options that differ from an existing stream's are
// told by the stream (ensureStream's checks), not by a create the server
// refuses for another reason.
//
// Processes that open one new ID together race to create its stream. On a
// cluster the losers see passing answers: a create refused because the
// stream exists (with another configuration) or is being made, then a
// lookup that says "not found" until the winner's assignment is applied,
// or a request with no answer. These are tried again, each bounded by
// raceAttempt, with a growing pause, until ctx ends (Open's timeout). Found
// by an attack: TestAttackReplicasClusterCreateRace, opens with the
// stream's count or none failed with "stream not found" or the timeout.
//
// A connection that is reconnecting refuses a request at once (with
// nats.ReconnectBufSize(-1), which the package recommends): that passes
// too, so an Open made while the server restarts waits for it, within its
// timeout. When ctx ends, the error wraps its cause with the last answer
// (context.DeadlineExceeded at Open's timeout, which ensureStream reports
// as ErrUnavailable), never a passing answer alone (found by a review:
// TestReview5OpenWhileServerDownIsUnavailable, an Open with the
// server down failed with a raw "outbound buffer limit exceeded").
func (l *Ledger) findOrCreate(ctx context.Context) (jetstream.Stream, error) {
	for pause := 10 * time.Millisecond; ; pause = min(2*pause, 200*time.Millisecond) {
		st, err := l.tryFindOrCreate(ctx)
		if err == nil || !passing(err) {
			return st, err
		}
		if ctx.Err() != nil {
			return nil, ended(ctx, err)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ended(ctx, err)
		case <-t.C:
		}
	}
}

// ended is the error of a findOrCreate whose ctx ended after last.
func ended(ctx context.Context, last error) error {
	if cause := context.Cause(ctx); !errors.Is(last, cause) {
		return fmt.Errorf("%w (last answer: %w)", cause, last)
	}
	return last
}

func (l *Ledger) tryFindOrCreate(ctx context.Context) (jetstream.Stream, error) {
	actx, cancel := context.WithTimeout(ctx, raceAttempt)
	defer cancel()
	st, err := l.js.Stream(actx, l.stream)
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return st, err
	}
	return l.js.CreateStream(actx, l.streamConfig())
}

// passing reports whether err is an answer a process racing others to
// create a stream may get for a moment (see findOrCreate).
func passing(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrReconnectBufExceeded) ||
		(errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamNameInUse ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound))
}
