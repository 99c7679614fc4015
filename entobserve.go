package qpool

// EntanglementObserver receives an entanglement's lifecycle events: give
// it to [NewEntanglement] or [OpenEntanglement] with
// [WithEntanglementObserver]. Every field is optional. Each function runs
// outside every lock of the entanglement and its ledger, as the other
// callbacks do; a panic in one is recovered and logged with the
// entanglement's logger ([WithLogger]), and the entanglement and the
// other observers are unaffected.
type EntanglementObserver struct {
	// Changed is called after each change is recorded, once per change and
	// in sequence order, with the delivery guarantees of [WithOnChange]
	// (it is delivered as that callback is, after it when both are set):
	// it runs on the updating goroutine, or under contention on another
	// updater's, and a slow Changed delays those updaters' return, not
	// the recording of changes. On a shared ledger it also gets other
	// processes' changes. Close waits for a call under way, and none
	// starts after Close returns.
	Changed func(id string, c StateChange)
	// Expired is called once the TTL has run out and the state was
	// released, on the reaper's goroutine, after [WithOnExpire]'s hook.
	Expired func(id string)
	// Closed is called once, by the first [Entanglement.Close] of an
	// entanglement that had not expired, on Close's goroutine, after
	// Close has waited for the callbacks under way and before it
	// returns.
	Closed func(id string)
}

type entObserverOption struct{ o EntanglementObserver }

// WithEntanglementObserver registers o for the entanglement's events (see
// [EntanglementObserver]). Several add several observers, called in the
// order given. A Changed observer makes the entanglement deliver changes
// as [WithOnChange] does, which costs a delivery per update.
func WithEntanglementObserver(o EntanglementObserver) EntanglementOption {
	return entObserverOption{o}
}

func (o entObserverOption) applyEntanglement(c *entConfig) { c.observers = append(c.observers, o.o) }
func (o entObserverOption) String() string                 { return "WithEntanglementObserver(observer)" }

// observe folds the observers' Changed and Expired into the entanglement's
// OnChange and OnExpire callbacks, which already have the delivery and
// end guarantees the observers promise. It runs once, at construction.
func (e *Entanglement) observe() {
	list := e.cfg.observers
	changed, expired := false, false
	for _, o := range list {
		changed = changed || o.Changed != nil
		expired = expired || o.Expired != nil
	}
	if changed {
		prev := e.cfg.onChange
		e.cfg.onChange = func(c StateChange) {
			if prev != nil {
				e.safely("OnChange", func() { prev(c) })
			}
			for _, o := range list {
				if f := o.Changed; f != nil {
					e.safely("observer Changed", func() { f(e.id, c) })
				}
			}
		}
	}
	if expired {
		prev := e.cfg.onExpire
		e.cfg.onExpire = func(id string) {
			if prev != nil {
				e.safely("OnExpire", func() { prev(id) })
			}
			for _, o := range list {
				if f := o.Expired; f != nil {
					e.safely("observer Expired", func() { f(id) })
				}
			}
		}
	}
}

// observeClosed calls the observers' Closed.
func (e *Entanglement) observeClosed() {
	for _, o := range e.cfg.observers {
		if f := o.Closed; f != nil {
			e.safely("observer Closed", func() { f(e.id) })
		}
	}
}
