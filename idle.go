package qpool

import (
	"sync"
	"time"
)

// idleReaper retires workers that have had nothing to do for the idle
// timeout. It is one timer per pool, not one per worker: a timer in a
// worker's select would be added to and removed from the runtime's timer
// heap on every idle spell, which costs more than the job itself on the
// hot path. When it fires and no job was submitted since the last firing,
// it hands each idle worker an empty task, which tells it to exit. Each
// firing also lets the ID registry drop what it keeps of finished jobs once
// it no longer needs it (in the lazy mode every finished job, otherwise
// expired results and outcomes), and the reaper keeps firing while the
// registry keeps results or outcomes for their time, even once no worker
// is left: so an idle pool's memory goes back to nothing.
type idleReaper struct {
	mu       sync.Mutex // guards the fields below
	timer    *time.Timer
	armed    bool
	stopped  bool
	lastSeen uint64 // submissions counted at the last firing
}

// addWorker counts a worker about to start in the pool's WaitGroup and
// arms the reaper, unless finish has stopped the reaper (then it reports
// false and the worker must not start). The Add happens under the reaper's
// lock, which finish takes to stop the reaper before it waits: so every
// Add happens before finish's Wait, or none. A submitter that queued a
// task may look for a worker for it (ensureWorker) after a worker has run
// it and the pool has drained; without this, its spawn could race Close's
// and Shutdown's Wait and leave a worker running after they returned.
// finish runs only once no job is pending, so what it refuses is never a
// worker with a task of its own.
func (p *Pool) addWorker() bool {
	r := &p.reaper
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return false
	}
	p.wg.Add(1)
	p.armLocked()
	return true
}

// armReaper starts the reaper's timer if it is not running. Called by the
// reaper itself while there is work for it (and, through addWorker, when a
// worker starts).
func (p *Pool) armReaper() {
	if p.cfg.idleTimeout <= 0 {
		return // workers exit as soon as the queue is empty
	}
	r := &p.reaper
	r.mu.Lock()
	defer r.mu.Unlock()
	p.armLocked()
}

// armLocked is armReaper with the reaper's lock held.
func (p *Pool) armLocked() {
	d := p.cfg.idleTimeout
	r := &p.reaper
	if d <= 0 || r.armed || r.stopped {
		return
	}
	r.armed = true
	p.wg.Add(1) // for the run the timer will make
	// Owner: the pool. Runs once per arming; finish stops it.
	if r.timer == nil {
		r.timer = time.AfterFunc(d, p.reapIdle)
	} else {
		r.timer.Reset(d)
	}
}

// reapIdle runs when the reaper's timer fires.
func (p *Pool) reapIdle() {
	defer p.wg.Done()
	r := &p.reaper
	r.mu.Lock()
	r.armed = false
	if r.stopped {
		r.mu.Unlock()
		return
	}
	seen := p.stats.submitted.Load()
	quiet := seen == r.lastSeen
	r.lastSeen = seen
	r.mu.Unlock()
	retaining := p.ids.dropFinished()
	if p.queue.len() > 0 {
		p.stampQueue() // OldestQueued's precision without anybody polling Stats
	}
	if quiet {
		for n := p.idle.Load(); n > 0; n-- {
			if !p.handTo(task{}) { // an exit token
				n = 0 // nobody waits for a task after all
			}
		}
	}
	if p.workers.Load() > 0 || retaining {
		p.armReaper()
	}
}

// stopReaper stops the timer for good; finish calls it before waiting.
func (p *Pool) stopReaper() {
	r := &p.reaper
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	if r.armed && r.timer.Stop() {
		r.armed = false
		p.wg.Done() // the armed run that will not happen
	}
}
