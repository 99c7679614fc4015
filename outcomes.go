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

// outcomeRing is one shard's outcomes, oldest first, in a ring that grows
// to maxShardOutcomes and then overwrites its oldest entry. The hashes are
// kept apart from the records, so that a lookup scans 8 bytes per entry.
// Most jobs succeed, so a record has no room for an error: errs is made by
// the first failed record, as long as recs, and holds the errors of
// failed records (flagged in their stamps) at their indices. A record so
// takes 32 bytes with its hash, where it took 56 with an error of its own:
// every shard of a busy pool writes 2,048 of them, and the first burst of
// jobs pays for that memory fresh.
//
// Invariant: the records held are recs[(start+k)&mask] for k < n, oldest
// first, with their hashes at the same indices; every other slot is zero,
// and errs (when made) holds an error only at the index of a held record
// flagged recFailed, so that the collector does not keep a forgotten ID or
// error alive. Who may break it: any change to hashes, recs, errs, start or
// n outside put, grow and dropOldest. Guarded by the shard's mutex.
type outcomeRing struct {
	hashes []uint64 // a power of two long, or nil
	recs   []outcomeRec
	errs   *[]error // nil until a failed record is put; a pointer, and
	start  int32    // index of the oldest record; int32s, so that the ring
	n      int32    // records held; takes 64 bytes and a shard 192 (TestShardSize)
}

// outcomeRec is an outcome as the ring stores it, in 24 bytes: the ID, and
// the expiry with two flags in its lowest bits.
type outcomeRec struct {
	id    string
	stamp int64 // expires<<2 | recFailed | recDepFailed
}

const (
	recFailed    = 1 << iota // the job failed: its error is in errs
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
	if int(o.n) == len(o.recs) {
		if len(o.recs) < maxShardOutcomes {
			o.grow()
		} else {
			o.dropOldest()
		}
	}
	i := int(o.start+o.n) & (len(o.recs) - 1)
	stamp := int64(min(max(rec.expires, 0), maxExpires)) << 2
	if rec.depFailed {
		stamp |= recDepFailed
	}
	if rec.err != nil {
		stamp |= recFailed
		if o.errs == nil {
			errs := make([]error, len(o.recs))
			o.errs = &errs
		}
		(*o.errs)[i] = rec.err
	}
	o.hashes[i], o.recs[i] = h, outcomeRec{rec.id, stamp}
	o.n++
}

// find returns the newest outcome recorded for id (hash h): a reused ID's
// latest job is the one that counts.
func (o *outcomeRing) find(h uint64, id string) (outcome, bool) {
	mask := len(o.recs) - 1
	for k := int(o.n) - 1; k >= 0; k-- {
		i := (int(o.start) + k) & mask
		if o.hashes[i] == h && o.recs[i].id == id {
			r := &o.recs[i]
			out := outcome{id: r.id, expires: r.expires(), depFailed: r.stamp&recDepFailed != 0}
			if r.stamp&recFailed != 0 {
				out.err = (*o.errs)[i]
			}
			return out, true
		}
	}
	return outcome{}, false
}

// expire forgets the outcomes whose window ended before now.
func (o *outcomeRing) expire(now time.Duration) {
	for o.n > 0 && now > o.recs[o.start].expires() {
		o.dropOldest()
	}
}

// dropOldest forgets the oldest outcome, clearing it for the collector.
func (o *outcomeRing) dropOldest() {
	if o.recs[o.start].stamp&recFailed != 0 {
		(*o.errs)[o.start] = nil
	}
	o.hashes[o.start], o.recs[o.start] = 0, outcomeRec{}
	o.start = (o.start + 1) & int32(len(o.recs)-1)
	o.n--
}

// grow makes the ring four times as long (8 at first), keeping the
// records in order. Growing by four rather than two copies a third as
// many records, and allocates a third less, on the way to the bound.
func (o *outcomeRing) grow() {
	size := min(max(4*len(o.recs), 8), maxShardOutcomes)
	hashes, recs := make([]uint64, size), make([]outcomeRec, size)
	var errs []error
	if o.errs != nil {
		errs = make([]error, size)
	}
	for k := range int(o.n) {
		i := (int(o.start) + k) & (len(o.recs) - 1)
		hashes[k], recs[k] = o.hashes[i], o.recs[i]
		if errs != nil {
			errs[k] = (*o.errs)[i]
		}
	}
	o.hashes, o.recs, o.start = hashes, recs, 0
	if errs != nil {
		o.errs = &errs
	}
}
