package natsledger

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
)

// historyPull is how many messages a history read keeps in flight.
const historyPull = 500

// readStream reads the changes from since up to (not including) next
// from the stream with an ordered consumer, which is deleted afterwards.
func (l *Ledger) readStream(ctx context.Context, since, next uint64, limit int) ([]qpool.StateChange, error) {
	want := next - since
	if limit > 0 {
		want = min(want, uint64(limit))
	}
	cctx, cancel := context.WithTimeout(ctx, l.cfg.timeout)
	defer cancel()
	cons, err := l.js.OrderedConsumer(cctx, l.stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   since + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("natsledger: read %q from %d: %w: %w", l.id, since, ErrUnavailable, err)
	}
	defer l.deleteConsumer(cons)
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		return nil, nil
	}
	msgs, err := cons.Messages(jetstream.PullMaxMessages(int(min(want, historyPull))))
	if err != nil {
		return nil, fmt.Errorf("natsledger: read %q from %d: %w: %w", l.id, since, ErrUnavailable, err)
	}
	defer msgs.Stop()
	w := newWatchdog(ctx, l.cfg.timeout, msgs.Stop)
	defer w.stop()
	out := make([]qpool.StateChange, 0, want)
	for uint64(len(out)) < want {
		msg, err := msgs.Next()
		if err != nil {
			return nil, fmt.Errorf("natsledger: read %q from %d: %w", l.id, since, w.cause(err))
		}
		r, md, err := l.parse(msg)
		if err != nil {
			return nil, fmt.Errorf("natsledger: read %q: %w", l.id, err)
		}
		if r.seq >= next {
			break
		}
		out = append(out, l.change(r))
		if md.pending == 0 {
			break
		}
		if len(out)%watchdogEvery == 0 {
			w.progress()
		}
	}
	return out, nil
}

// watchdogEvery is how many messages a history read receives between two
// resets of its watchdog: a timer per message would cost more than the
// message.
const watchdogEvery = 64

// watchdog stops a history read that makes no progress for its timeout,
// or whose context ends, by stopping its iterator.
type watchdog struct {
	ctx     context.Context
	timeout time.Duration
	timer   *time.Timer
	stopCtx func() bool
	expired atomic.Bool
}

func newWatchdog(ctx context.Context, timeout time.Duration, stop func()) *watchdog {
	w := &watchdog{ctx: ctx, timeout: timeout}
	w.timer = time.AfterFunc(timeout, func() {
		w.expired.Store(true)
		stop()
	})
	w.stopCtx = context.AfterFunc(ctx, stop)
	return w
}

func (w *watchdog) progress() { w.timer.Reset(w.timeout) }

func (w *watchdog) stop() {
	w.timer.Stop()
	w.stopCtx()
}

// cause explains why Next failed: the context, the watchdog, or err.
func (w *watchdog) cause(err error) error {
	switch {
	case w.ctx.Err() != nil:
		return context.Cause(w.ctx)
	case w.expired.Load():
		return fmt.Errorf("%w: no progress for %v: %w", ErrUnavailable, w.timeout, context.DeadlineExceeded)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// parse turns a stream message into a record, and returns what its reply
// subject says besides (the number of messages pending after it, the
// consumer's sequence).
func (l *Ledger) parse(msg jetstream.Msg) (record, replyMeta, error) {
	md, err := parseReply(msg.Reply())
	if err != nil {
		return record{}, replyMeta{}, err
	}
	hdr := msg.Headers()
	token := strings.TrimPrefix(msg.Subject(), l.prefix+".")
	key, ok := decodeKey(token, hdr.Get(keyHeader))
	if !ok {
		key = token // not written by a ledger: keep it visible, as is
	}
	r := record{seq: md.seq - 1, nanos: md.nanos, key: key, deleted: hdr.Get(opHeader) == opDelete}
	if !r.deleted {
		r.data = msg.Data()
	}
	return r, md, nil
}

// deleteConsumer removes a history read's consumer from the server now
// rather than after its inactivity threshold.
func (l *Ledger) deleteConsumer(cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.timeout)
	defer cancel()
	_ = l.js.DeleteConsumer(ctx, l.stream, info.Name)
}
