package qpool

import "time"

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

// outcomeRing is one shard's outcomes, oldest first, in a ring that grows
// to maxShardOutcomes and then overwrites its oldest entry. The hashes are
// kept apart from the records, so that a lookup scans 8 bytes per entry.
// Guarded by the shard's mutex.
type outcomeRing struct {
	hashes []uint64 // a power of two long, or nil
	recs   []outcome
	start  int // index of the oldest record
	n      int // records held
}

// put records the outcome of a job with hash h, forgetting the oldest
// record when the ring is at its bound.
func (o *outcomeRing) put(h uint64, rec outcome) {
	if o.n == len(o.recs) {
		if len(o.recs) < maxShardOutcomes {
			o.grow()
		} else {
			o.dropOldest()
		}
	}
	i := (o.start + o.n) & (len(o.recs) - 1)
	o.hashes[i], o.recs[i] = h, rec
	o.n++
}

// find returns the newest outcome recorded for id (hash h): a reused ID's
// latest job is the one that counts.
func (o *outcomeRing) find(h uint64, id string) (outcome, bool) {
	mask := len(o.recs) - 1
	for k := o.n - 1; k >= 0; k-- {
		i := (o.start + k) & mask
		if o.hashes[i] == h && o.recs[i].id == id {
			return o.recs[i], true
		}
	}
	return outcome{}, false
}

// expire forgets the outcomes whose window ended before now.
func (o *outcomeRing) expire(now time.Duration) {
	for o.n > 0 && now > o.recs[o.start].expires {
		o.dropOldest()
	}
}

// dropOldest forgets the oldest outcome, clearing it for the collector.
func (o *outcomeRing) dropOldest() {
	o.hashes[o.start], o.recs[o.start] = 0, outcome{}
	o.start = (o.start + 1) & (len(o.recs) - 1)
	o.n--
}

// grow doubles the ring (to 8 at first), keeping the records in order.
func (o *outcomeRing) grow() {
	size := max(2*len(o.recs), 8)
	hashes, recs := make([]uint64, size), make([]outcome, size)
	for k := range o.n {
		i := (o.start + k) & (len(o.recs) - 1)
		hashes[k], recs[k] = o.hashes[i], o.recs[i]
	}
	o.hashes, o.recs, o.start = hashes, recs, 0
}
