package ledgertest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/qpool/qpool"
)

// The typed-key checks go through an [qpool.Entanglement] and its typed
// keys ([qpool.Key]), not the bare ledger: what they check is that a
// program gives the same result on every ledger. A ledger that encodes
// values hands back its codec's generic form (float64, map[string]any),
// and a typed key must turn that back into the very type and value that
// was stored, as the in-memory ledger returns them.

// typedRecord is a struct with nested fields, for the typed checks.
type typedRecord struct {
	Name   string
	Count  int
	Ratio  float64
	Tags   []string
	Inner  typedInner
	Parent *typedInner
}

type typedInner struct {
	On     bool
	Depth  int64
	Scores map[string]int
	Path   []string
}

// typedValue is one typed key the checks write and read back.
type typedValue interface {
	set(e *qpool.Entanglement) error
	// check reads the key with Get and Await and records a problem
	// unless both return the value set, with its type.
	check(ctx context.Context, p *problems, e *qpool.Entanglement, when string)
}

type typed[T any] struct {
	key   qpool.Key[T]
	value T
	equal func(a, b T) bool
}

// typedOf returns the typed value v under a key named after its type,
// compared with reflect.DeepEqual.
func typedOf[T any](v T) typedValue {
	return typed[T]{qpool.NewKey[T](fmt.Sprintf("typed %T", v)), v, func(a, b T) bool { return reflect.DeepEqual(a, b) }}
}

func (c typed[T]) set(e *qpool.Entanglement) error { return c.key.Set(e, c.value) }

func (c typed[T]) check(ctx context.Context, p *problems, e *qpool.Entanglement, when string) {
	got, ok, err := c.key.Get(e)
	switch {
	case err != nil:
		p.addf("%s, Key[%T](%q).Get: %v", when, c.value, c.key.Name(), err)
	case !ok:
		p.addf("%s, Key[%T](%q).Get reports the key absent", when, c.value, c.key.Name())
		return // Await would wait for it
	case !c.equal(got, c.value):
		p.addf("%s, Key[%T](%q).Get returned %#v, want %#v", when, c.value, c.key.Name(), got, c.value)
	}
	got, err = c.key.Await(ctx, e)
	switch {
	case err != nil:
		p.addf("%s, Key[%T](%q).Await: %v", when, c.value, c.key.Name(), err)
	case !c.equal(got, c.value):
		p.addf("%s, Key[%T](%q).Await returned %#v, want %#v", when, c.value, c.key.Name(), got, c.value)
	}
}

// typedValues are a value of each kind a program stores: the numbers
// chosen so that a lossy conversion shows (2^53-1 is the largest int64 a
// float64 holds exactly; 0.1 does not survive float32), and a time with
// nanoseconds and a zone, compared with time.Time.Equal since a codec may
// keep only the instant and the offset.
func typedValues() []typedValue {
	inner := typedInner{On: true, Depth: -3, Scores: map[string]int{"a": 1, "b": -2}, Path: []string{"x", "y"}}
	return []typedValue{
		typedOf(-123456789),
		typedOf(int64(1<<53 - 1)),
		typedOf(0.1),
		typedOf("héllo, 世界 ✓ <&>"),
		typedOf(true),
		typedOf(typedRecord{Name: "r", Count: 7, Ratio: 2.5, Tags: []string{"t1", "t2"}, Inner: inner, Parent: &typedInner{Scores: map[string]int{}}}),
		typedOf([]string{"a", "", "c"}),
		typedOf(map[string]int{"x": 1, "y": -2, "z": 0}),
		typed[time.Time]{
			qpool.NewKey[time.Time]("typed time.Time"),
			time.Date(2026, time.December, 6, 13, 8, 17, 123456789, time.FixedZone("CET", 3600)),
			time.Time.Equal,
		},
	}
}

// counter is the key of the typed counter checks.
var counter = qpool.NewKey[int]("typed counter")

// add100 is one step of the counter: three of them make 300 on every
// ledger. Reading the old value untyped, as old.(int), gives 300 on the
// in-memory ledger and 100 on a codec ledger, whose numbers are float64.
func add100(n int, _ bool) (int, error) { return n + 100, nil }

// maxConflicts is how many guarded appends the typed checks let a ledger
// refuse. Nothing else appends while they run, so a conforming ledger
// refuses none.
const maxConflicts = 100

// bounded is the ledger the typed checks give their entanglement: l, with
// a limit on refused guarded appends. Entanglement.Update retries on every
// ErrConflict, so a ledger whose Get returns a stale revision would keep an
// update retrying until the watchdog gave up (and forever on a synctest
// bubble's clock, which the spinning goroutine stops). It passes on l's
// codec, the one the typed keys convert with, and whether l is shared.
type bounded struct {
	qpool.Ledger
	codec     qpool.Codec
	shared    bool
	conflicts atomic.Int64
}

var (
	_ qpool.CodecLedger  = (*bounded)(nil)
	_ qpool.SharedLedger = (*bounded)(nil)
)

func newBounded(l qpool.Ledger) *bounded {
	b := &bounded{Ledger: l, codec: qpool.JSONCodec{}} // the typed keys' default
	if cl, ok := l.(qpool.CodecLedger); ok {
		b.codec = cl.Codec()
	}
	if sl, ok := l.(qpool.SharedLedger); ok {
		b.shared = sl.Shared()
	}
	return b
}

func (b *bounded) Codec() qpool.Codec { return b.codec }

func (b *bounded) Shared() bool { return b.shared }

func (b *bounded) Append(ctx context.Context, m qpool.Mutation) (qpool.StateChange, error) {
	c, err := b.Ledger.Append(ctx, m)
	if errors.Is(err, qpool.ErrConflict) && b.conflicts.Add(1) > maxConflicts {
		// Not wrapping ErrConflict ends the update's retries.
		return c, fmt.Errorf("%d guarded appends refused while nothing else appended, the last with %q: does Get report a stale revision?", maxConflicts, err)
	}
	return c, err
}

// typedName is the entanglement's name: the ledger's own when it has one.
func typedName(l qpool.Ledger) string {
	if n, ok := l.(interface{ ID() string }); ok && n.ID() != "" {
		return n.ID()
	}
	return "ledgertest"
}

// openTyped opens an entanglement over l, recording a problem on error.
func openTyped(ctx context.Context, p *problems, l qpool.Ledger) *qpool.Entanglement {
	e, err := qpool.OpenEntanglement(ctx, typedName(l), nil, 0, qpool.WithLedger(newBounded(l)))
	if err != nil {
		p.addf("OpenEntanglement: %v", err)
		return nil
	}
	return e
}

// setTyped sets every typed value and adds 100 to the counter three
// times. It reports false after a problem.
func setTyped(p *problems, e *qpool.Entanglement, values []typedValue) bool {
	for _, v := range values {
		if err := v.set(e); err != nil {
			p.addf("Set: %v", err)
			return false
		}
	}
	return addToCounter(p, e, "", 3)
}

// addToCounter makes n counter updates. It reports false after a
// problem.
func addToCounter(p *problems, e *qpool.Entanglement, when string, n int) bool {
	for range n {
		if err := counter.Update(e, add100); err != nil {
			p.addf("%sKey[int].Update: %v", when, err)
			return false
		}
	}
	return true
}

// checkCounter records a problem unless the counter holds want.
func checkCounter(p *problems, e *qpool.Entanglement, when string, want int) {
	n, ok, err := counter.Get(e)
	switch {
	case err != nil:
		p.addf("%s, the counter's Get: %v", when, err)
	case !ok:
		p.addf("%s, the counter is absent", when)
	case n != want:
		p.addf("%s, the counter is %d, want %d: the same updates must give the same result on every ledger", when, n, want)
	}
}

// closeEntanglement closes e, and with it its ledger.
func closeEntanglement(e *qpool.Entanglement, what string) error {
	if err := e.Close(); err != nil {
		return fmt.Errorf("Close of %s: %w", what, err)
	}
	return nil
}

// checkTyped checks that typed keys give back what was stored, with its
// type, and that a counter built with Update counts on every ledger; that
// Watch yields the counter's values as ints; and that a value that does not
// convert is a qpool.ErrType error, never a zero value, and that Update
// then does not call its function.
func checkTyped(ctx context.Context, l qpool.Ledger) (err error) {
	var p problems
	e := openTyped(ctx, &p, l)
	if e == nil {
		return errors.Join(p.err(), closeError("the ledger", l.Close()))
	}
	defer func() { err = errors.Join(err, closeEntanglement(e, "the entanglement")) }()
	values := typedValues()
	if !setTyped(&p, e, values) {
		return p.err()
	}
	for _, v := range values {
		v.check(ctx, &p, e, "after Set")
	}
	checkCounter(&p, e, "after three updates adding 100", 300)
	checkTypedWatch(ctx, &p, e)
	checkTypeErrors(&p, e)
	return p.err()
}

// checkTypedWatch checks that Watch yields the counter's values, as ints,
// in order. It stops after the third, or when they are not all there after
// the time a Changed channel may take to close.
func checkTypedWatch(ctx context.Context, p *problems, e *qpool.Entanglement) {
	ctx, cancel := context.WithTimeout(ctx, wakeWait)
	defer cancel()
	var got []int
	for n, err := range counter.Watch(ctx, e) {
		if err != nil {
			p.addf("Key[int].Watch after %v: %v", got, err)
			return
		}
		if got = append(got, n); len(got) == 3 {
			break
		}
	}
	if want := []int{100, 200, 300}; !reflect.DeepEqual(got, want) {
		p.addf("Key[int].Watch yielded %v, want %v", got, want)
	}
}

// checkTypeErrors checks that values that do not convert into the key's
// type are errors: a string read as an int, and nil read as an int.
func checkTypeErrors(p *problems, e *qpool.Entanglement) {
	for _, stored := range []any{"not a number", nil} {
		if err := e.UpdateState("typed mismatch", stored); err != nil {
			p.addf("UpdateState(%#v): %v", stored, err)
			return
		}
		mismatch := qpool.NewKey[int]("typed mismatch")
		n, ok, err := mismatch.Get(e)
		if !ok || !errors.Is(err, qpool.ErrType) {
			p.addf("Key[int].Get of a stored %#v returned (%d, %v, %v), want ok and an error matching qpool.ErrType", stored, n, ok, err)
		}
		called := false
		err = mismatch.Update(e, func(n int, ok bool) (int, error) { called = true; return n + 1, nil })
		if !errors.Is(err, qpool.ErrType) || called {
			p.addf("Key[int].Update of a stored %#v returned %v and called its function: %v; want an error matching qpool.ErrType and no call", stored, err, called)
		}
	}
}

// checkTypedReopen checks that typed values and the counter come back the
// same from a reopened ledger, and that the counter goes on counting there:
// three updates adding 100, a reopen, and three more make 600.
func checkTypedReopen(ctx context.Context, l qpool.Ledger) (err error) {
	var p problems
	e := openTyped(ctx, &p, l)
	if e == nil {
		return errors.Join(p.err(), closeError("the ledger", l.Close()))
	}
	values := typedValues()
	ok := setTyped(&p, e, values)
	if err := closeEntanglement(e, "the entanglement"); err != nil { // closes l
		p.addf("%v", err)
	}
	if !ok || p.failed() {
		return p.err()
	}
	l2 := reopen(&p, l)
	if l2 == nil {
		return p.err()
	}
	e2 := openTyped(ctx, &p, l2)
	if e2 == nil {
		return errors.Join(p.err(), closeError("the reopened ledger", l2.Close()))
	}
	defer func() { err = errors.Join(err, closeEntanglement(e2, "the entanglement over the reopened ledger")) }()
	for _, v := range values {
		v.check(ctx, &p, e2, "after Reopen")
	}
	checkCounter(&p, e2, "after Reopen", 300)
	if addToCounter(&p, e2, "after Reopen, ", 3) {
		checkCounter(&p, e2, "after Reopen and three more updates adding 100", 600)
	}
	return p.err()
}
