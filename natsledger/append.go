package natsledger

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/qpool/qpool"
)

// maxAttempt is JetStream's asynchronous publish timeout: an attempt
// unanswered for this long (lost in a server restart, say) is sent again
// with the same message ID instead of waiting out the whole timeout.
const maxAttempt = time.Second

// fastWait is how long an unacknowledged first attempt waits for its
// message before it asks JetStream for an acknowledgement.
const fastWait = 250 * time.Millisecond

// Append implements qpool.Ledger. It publishes the change with a unique
// message ID, retrying with the same ID while JetStream does not answer,
// so that a retry is stored once; it returns when the local replica
// applies the message carrying that ID, so that this process reads its
// own write. A guarded mutation is checked by the server against the
// key's last stream sequence; a mismatch returns an error wrapping
// qpool.ErrConflict after the replica has caught up with the key. Errors:
// qpool.ErrClosed after Close, the codec's error for a value it cannot
// encode, and [ErrUnavailable] when the server does not answer within the
// timeout. Nothing is recorded on error, except that an [ErrUnavailable]
// may hide a lost acknowledgement (see the package Caveats).
func (l *Ledger) Append(ctx context.Context, m qpool.Mutation) (qpool.StateChange, error) {
	msg, err := l.message(m)
	if err != nil {
		return qpool.StateChange{}, fmt.Errorf("natsledger: append %q: encode: %w", m.Key, err)
	}
	id := nuid.Next()
	w, err := l.expect(id)
	if err != nil {
		return qpool.StateChange{}, fmt.Errorf("natsledger: append %q: %w", m.Key, err)
	}
	defer l.forget(id)
	deadline := time.Now().Add(l.cfg.timeout)
	if !m.Guarded { // the fast path needs no context of its own
		seq, nanos, done, err := l.unacknowledged(ctx, msg, id, w)
		if done && err == nil {
			return l.appended(m, msg, seq, nanos), nil
		}
		if done {
			return qpool.StateChange{}, l.unavailable(ctx, m.Key, err)
		}
		// Another appender's outbox may still hold msg: retry with a copy.
		msg = &nats.Msg{Subject: msg.Subject, Data: msg.Data, Header: maps.Clone(msg.Header)}
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(id)}
	if m.Guarded {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(m.Revision))
	}
	seq, nanos, err := l.publish(ctx, msg, opts, w)
	if isConflict(err) {
		l.catchUp(ctx, msg.Subject)
		return qpool.StateChange{}, fmt.Errorf("natsledger: append %q: %w: %w", m.Key, qpool.ErrConflict, err)
	}
	if err != nil {
		return qpool.StateChange{}, l.unavailable(ctx, m.Key, err)
	}
	return l.appended(m, msg, seq, nanos), nil
}

// appended returns the change m recorded at stream sequence seq.
func (l *Ledger) appended(m qpool.Mutation, msg *nats.Msg, seq uint64, nanos int64) qpool.StateChange {
	c := qpool.StateChange{Sequence: seq - 1, Timestamp: time.Unix(0, nanos), Key: m.Key, Deleted: m.Delete}
	if !m.Delete {
		c.Value = l.decode(msg.Data)
	}
	return c
}

// message builds the NATS message for m.
func (l *Ledger) message(m qpool.Mutation) (*nats.Msg, error) {
	token := keyToken(m.Key)
	msg := &nats.Msg{Subject: l.prefix + "." + token, Header: nats.Header{}}
	if hashed(token) {
		msg.Header.Set(keyHeader, keyEncoding.EncodeToString([]byte(m.Key)))
	}
	if m.Delete {
		msg.Header.Set(opHeader, opDelete)
		return msg, nil
	}
	data, err := l.cfg.codec.Marshal(m.Value)
	if err != nil {
		return nil, err
	}
	msg.Data = data
	return msg, nil
}

// publish sends msg until the replica applies it, JetStream rejects it,
// or ctx ends. It publishes asynchronously, so that concurrent appends
// pipeline their publishes on the connection, and waits for the message
// to come back through the replica rather than for the acknowledgement:
// one wake-up per append instead of two. An attempt that gets no answer
// (JetStream's asynchronous timeout, set to maxAttempt) is sent again
// with the same message ID, so a retry after a lost acknowledgement is
// stored once.
func (l *Ledger) publish(ctx context.Context, msg *nats.Msg, opts []jetstream.PublishOpt, w *own) (seq uint64, nanos int64, err error) {
	pause := 20 * time.Millisecond
	for {
		seq, nanos, err = l.attempt(ctx, msg, opts, w)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return seq, nanos, err
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, 0, err
		}
		pause = min(2*pause, 250*time.Millisecond)
	}
}

// unacknowledged is the first attempt of an unguarded append: a plain
// publish that asks for no acknowledgement, since the message coming back
// through the replica is the proof that it is stored (a consumer delivers
// only stored messages, and on a replicated stream only committed ones).
// The server saves an acknowledgement, the client a future and a timer.
// If the message does not come back within fastWait, done is false and
// the acknowledged attempts take over, with the same message ID, to learn
// what went wrong; a message that was stored after all is not stored
// twice.
func (l *Ledger) unacknowledged(ctx context.Context, msg *nats.Msg, id string, w *own) (seq uint64, nanos int64, done bool, err error) {
	msg.Header.Set(jetstream.MsgIDHeader, id)
	if l.outbox.publish(l.nc, msg) != nil {
		return 0, 0, false, nil
	}
	t := time.NewTimer(min(fastWait, l.cfg.timeout))
	defer t.Stop()
	select {
	case <-w.done:
		return w.seq, w.nanos, true, w.err
	case <-t.C:
		return 0, 0, false, nil
	case <-ctx.Done():
		return 0, 0, true, context.Cause(ctx)
	}
}

// attempt publishes msg once and waits for the replica to apply it. It
// returns the stream sequence and the server's timestamp.
func (l *Ledger) attempt(ctx context.Context, msg *nats.Msg, opts []jetstream.PublishOpt, w *own) (uint64, int64, error) {
	msg.Reply = "" // set afresh by each asynchronous publish
	fut, err := l.js.PublishMsgAsync(msg, opts...)
	if err != nil {
		return 0, 0, err
	}
	select {
	case <-w.done:
		return w.seq, w.nanos, w.err
	case err := <-fut.Err():
		return 0, 0, err
	case <-ctx.Done():
		return l.behind(ctx, fut)
	}
}

// behind handles an append whose time ran out: if JetStream acknowledged
// it, it is stored, so a replica that did not catch up in time does not
// fail it (the change is returned with the acknowledgement's sequence and
// the local time). Otherwise the outcome is unknown.
func (l *Ledger) behind(ctx context.Context, fut jetstream.PubAckFuture) (uint64, int64, error) {
	select {
	case ack := <-fut.Ok():
		l.logger().Warn("natsledger: change recorded but replica behind", "stream", l.stream, "sequence", ack.Sequence-1)
		return ack.Sequence, time.Now().UnixNano(), nil
	default:
		return 0, 0, context.Cause(ctx)
	}
}

// retryable reports whether a publish may succeed if sent again: the
// server did not answer (as opposed to answering with an error), and the
// connection is not closed for good.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr):
		return false
	case errors.Is(err, qpool.ErrClosed), errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, nats.ErrMaxPayload), errors.Is(err, jetstream.ErrInvalidJSAck):
		return false
	}
	return true
}

// isConflict reports JetStream's wrong-last-sequence error, with the code
// of a single-server stream or of a replicated one.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// catchUp waits until the replica holds the subject's last message, so a
// retried read-modify-write sees the value that caused the conflict.
func (l *Ledger) catchUp(ctx context.Context, subject string) {
	last, err := l.st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return // the retry will conflict again and come back here
	}
	_ = l.waitApplied(ctx, last.Sequence)
}

// unavailable wraps a publish error that the retries did not overcome.
func (l *Ledger) unavailable(ctx context.Context, key string, err error) error {
	if errors.Is(err, qpool.ErrClosed) {
		return fmt.Errorf("natsledger: append %q: %w", key, err)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) || errors.Is(err, nats.ErrMaxPayload) {
		return fmt.Errorf("natsledger: append %q to stream %s: %w", key, l.stream, err)
	}
	if cerr := context.Cause(ctx); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("natsledger: append %q to stream %s: %w: %w (last error: %w)", key, l.stream, ErrUnavailable, cerr, err)
	}
	return fmt.Errorf("natsledger: append %q to stream %s: %w: %w", key, l.stream, ErrUnavailable, err)
}
