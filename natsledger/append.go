package natsledger

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
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
// encode, and [ErrUnavailable] when the change is not confirmed within
// the timeout. Nothing is recorded on error, except that an
// [ErrUnavailable] may hide a lost acknowledgement: every such error is an
// [*UnconfirmedError], whose Retry stores the change at most once. The
// next Append settles such a change first (stores it, if it was not), so
// that it can never be stored after a later one: see UnconfirmedError.
// Settling has a timeout of its own, so an Append that must settle an
// earlier change may take up to twice the ledger's timeout.
func (l *Ledger) Append(ctx context.Context, m qpool.Mutation) (qpool.StateChange, error) {
	return l.append(ctx, nuid.Next(), m)
}

// append records m, a fresh change, under a new message ID id, after it
// has settled every earlier append whose outcome is unknown, and lists it
// if its own outcome is unknown: see [unsettled].
func (l *Ledger) append(ctx context.Context, id string, m qpool.Mutation) (qpool.StateChange, error) {
	if err := l.settle(ctx, id); err != nil {
		// Not published: nothing of this change can be stored later.
		return qpool.StateChange{}, &UnconfirmedError{MsgID: id, Mutation: m, l: l,
			err: fmt.Errorf("natsledger: append %q to stream %s: %w: %w", m.Key, l.stream, ErrUnavailable, err)}
	}
	return l.recordTracked(ctx, id, m, true, nil)
}

// appendAgain is Retry's append of e's change: an error it fails with
// shares e's settlement, so that every UnconfirmedError of one message ID
// learns that it has been settled, however many Retries failed before.
func (l *Ledger) appendAgain(ctx context.Context, e *UnconfirmedError) (qpool.StateChange, error) {
	if err := l.settle(ctx, e.MsgID); err != nil {
		u := &UnconfirmedError{MsgID: e.MsgID, Mutation: e.Mutation, s: e.s, l: l,
			err: fmt.Errorf("natsledger: append %q to stream %s: %w: %w", e.Mutation.Key, l.stream, ErrUnavailable, err)}
		return qpool.StateChange{}, u
	}
	return l.recordTracked(ctx, e.MsgID, e.Mutation, false, e.s)
}

// recordTracked records m under id and keeps the unsettled list true: an
// outcome still unknown is listed (sharing s, a Retry's settlement, when
// given), a known one (stored, or refused for good) is settled.
func (l *Ledger) recordTracked(ctx context.Context, id string, m qpool.Mutation, fresh bool, s *settlement) (qpool.StateChange, error) {
	c, err := l.record(ctx, id, m, fresh)
	var u *UnconfirmedError
	switch {
	case errors.As(err, &u) && u.MsgID == id:
		if s != nil {
			u.s = s
		}
		if !u.Stored {
			l.unsettled.add(u) // unless it has been settled meanwhile
			return c, err
		}
		l.unsettled.settled(id, nil) // stored: a late copy is a duplicate
	case err == nil:
		l.unsettled.settled(id, &c)
	case !fresh:
		l.unsettled.settled(id, nil) // refused for good
	}
	return c, err
}

// record publishes m under message ID id and waits until it is recorded.
// A fresh ID was never published, so its first attempt may skip the
// acknowledgement; a retried one always asks for it, since its message may
// be stored and applied already, and then only the acknowledgement (a
// duplicate's) names its sequence.
func (l *Ledger) record(ctx context.Context, id string, m qpool.Mutation, fresh bool) (qpool.StateChange, error) {
	msg, err := l.message(m)
	if err != nil {
		return qpool.StateChange{}, fmt.Errorf("natsledger: append %q: encode: %w", m.Key, err)
	}
	w, err := l.expect(id)
	if err != nil {
		return qpool.StateChange{}, fmt.Errorf("natsledger: append %q: %w", m.Key, err)
	}
	w.retry = !fresh
	defer l.forget(id, w)
	deadline := time.Now().Add(l.cfg.timeout)
	if fresh && !m.Guarded { // the fast path needs no context of its own
		seq, nanos, done, err := l.unacknowledged(ctx, msg, id, w)
		if done && err == nil {
			return l.appended(m, msg, seq, nanos), nil
		}
		if done {
			return qpool.StateChange{}, l.unavailable(ctx, id, m, err)
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
		if seq, nanos, ours := l.catchUp(ctx, msg.Subject, id); ours {
			return l.appended(m, msg, seq, nanos), nil
		}
		return qpool.StateChange{}, fmt.Errorf("natsledger: append %q: %w: %w", m.Key, qpool.ErrConflict, err)
	}
	if err != nil {
		return qpool.StateChange{}, l.unavailable(ctx, id, m, err)
	}
	return l.appended(m, msg, seq, nanos), nil
}

// UnconfirmedError is the error of an Append (and so of UpdateState,
// DeleteState or Update on an entanglement) whose change was not confirmed
// within the ledger's timeout: the server may have stored it and its
// answer been lost, so the outcome is unknown until the replica shows it.
// Such a change can still be stored late (a publish the server held
// across a failover, say), but never after a later append of the same
// Ledger: before it publishes anything, an append settles every earlier
// append of the ledger whose outcome is unknown, republishing it under
// its message ID until JetStream answers, and fails with an
// UnconfirmedError of its own, without publishing, while one cannot be
// settled. So a change that returned nil is never overwritten by an
// earlier one of the same Ledger. Limits: a late copy is recognised as a
// duplicate only within the stream's duplicate window ([WithDuplicateWindow]);
// Close settles nothing, so a change still unconfirmed at Close may be
// stored after the changes other ledgers make later; and an append that
// runs at the same time as a Retry may be stored before or after it, as
// any two concurrent appends. It wraps [ErrUnavailable] and the cause
// (context.DeadlineExceeded when the time ran out). Find it with
// errors.As:
//
//	var u *natsledger.UnconfirmedError
//	if errors.As(err, &u) {
//		_, err = u.Retry(ctx)
//	}
//
// Retry publishes the same change again under the same JetStream message
// ID (Nats-Msg-Id), so the stream stores it once even if the first attempt
// was stored, as long as the retry comes within the stream's duplicate
// window (2 minutes by default, [WithDuplicateWindow]). Publishing the
// change anew instead (calling UpdateState again) may store it twice.
type UnconfirmedError struct {
	// MsgID is the change's message ID, which every retry reuses.
	MsgID string
	// Mutation is the change as the ledger was asked to record it.
	Mutation qpool.Mutation
	// Stored reports that JetStream acknowledged the change, so it is
	// recorded, at Sequence, but this process's replica had not applied
	// it when the time ran out (its feed was being recreated, say), so
	// GetState would not have shown it. Retry then only waits for the
	// replica.
	Stored   bool
	Sequence uint64

	s   *settlement // shared by every UnconfirmedError of this message ID
	l   *Ledger
	err error // wraps ErrUnavailable and the cause
}

// Error implements error.
func (e *UnconfirmedError) Error() string { return e.err.Error() }

// Unwrap returns the underlying error, which wraps [ErrUnavailable].
func (e *UnconfirmedError) Unwrap() error { return e.err }

// Retry records the change once: it publishes it again under the same
// message ID and returns it as recorded, with the sequence the stream gave
// it, whether this attempt or an earlier one stored it. Once the change is
// settled (by a Retry that returned nil, or by a later append of the
// ledger, which settles it first), Retry returns it as recorded and
// publishes nothing. The ledger's
// replica then shows it (read-your-own-writes). It fails as Append does:
// again with an *UnconfirmedError, for the same message ID, if the change
// is still not confirmed. A retried guarded mutation (Entanglement.Update)
// is recognised as stored only while it is still its key's last change;
// otherwise it fails with qpool.ErrConflict, and Update's read-modify-write
// must be run again by the caller.
func (e *UnconfirmedError) Retry(ctx context.Context) (qpool.StateChange, error) {
	if e == nil || e.l == nil {
		return qpool.StateChange{}, fmt.Errorf("natsledger: %w: Retry of an UnconfirmedError that no Append returned", ErrInvalidConfig)
	}
	if c := e.settled(); c != nil {
		return *c, nil // settled already, by an append or an earlier Retry
	}
	if ctx == nil {
		ctx = context.Background()
	}
	return e.l.appendAgain(ctx, e)
}

// settled returns the change as recorded once it is settled, else nil.
func (e *UnconfirmedError) settled() *qpool.StateChange {
	if e.s == nil {
		return nil
	}
	return e.s.recorded.Load()
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
	data, err := encode(l.cfg.codec, m.Value)
	if err != nil {
		return nil, fmt.Errorf("natsledger: %w: %T: %w", qpool.ErrEncode, m.Value, err)
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
//
// Every feedStall it checks whether JetStream acknowledged the message
// (which stores it) while the replica still has not applied it, and
// reports that to stalled, which recreates a feed that makes no progress:
// its consumer's server may have died. The append keeps waiting for its
// message within its time; it never succeeds on the acknowledgement
// alone, since this process would not read its own write.
func (l *Ledger) attempt(ctx context.Context, msg *nats.Msg, opts []jetstream.PublishOpt, w *own) (uint64, int64, error) {
	msg.Reply = "" // set afresh by each asynchronous publish
	fut, err := l.js.PublishMsgAsync(msg, opts...)
	if err != nil {
		return 0, 0, err
	}
	// Only a retry's message can have been applied before w was
	// registered, so only a retry needs the acknowledgement at once: a
	// fresh append waits for its message alone, one wake-up instead of
	// two, and looks at the acknowledgement only when it is slow.
	var acked <-chan *jetstream.PubAck
	if w.retry {
		acked = fut.Ok()
	}
	stall := time.NewTimer(feedStall)
	defer stall.Stop()
	var seq uint64 // the acknowledged stream sequence, once known
	for {
		select {
		case <-w.done:
			return w.seq, w.nanos, w.err
		case ack := <-acked:
			acked, seq = nil, ack.Sequence
			if l.appliedBefore(w, seq) {
				return seq, l.timestamp(ctx, seq), nil
			}
		case err := <-fut.Err():
			return 0, 0, err
		case <-stall.C:
			if seq == 0 {
				seq = ackedSeq(fut)
			}
			if seq != 0 {
				l.stalled(seq)
			}
			stall.Reset(feedStall)
		case <-ctx.Done():
			return l.behind(ctx, fut, w, seq)
		}
	}
}

// ackedSeq returns the stream sequence JetStream acknowledged fut with,
// or 0 if it has not.
func ackedSeq(fut jetstream.PubAckFuture) uint64 {
	select {
	case ack := <-fut.Ok():
		return ack.Sequence
	default:
		return 0
	}
}

// appliedBefore reports whether the replica applied stream sequence seq,
// which carries w's message, without completing w: a retry whose message
// was applied before the retry registered w. (When w was registered
// first, apply completes it in the same critical section in which it
// moves applied past seq.)
func (l *Ledger) appliedBefore(w *own, seq uint64) bool {
	l.mu.Lock()
	applied := l.applied >= seq
	l.mu.Unlock()
	if !applied {
		return false
	}
	select {
	case <-w.done:
		return false // completed: the caller's next select returns it
	default:
		return true
	}
}

// errReplicaBehind is a change JetStream stored (acknowledged at stream
// sequence seq) that the replica had not applied when the time ran out.
type errReplicaBehind struct{ seq uint64 }

func (e *errReplicaBehind) Error() string {
	return fmt.Sprintf("stored at stream sequence %d, but the local replica has not applied it", e.seq)
}

// behind handles an append whose time ran out. If JetStream acknowledged
// it, it is stored, but the replica has not applied it: the append fails
// all the same, with an error that says so, since GetState in this
// process would not show the change.
func (l *Ledger) behind(ctx context.Context, fut jetstream.PubAckFuture, w *own, seq uint64) (uint64, int64, error) {
	select {
	case <-w.done: // applied at the last moment
		return w.seq, w.nanos, w.err
	default:
	}
	if seq == 0 {
		seq = ackedSeq(fut)
	}
	if seq != 0 {
		l.logger().Warn("natsledger: change stored but replica behind", "stream", l.stream, "sequence", seq-1)
		return 0, 0, &errReplicaBehind{seq: seq}
	}
	return 0, 0, context.Cause(ctx)
}

// timestamp returns the server's timestamp of the message at stream
// sequence seq, which the replica has applied: from the cache, or else
// from the stream; the local time if the stream cannot say (the message
// was compacted away, or the server went down).
func (l *Ledger) timestamp(ctx context.Context, seq uint64) int64 {
	l.mu.Lock()
	i := sort.Search(len(l.recent), func(i int) bool { return l.recent[i].seq >= seq-1 })
	if i < len(l.recent) && l.recent[i].seq == seq-1 {
		nanos := l.recent[i].nanos
		l.mu.Unlock()
		return nanos
	}
	l.mu.Unlock()
	h, err := l.readStream(ctx, seq-1, seq, 1)
	if err != nil || len(h) != 1 || h[0].Sequence != seq-1 {
		return time.Now().UnixNano()
	}
	return h[0].Timestamp.UnixNano()
}

// retryable reports whether a publish may succeed if sent again: the
// server did not answer (as opposed to answering with an error), and the
// connection is not closed for good.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case inProcess(err):
		return true
	case errors.As(err, &apiErr):
		return false
	case errors.Is(err, qpool.ErrClosed), errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, nats.ErrMaxPayload), errors.Is(err, jetstream.ErrInvalidJSAck):
		return false
	}
	return true
}

// errCodeDuplicateInProcess is JetStream's JSStreamDuplicateMessageConflict
// ("duplicate message id is in process"), which nats.go has no constant
// for: a replicated stream's leader answers it to a message whose ID it
// has seen in a proposal not yet applied. Nothing is decided: the first
// copy may still be stored, or lost with a leader that failed.
const errCodeDuplicateInProcess jetstream.ErrorCode = 10158

// inProcess reports JetStream's answer that a message with the same ID is
// being stored: the outcome is unknown, so the publish is retried as if no
// answer had come (and, if the retries run out, is unconfirmed rather than
// refused). Found by TestLeaderKilled: a republish during a leader change
// failed with it as if the change had been refused.
func inProcess(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeDuplicateInProcess
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
// retried read-modify-write sees the value that caused the conflict. If
// that message carries message ID id, the conflict is the append's own
// earlier attempt, stored although its answer was lost (the server checks
// the expected sequence before duplicates): ours is then true, with its
// stream sequence and timestamp.
func (l *Ledger) catchUp(ctx context.Context, subject, id string) (seq uint64, nanos int64, ours bool) {
	last, err := l.st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return 0, 0, false // the retry will conflict again and come back here
	}
	if l.waitApplied(ctx, last.Sequence) != nil || last.Header.Get(jetstream.MsgIDHeader) != id {
		return 0, 0, false
	}
	return last.Sequence, last.Time.UnixNano(), true
}

// unavailable wraps a publish error that the retries did not overcome.
// When the outcome is unknown, the error is an *UnconfirmedError that can
// retry the change under its message ID id.
func (l *Ledger) unavailable(ctx context.Context, id string, m qpool.Mutation, err error) error {
	if errors.Is(err, qpool.ErrClosed) {
		return fmt.Errorf("natsledger: append %q: %w", m.Key, err)
	}
	var apiErr *jetstream.APIError
	if (errors.As(err, &apiErr) && !inProcess(err)) || errors.Is(err, nats.ErrMaxPayload) {
		return fmt.Errorf("natsledger: append %q to stream %s: %w", m.Key, l.stream, err)
	}
	if cerr := context.Cause(ctx); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("natsledger: append %q to stream %s: %w: %w (last error: %w)", m.Key, l.stream, ErrUnavailable, cerr, err)
	} else {
		err = fmt.Errorf("natsledger: append %q to stream %s: %w: %w", m.Key, l.stream, ErrUnavailable, err)
	}
	u := &UnconfirmedError{MsgID: id, Mutation: m, l: l, err: err}
	var behind *errReplicaBehind
	if errors.As(err, &behind) {
		u.Stored, u.Sequence = true, behind.seq-1
	}
	return u
}

// encode is c.Marshal(v), with a panic in it (a value's MarshalJSON, the
// codec itself: user code, run on the caller's goroutine) returned as an
// error, so that Append refuses the value with ErrEncode rather than
// unwind through its own bookkeeping (TestPanickingEncoderIsErrEncode).
func encode(c qpool.Codec, v any) (data []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			data, err = nil, fmt.Errorf("the codec panicked: %v", r)
			if perr, ok := r.(error); ok {
				err = fmt.Errorf("the codec panicked: %w", perr)
			}
		}
	}()
	return c.Marshal(v)
}
