package qpool

// NewPromise returns a future with the given ID that no pool runs, and the
// function that resolves it. Something other than a [Pool] (a remote
// worker fleet, a callback) calls resolve once it knows the outcome; the
// first call wins and reports true, later ones change nothing and report
// false. resolve is safe for concurrent use and may be called from any
// goroutine; it never blocks.
//
// The future behaves as a pool's: Wait, Done and ID work, and Wait returns
// the value and error given to resolve. Cancel on it does nothing: there is
// no pool to stop a job in, so whoever resolves the promise offers its own
// way to cancel (natsjobs' Client.Cancel, for example).
func NewPromise[T any](id string) (f *Future[T], resolve func(value T, err error) bool) {
	c := &call[T]{}
	c.fut.j = &c.job
	c.job.id, c.job.r, c.job.cfg = id, c, &noPool
	c.job.resolved.Add(1)
	// Invariant: the job is in stateRunning until resolve moves it on, so
	// cancelJob's resolve (allowed only from waiting or queued) fails and
	// the nil pool is never used. Only the CAS below leaves stateRunning.
	c.job.state.Store(stateRunning)
	return &c.fut, c.resolvePromise
}

// resolvePromise records v and err as the promise's outcome unless it has
// one, with the same protocol as job.tryResolve: the CAS to stateResolving
// admits one resolver, which writes the value and error before the state
// becomes done; Wait reads them only after it has seen done.
func (c *call[T]) resolvePromise(v T, err error) bool {
	if !c.job.state.CompareAndSwap(stateRunning, stateResolving) {
		return false
	}
	c.value, c.job.err = v, err
	c.job.state.Store(stateDone)
	c.job.wake()
	return true
}
