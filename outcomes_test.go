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
		if int(o.n) != len(model) || o.n > maxShardOutcomes {
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

// check verifies the invariant written at outcomeRing: every slot not
// held is zero, and errors are kept only for held failures.
func (o *outcomeRing) check() error {
	mask := len(o.recs) - 1
	for i := range o.recs {
		held := (i-int(o.start))&mask < int(o.n)
		if !held && (o.recs[i] != outcomeRec{} || o.hashes[i] != 0) {
			return fmt.Errorf("slot %d keeps a forgotten record", i)
		}
		if o.errs != nil && (*o.errs)[i] != nil && (!held || o.recs[i].stamp&recFailed == 0) {
			return fmt.Errorf("slot %d keeps an error that no held failure has", i)
		}
	}
	if o.n > maxShardOutcomes || int(o.n) > len(o.recs) {
		return fmt.Errorf("the ring holds %d records in %d slots", o.n, len(o.recs))
	}
	return nil
}
