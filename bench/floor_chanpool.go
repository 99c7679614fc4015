package bench

import "sync"

// ChanPool is the floor for fire-and-forget pools: N goroutines reading
// functions from one buffered channel. It has no IDs, no futures, no panic
// recovery and no way to resize: what any pool must at least pay.
type ChanPool struct {
	tasks chan func()
	wg    sync.WaitGroup
}

// NewChanPool starts workers goroutines reading from a queue of queue slots.
func NewChanPool(workers, queue int) *ChanPool {
	p := &ChanPool{tasks: make(chan func(), queue)}
	p.wg.Add(workers)
	for range workers {
		// Owner: the pool; ends when Close closes the queue.
		go func() {
			defer p.wg.Done()
			for fn := range p.tasks {
				fn()
			}
		}()
	}
	return p
}

// Go queues fn, blocking while the queue is full.
func (p *ChanPool) Go(fn func()) { p.tasks <- fn }

// Close stops intake and waits until every queued function has run.
func (p *ChanPool) Close() {
	close(p.tasks)
	p.wg.Wait()
}
