package qpool

import (
	"sync"
	"sync/atomic"
)

// roomSignal lets submitters that found the queue full wait until it has
// drained to half, instead of each being woken for every slot a worker
// frees. A producer faster than the workers then parks once per half queue
// rather than once per job: the per-job park and wake-up is most of what a
// full queue costs the submitter and the workers.
//
// A submitter counts itself in waiters before its last look at the queue,
// and a worker looks at waiters after each receive; both are sequentially
// consistent, so one of the two sees the other: either the submitter finds
// room, or a worker that drains the queue to half sees it waiting and
// signals. (A queue of size 0 has no room to find, only a worker waiting
// in a receive; its submitters wait in the send instead.) A worker about
// to go idle signals too, whatever the queue's length: a backstop, so that
// no submitter is ever left waiting behind an empty queue.
type roomSignal struct {
	waiters atomic.Int32  // submitters between enter and leave
	mu      sync.Mutex    // guards ch
	ch      chan struct{} // closed by the next signal; nil when nobody waits
}

// enter counts a waiting submitter and returns the channel the next signal
// closes.
func (r *roomSignal) enter() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waiters.Add(1)
	if r.ch == nil {
		r.ch = make(chan struct{})
	}
	return r.ch
}

// leave uncounts a submitter counted by enter.
func (r *roomSignal) leave() { r.waiters.Add(-1) }

// waiting reports whether a submitter may be waiting for room.
func (r *roomSignal) waiting() bool { return r.waiters.Load() > 0 }

// signal wakes every submitter waiting for room.
func (r *roomSignal) signal() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ch != nil {
		close(r.ch)
		r.ch = nil
	}
}

// waitForRoom queues t once the queue has room, or fails when intake stops.
// Waiting submitters are not served in order: all of them try again when
// the queue has drained to half. A pool without a queue hands each task
// straight to a worker, so there a submitter waits in the send itself.
func (p *Pool) waitForRoom(t task) error {
	if cap(p.tasks) == 0 {
		if p.closed.Load() {
			return p.closedErr()
		}
		select {
		case p.tasks <- t:
			p.ensureWorker()
			return nil
		case <-p.closing:
			return p.closedErr()
		}
	}
	for {
		if p.closed.Load() {
			return p.closedErr() // Close began: do not wait for room
		}
		room := p.room.enter()
		if p.trySend(t) {
			p.room.leave()
			return nil
		}
		select {
		case <-room:
			p.room.leave()
		case <-p.closing:
			p.room.leave()
			return p.closedErr()
		}
		if p.trySend(t) {
			return nil
		}
	}
}

// tookTask runs after a worker took a task from the queue: it wakes waiting
// submitters once the queue is down to half.
func (p *Pool) tookTask() {
	if p.room.waiting() && len(p.tasks) <= cap(p.tasks)/2 {
		p.room.signal()
	}
}
