package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alitto/pond/v2"
	"github.com/qpool/qpool"
	"github.com/sourcegraph/conc/pool"
)

// ResultRunner is the adapter of the result workload: it runs fn(i) for
// every i < len(ids), on workers goroutines, and stores each result in
// out[i] as the submitter collects it. ids holds a unique ID per task, for
// the implementations that take one; building them is not timed.
type ResultRunner interface {
	Run(workers int, ids []string, fn func(i int) int, out []int) error
}

// ResultCase names a ResultRunner.
type ResultCase struct {
	Name string
	R    ResultRunner
}

// ResultRunners lists every result implementation, floor first.
func ResultRunners() []ResultCase {
	return []ResultCase{
		{"futurefloor", futureFloor{}},
		{"qpool-schedule", qpoolSchedule{}}, // the default options
		{"qpool-schedule-observed", qpoolSchedule{[]qpool.Option{qpool.WithObserver(NoopObserver)}}},
		{"qpool-schedule-nowindow", qpoolSchedule{[]qpool.Option{qpool.WithDependencyWindow(0)}}},
		{"qpool-schedule-ttl1m", qpoolSchedule{[]qpool.Option{qpool.WithResultTTL(time.Minute)}}},
		{"qpool-submit", qpoolSubmit{}},
		{"qpool-submit-ttl1m", qpoolSubmit{[]qpool.Option{qpool.WithResultTTL(time.Minute)}}},
		{"qpool-group", qpoolGroup{}},
		{"pond-result", pondResult{}},
		{"conc-result", concResult{}},
	}
}

// futureFloor is the channel pool with a bare one-slot channel per task as
// its future: the least a pool with futures must pay.
type futureFloor struct{}

func (futureFloor) Run(workers int, ids []string, fn func(int) int, out []int) error {
	p := NewChanPool(workers, qpool.DefaultQueueSize)
	futs := make([]chan int, len(ids))
	for i := range ids {
		f := make(chan int, 1)
		futs[i] = f
		p.Go(func() { f <- fn(i) })
	}
	for i, f := range futs {
		out[i] = <-f
	}
	p.Close()
	return nil
}

// qpoolSchedule uses Pool.Schedule and Future.Wait: the entanglement
// examples' call, with an ID per task and an any-typed result. opts come
// after WithWorkers; none means the pool's defaults.
type qpoolSchedule struct{ opts []qpool.Option }

func (r qpoolSchedule) Run(workers int, ids []string, fn func(int) int, out []int) error {
	p := qpool.NewPool(append([]qpool.Option{qpool.WithWorkers(workers)}, r.opts...)...)
	defer p.Close()
	futs := make([]*qpool.Future[any], len(ids))
	for i, id := range ids {
		futs[i] = p.Schedule(id, func() (any, error) { return fn(i), nil })
	}
	ctx := context.Background()
	for i, f := range futs {
		v, err := f.Wait(ctx)
		if err != nil {
			return err
		}
		n, ok := v.(int)
		if !ok {
			return fmt.Errorf("bench: task %d returned %T", i, v)
		}
		out[i] = n
	}
	return nil
}

// qpoolSubmit uses the typed Submit[int] and Future.Wait.
type qpoolSubmit struct{ opts []qpool.Option }

func (r qpoolSubmit) Run(workers int, ids []string, fn func(int) int, out []int) error {
	p := qpool.NewPool(append([]qpool.Option{qpool.WithWorkers(workers)}, r.opts...)...)
	defer p.Close()
	futs := make([]*qpool.Future[int], len(ids))
	for i, id := range ids {
		futs[i] = qpool.Submit(p, id, func(context.Context) (int, error) { return fn(i), nil })
	}
	ctx := context.Background()
	for i, f := range futs {
		v, err := f.Wait(ctx)
		if err != nil {
			return err
		}
		out[i] = v
	}
	return nil
}

// qpoolGroup uses a Group over the pool (default options, as
// qpool-schedule): Go per task, under a generated ID, and one Wait for the
// results in submission order.
type qpoolGroup struct{}

func (qpoolGroup) Run(workers int, ids []string, fn func(int) int, out []int) error {
	p := qpool.NewPool(qpool.WithWorkers(workers))
	defer p.Close()
	g := qpool.NewGroup[int](context.Background(), p)
	for i := range ids {
		g.Go(func(context.Context) (int, error) { return fn(i), nil })
	}
	res, err := g.Wait()
	if err != nil {
		return err
	}
	if len(res) != len(out) {
		return fmt.Errorf("bench: the group returned %d results, want %d", len(res), len(out))
	}
	copy(out, res)
	return nil
}

// pondResult uses NewResultPool and Result.Wait.
type pondResult struct{}

func (pondResult) Run(workers int, ids []string, fn func(int) int, out []int) error {
	p := pond.NewResultPool[int](workers)
	defer p.StopAndWait()
	futs := make([]pond.ResultTask[int], len(ids))
	for i := range ids {
		futs[i] = p.Submit(func() int { return fn(i) })
	}
	for i, f := range futs {
		v, err := f.Wait()
		if err != nil {
			return err
		}
		out[i] = v
	}
	return nil
}

// indexed is a result tagged with its task, because conc's result pool
// returns results as a slice rather than one future per task.
type indexed struct{ i, v int }

// concResult uses conc's ResultPool: Go per task, Wait for the slice.
type concResult struct{}

func (concResult) Run(workers int, ids []string, fn func(int) int, out []int) error {
	p := pool.NewWithResults[indexed]().WithMaxGoroutines(workers)
	for i := range ids {
		p.Go(func() indexed { return indexed{i, fn(i)} })
	}
	res := p.Wait()
	if len(res) != len(ids) {
		return errors.New("bench: conc returned too few results")
	}
	for _, r := range res {
		out[r.i] = r.v
	}
	return nil
}
