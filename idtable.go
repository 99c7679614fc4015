package qpool

// idTable is a hash table from job ID to job, for one registry shard. It
// replaces a map[string]*job because of the registry's traffic: every job
// inserts a new ID, and the ID goes again soon after the job ends. A Go map
// leaves a tombstone per deletion, and a lookup of a new ID (every insert
// starts with one) probes past them until the map tidies itself; here
// deletion shifts the following entries back (linear probing), so probes
// stay short whatever the churn. The caller hashes each ID once, for the
// shard and the table both. A deletion finds its job by pointer, without
// comparing strings, or a sweep drops every job a predicate picks.
type idTable struct {
	slots []idSlot // a power of two long, or nil; j == nil marks a free slot
	n     int      // jobs held
}

type idSlot struct {
	hash uint64
	j    *job
}

// minTable is the smallest table allocated. It is small because, in the
// registry's lazy mode (no result TTL, no dependency window), a table also
// holds finished jobs until its next sweep, which comes when it is three
// quarters full.
const minTable = 4

// find returns the job registered under id, or nil.
func (t *idTable) find(h uint64, id string) *job {
	if t.n == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; t.slots[i].j != nil; i = (i + 1) & mask {
		if s := t.slots[i]; s.hash == h && s.j.id == id {
			return s.j
		}
	}
	return nil
}

// full reports whether the next put would grow the table: it is kept at
// most three quarters full.
func (t *idTable) full() bool { return 4*(t.n+1) > 3*len(t.slots) }

// put registers j under its ID (hash h), replacing any job with that ID.
func (t *idTable) put(h uint64, j *job) { t.putUnless(h, j, nil) }

// putUnless registers j under its ID (hash h), replacing any job with that
// ID unless keep (when not nil) says that job stays: then it returns that
// job and registers nothing. One probe serves as both the lookup and the
// insertion.
func (t *idTable) putUnless(h uint64, j *job, keep func(*job) bool) *job {
	if t.full() {
		t.resize(max(2*len(t.slots), minTable))
	}
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for ; t.slots[i].j != nil; i = (i + 1) & mask {
		if s := t.slots[i]; s.hash == h && s.j.id == j.id {
			if keep != nil && keep(s.j) {
				return s.j
			}
			t.slots[i].j = j
			return nil
		}
	}
	t.slots[i] = idSlot{h, j}
	t.n++
	return nil
}

// remove unregisters j (hash h) if it is the job registered under its ID,
// and reports whether it was.
func (t *idTable) remove(h uint64, j *job) bool {
	if t.n == 0 {
		return false
	}
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for ; t.slots[i].j != j; i = (i + 1) & mask {
		if t.slots[i].j == nil {
			return false
		}
	}
	t.removeAt(i)
	return true
}

// sweep removes every job for which drop returns true.
func (t *idTable) sweep(drop func(*job) bool) {
	for i := 0; i < len(t.slots); {
		if j := t.slots[i].j; j != nil && drop(j) {
			t.removeAt(uint64(i))
			continue // the shift may have moved another entry into i
		}
		i++
	}
}

// tidy sweeps a full table, then doubles it if it is still more than half
// full: so a table that keeps filling with live jobs grows, and the sweeps
// of one that does not cost a constant number of slots per put.
func (t *idTable) tidy(drop func(*job) bool) {
	t.sweep(drop)
	if 2*t.n > len(t.slots) {
		t.resize(2 * len(t.slots))
	}
}

// fit shrinks a table that a sweep left mostly empty (an eighth full or
// less) to the smallest size at most a quarter full, so that the sweeps of
// an idle registry cost what it holds rather than what a past burst needed.
func (t *idTable) fit() {
	if len(t.slots) <= minTable || 8*t.n > len(t.slots) {
		return
	}
	size := minTable
	for 4*t.n > size {
		size *= 2
	}
	t.resize(size)
}

// removeAt empties slot i, which holds an entry.
func (t *idTable) removeAt(i uint64) {
	mask := uint64(len(t.slots) - 1)
	// Shift back every later entry of the run that may sit at i: one
	// whose home slot is not cyclically within (i, k].
	for k := (i + 1) & mask; t.slots[k].j != nil; k = (k + 1) & mask {
		home := t.slots[k].hash & mask
		if (k-home)&mask >= (k-i)&mask {
			t.slots[i] = t.slots[k]
			i = k
		}
	}
	t.slots[i] = idSlot{}
	t.n--
}

// resize moves every entry into a table of size slots.
func (t *idTable) resize(size int) {
	old := t.slots
	t.slots, t.n = make([]idSlot, size), 0
	for _, s := range old {
		if s.j != nil {
			t.put(s.hash, s.j)
		}
	}
}

// each calls fn for every registered job.
func (t *idTable) each(fn func(*job)) {
	for _, s := range t.slots {
		if s.j != nil {
			fn(s.j)
		}
	}
}

// reset forgets every job and frees the table.
func (t *idTable) reset() { *t = idTable{} }
