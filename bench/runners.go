package bench

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/alitto/pond/v2"
	"github.com/panjf2000/ants/v2"
	"github.com/qpool/qpool"
	"github.com/sourcegraph/conc/pool"
	"golang.org/x/sync/errgroup"
)

// Runner is the adapter every fire-and-forget implementation provides:
// Start makes a pool of workers, Go submits one task, and Wait waits for
// every submitted task and releases the pool. A Runner is used once.
type Runner interface {
	Start(workers int)
	Go(fn func())
	Wait() error
}

// RunnerCase names a Runner constructor.
type RunnerCase struct {
	Name string
	New  func() Runner
	// Unbounded marks implementations that ignore the worker count.
	Unbounded bool
}

// errRejected counts submissions an implementation refused.
var errRejected = errors.New("bench: task rejected")

// Runners lists every fire-and-forget implementation, floor first.
func Runners() []RunnerCase {
	return []RunnerCase{
		{Name: "chanpool", New: func() Runner { return &chanRunner{} }},
		{Name: "qpool-go", New: func() Runner { return &qpoolGo{} }},
		{Name: "qpool-go-observed", New: func() Runner { return &qpoolGo{opts: []qpool.Option{qpool.WithObserver(NoopObserver)}} }},
		{Name: "ants-submit", New: func() Runner { return &antsSubmit{} }},
		{Name: "ants-func", New: func() Runner { return &antsFunc{} }},
		{Name: "pond-go", New: func() Runner { return &pondGo{} }},
		{Name: "pond-submit", New: func() Runner { return &pondSubmit{} }},
		{Name: "errgroup", New: func() Runner { return &errgroupRunner{} }},
		{Name: "conc", New: func() Runner { return &concRunner{} }},
		{Name: "goroutines", New: func() Runner { return &goRunner{} }, Unbounded: true},
	}
}

type chanRunner struct{ p *ChanPool }

func (r *chanRunner) Start(w int)  { r.p = NewChanPool(w, qpool.DefaultQueueSize) }
func (r *chanRunner) Go(fn func()) { r.p.Go(fn) }
func (r *chanRunner) Wait() error  { r.p.Close(); return nil }

// qpoolGo uses Pool.Go with the default queue size, the same as chanpool's.
type qpoolGo struct {
	opts   []qpool.Option // after WithWorkers
	p      *qpool.Pool
	failed atomic.Int64
}

func (r *qpoolGo) Start(w int) {
	r.p = qpool.NewPool(append([]qpool.Option{qpool.WithWorkers(w)}, r.opts...)...)
}

// NoopObserver has every function of a qpool.Observer set, each doing
// nothing: the rows "…-observed" measure what observing costs the pool
// itself, events built and delivered, with no work of an observer's.
var NoopObserver = qpool.Observer{
	Submitted: func(context.Context, qpool.JobEvent) {},
	Started:   func(context.Context, qpool.JobEvent) context.Context { return nil },
	Retried:   func(context.Context, qpool.JobEvent) {},
	Finished:  func(context.Context, qpool.JobEvent) {},
}

func (r *qpoolGo) Go(fn func()) {
	if r.p.Go(fn) != nil {
		r.failed.Add(1)
	}
}
func (r *qpoolGo) Wait() error {
	r.p.Wait()
	if err := r.p.Close(); err != nil {
		return err
	}
	return rejected(r.failed.Load())
}

func rejected(n int64) error {
	if n > 0 {
		return errRejected
	}
	return nil
}

// antsSubmit uses Pool.Submit; ants cannot wait for its tasks, so each task
// is wrapped to count down a WaitGroup, as ants' own benchmarks do.
type antsSubmit struct {
	p      *ants.Pool
	wg     sync.WaitGroup
	failed int64
	err    error
}

func (r *antsSubmit) Start(w int) { r.p, r.err = ants.NewPool(w) }
func (r *antsSubmit) Go(fn func()) {
	r.wg.Add(1)
	if err := r.p.Submit(func() { fn(); r.wg.Done() }); err != nil {
		r.wg.Done()
		r.failed++
	}
}
func (r *antsSubmit) Wait() error {
	r.wg.Wait()
	r.p.Release()
	return errors.Join(r.err, rejected(r.failed))
}

// antsFunc uses PoolWithFunc: one function for the pool, the task as its
// argument, which saves the wrapping closure.
type antsFunc struct {
	p      *ants.PoolWithFunc
	wg     sync.WaitGroup
	failed int64
	err    error
}

func (r *antsFunc) Start(w int) {
	r.p, r.err = ants.NewPoolWithFunc(w, func(a any) {
		a.(func())()
		r.wg.Done()
	})
}
func (r *antsFunc) Go(fn func()) {
	r.wg.Add(1)
	if err := r.p.Invoke(fn); err != nil {
		r.wg.Done()
		r.failed++
	}
}
func (r *antsFunc) Wait() error {
	r.wg.Wait()
	r.p.Release()
	return errors.Join(r.err, rejected(r.failed))
}

type pondGo struct {
	p      pond.Pool
	failed int64
}

func (r *pondGo) Start(w int) { r.p = pond.NewPool(w) }
func (r *pondGo) Go(fn func()) {
	if r.p.Go(fn) != nil {
		r.failed++
	}
}
func (r *pondGo) Wait() error { r.p.StopAndWait(); return rejected(r.failed) }

// pondSubmit uses Pool.Submit, which returns a Task future per task; the
// futures are dropped and StopAndWait waits for all.
type pondSubmit struct{ p pond.Pool }

func (r *pondSubmit) Start(w int)  { r.p = pond.NewPool(w) }
func (r *pondSubmit) Go(fn func()) { r.p.Submit(fn) }
func (r *pondSubmit) Wait() error  { r.p.StopAndWait(); return nil }

type errgroupRunner struct{ g errgroup.Group }

func (r *errgroupRunner) Start(w int)  { r.g.SetLimit(w) }
func (r *errgroupRunner) Go(fn func()) { r.g.Go(func() error { fn(); return nil }) }
func (r *errgroupRunner) Wait() error  { return r.g.Wait() }

type concRunner struct{ p *pool.Pool }

func (r *concRunner) Start(w int)  { r.p = pool.New().WithMaxGoroutines(w) }
func (r *concRunner) Go(fn func()) { r.p.Go(fn) }
func (r *concRunner) Wait() error  { r.p.Wait(); return nil }

// goRunner starts a goroutine per task: no bound on concurrency.
type goRunner struct{ wg sync.WaitGroup }

func (r *goRunner) Start(int) {}
func (r *goRunner) Go(fn func()) {
	r.wg.Add(1)
	go func() { fn(); r.wg.Done() }()
}
func (r *goRunner) Wait() error { r.wg.Wait(); return nil }
