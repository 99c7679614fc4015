package qpool

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"reflect"
)

// Key is a state key whose values are Ts: declared once, next to the type
// it holds, in the manner of [sync/atomic.Pointer] or a context key, and
// used with any entanglement:
//
//	var rows = qpool.NewKey[int]("rows")
//
//	err := rows.Update(e, func(n int, _ bool) (int, error) { return n + 100, nil })
//	n, ok, err := rows.Get(e)
//
// A typed key gives the same result on every ledger. The in-memory ledger
// keeps the T itself, so a read is a type assertion and nothing more. A
// ledger that encodes values (a [CodecLedger]: bbolt, NATS) hands back the
// codec's generic form (float64 for every number, map[string]any for a
// struct); the key converts it into a T with that ledger's codec, as
// [GetStateAs] does, and a value that does not convert is a [*TypeError],
// never a zero T. The untyped methods ([Entanglement.UpdateState],
// [Entanglement.GetState], [Entanglement.Update]) stay for keys whose
// values have no single type.
//
// The conversion is the codec's: with [JSONCodec], the fields of a stored
// struct that T lacks are ignored, and an integer beyond ±2^53 stored in a
// codec ledger has already lost precision as a float64 when the key sees
// it (a codec that decodes numbers as [encoding/json.Number] keeps them);
// at the ends of int64 and uint64 the float64 is out of T's range and the
// read is a [*TypeError]. A codec ledger keeps only what the codec
// encodes: with JSON, a struct's unexported fields are lost there (the
// in-memory ledger keeps the T whole), so give such a T exported fields
// or its own MarshalJSON and UnmarshalJSON.
//
// Key is a small comparable value; copy it freely. The zero Key has no
// name, and its methods return [ErrInvalidKey].
type Key[T any] struct {
	name string
}

// NewKey returns the key named name, holding Ts. Two keys with the same
// name are the same state key, whatever their types: reading a key with
// another T converts the value (or fails) as for a value from a codec
// ledger. An empty name gives a key whose methods return [ErrInvalidKey].
func NewKey[T any](name string) Key[T] { return Key[T]{name: name} }

// Name returns the key's name: the string the untyped methods, the
// history and [StateChange.Key] know it by.
func (k Key[T]) Name() string { return k.name }

// String returns the name, for printing.
func (k Key[T]) String() string { return k.name }

// Get returns the key's value in e and whether the key exists. An absent
// key, and every key after Close or expiry, is (zero T, false, nil). A
// value that does not convert into a T returns ok true and a [*TypeError].
func (k Key[T]) Get(e *Entanglement) (value T, ok bool, err error) {
	if k.name == "" {
		return value, false, fmt.Errorf("qpool: entanglement %q: %w", e.ID(), ErrInvalidKey)
	}
	return getAs[T](e, k.name)
}

// Set sets the key to v in e and records the change, as
// [Entanglement.UpdateState] does, with its errors.
func (k Key[T]) Set(e *Entanglement, v T) error {
	return e.UpdateState(k.name, v)
}

// Delete removes the key from e and records the deletion, as
// [Entanglement.DeleteState] does, with its errors.
func (k Key[T]) Delete(e *Entanglement) error {
	return e.DeleteState(k.name)
}

// Update atomically replaces the key's value with fn's result, recorded as
// one change: [Entanglement.Update] with fn given the current value as a T
// (the zero T and false when the key is absent). As there, fn runs again
// if another change lands between the read and the write, so fn must be
// free of side effects; an error from fn is returned as is and records
// nothing; a nil fn gets [ErrNilFunc]. When the current value does not
// convert into a T, Update returns the [*TypeError] without calling fn.
func (k Key[T]) Update(e *Entanglement, fn func(old T, exists bool) (T, error)) error {
	if k.name == "" {
		return e.UpdateState("", nil) // ErrInvalidKey, as from every method of the zero Key; records nothing
	}
	if fn == nil {
		return e.Update(k.name, nil)
	}
	return e.Update(k.name, func(old any, exists bool) (any, error) {
		var t T
		if exists {
			var err error
			if t, err = convert[T](e, k.name, old); err != nil {
				return nil, err
			}
		}
		v, err := fn(t, exists)
		if err != nil {
			return nil, err
		}
		return v, nil
	})
}

// Await blocks until the key exists in e and returns its value, as
// [Entanglement.Await] does, with its errors: ctx's cause, or [ErrClosed]
// or [ErrExpired] when e ends first. A value that does not convert into a
// T is a [*TypeError].
//
// Inside a job, wait with the job's own context, so that the pool's
// shutdown can end the wait; a value that a job queued behind this one
// would set arrives only if the pool has a free worker to run that job.
func (k Key[T]) Await(ctx context.Context, e *Entanglement) (T, error) {
	v, err := e.Await(ctx, k.name)
	if err != nil {
		var zero T
		return zero, err
	}
	return convert[T](e, k.name, v)
}

// Watch returns the values the key takes in e, as Ts: every value it was
// set to in the retained history, oldest first, then each new one as it is
// recorded, none missed, none repeated. Deletions are not values and are
// skipped; [Entanglement.Watch] shows them, and everything else, as
// [StateChange] records.
//
// The second value of each pair is nil but in two cases. A value that does
// not convert into a T comes as the zero T with a [*TypeError], and the
// watch goes on. And the sequence ends by yielding why it ended: ctx's
// cause, or [ErrClosed] or [ErrExpired] when e ends; a ledger that cannot be
// read for a while delays it, as it does [Entanglement.Watch], and does not
// end it. Breaking out of the loop ends it at once.
//
//	for m, err := range metrics.Watch(ctx, e) {
//		if err != nil {
//			return err
//		}
//		use(m)
//	}
//
// The sequence reads the ledger on the caller's goroutine, from its own
// cursor: it starts no goroutine and holds no lock while the loop body
// runs, so a slow loop never blocks updaters, and nothing needs closing.
// With [WithRetention], history no longer retained is skipped. Each range
// over the sequence starts again from the oldest retained change.
func (k Key[T]) Watch(ctx context.Context, e *Entanglement) iter.Seq2[T, error] {
	if ctx == nil {
		ctx = context.Background()
	}
	e = e.or()
	return func(yield func(T, error) bool) {
		var zero T
		if err := e.check(k.name); err != nil {
			yield(zero, err)
			return
		}
		var since uint64
		for {
			// Invariant: changed is taken before the Read, so a change
			// recorded after the Read closes it and is read on the next
			// round; the same protocol as Entanglement.feed. A failed
			// read is retried as a watch's is (readRetrying): the
			// sequence ends only when ctx or the entanglement does.
			changed := e.ledger.Changed()
			batch, ok := e.readRetrying(ctx, since, watchBatch)
			if !ok {
				yield(zero, k.watchEnd(ctx, e))
				return
			}
			for _, c := range batch {
				since = c.Sequence + 1
				if c.Key != k.name || c.Deleted {
					continue
				}
				if !yield(convert[T](e, k.name, c.Value)) {
					return
				}
			}
			if len(batch) > 0 {
				continue
			}
			if err := e.usable(); err != nil {
				yield(zero, err)
				return
			}
			select {
			case <-changed:
			case <-ctx.Done():
				yield(zero, context.Cause(ctx))
				return
			case <-e.done: // the next round reports ErrClosed or ErrExpired
			}
		}
	}
}

// watchEnd names why a watch's reads stopped: the entanglement's end or
// ctx's (readRetrying gives up on nothing else).
func (k Key[T]) watchEnd(ctx context.Context, e *Entanglement) error {
	if uerr := e.usable(); uerr != nil {
		return uerr
	}
	return context.Cause(ctx)
}

// ErrType is matched by every [*TypeError]: a stored value that does not
// convert into the type a [Key] or [GetStateAs] asked for.
var ErrType = errors.New("qpool: value does not convert to the key's type")

// TypeError reports a stored value that does not convert into the type a
// [Key] or [GetStateAs] asked for. errors.Is(err, [ErrType]) holds for it,
// and so does errors.Is for the codec's own error, which it wraps.
type TypeError struct {
	// Entanglement and Key name the value's place.
	Entanglement string
	Key          string
	// Want is the type asked for.
	Want reflect.Type
	// Got is the value as the ledger returned it: for a codec ledger, the
	// codec's generic form (float64, string, map[string]any, []any, nil).
	Got any
	// Err is the codec's error, or nil when the value is nil and Want has
	// no nil value (a number, a string, a bool, a struct): a nil stored
	// there is refused rather than read as the zero value.
	Err error
}

// Error names the entanglement, the key, the value's type and the type
// asked for, and the codec's error when there is one.
func (e *TypeError) Error() string {
	msg := fmt.Sprintf("qpool: entanglement %q: key %q holds %T, which does not convert to %v", e.Entanglement, e.Key, e.Got, e.Want)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns [ErrType] and the codec's error, for [errors.Is] and
// [errors.As].
func (e *TypeError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrType}
	}
	return []error{ErrType, e.Err}
}

// getAs returns key's value in e as a T: the one read path of [Key.Get]
// and [GetStateAs].
func getAs[T any](e *Entanglement, key string) (T, bool, error) {
	v, ok := e.GetState(key)
	if !ok {
		var zero T
		return zero, false, nil
	}
	t, err := convert[T](e, key, v)
	return t, true, err
}

// convert returns v, key's value as e's ledger returned it, as a T: v
// itself when it is a T (always, on the in-memory ledger, for the T that
// was stored), or else v encoded and decoded into a T with the ledger's
// codec ([JSONCodec] when the ledger has none), which turns a codec
// ledger's generic form back into the caller's number, struct or slice
// type. It is the one conversion of [Key] and [GetStateAs]. On failure it
// returns the zero T, never a partly decoded one, and a [*TypeError].
func convert[T any](e *Entanglement, key string, v any) (T, error) {
	if t, ok := v.(T); ok {
		return t, nil
	}
	var zero T
	want := reflect.TypeFor[T]()
	if v == nil {
		// A codec decodes nil (JSON null) into the zero value of any
		// type without an error, which would read a stored nil as a 0
		// or an empty struct; only types with a nil value take it.
		if nilable(want) {
			return zero, nil
		}
		return zero, &TypeError{Entanglement: e.id, Key: key, Want: want, Got: v}
	}
	out, err := recode[T](e.codec(), v)
	if err != nil {
		return zero, &TypeError{Entanglement: e.id, Key: key, Want: want, Got: v, Err: err}
	}
	return out, nil
}

// recode encodes v with c and decodes the bytes into a T. A panic in
// either (a value's MarshalJSON, a type's UnmarshalJSON, the codec itself:
// user code) is returned as an error, since bad input never panics
// (TestAttack14KeyReadsPanickyValue).
func recode[T any](c Codec, v any) (out T, err error) {
	defer func() {
		if r := recover(); r != nil {
			var zero T
			out, err = zero, codecPanic(v, r)
		}
	}()
	data, err := c.Marshal(v)
	if err == nil {
		err = c.Unmarshal(data, &out)
	}
	return out, err
}

// nilable reports whether t has nil as a value.
func nilable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	}
	return false
}

// codec returns the codec that converts e's values: its ledger's, or
// [JSONCodec].
func (e *Entanglement) codec() Codec {
	if cl, ok := e.ledger.(CodecLedger); ok {
		if c := cl.Codec(); c != nil {
			return c
		}
	}
	return JSONCodec{}
}
