package qpool

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestOutcomeRingModel drives the ring with random records, expiries and
// lookups against a plain slice of what it should hold: the newest
// maxShardOutcomes records whose window has not passed, the newest one
// found for a reused ID. It wraps the ring first, then lets time pass.
func TestOutcomeRingModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var o outcomeRing
	var model []outcome // oldest first
	now := time.Duration(0)
	errFail := errors.New("fail")
	full := false
	hash := func(id string) uint64 { return uint64(len(id)) } // collisions on purpose
	for step := range 30_000 {
		switch r := rng.IntN(100); {
		case r < 60: // a job finishes
			rec := outcome{id: fmt.Sprint("j", rng.IntN(3000)), expires: now + time.Duration(rng.IntN(50))}
			if rng.IntN(3) == 0 {
				rec.err = errFail
				rec.depFailed = rng.IntN(2) == 0
			}
			// Expiries in the ring are in order of recording, as the
			// registry's are (one window, a clock that moves forward).
			if len(model) > 0 && rec.expires < model[len(model)-1].expires {
				rec.expires = model[len(model)-1].expires
			}
			o.put(hash(rec.id), rec)
			model = append(model, rec)
			if len(model) > maxShardOutcomes {
				model = model[1:]
			}
		case r < 70 && step > 20_000: // time passes and the ring expires (after it has wrapped)
			now += time.Duration(rng.IntN(5))
			o.expire(now)
			for len(model) > 0 && now > model[0].expires {
				model = model[1:]
			}
		default: // a lookup
			id := fmt.Sprint("j", rng.IntN(3000))
			got, ok := o.find(hash(id), id)
			var want outcome
			found := false
			for i := len(model) - 1; i >= 0; i-- {
				if model[i].id == id {
					want, found = model[i], true
					break
				}
			}
			if ok != found || got != want {
				t.Fatalf("step %d: find(%s) = %v %v, want %v %v", step, id, got, ok, want, found)
			}
		}
		full = full || o.n == maxShardOutcomes
		if o.n != len(model) || o.n > maxShardOutcomes {
			t.Fatalf("step %d: ring holds %d, model %d", step, o.n, len(model))
		}
		if err := o.check(); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
	}
	if !full {
		t.Fatal("the ring never reached its bound: the wrap went untested")
	}
}

// check verifies the invariant written at outcomeRing: blocks in order,
// none empty, all but the last full to the end, all but the first from 0,
// n their total, and every slot outside [start:end] zero.
func (o *outcomeRing) check() error {
	total := 0
	for k, b := range o.blocks {
		switch {
		case b.start >= b.end:
			return fmt.Errorf("block %d of %d is empty", k, len(o.blocks))
		case k < len(o.blocks)-1 && b.end != len(b.recs):
			return fmt.Errorf("block %d of %d is not full to its end", k, len(o.blocks))
		case k > 0 && b.start != 0:
			return fmt.Errorf("block %d of %d does not start at 0", k, len(o.blocks))
		}
		for i := range b.recs {
			held := i >= b.start && i < b.end
			if !held && (b.recs[i] != outcomeRec{} || b.hashes[i] != 0) {
				return fmt.Errorf("block %d keeps a forgotten record at %d", k, i)
			}
			if b.errs != nil && b.errs[i] != nil && (!held || b.recs[i].stamp&recFailed == 0) {
				return fmt.Errorf("block %d keeps an error at %d that no held failure has", k, i)
			}
		}
		total += b.end - b.start
	}
	if total != o.n || o.n > maxShardOutcomes {
		return fmt.Errorf("blocks hold %d records, n is %d", total, o.n)
	}
	if o.n == 0 && o.spare != nil {
		return fmt.Errorf("an empty ring keeps a spare block")
	}
	return nil
}
