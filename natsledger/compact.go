package natsledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
)

// purge is one key's history to remove from the stream: its messages
// below stream sequence upTo, which is never above its last message.
type purge struct {
	subject string
	upTo    uint64
}

// Compact implements qpool.Ledger. Read in this process stops returning
// changes below before at once. On the server it purges, key by key, the
// messages below before that a later message of the same key superseded:
// the last message of every key stays, because the stream is the state
// that other and later processes replay. It costs one request per key
// with superseded messages.
func (l *Ledger) Compact(ctx context.Context, before uint64) error {
	purges, err := l.compactLocal(before)
	if err != nil || len(purges) == 0 {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.timeout)
	defer cancel()
	var errs []error
	for _, p := range purges {
		err := l.st.Purge(ctx, jetstream.WithPurgeSubject(p.subject), jetstream.WithPurgeSequence(p.upTo))
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("natsledger: compact %q below %d: %w", l.id, before, err)
	}
	return nil
}

// compactLocal raises the floor and lists the purges to make.
func (l *Ledger) compactLocal(before uint64) ([]purge, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("natsledger: compact: %w", qpool.ErrClosed)
	}
	before = min(before, l.applied)
	if before <= l.floor {
		return nil, nil
	}
	l.floor = before
	for len(l.recent) > 0 && l.recent[0].seq < before {
		l.recent = l.recent[1:]
	}
	var out []purge
	for key, s := range l.state {
		upTo := min(s.rev, before+1) // stream sequence of our "before"
		if s.oldest < upTo {
			out = append(out, purge{l.prefix + "." + keyToken(key), upTo})
			s.oldest = upTo
		}
	}
	return out, nil
}
