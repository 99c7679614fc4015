package qpool

import (
	"math"
	"time"
)

// maxShardOutcomes bounds the outcomes one registry shard remembers, so
// that the outcomes of a pool take a bounded amount of memory however fast
// jobs finish: idShards × maxShardOutcomes (65,536) records of an ID and an
// error. Past it the oldest outcome is forgotten before its window ends.
const maxShardOutcomes = 2048

// outcome is what the registry remembers of a finished job once it has let
// the job go: whether it succeeded, for jobs that name it as a dependency
// later ([WithDependencyWindow]). It holds the ID and the error, not the
// job, so the job's value and closure are free for the collector as soon
// as its future is dropped.
type outcome struct {
	id        string
	err       error
	expires   time.Duration // since the registry's epoch
	depFailed bool          // err is the pool's, for a failed dependency: see dependencyError
}

// Block sizes of an outcomeRing: the first block holds minOutcomeBlock
// records, each later one twice the one before, up to maxOutcomeBlock.
// So a shard that has kept a few outcomes holds a few hundred bytes, and a
// busy one grows to its bound without copying what it holds.
const (
	minOutcomeBlock = 8
	maxOutcomeBlock = 256
)

// outcomeRing is one shard's outcomes, oldest first: a queue of blocks.
// put appends to the newest block, or to a new one when that is full;
// dropOldest empties the oldest block from its start and lets it go, or
// keeps it as the spare for the next new block of its size, once it is
// empty. So the queue never copies a record, however it grows: a ring in
// one array that doubles copies every record it holds at every doubling,
// into memory it has just allocated, which on a pool's first burst of jobs
// cost about as much as the records themselves. At the bound, every put
// drops one record and every block that empties is reused: no allocation.
// The hashes are kept apart from the records, so that a lookup scans 8
// bytes per entry. Guarded by the shard's mutex.
//
// Invariant: the records held are, in order, blocks[0].recs[start:end],
// then each later block's [start:end]; every block but the last is full
// to its end, every block but the first starts at 0, and no block is
// empty; n is the total, at most maxShardOutcomes. Records outside
// [start:end] are zero, and a block's errs holds an error only at the
// index of a held record flagged recFailed, so that the collector does not
// keep a forgotten ID or error alive. Who may break it: any change to
// blocks, start, end, errs or n outside put and dropOldest.
type outcomeRing struct {
	blocks []*outcomeBlock // oldest first; none empty
	spare  *outcomeBlock   // an emptied block of maxOutcomeBlock records, for reuse
	n      int             // records held
}

// outcomeBlock is a run of records of an outcomeRing, those in [start:end]
// held. Most jobs succeed, so a record has no room for an error: a
// block's errs is made by its first failed record, and holds the errors
// of its failed records (flagged in their stamps) at their indices.
type outcomeBlock struct {
	hashes     []uint64
	recs       []outcomeRec
	errs       []error // nil until a failed record is put in the block
	start, end int
}

// outcomeRec is an outcome as a block stores it, in 24 bytes: the ID, and
// the expiry with two flags in its lowest bits.
type outcomeRec struct {
	id    string
	stamp int64 // expires<<2 | recFailed | recDepFailed
}

const (
	recFailed    = 1 << iota // the job failed: its error is in the block's errs
	recDepFailed             // the outcome's depFailed
)

// maxExpires is the latest expiry a record can hold, about 73 years after
// the registry's epoch: a later one is stored as this, which no pool
// reaches.
const maxExpires = time.Duration(math.MaxInt64 >> 2)

func (r *outcomeRec) expires() time.Duration { return time.Duration(r.stamp >> 2) }

// put records the outcome of a job with hash h, forgetting the oldest
// record when the ring is at its bound.
func (o *outcomeRing) put(h uint64, rec outcome) {
	if o.n >= maxShardOutcomes {
		o.dropOldest()
	}
	var b *outcomeBlock
	if k := len(o.blocks); k > 0 {
		b = o.blocks[k-1]
	}
	if b == nil || b.end == len(b.recs) {
		b = o.newBlock(b)
		o.blocks = append(o.blocks, b)
	}
	stamp := int64(min(max(rec.expires, 0), maxExpires)) << 2
	if rec.depFailed {
		stamp |= recDepFailed
	}
	if rec.err != nil {
		stamp |= recFailed
		if b.errs == nil {
			b.errs = make([]error, len(b.recs))
		}
		b.errs[b.end] = rec.err
	}
	b.hashes[b.end], b.recs[b.end] = h, outcomeRec{rec.id, stamp}
	b.end++
	o.n++
}

// newBlock returns an empty block to follow last (nil when the ring is
// empty): the spare when it has the size wanted, else a new one.
func (o *outcomeRing) newBlock(last *outcomeBlock) *outcomeBlock {
	size := minOutcomeBlock
	if last != nil {
		size = min(2*len(last.recs), maxOutcomeBlock)
	}
	if b := o.spare; b != nil && len(b.recs) == size {
		o.spare = nil
		return b
	}
	return &outcomeBlock{hashes: make([]uint64, size), recs: make([]outcomeRec, size)}
}

// find returns the newest outcome recorded for id (hash h): a reused ID's
// latest job is the one that counts.
func (o *outcomeRing) find(h uint64, id string) (outcome, bool) {
	for k := len(o.blocks) - 1; k >= 0; k-- {
		b := o.blocks[k]
		for i := b.end - 1; i >= b.start; i-- {
			if b.hashes[i] == h && b.recs[i].id == id {
				return b.outcome(i), true
			}
		}
	}
	return outcome{}, false
}

// outcome returns record i of b.
func (b *outcomeBlock) outcome(i int) outcome {
	r := &b.recs[i]
	o := outcome{id: r.id, expires: r.expires(), depFailed: r.stamp&recDepFailed != 0}
	if r.stamp&recFailed != 0 {
		o.err = b.errs[i]
	}
	return o
}

// expire forgets the outcomes whose window ended before now.
func (o *outcomeRing) expire(now time.Duration) {
	for o.n > 0 {
		b := o.blocks[0]
		if now <= b.recs[b.start].expires() {
			return
		}
		o.dropOldest()
	}
}

// dropOldest forgets the oldest outcome, clearing it for the collector,
// and lets its block go once it is empty (keeping it as the spare unless
// the ring is now empty). The ring must hold one.
func (o *outcomeRing) dropOldest() {
	b := o.blocks[0]
	if b.recs[b.start].stamp&recFailed != 0 {
		b.errs[b.start] = nil
	}
	b.hashes[b.start], b.recs[b.start] = 0, outcomeRec{}
	b.start++
	o.n--
	if b.start < b.end {
		return
	}
	// Empty: the oldest block was full to its end (every block but the
	// last is), or it was the last one and the ring is now empty.
	copy(o.blocks, o.blocks[1:])
	o.blocks[len(o.blocks)-1] = nil
	o.blocks = o.blocks[:len(o.blocks)-1]
	switch {
	case o.n == 0:
		o.spare = nil // an idle shard keeps nothing
	case len(b.recs) == maxOutcomeBlock:
		b.start, b.end = 0, 0
		o.spare = b
	}
}
