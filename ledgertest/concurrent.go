package ledgertest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/qpool/qpool"
)

const (
	appenders   = 8   // goroutines appending at once
	perAppender = 200 // appends each
)

// ack is a change Append acknowledged, with the mutation it recorded.
type ack struct {
	m qpool.Mutation
	c qpool.StateChange
}

// checkConcurrentAppenders appends from many goroutines while another reads,
// then validates the recorded history against every acknowledged change:
// each sequence handed out once, no gaps, nothing lost or altered, and the
// state the replay of the history.
func checkConcurrentAppenders(ctx context.Context, l qpool.Ledger) error {
	var p problems
	acks := make([][]ack, appenders)
	errs := make([]error, appenders+1)
	stop := make(chan struct{})
	var readers, writers sync.WaitGroup
	readers.Go(func() { errs[appenders] = readWhileAppending(ctx, l, stop) })
	for w := range appenders {
		writers.Go(func() { acks[w], errs[w] = appendConcurrently(ctx, l, w) })
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	for _, err := range errs {
		if err != nil {
			p.addf("%v", err)
		}
	}
	if p.failed() {
		return p.err()
	}
	validateHistory(ctx, &p, l, acks)
	return p.err()
}

// appendConcurrently makes one goroutine's appends. Keys are shared between
// goroutines so that the final state depends on the order of the changes.
func appendConcurrently(ctx context.Context, l qpool.Ledger, w int) ([]ack, error) {
	out := make([]ack, 0, perAppender)
	for i := range perAppender {
		m := set(fmt.Sprintf("key-%d", (w+i)%13), fmt.Sprintf("w%d-%d", w, i))
		if i%7 == 6 {
			m = del(m.Key)
		}
		c, err := l.Append(ctx, m)
		if err != nil {
			return out, fmt.Errorf("appender %d: Append #%d: %w", w, i, err)
		}
		if n := len(out); n > 0 && c.Sequence <= out[n-1].c.Sequence {
			return out, fmt.Errorf("appender %d: Append #%d got sequence %d after its previous Append got %d", w, i, c.Sequence, out[n-1].c.Sequence)
		}
		out = append(out, ack{m, c})
	}
	return out, nil
}

// readWhileAppending reads until stop closes, checking that every Read is
// gap-free from 0 and that Bounds' next never goes back. It reads again
// after each wake-up from Changed, as a watcher does, rather than spinning.
func readWhileAppending(ctx context.Context, l qpool.Ledger, stop <-chan struct{}) error {
	var last uint64
	for {
		changed := l.Changed()
		_, next := l.Bounds()
		if next < last {
			return fmt.Errorf("reader: Bounds' next went back from %d to %d", last, next)
		}
		last = next
		got, err := l.Read(ctx, 0, 0)
		if err != nil {
			return fmt.Errorf("reader: Read(0, 0): %w", err)
		}
		for i, c := range got {
			if c.Sequence != uint64(i) {
				return fmt.Errorf("reader: Read(0, 0) during appends: change %d has sequence %d", i, c.Sequence)
			}
		}
		l.Snapshot()
		select {
		case <-changed:
		case <-stop:
			return nil
		}
	}
}

// validateHistory compares the ledger with every acknowledged change.
func validateHistory(ctx context.Context, p *problems, l qpool.Ledger, acks [][]ack) {
	const total = appenders * perAppender
	bySeq := make([]*ack, total)
	for _, as := range acks {
		for i := range as {
			a := &as[i]
			want := recorded(a.c.Sequence, a.m)
			want.Timestamp = a.c.Timestamp
			switch {
			case a.c.Sequence >= total:
				p.addf("Append returned sequence %d; %d appends should use 0 to %d", a.c.Sequence, total, total-1)
			case bySeq[a.c.Sequence] != nil:
				p.addf("Append returned sequence %d twice: for %+v and %+v", a.c.Sequence, bySeq[a.c.Sequence].m, a.m)
			case !sameChange(a.c, want):
				p.addf("Append(%+v) returned %s", a.m, describe(a.c))
			default:
				bySeq[a.c.Sequence] = a
			}
		}
	}
	checkBounds(p, "after concurrent appends", l, 0, total)
	history, ok := readAll(ctx, p, l)
	if !ok {
		return
	}
	want := make([]qpool.StateChange, 0, total)
	for _, a := range bySeq {
		if a != nil {
			want = append(want, a.c)
		}
	}
	compareChanges(p, "Read(0, 0) compared with the acknowledged changes", history, want)
	state, next := l.Snapshot()
	if next != total {
		p.addf("Snapshot's next is %d, want %d", next, total)
	}
	compareState(p, "Snapshot's state compared with the replay of Read(0, 0)", state, Replay(history))
}

const (
	incrementers   = 8  // goroutines incrementing one counter
	perIncrementer = 25 // increments each
	maxAttempts    = 10000
)

// checkConcurrentGuarded runs optimistic read-modify-write increments of one
// key from many goroutines, as Entanglement.Update does: with a guard that
// is checked atomically with the append, no increment is lost, and no
// refused attempt leaves a change behind.
func checkConcurrentGuarded(ctx context.Context, l qpool.Ledger) error {
	var p problems
	errs := make([]error, incrementers)
	var wg sync.WaitGroup
	for w := range incrementers {
		wg.Go(func() { errs[w] = increment(ctx, l, perIncrementer) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			p.addf("%v", err)
		}
	}
	const total = incrementers * perIncrementer
	checkGet(&p, "after concurrent guarded increments", l, "counter", float64(total), true)
	checkBounds(&p, "after concurrent guarded increments", l, 0, total)
	return p.err()
}

// increment adds 1 to the counter n times, retrying on ErrConflict.
func increment(ctx context.Context, l qpool.Ledger, n int) error {
	for range n {
		for attempt := 0; ; attempt++ {
			if attempt == maxAttempts {
				return fmt.Errorf("an increment conflicted %d times in a row", maxAttempts)
			}
			v, rev, ok := l.Get("counter")
			f, _ := v.(float64)
			if ok && v != f {
				return fmt.Errorf("counter holds %#v, not a float64", v)
			}
			runtime.Gosched() // widen the window between read and write
			_, err := l.Append(ctx, qpool.Mutation{Key: "counter", Value: f + 1, Guarded: true, Revision: rev})
			if err == nil {
				break
			}
			if !errors.Is(err, qpool.ErrConflict) {
				return fmt.Errorf("guarded Append: %w", err)
			}
		}
	}
	return nil
}
