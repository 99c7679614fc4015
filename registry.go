package qpool

import (
	"context"
	"fmt"
)

// submit validates, registers and queues a job built by Submit or Schedule.
// Every outcome resolves the job's future or leaves it to a worker.
func (p *Pool) submit(j *job, nilFn bool) {
	p.stats.submitted.Add(1)
	if err := validate(j, nilFn); err != nil {
		p.reject(j, err)
		return
	}
	if !p.accept() {
		p.reject(j, jobError(j.id, p.closedErr()))
		return
	}
	ready, err := p.register(j)
	if err != nil {
		p.reject(j, err)
		p.done()
		return
	}
	if e := j.cfg.entanglement; e != nil {
		e.AddJob(Job{ID: j.id})
	}
	if !ready {
		return // a finishing dependency will queue it
	}
	if err := p.enqueue(task{j: j}); err != nil {
		p.resolve(j, jobError(j.id, err), false)
	}
}

// validate checks what can be checked without the registry.
func validate(j *job, nilFn bool) error {
	switch {
	case j.id == "":
		return fmt.Errorf("%w: empty job id", ErrInvalidJob)
	case nilFn:
		return jobError(j.id, fmt.Errorf("%w: %w", ErrInvalidJob, ErrNilFunc))
	}
	return nil
}

// reject resolves a job that was never accepted.
func (p *Pool) reject(j *job, err error) {
	j.tryResolve(err)
	j.wake()
	p.stats.failed.Add(1)
}

// register records j under its ID and links it to its dependencies. It
// reports whether j can be queued now, or an error if it cannot be accepted.
func (p *Pool) register(j *job) (ready bool, err error) {
	if len(j.cfg.deps) == 0 {
		if !p.ids.add(j) {
			return false, jobError(j.id, ErrDuplicateJob)
		}
		return p.queued(j), nil
	}
	// Dependencies are linked under p.mu, which every release of a job
	// with dependents takes too, so a dependency cannot finish unseen
	// between the check and the link.
	p.mu.Lock()
	defer p.mu.Unlock()
	var waitFor []*job
	for _, id := range j.cfg.deps {
		d, err := p.dependency(j, id)
		if err != nil {
			return false, err
		}
		if d != nil {
			waitFor = append(waitFor, d)
		}
	}
	if !p.ids.add(j) {
		return false, jobError(j.id, ErrDuplicateJob)
	}
	for _, d := range waitFor {
		ds := d.depState()
		ds.dependents = append(ds.dependents, j)
	}
	if len(waitFor) > 0 {
		j.depState().pending = len(waitFor)
		p.waiting.Add(1)
		return false, nil // state stays stateWaiting
	}
	return p.queued(j), nil
}

// queued moves a just registered job from waiting to queued, and reports
// whether it did. Once registered the job can be found by its ID, so a
// Cancel or an abort may have resolved it already: then it must not be
// queued, or it would be resolved a second time.
func (p *Pool) queued(j *job) bool {
	return j.state.CompareAndSwap(stateWaiting, stateQueued)
}

// dependency looks up the job j depends on by id. It returns nil when that
// job has already succeeded, and an error when j cannot wait for it. p.mu
// must be held.
func (p *Pool) dependency(j *job, id string) (*job, error) {
	if id == j.id {
		return nil, jobError(j.id, fmt.Errorf("%w: depends on itself", ErrInvalidJob))
	}
	d, o, ok := p.ids.lookup(id)
	if d == nil {
		switch {
		case !ok:
			return nil, jobError(j.id, fmt.Errorf("%w: %q", ErrUnknownDependency, id))
		case o.err != nil:
			return nil, dependencyError(j.id, id, o.err)
		}
		return nil, nil // succeeded within the dependency window
	}
	// Announce the dependent before looking at d's state; d's release
	// looks at its state before the announcement. One of the two sees
	// the other (both are sequentially consistent atomics), so either
	// this call finds d done, or d's release takes p.mu and finds j.
	d.set(flagHasDependents)
	if !d.isDone() {
		return d, nil
	}
	if err := d.result(); err != nil {
		return nil, dependencyError(j.id, id, err)
	}
	return nil, nil
}

func dependencyError(id, dep string, err error) error {
	return fmt.Errorf("qpool: job %q: %w: %q: %w", id, ErrDependencyFailed, dep, err)
}

// resolve ends an accepted job with err, unless it has already ended or is
// in a state outside allowed (nil allows any). It counts the outcome, frees
// or retains the ID, and queues or fails the jobs waiting for it.
func (p *Pool) resolve(j *job, err error, panicked bool, allowed ...int32) bool {
	if !j.tryResolve(err, allowed...) {
		return false
	}
	j.asContext().release()
	switch {
	case err == nil:
		p.stats.succeeded.Add(1)
	case panicked:
		p.stats.panicked.Add(1)
		fallthrough
	default:
		p.stats.failed.Add(1)
	}
	ready, failed := p.release(j, err)
	for _, d := range ready {
		p.handOff(d)
	}
	for _, d := range failed {
		p.resolve(d, dependencyError(d.id, j.id, err), false)
	}
	p.done()
	j.wake()
	return true
}

// release tells the registry that j has finished (see idRegistry.finished)
// and returns its dependents that may now run, and those that must fail.
func (p *Pool) release(j *job, err error) (ready, failed []*job) {
	p.ids.finished(j)
	if len(j.cfg.deps) == 0 && !j.has(flagHasDependents) {
		return nil, nil // the common case: no dependency bookkeeping
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	x := j.extra.Load()
	if x == nil {
		return nil, nil
	}
	ds := &x.deps
	if ds.pending > 0 { // resolved while waiting
		ds.pending = 0
		p.waiting.Add(-1)
	}
	for _, d := range ds.dependents {
		switch {
		case d.isDone():
		case err != nil:
			failed = append(failed, d)
		default:
			dd := d.depState()
			if dd.pending--; dd.pending == 0 {
				p.waiting.Add(-1)
				ready = append(ready, d)
			}
		}
	}
	ds.dependents = nil
	return ready, failed
}

// handOff queues a job whose dependencies have all succeeded. It runs on
// whatever goroutine resolved the last dependency, often a worker, so it
// must not block: when the queue is full and no worker can start, a
// goroutine waits for room instead.
func (p *Pool) handOff(j *job) {
	if !j.state.CompareAndSwap(stateWaiting, stateQueued) {
		return // cancelled meanwhile
	}
	t := task{j: j}
	if p.tryQueue(t) || p.spawn(t) {
		return
	}
	p.wg.Add(1)
	// Owner: the pool. Ends when the job finds room (the queue, a new
	// worker, or an idle one) or the pool aborts; waited in Close.
	go func() {
		defer p.wg.Done()
		if !p.waitForRoom(t, p.aborted) {
			p.resolve(j, jobError(j.id, p.abortErr), false)
		}
	}()
}

// cancelJob implements Future.Cancel.
func (p *Pool) cancelJob(j *job) {
	if j.isDone() {
		return
	}
	j.set(flagCanceled)
	if !p.resolve(j, jobError(j.id, context.Canceled), false, stateWaiting, stateQueued) {
		j.asContext().cancelWith(context.Canceled) // running: its function decides
	}
}

// abort fails every job that has not started with err and cancels the
// running ones: the end of Shutdown's deadline and of the pool's context.
func (p *Pool) abort(err error) {
	p.abortOnce.Do(func() {
		p.abortErr = err
		close(p.aborted)
	})
	err = p.abortErr
	for _, j := range p.ids.unresolved() {
		if !p.resolve(j, jobError(j.id, err), false, stateWaiting, stateQueued) {
			j.asContext().cancelWith(err)
		}
	}
	p.drain(err)
}

// dropFunc fails a function from Go that abort kept from running.
func (p *Pool) dropFunc(err error) {
	p.stats.failed.Add(1)
	p.cfg.logger.Error("qpool: dropped a queued function", "err", err)
	p.done()
}

// drain empties the queue after abort. Jobs in it were failed by abort;
// functions from Go are dropped, counted as failed and logged.
func (p *Pool) drain(err error) {
	for {
		t, ok := p.queue.pop()
		switch {
		case !ok:
			return
		case t.j != nil:
			p.resolve(t.j, jobError(t.j.id, err), false)
		default:
			p.dropFunc(err)
		}
	}
}
