package qpool

// shared reports whether other processes append to the entanglement's ledger.
func (e *Entanglement) shared() bool {
	sl, ok := e.ledger.(SharedLedger)
	return ok && sl.Shared()
}

// follow delivers to the callbacks the changes that other processes record
// in a shared ledger, as the ledger applies them. Owner: the entanglement
// (started when it opens on a SharedLedger); ends on Close or expiry;
// waited in Close.
func (e *Entanglement) follow() {
	for e.usable() == nil {
		changed := e.ledger.Changed()
		if e.hooked() {
			e.delivery.prepare(e)
			if _, next := e.ledger.Bounds(); next > 0 {
				e.delivery.deliverTo(e, next, nil)
			}
		}
		select {
		case <-changed:
		case <-e.done:
			return
		}
	}
}
