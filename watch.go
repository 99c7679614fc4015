package qpool

import "context"

// watchBatch is how many changes a watch reads from the ledger at a time.
const watchBatch = 256

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
func (e *Entanglement) Watch(ctx context.Context, since uint64) <-chan StateChange {
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
// entanglement does.
func (e *Entanglement) feed(ctx context.Context, since uint64, ch chan<- StateChange) {
	defer close(ch)
	for {
		changed := e.ledger.Changed()
		batch, err := e.ledger.Read(ctx, since, watchBatch)
		if err != nil {
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

// Await blocks until key exists and returns its value. It returns ctx's
// error if ctx ends first, and [ErrClosed] or [ErrExpired] if the
// entanglement ends first. It polls nothing: it sleeps until the next
// change.
func (e *Entanglement) Await(ctx context.Context, key string) (any, error) {
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
