package natsledger

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// feedPull is how many messages the replica's consumer keeps in flight.
const feedPull = 1024

// feed keeps the replica current: it applies the stream's messages in
// order, from an ordered consumer that survives reconnects and server
// restarts. If the consumer ends on its own (the stream was deleted, the
// connection closed), feed subscribes again after the last applied
// message, backing off, until Close.
func (l *Ledger) feed() {
	defer close(l.done)
	backoff := 50 * time.Millisecond
	for {
		msgs, err := l.subscribe()
		if l.stopped() {
			return
		}
		if err != nil {
			l.logger().Warn("natsledger: replica subscribe failed; retrying",
				"stream", l.stream, "err", err, "in", backoff)
			if !l.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		l.consume(msgs)
	}
}

// subscribe creates an ordered consumer from the message after the last
// one applied.
func (l *Ledger) subscribe() (jetstream.MessagesContext, error) {
	l.mu.Lock()
	start := l.applied + 1
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.timeout)
	defer cancel()
	cons, err := l.js.OrderedConsumer(ctx, l.stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   start,
		// The server deletes the consumer this long after Close, or after
		// the process died; while the feed runs it always has a pull
		// request outstanding, which counts as activity.
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	msgs, err := cons.Messages(jetstream.PullMaxMessages(feedPull))
	if err != nil {
		return nil, err
	}
	l.feedMu.Lock()
	defer l.feedMu.Unlock()
	if l.stopped() {
		msgs.Stop()
		return nil, errors.New("stopped")
	}
	l.msgs = msgs
	return msgs, nil
}

// consume applies messages until the iterator closes.
func (l *Ledger) consume(msgs jetstream.MessagesContext) {
	for {
		msg, err := msgs.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return
		}
		if err != nil {
			l.logger().Debug("natsledger: replica feed", "stream", l.stream, "err", err)
			if !l.sleep(50 * time.Millisecond) {
				return
			}
			continue
		}
		l.apply(msg)
	}
}

// apply records one stream message in the replica.
func (l *Ledger) apply(msg jetstream.Msg) {
	r, _, err := l.parse(msg)
	msgID := msg.Headers().Get(jetstream.MsgIDHeader)
	if err != nil {
		l.logger().Error("natsledger: message without metadata", "stream", l.stream, "err", err)
		return
	}
	seq, key := r.seq+1, r.key
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || seq <= l.applied {
		return // a redelivery after a consumer reset
	}
	s := l.state[key]
	if s == nil {
		s = &slot{oldest: seq}
		l.state[key] = s
	}
	s.data, s.rev, s.deleted = r.data, seq, r.deleted
	l.cache(r)
	l.applied = seq
	l.notify()
	l.wake()
	if msgID != "" {
		l.completeOwn(msgID, seq, r.nanos)
	}
}

// cache appends r to the recent changes, halving them when they reach
// twice the cache size so trimming is amortised.
func (l *Ledger) cache(r record) {
	l.recent = append(l.recent, r)
	if n := l.cfg.cacheSize; len(l.recent) >= 2*n {
		keep := l.recent[len(l.recent)-n:]
		l.cacheFrom = keep[0].seq
		l.recent = append(make([]record, 0, 2*n), keep...)
	}
}

func (l *Ledger) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// sleep waits d, or less if Close comes first; it reports false then.
func (l *Ledger) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.stop:
		return false
	}
}
