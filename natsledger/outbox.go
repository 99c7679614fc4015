package natsledger

import (
	"sync"

	"github.com/nats-io/nats.go"
)

// outbox combines concurrent publishes: the first appender to find no
// publish in progress becomes the publisher and sends every message
// queued meanwhile, in one tight loop, so the connection writes them in
// few system calls; the others only queue theirs. An uncontended append
// publishes its own message at once, with no hand-off to another
// goroutine.
type outbox struct {
	mu         sync.Mutex // guards the fields below
	queue      []*nats.Msg
	spare      []*nats.Msg
	publishing bool
}

// publish sends msg on nc, directly or through the current publisher. A
// publish error (the connection is down) reaches the caller only when it
// published its own message; otherwise the caller learns of the failure
// when its message does not come back.
func (o *outbox) publish(nc *nats.Conn, msg *nats.Msg) error {
	o.mu.Lock()
	o.queue = append(o.queue, msg)
	if o.publishing {
		o.mu.Unlock()
		return nil
	}
	o.publishing = true
	var err error
	for len(o.queue) > 0 {
		batch := o.queue
		o.queue, o.spare = o.spare[:0], nil
		o.mu.Unlock()
		for i, m := range batch {
			if perr := nc.PublishMsg(m); perr != nil && m == msg {
				err = perr
			}
			batch[i] = nil
		}
		o.mu.Lock()
		o.spare = batch[:0]
	}
	o.publishing = false
	o.mu.Unlock()
	return err
}
