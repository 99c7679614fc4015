package natsledger

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// feedPull is how many messages the replica's consumer keeps in flight.
const feedPull = 1024

// feedHeartbeat is how often the server tells an idle feed that its
// consumer is alive; two missed heartbeats mean the consumer (or the
// server holding it) is gone, and the feed recreates it.
const feedHeartbeat = time.Second

// feedBackoff bounds the pause between two failed attempts to recreate
// the feed's consumer.
const feedBackoff = time.Second

// feedStall is how long an append whose change JetStream acknowledged
// waits, with the replica making no progress at all, before it suspects
// the feed (its consumer's server may have died without a word) and has
// it recreated: faster than the missed heartbeats, and while the append
// still has time to see its change applied.
const feedStall = 500 * time.Millisecond

// feed keeps the replica current: it applies the stream's messages in
// order, from a consumer that starts after the last applied message. The
// feed checks the order itself, by the consumer's delivery sequence, and
// watches the consumer's idle heartbeats: whenever the consumer ends, goes
// silent (the server holding it died), skips a message, or is kicked by
// an append that finds the replica stalled, feed creates a new one after
// the last applied message, on whichever server answers, backing off
// while none does, until Close.
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
			backoff = min(2*backoff, feedBackoff)
			continue
		}
		backoff = 50 * time.Millisecond
		l.consume(msgs)
	}
}

// subscribe creates a consumer from the message after the last one
// applied. It is ephemeral, unacknowledged and held in memory by one
// server, like nats.go's ordered consumer, whose work the feed does
// itself so that it alone decides when and how fast to recreate it.
func (l *Ledger) subscribe() (jetstream.MessagesContext, error) {
	l.mu.Lock()
	start := l.applied + 1
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(l.life, l.cfg.timeout)
	defer cancel()
	cons, err := l.js.CreateConsumer(ctx, l.stream, jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   start,
		AckPolicy:     jetstream.AckNonePolicy,
		MemoryStorage: true,
		Replicas:      1,
		// The server deletes the consumer this long after the feed left
		// it (Close, a recreation, the process died); while the feed
		// runs it always has a pull request outstanding, which counts as
		// activity.
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	msgs, err := cons.Messages(jetstream.PullMaxMessages(feedPull), jetstream.PullHeartbeat(feedHeartbeat))
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

// consume applies messages until the consumer fails: its iterator closed
// (Close, a reconnect, or a kick from a stalled append), its heartbeats
// stopped, or a message is missing. The feed then recreates it.
//
// Invariant: the replica applies every message the stream holds after
// the replica's start, once, in stream order. Each consumer starts at
// applied+1 and delivers with consumer sequences 1, 2, …; a message lost
// on the way (in a reconnect, say) shows as a jump in that sequence, and
// consume then stops before applying anything after the hole. Stream
// sequences themselves may jump (Compact purges superseded messages), so
// they are not the check. Only one consumer is read at a time: consume
// stops its iterator before the feed creates the next, so no late message
// of an old consumer is applied after a newer one's; apply ignores a
// message at or below applied.
func (l *Ledger) consume(msgs jetstream.MessagesContext) {
	defer msgs.Stop()
	var delivered uint64 // the consumer's sequence of the last message
	for {
		msg, err := msgs.Next()
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				l.logger().Warn("natsledger: replica feed failed; recreating its consumer", "stream", l.stream, "err", err)
			}
			return
		}
		r, md, err := l.parse(msg)
		if err != nil {
			l.logger().Error("natsledger: message without metadata", "stream", l.stream, "err", err)
			delivered++ // whatever it was, the consumer delivered it
			continue
		}
		if md.cseq != delivered+1 {
			l.logger().Debug("natsledger: replica feed skipped a message; recreating its consumer",
				"stream", l.stream, "delivery", md.cseq, "want", delivered+1)
			return
		}
		delivered = md.cseq
		l.apply(r, msg.Headers().Get(jetstream.MsgIDHeader))
	}
}

// apply records one stream message in the replica.
func (l *Ledger) apply(r record, msgID string) {
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

// stalled is called by an append still waiting for stream sequence seq,
// which JetStream acknowledged (so it is stored). If the replica has not
// applied anything since an earlier call at least feedStall ago, the feed
// is stuck: stalled kicks it, so that it recreates its consumer after the
// last applied message.
//
// Invariant: at most one kick per feedStall without progress, whatever
// the number of waiting appends; stallSeen and stallSince change only
// under mu. A kick of a feed that was merely slow costs one consumer
// recreation and loses nothing: the new consumer starts after the last
// applied message, and apply ignores anything at or below it.
func (l *Ledger) stalled(seq uint64) {
	now := time.Now()
	l.mu.Lock()
	if l.closed || l.applied >= seq {
		l.mu.Unlock()
		return
	}
	if l.applied != l.stallSeen || l.stallSince.IsZero() {
		l.stallSeen, l.stallSince = l.applied, now // progress: start counting
		l.mu.Unlock()
		return
	}
	if now.Sub(l.stallSince) < feedStall {
		l.mu.Unlock()
		return
	}
	l.stallSince = now
	applied := l.applied
	l.mu.Unlock()
	l.logger().Warn("natsledger: replica feed stalled; recreating its consumer",
		"stream", l.stream, "applied", applied, "waiting for", seq)
	l.restartFeed()
}

// restartFeed stops the feed's current consumer: consume returns, and
// feed creates a new one after the last applied message.
func (l *Ledger) restartFeed() {
	l.feedMu.Lock()
	if l.msgs != nil {
		l.msgs.Stop()
	}
	l.feedMu.Unlock()
}

// reconnects restarts the feed each time the connection reconnects, as
// nats.go's ordered consumer does: the server it reconnected to may have
// restarted, losing the consumer it held in memory, or be another server
// of the cluster; waiting for missed heartbeats would leave the replica
// behind for two of them. Owner: the ledger; Open starts it, Close ends
// it (stop) and waits for it (reconnectsDone).
func (l *Ledger) reconnects(ch chan nats.Status) {
	defer close(l.reconnectsDone)
	defer l.nc.RemoveStatusListener(ch)
	for {
		select {
		case <-ch:
			l.restartFeed()
		case <-l.stop:
			return
		}
	}
}
