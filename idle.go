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
// firing also sweeps finished jobs out of the ID registry (without a TTL).
type idleReaper struct {
	mu       sync.Mutex // guards the fields below
	timer    *time.Timer
	armed    bool
	stopped  bool
	lastSeen uint64 // submissions counted at the last firing
}

// armReaper starts the reaper's timer if it is not running. Called when a
// worker starts.
func (p *Pool) armReaper() {
	d := p.cfg.idleTimeout
	if d <= 0 {
		return // workers exit as soon as the queue is empty
	}
	r := &p.reaper
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.armed || r.stopped {
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
	p.ids.sweepFinished() // once per idle timeout: cheap, and bounds how long finished jobs stay
	if quiet {
		for n := p.idle.Load(); n > 0; n-- {
			select {
			case p.tasks <- task{}: // an exit token
			default:
				n = 0 // the queue is full: nobody is idle after all
			}
		}
	}
	if p.workers.Load() > 0 {
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
