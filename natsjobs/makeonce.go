package natsjobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// raceWait bounds how long findOrMake keeps trying while processes race to
// make one stream or bucket.
const raceWait = 15 * time.Second

// findOrMake returns the stream or bucket that find finds, or else the one
// make makes. Lookup comes first, so that a process whose options differ
// from an existing stream's learns it from the stream (checkReplicas),
// not from a create the server refuses for another reason (WithReplicas(3)
// on one server is refused with "replicas > 1 not supported in
// non-clustered mode", where the bucket exists with one replica).
//
// Processes that start together race to make the same stream. On a
// cluster the losers see passing answers: their create fails because the
// stream exists (with another configuration) or is being made, a lookup
// then says "not found" until the winner's assignment is applied, or a
// request gets no answer in time. These are tried again, each request
// bounded by raceAttempt, with a growing pause, until the stream is found or
// made, ctx ends, or raceWait passes (found by an attack:
// TestAttackJobsReplicasClusterRace, losers failed with "stream not found"
// or waited for their caller's context).
func findOrMake[T any](ctx context.Context, find, make func(context.Context) (T, error), missing func(error) bool) (T, error) {
	deadline := time.Now().Add(raceWait)
	for pause := 10 * time.Millisecond; ; pause = min(2*pause, 200*time.Millisecond) {
		v, err := bounded(ctx, find)
		if err == nil {
			return v, nil
		}
		if missing(err) {
			if v, err = bounded(ctx, make); err == nil {
				return v, nil
			}
		}
		if ctx.Err() != nil || !passing(err, missing) || time.Now().After(deadline) {
			return v, err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
	}
}

// raceAttempt bounds each request of findOrMake: shorter than opTimeout,
// since a loser's request that gets no answer (seen on a cluster, while
// the winner's stream was being made) is better asked again.
const raceAttempt = 2 * time.Second

// bounded calls f with ctx bounded by raceAttempt.
func bounded[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, raceAttempt)
	defer cancel()
	return f(ctx)
}

// passing reports whether err is one of the answers a process racing
// others to make a stream may get for a moment (see findOrMake).
func passing(err error, missing func(error) bool) bool {
	var apiErr *jetstream.APIError
	return missing(err) ||
		errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || errors.Is(err, jetstream.ErrBucketExists) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		(errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamNameInUse ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound))
}

// replicasRefused marks as ErrInvalidOption the server's refusal to make a
// stream with replicas on a server that is not in a cluster (JetStream
// error 10074, "replicas > 1 not supported in non-clustered mode"), so
// that WithReplicas there fails with a sentinel like any other bad option.
func replicasRefused(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == 10074 {
		return fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	return err
}
