package qpoolotel

import (
	"context"
	"sync"
	"time"

	"github.com/qpool/qpool"
	"go.opentelemetry.io/otel/trace"
)

// EntanglementObserver returns the observer to give entanglements with
// qpool.WithEntanglementObserver. Each recorded change counts in
// qpool.entanglement.changes and becomes a short span
// (qpool.entanglement.change) with the entanglement's ID, the key, the
// change's sequence number and whether it was a deletion; never the value
// (user data, of any size). Close and expiry become spans too.
//
// Why short spans and not span events: the entanglement observer gets no
// context, so there is no job span at hand to add an event to, and a
// long-lived span per entanglement would be exported only when it ends (an
// entanglement may live for days), would hold its events in memory until
// then, and would lose those past the SDK's event limit (128 by default).
// A short span is exported as soon as it ends. So that the changes of one
// entanglement are found together, they share one trace: the first event
// seen for an entanglement starts a root span qpool.entanglement (ended at
// once) and every change, the close and the expiry are its children.
//
// The trace of an entanglement is remembered (one entry of a few words) until
// its Closed or Expired event. An entanglement dropped without either keeps
// its entry; at most 4096 are remembered, and past that an arbitrary one is
// forgotten (its later changes start a new trace).
func (t *Telemetry) EntanglementObserver() qpool.EntanglementObserver {
	if t == nil {
		return qpool.EntanglementObserver{}
	}
	return qpool.EntanglementObserver{
		Changed: t.entChanged,
		Expired: func(id string) { t.entEnded(id, SpanEntanglementExpire) },
		Closed:  func(id string) { t.entEnded(id, SpanEntanglementClose) },
	}
}

// entTable maps an entanglement ID to the span context of its root span.
//
// Invariant: an entry exists from the first event seen for the ID until its
// Closed or Expired event, which deletes it, and there are never more than
// maxEntanglements entries. An entanglement dropped without Close, or a
// change delivered after the expiry (qpool does not wait for a delivery
// under way when it expires an entanglement), leaves an entry behind: the
// bound keeps those from growing the table without end. The lock guards only
// the map; spans are started and ended outside it.
// maxEntanglements bounds the entanglements remembered at once.
const maxEntanglements = 4096

type entTable struct {
	mu sync.Mutex
	m  map[string]trace.SpanContext
}

// entRoot returns the context that makes a span a child of id's root span,
// starting (and ending) the root span the first time id is seen. remove
// deletes the entry, for the last event of an entanglement.
func (t *Telemetry) entRoot(id string, at time.Time, remove bool) context.Context {
	t.ents.mu.Lock()
	sc, ok := t.ents.m[id]
	if ok && remove {
		delete(t.ents.m, id)
	}
	t.ents.mu.Unlock()
	if ok {
		return trace.ContextWithSpanContext(context.Background(), sc)
	}
	// A new root for id. Two first events racing may both start one; the
	// first stored wins and the other root stays empty, harmless.
	_, span := t.tracer.Start(context.Background(), SpanEntanglement,
		trace.WithNewRoot(), trace.WithTimestamp(at),
		trace.WithAttributes(t.constAttrs...),
		trace.WithAttributes(keyEntID.String(id)))
	span.End(trace.WithTimestamp(at))
	sc = span.SpanContext()
	if !remove && sc.IsValid() {
		t.ents.mu.Lock()
		if prev, ok := t.ents.m[id]; ok {
			sc = prev
		} else {
			if t.ents.m == nil {
				t.ents.m = make(map[string]trace.SpanContext)
			}
			if len(t.ents.m) >= maxEntanglements {
				// Bound the table: forget an arbitrary entanglement
				// (its later changes start a trace of their own).
				for k := range t.ents.m {
					delete(t.ents.m, k)
					break
				}
			}
			t.ents.m[id] = sc
		}
		t.ents.mu.Unlock()
	}
	return trace.ContextWithSpanContext(context.Background(), sc)
}

func (t *Telemetry) entChanged(id string, c qpool.StateChange) {
	t.entChanges.Add(context.Background(), 1, t.base...)
	at := c.Timestamp
	if at.IsZero() {
		at = time.Now()
	}
	ctx := t.entRoot(id, at, false)
	_, span := t.tracer.Start(ctx, SpanEntanglementChange, trace.WithTimestamp(at),
		trace.WithAttributes(t.constAttrs...))
	if span.IsRecording() {
		span.SetAttributes(
			keyEntID.String(id),
			keyEntKey.String(c.Key),
			keyEntSequence.Int64(int64(c.Sequence)),
			keyEntDeleted.Bool(c.Deleted))
	}
	span.End(trace.WithTimestamp(at))
}

func (t *Telemetry) entEnded(id, name string) {
	now := time.Now()
	ctx := t.entRoot(id, now, true)
	_, span := t.tracer.Start(ctx, name, trace.WithTimestamp(now),
		trace.WithAttributes(t.constAttrs...),
		trace.WithAttributes(keyEntID.String(id)))
	span.End(trace.WithTimestamp(now))
}

// entLen is the number of remembered entanglements, for the tests' leak check.
func (t *Telemetry) entLen() int {
	t.ents.mu.Lock()
	defer t.ents.mu.Unlock()
	return len(t.ents.m)
}
