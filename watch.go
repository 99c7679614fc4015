package qpool

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// watchBatch is how many changes a watch reads from the ledger at a time.
const watchBatch = 256

// A watch whose ledger read fails (a distributed ledger's server is
// unreachable) tries again after watchRetryMin, doubling up to
// watchRetryMax, until the ledger answers.
const (
	watchRetryMin = 20 * time.Millisecond
	watchRetryMax = time.Second
)

// Watch returns a channel that yields every change with Sequence at least
// since, oldest first, then every later change as it is recorded: none
// missed, none repeated, in order. The channel is unbuffered and closes when
// ctx ends, on Close and on expiry.
//
// A slow reader never blocks updaters: each watch reads the ledger from its
// own cursor, so the ledger is the buffer. With [WithRetention], a watch
// that falls behind the retained history skips to the oldest retained
// change, which the reader sees as a jump in Sequence. Watch on an ended
// entanglement returns a closed channel.
//
// A ledger that cannot be read for a while (natsledger while its server is
// unreachable) delays the watch but does not end it: the watch reads again,
// backing off up to a second between attempts, and resumes where it was
// once the ledger answers.
//
// A job that ranges over a watch holds its worker while it waits: give it
// the job's own context, as for [Entanglement.Await].
func (e *Entanglement) Watch(ctx context.Context, since uint64) <-chan StateChange {
	e = e.or()
	if ctx == nil {
		ctx = context.Background()
	}
	ch := make(chan StateChange)
	if !e.goOwned(func() { e.feed(ctx, since, ch) }) {
		close(ch)
	}
	return ch
}

// goOwned starts fn on a goroutine that Close waits for, unless the
// entanglement has ended.
func (e *Entanglement) goOwned(fn func()) bool {
	e.lifeMu.Lock()
	defer e.lifeMu.Unlock()
	if e.life.Load() != lifeOpen {
		return false
	}
	e.wg.Add(1)
	// Owner: the entanglement. Ends when fn returns; waited in Close.
	go func() {
		defer e.wg.Done()
		fn()
	}()
	return true
}

// feed copies the ledger from since to ch until ctx ends or the
// entanglement does. A failed read is retried: the watch closes only when
// ctx ends, on Close or on expiry, never because the ledger was
// unreachable for a while.
func (e *Entanglement) feed(ctx context.Context, since uint64, ch chan<- StateChange) {
	defer close(ch)
	for {
		changed := e.ledger.Changed()
		batch, ok := e.readRetrying(ctx, since, watchBatch)
		if !ok {
			return
		}
		for _, c := range batch {
			select {
			case ch <- c:
				since = c.Sequence + 1
			case <-ctx.Done():
				return
			case <-e.done:
				return
			}
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		case <-e.done:
			return
		}
	}
}

// readRetrying reads up to limit changes from since, as Ledger.Read does,
// and tries again after a failed read, backing off from watchRetryMin to
// watchRetryMax, until the ledger answers. It reports false, with no
// changes, once ctx or the entanglement has ended: a ledger that cannot be
// read for a while delays a watch or a callback, it never makes one miss a
// change.
func (e *Entanglement) readRetrying(ctx context.Context, since uint64, limit int) ([]StateChange, bool) {
	retry := watchRetryMin
	for {
		batch, err := e.ledger.Read(ctx, since, limit)
		if err == nil {
			return batch, true
		}
		if !e.pause(ctx, retry, errors.Is(err, ErrClosed)) {
			return nil, false
		}
		retry = min(2*retry, watchRetryMax)
	}
}

// pause waits d after a failed read, or, for a ledger that was closed
// under the entanglement and will never answer again, until the
// entanglement ends. It reports false once ctx or the entanglement has
// ended.
func (e *Entanglement) pause(ctx context.Context, d time.Duration, forever bool) bool {
	var wake <-chan time.Time
	if !forever {
		t := time.NewTimer(d)
		defer t.Stop()
		wake = t.C
	}
	select {
	case <-wake:
		return true
	case <-ctx.Done():
		return false
	case <-e.done:
		return false
	}
}

// History returns every recorded change whose Sequence is at least since,
// oldest first, in a slice the caller owns, as GetStateHistory does, but
// reports a read that failed instead of returning no history: the error
// wraps [ErrClosed] or [ErrExpired] once the entanglement has ended,
// ctx's cause if ctx ended first, or the ledger's error (natsledger's
// ErrUnavailable while its server is unreachable). A nil error with an
// empty slice means there is no change at or after since.
func (e *Entanglement) History(ctx context.Context, since uint64) ([]StateChange, error) {
	e = e.or()
	if ctx == nil {
		ctx = context.Background()
	}
	if err := e.usable(); err != nil {
		return nil, err
	}
	h, err := e.ledger.Read(ctx, since, 0)
	if err != nil {
		if uerr := e.usable(); uerr != nil && errors.Is(err, ErrClosed) {
			return nil, uerr // ended during the read
		}
		return nil, fmt.Errorf("qpool: entanglement %q: history from %d: %w", e.id, since, err)
	}
	return h, nil
}

// Await blocks until key exists and returns its value. It returns ctx's
// error if ctx ends first, and [ErrClosed] or [ErrExpired] if the
// entanglement ends first. It polls nothing: it sleeps until the next
// change.
//
// Inside a job, wait with the job's own context (the ctx [Submit] passes
// to the function): it ends on the job's timeout, on Cancel and when the
// pool shuts down, so the wait cannot outlive the pool. A key that a job
// queued behind this one would set arrives only if the pool has a free
// worker to run that job: with every worker waiting like this one, it
// never does (see "Waiting inside a job" in docs/pool.md).
func (e *Entanglement) Await(ctx context.Context, key string) (any, error) {
	e = e.or()
	if ctx == nil {
		ctx = context.Background()
	}
	if err := e.check(key); err != nil {
		return nil, err
	}
	for {
		changed := e.ledger.Changed()
		if v, _, ok := e.ledger.Get(key); ok {
			return v, nil
		}
		if err := e.usable(); err != nil {
			return nil, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-e.done:
		}
	}
}
