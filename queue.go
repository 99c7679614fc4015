package qpool

import "sync/atomic"

// taskRing is the pool's queue: a bounded ring of tasks that submitters
// fill and workers empty without a lock (Dmitry Vyukov's bounded
// multi-producer, multi-consumer queue). A Go channel takes one lock for
// every send and every receive, so one submitter and a few workers moving
// short tasks spend most of their time waiting for each other on it; here
// they meet only on the cell they both touch.
//
// Each cell carries a sequence number that says whose turn it is: 2·pos
// when the cell is free for the push at position pos, 2·pos+1 once it holds
// that push's task, 2·(pos+len(cells)) when the pop has emptied it for the
// next lap. (Doubled, so that a ring of one cell tells "full" from "free
// for the next lap".)
// A push or pop claims its position with a compare-and-swap on tail or
// head, so a full or empty ring is seen without writing anything.
//
// The ring does not park anyone: the pool wakes idle workers and waiting
// submitters itself (see Pool.enqueue and workerState.receive).
//
// Invariant: each position is claimed by exactly one push and one pop,
// each by a compare-and-swap that moves tail or head forward only; a cell's
// task is written only by the push that claimed it while its seq says
// "free" (2·pos), and read and cleared only by the pop that claimed it
// while its seq says "full" (2·pos+1). The seq store after the write
// publishes the task, so every task is taken exactly once and never read
// half-written. Who may break it: any access to a cell's task or seq
// outside push and pop, or a position moved other than by these CASes. A
// push that has claimed its position but not yet published makes pop see
// an empty ring (later tasks wait behind it); the pusher looks for a worker
// after publishing (Pool.tryQueue), so the task is not stranded.
type taskRing struct {
	_     [64]byte
	tail  atomic.Uint64 // next position to push: written by submitters
	_     [56]byte
	head  atomic.Uint64 // next position to pop: written by workers
	_     [56]byte
	cells []ringCell
	mask  uint64 // len(cells)-1, used when pow2
	pow2  bool   // len(cells) is a power of two: index with a mask, not a division
}

type ringCell struct {
	seq atomic.Uint64
	t   task
}

// init makes a ring of size cells; a ring of size 0 holds nothing.
func (r *taskRing) init(size int) {
	r.cells = make([]ringCell, size)
	for i := range r.cells {
		r.cells[i].seq.Store(2 * uint64(i))
	}
	r.mask = uint64(max(size-1, 0))
	r.pow2 = size&(size-1) == 0
}

func (r *taskRing) cell(pos uint64) *ringCell {
	if r.pow2 {
		return &r.cells[pos&r.mask]
	}
	return &r.cells[pos%uint64(len(r.cells))]
}

// push adds t, or reports false when the ring is full.
func (r *taskRing) push(t task) bool {
	if len(r.cells) == 0 {
		return false
	}
	pos := r.tail.Load()
	for {
		c := r.cell(pos)
		switch d := int64(c.seq.Load() - 2*pos); {
		case d == 0: // free for this lap
			if r.tail.CompareAndSwap(pos, pos+1) {
				c.t = t
				c.seq.Store(2*pos + 1)
				return true
			}
		case d < 0: // still holds the task of the lap before: full
			return false
		}
		pos = r.tail.Load() // another submitter took pos
	}
}

// pop takes the oldest task, or reports false when the ring is empty. A
// push that has claimed its position but not yet stored its task counts as
// not there yet; it wakes a worker itself once it has.
func (r *taskRing) pop() (task, bool) {
	if len(r.cells) == 0 {
		return task{}, false
	}
	pos := r.head.Load()
	for {
		c := r.cell(pos)
		switch d := int64(c.seq.Load() - (2*pos + 1)); {
		case d == 0: // holds the task of this lap
			if r.head.CompareAndSwap(pos, pos+1) {
				t := c.t
				c.t = task{}
				c.seq.Store(2 * (pos + uint64(len(r.cells))))
				return t, true
			}
		case d < 0: // not filled yet: empty
			return task{}, false
		}
		pos = r.head.Load() // another worker took pos
	}
}

// len returns how many tasks are queued, at about this moment.
func (r *taskRing) len() int {
	head := r.head.Load()
	tail := r.tail.Load()
	if tail <= head {
		return 0
	}
	return int(min(tail-head, uint64(len(r.cells))))
}
