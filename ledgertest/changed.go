package ledgertest

import (
	"context"
	"errors"
	"time"

	"github.com/qpool/qpool"
)

// wakeWait bounds the wait for a channel from Changed to close. A remote
// ledger may close it from a watcher shortly after Append returns, so the
// suite waits; the bound only turns a lost wake-up into a failure.
const wakeWait = 10 * time.Second

// isClosed reports whether ch is closed now, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// closes reports whether ch closes within wakeWait (and before ctx ends).
func closes(ctx context.Context, ch <-chan struct{}) bool {
	if ch == nil {
		return false
	}
	timer := time.NewTimer(wakeWait)
	defer timer.Stop()
	select {
	case <-ch:
		return true
	case <-timer.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// checkChanged checks that a channel from Changed stays open until a
// change is recorded, is then closed for every caller that took one, and
// that a channel taken later waits for the next change. The first channels
// come from a fresh ledger, so that a remote ledger's late notice of an
// earlier change cannot close them.
func checkChanged(ctx context.Context, l qpool.Ledger) error {
	var p problems
	ch1, ch2 := l.Changed(), l.Changed()
	if ch1 == nil || ch2 == nil {
		p.addf("Changed returned a nil channel, which never closes")
		return p.err()
	}
	if isClosed(ch1) || isClosed(ch2) {
		p.addf("a channel from Changed is closed before any change was recorded")
		return p.err()
	}
	for i := range 2 {
		if _, err := l.Append(ctx, set("k", float64(i))); err != nil {
			p.addf("Append: %v", err)
			return p.err()
		}
		if !closes(ctx, ch1) || !closes(ctx, ch2) {
			p.addf("Append #%d: a channel taken from Changed before it was not closed within %v", i, wakeWait)
		}
		ch1, ch2 = l.Changed(), l.Changed()
	}
	return p.err()
}

// checkClosed checks a closed ledger: Close wakes Changed's channels,
// Changed returns closed ones, and Append fails with ErrClosed.
func checkClosed(ctx context.Context, l qpool.Ledger) error {
	return checkEnded(ctx, l, "Close", func() error { return l.Close() })
}

// checkDropped checks a dropped ledger like a closed one.
func checkDropped(ctx context.Context, l qpool.Ledger) error {
	return checkEnded(ctx, l, "Drop", func() error { return l.Drop(ctx) })
}

// checkEnded ends l with end (Close or Drop, named name) and checks what
// the docs promise afterwards.
func checkEnded(ctx context.Context, l qpool.Ledger, name string, end func() error) error {
	var p problems
	_, err := l.Append(ctx, set("a", 1.0))
	if err != nil {
		p.addf("Append: %v", err)
	}
	rev := revision(l, "a")
	ch := l.Changed()
	if err := end(); err != nil {
		p.addf("%s: %v", name, err)
	}
	if !closes(ctx, ch) {
		p.addf("a channel taken from Changed before %s was not closed by it", name)
	}
	if !closes(ctx, l.Changed()) {
		p.addf("Changed after %s returned a channel that is not closed", name)
	}
	ms := []qpool.Mutation{
		set("b", 2.0),
		del("a"),
		{Key: "a", Value: 3.0, Guarded: true, Revision: rev},
		{Key: "a", Value: 3.0, Guarded: true, Revision: rev + 1000},
	}
	for _, m := range ms {
		c, err := l.Append(ctx, m)
		switch {
		case err == nil:
			p.addf("Append(%+v) after %s succeeded as %s; want an error wrapping qpool.ErrClosed", m, name, describe(c))
		case !errors.Is(err, qpool.ErrClosed):
			p.addf("Append(%+v) after %s returned %q, which does not wrap qpool.ErrClosed", m, name, err)
		}
	}
	return p.err()
}
