package qpool

import (
	"context"
	"errors"
	"fmt"
)

// submit validates, registers and queues a job built by Submit or Schedule.
// Every outcome resolves the job's future or leaves it to a worker.
func (p *Pool) submit(j *job, nilFn bool) {
	p.stats.submitted.Add(1)
	var o *jobObs
	if p.obs != nil {
		o = p.observeNew(j)
	}
	if err := validate(j, nilFn); err != nil {
		p.reject(j, err)
		return
	}
	if !p.accept() {
		p.reject(j, jobError(j.id, p.closedErr()))
		return
	}
	if o != nil {
		// Invariant: Submitted returns before any other event of the
		// job. It is called before the job is registered, linked to its
		// dependencies or queued: the only ways another goroutine (a
		// worker, Cancel, an abort, a failing dependency) can reach it.
		// Who may break it: publishing the job before this call.
		p.announce(j, o, nil)
	}
	ready, err := p.register(j)
	if err != nil {
		if !registeredFailure(err) {
			p.reject(j, err)
			p.done()
			return
		}
		// Registered, with a dependency that has failed already, or is
		// unknown: it
		// ends as if it had failed while waiting.
	}
	if e := j.cfg.entanglement; e != nil {
		e.AddJob(Job{ID: j.id})
	}
	if err != nil {
		if o != nil && errors.Is(err, ErrUnknownDependency) {
			o.rejected.Store(true)
		}
		p.resolve(j, err, false)
		return
	}
	if !ready {
		return // a finishing dependency will queue it
	}
	if err := p.enqueue(task{j: j}); err != nil {
		if o != nil {
			o.rejected.Store(true)
		}
		p.resolve(j, jobError(j.id, err), false)
	}
}

// registeredFailure reports whether register's err is one it returns for a
// job it registered all the same: a dependency that failed already, or one
// the pool does not know. The job then counts under its ID, as the newest
// job with it, and resolving it fails its own dependents the same way.
func registeredFailure(err error) bool {
	if _, failed := err.(*DependencyError); failed {
		return true
	}
	return errors.Is(err, ErrUnknownDependency)
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
	p.stats.failed.Add(1)
	if h := j.cfg.onResolve; h != nil {
		h.resolved(j) // counted first, as in settle
	}
	j.wake()
	if p.obs != nil {
		p.observeRefused(j, err)
	}
}

// register records j under its ID and links it to its dependencies. It
// reports whether j can be queued now, or an error if it cannot be accepted.
// A *DependencyError and ErrUnknownDependency are the exceptions (see
// registeredFailure): j is registered, and a dependency has failed already
// or is unknown, so the caller must resolve j with the error. Registering
// it keeps the outcome independent of timing, and makes j the newest job
// under its ID: a job submitted later that depends on j finds it failed,
// as it would had j been failed while waiting, not unknown, nor an older
// job's outcome under the same ID.
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
	var failure *DependencyError // the first dependency found failed
	var unknown error            // the first dependency the pool does not know
	for _, id := range j.cfg.deps {
		d, failed, err := p.dependency(j, id)
		switch {
		case errors.Is(err, ErrUnknownDependency):
			if unknown == nil {
				unknown = err
			}
		case err != nil:
			return false, err
		case failed != nil:
			if failure == nil {
				failure = failed
			}
		case d != nil:
			waitFor = append(waitFor, d)
		}
	}
	if !p.ids.add(j) {
		return false, jobError(j.id, ErrDuplicateJob)
	}
	if failure != nil {
		j.set(flagDepFailed) // before the caller resolves j: see dependencyError
		return false, failure
	}
	if unknown != nil {
		return false, unknown // registered, as a failed dependency's is
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

// dependency looks up the job j depends on by id. It returns the job when
// j must wait for it, a *DependencyError when it has failed already, and
// neither when it has succeeded (found in the registry, or by its outcome
// within the dependency window); or an error when j cannot depend on it.
// p.mu must be held.
func (p *Pool) dependency(j *job, id string) (d *job, failed *DependencyError, err error) {
	if id == j.id {
		return nil, nil, jobError(j.id, fmt.Errorf("%w: depends on itself", ErrInvalidJob))
	}
	d, o, ok := p.ids.lookup(id)
	if d == nil {
		switch {
		case !ok:
			return nil, nil, jobError(j.id, fmt.Errorf("%w: %q", ErrUnknownDependency, id))
		case o.err != nil:
			return nil, newDependencyError(j.id, id, o.err, o.depFailed), nil
		}
		return nil, nil, nil // succeeded within the dependency window
	}
	// Announce the dependent before looking at d's state; d's release
	// looks at its state before the announcement. One of the two sees
	// the other (both are sequentially consistent atomics), so either
	// this call finds d done, or d's release takes p.mu and finds j.
	d.set(flagHasDependents)
	if !d.isDone() {
		return d, nil, nil
	}
	if d.result() != nil {
		return nil, dependencyError(j.id, d), nil
	}
	return nil, nil, nil
}

// dependencyError is the error of job id, which depends on dep, a job that
// failed. When dep failed because of a dependency of its own, the error
// takes dep's origin and cause rather than wrapping dep's error, so that
// errors stay the same size down a chain of any length.
//
// Whether dep's error is one the pool made for a failed dependency is told
// by flagDepFailed, not by the error's type alone: a job's function
// may return a *DependencyError it got from another future, and then that
// is the job's own failure, to be wrapped as it is. The flag is set before
// the resolution that may store such an error, so whoever sees dep done
// sees the flag; when that resolution lost to another (a cancellation, an
// abort), the flag is set but the error is not a *DependencyError, and it
// is dep's own.
func dependencyError(id string, dep *job) *DependencyError {
	return newDependencyError(id, dep.id, dep.result(), dep.has(flagDepFailed))
}

// newDependencyError is dependencyError for a dependency known by its ID,
// its error and its flagDepFailed: a job, or an outcome the registry kept.
func newDependencyError(id, dep string, err error, depFailed bool) *DependencyError {
	if depFailed {
		if de, ok := err.(*DependencyError); ok {
			return &DependencyError{ID: id, Dependency: dep, Origin: de.Origin, Cause: de.Cause}
		}
	}
	return &DependencyError{ID: id, Dependency: dep, Origin: dep, Cause: err}
}

// resolve ends an accepted job with err, unless it has already ended or is
// in a state outside allowed (nil allows any). It counts the outcome, frees
// or retains the ID, and queues or fails the jobs waiting for it.
func (p *Pool) resolve(j *job, err error, panicked bool, allowed ...int32) bool {
	if !j.tryResolve(err, allowed...) {
		return false
	}
	if failed := p.settle(j, err, panicked); failed != nil {
		p.failDependents(j, failed)
	}
	return true
}

// settle does what follows the resolution of j with err: it counts the
// outcome, frees or retains the ID, queues the dependents that may now run
// and wakes j's waiters. It returns the dependents that must fail, for the
// caller to fail after j's waiters were woken.
func (p *Pool) settle(j *job, err error, panicked bool) (failed []*job) {
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
	if h := j.cfg.onResolve; h != nil {
		// A group's count, before the waiters are woken and after the
		// pool's, so that Stats after Group.Wait counts the job as after
		// Future.Wait.
		h.resolved(j)
	}
	ready, failed := p.release(j, err)
	for _, d := range ready {
		p.handOff(d)
	}
	if p.obs != nil {
		// Waiters first, so that a slow Finished does not delay the
		// future; counted finished last, so that Close waits for it.
		// Invariant: Close, Wait and a nil Shutdown never return while
		// the Finished of an accepted job runs or is still to come. Who
		// may break it: moving done above observeFinished, or a path
		// that resolves an accepted job without settle.
		j.wake()
		p.observeFinished(j, err, panicked)
		p.done()
		return failed
	}
	p.done()
	j.wake()
	return failed
}

// failDependents fails, with a *DependencyError, the jobs in failed (the
// dependents of j, which failed) and, through them, every job that waits
// for j directly or not. It walks them depth first with a stack of its own
// rather than by recursion, so that the goroutine's stack does not grow
// with the length of a chain, and it wakes each job as it resolves it:
// the first dependents' waiters need not wait for the last ones.
//
// Invariant: each job is resolved once however many failed paths lead to
// it (a diamond). A level's waiting jobs were dependents of its dep that
// release found not done; every resolution of a job, here or elsewhere,
// goes through tryResolve, which lets exactly one win, and only the winner
// settles the job and so lists its dependents. A job cancelled or aborted
// meanwhile keeps that outcome, and its dependents are failed by whoever
// resolved it. Anything that resolved a job without tryResolve would break
// this.
func (p *Pool) failDependents(j *job, failed []*job) {
	type level struct {
		dep     *job   // the failed job
		waiting []*job // its dependents not yet resolved here
	}
	stack := []level{{j, failed}}
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if len(top.waiting) == 0 {
			stack = stack[:len(stack)-1]
			continue
		}
		d, dep := top.waiting[0], top.dep
		top.waiting = top.waiting[1:]
		d.set(flagDepFailed) // before tryResolve: see dependencyError
		err := dependencyError(d.id, dep)
		if !d.tryResolve(err) {
			continue
		}
		if more := p.settle(d, err, false); more != nil {
			stack = append(stack, level{d, more}) // top is stale from here
		}
	}
}

// release tells the registry that j has finished (see idRegistry.finished)
// and returns its dependents that may now run, and those that must fail.
func (p *Pool) release(j *job, err error) (ready, failed []*job) {
	if j.id != "" { // a Pool.Go function of an observed pool is not registered
		p.ids.finished(j)
	}
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
	// worker, or an idle one), the pool aborts, or it finishes (the job
	// was cancelled meanwhile: see waitForRoom); waited in Close.
	go func() {
		defer p.wg.Done()
		if !p.waitForRoom(t, p.aborted) {
			p.resolve(j, jobError(j.id, p.closedErr()), false) // resolved already, unless aborted
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
