package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/qpool/qpool"
)

// EntangledRunner is the adapter of the entangled-jobs workload: run one
// job per ID, job i on entanglement i%len(stores) doing one update of
// keys[i%len(keys)] and one read of it. It returns how many reads found
// their key.
type EntangledRunner interface {
	Run(workers, groups int, ids, keys []string) (found int64, stores []Store, err error)
}

// EntangledCase names an EntangledRunner.
type EntangledCase struct {
	Name string
	R    EntangledRunner
}

// EntangledRunners lists the implementations, floor first.
func EntangledRunners() []EntangledCase {
	return []EntangledCase{
		{"chanpool+floorstore", chanEntangled{plain: true}},
		{"chanpool+entanglement", chanEntangled{}},
		{"qpool-go+entanglement", qpoolGoEntangled{}},
		{"qpool-submit-withentanglement", qpoolSubmitEntangled{}},
	}
}

// entJob is the body of one entangled job.
func entJob(s Store, key string, i int, found *atomic.Int64) error {
	if err := s.Update(key, i&0xff); err != nil {
		return err
	}
	if _, ok := s.Get(key); ok {
		found.Add(1)
	}
	return nil
}

func newStores(groups int, plain bool) []Store {
	stores := make([]Store, groups)
	for g := range stores {
		if plain {
			stores[g] = NewPlainStore()
		} else {
			stores[g] = newEntStore(0)
		}
	}
	return stores
}

// chanEntangled runs the jobs on the channel pool, with the plain store
// (the floor) or with qpool entanglements (qpool's store cost alone).
type chanEntangled struct{ plain bool }

func (r chanEntangled) Run(workers, groups int, ids, keys []string) (int64, []Store, error) {
	stores := newStores(groups, r.plain)
	var found atomic.Int64
	var failed atomic.Value
	p := NewChanPool(workers, qpool.DefaultQueueSize)
	for i := range ids {
		p.Go(func() {
			if err := entJob(stores[i%groups], keys[i%len(keys)], i, &found); err != nil {
				failed.Store(err)
			}
		})
	}
	p.Close()
	err, _ := failed.Load().(error)
	return found.Load(), stores, err
}

// qpoolGoEntangled runs the jobs with Pool.Go, each closure holding its
// entanglement: no IDs, no futures.
type qpoolGoEntangled struct{}

func (qpoolGoEntangled) Run(workers, groups int, ids, keys []string) (int64, []Store, error) {
	stores := newStores(groups, false)
	var found atomic.Int64
	var failed atomic.Value
	p := qpool.NewPool(qpool.WithWorkers(workers))
	var errs []error
	for i := range ids {
		err := p.Go(func() {
			if err := entJob(stores[i%groups], keys[i%len(keys)], i, &found); err != nil {
				failed.Store(err)
			}
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	p.Wait()
	_ = p.Close()
	err, _ := failed.Load().(error)
	return found.Load(), stores, errors.Join(err, errors.Join(errs...))
}

// qpoolSubmitEntangled is the library's intended form: Submit with an ID
// and WithEntanglement, the job finding its entanglement in its context,
// and the submitter waiting on every future. Result TTL 0.
type qpoolSubmitEntangled struct{}

func (qpoolSubmitEntangled) Run(workers, groups int, ids, keys []string) (int64, []Store, error) {
	stores := newStores(groups, false)
	var found atomic.Int64
	p := qpool.NewPool(qpool.WithWorkers(workers), qpool.WithResultTTL(0))
	defer p.Close()
	futs := make([]*qpool.Future[struct{}], len(ids))
	for i, id := range ids {
		e := stores[i%groups].(*EntStore)
		key := keys[i%len(keys)]
		futs[i] = qpool.Submit(p, id, func(ctx context.Context) (struct{}, error) {
			ent, ok := qpool.EntanglementFrom(ctx)
			if !ok || ent != e.E {
				return struct{}{}, fmt.Errorf("bench: job %d has no entanglement", i)
			}
			return struct{}{}, entJob(e, key, i, &found)
		}, qpool.WithEntanglement(e.E))
	}
	ctx := context.Background()
	for _, f := range futs {
		if _, err := f.Wait(ctx); err != nil {
			return found.Load(), stores, err
		}
	}
	return found.Load(), stores, nil
}
