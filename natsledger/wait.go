package natsledger

import (
	"container/heap"
	"context"
	"fmt"
	"slices"

	"github.com/qpool/qpool"
)

// waiter is an Append waiting for the replica to reach seq.
type waiter struct {
	seq uint64 // stream sequence
	ch  chan struct{}
}

// waitHeap orders waiters by sequence, so that each applied message wakes
// only the appends it completes.
type waitHeap []waiter

func (h waitHeap) Len() int           { return len(h) }
func (h waitHeap) Less(i, j int) bool { return h[i].seq < h[j].seq }
func (h waitHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *waitHeap) Push(x any)        { *h = append(*h, x.(waiter)) }
func (h *waitHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	*h = old[:len(old)-1]
	return w
}

// wake releases every waiter the replica has reached. The caller holds mu.
func (l *Ledger) wake() {
	for l.waiters.Len() > 0 && l.waiters[0].seq <= l.applied {
		close(heap.Pop(&l.waiters).(waiter).ch)
	}
}

// waitApplied blocks until the replica has applied stream sequence seq.
func (l *Ledger) waitApplied(ctx context.Context, seq uint64) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return qpool.ErrClosed
	}
	if l.applied >= seq {
		l.mu.Unlock()
		return nil
	}
	w := waiter{seq: seq, ch: make(chan struct{})}
	heap.Push(&l.waiters, w)
	l.mu.Unlock()
	select {
	case <-w.ch:
		l.mu.Lock()
		closed := l.closed && l.applied < seq
		l.mu.Unlock()
		if closed {
			return qpool.ErrClosed
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("replica behind stream sequence %d: %w", seq, context.Cause(ctx))
	}
}

// own is an Append waiting for its message to come back through the
// replica, found by its message ID.
type own struct {
	done  chan struct{} // closed when applied, or on Close
	seq   uint64        // stream sequence, once applied
	nanos int64         // server timestamp, once applied
	err   error         // qpool.ErrClosed if Close came first
	retry bool          // the message ID was published before: see attempt
}

// expect registers the append with message ID id.
func (l *Ledger) expect(id string) (*own, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, qpool.ErrClosed
	}
	w := &own{done: make(chan struct{})}
	l.owns[id] = append(l.owns[id], w)
	return w, nil
}

// forget removes w, the append with message ID id.
func (l *Ledger) forget(id string, w *own) {
	l.mu.Lock()
	ws := slices.DeleteFunc(l.owns[id], func(v *own) bool { return v == w })
	if len(ws) == 0 {
		delete(l.owns, id)
	} else {
		l.owns[id] = ws
	}
	l.mu.Unlock()
}

// completeOwn completes every append waiting for the message with ID id,
// if it is ours: several may wait for one ID (a Retry beside another, or
// beside the settle of the same change). The caller holds mu.
func (l *Ledger) completeOwn(id string, seq uint64, nanos int64) {
	ws, ok := l.owns[id]
	if !ok {
		return
	}
	delete(l.owns, id)
	for _, w := range ws {
		w.seq, w.nanos = seq, nanos
		close(w.done)
	}
}
