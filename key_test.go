package qpool_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// jsonMemLedger is a codec ledger in miniature: it stores each value as its
// JSON round trip, so Get, Read and Snapshot hand back float64 and
// map[string]any, as the bbolt and NATS ledgers do.
type jsonMemLedger struct{ *qpool.MemoryLedger }

var _ qpool.CodecLedger = jsonMemLedger{}

func (jsonMemLedger) Codec() qpool.Codec { return qpool.JSONCodec{} }

func (l jsonMemLedger) Append(ctx context.Context, m qpool.Mutation) (qpool.StateChange, error) {
	if !m.Delete {
		data, err := json.Marshal(m.Value)
		if err != nil {
			return qpool.StateChange{}, err
		}
		m.Value = nil
		if err := json.Unmarshal(data, &m.Value); err != nil {
			return qpool.StateChange{}, err
		}
	}
	return l.MemoryLedger.Append(ctx, m)
}

// ledgers are the two kinds of ledger a typed key must behave the same on.
var ledgers = []struct {
	name string
	open func() qpool.Ledger
}{
	{"Memory", func() qpool.Ledger { return qpool.NewMemoryLedger() }},
	{"JSONCodec", func() qpool.Ledger { return jsonMemLedger{qpool.NewMemoryLedger()} }},
}

// forEachLedger runs test once per kind of ledger, with an entanglement
// over a fresh one that is closed at the end.
func forEachLedger(t *testing.T, test func(t *testing.T, e *qpool.Entanglement)) {
	for _, l := range ledgers {
		t.Run(l.name, func(t *testing.T) {
			test(t, newTestEntanglement(t, 0, qpool.WithLedger(l.open())))
		})
	}
}

var rows = qpool.NewKey[int]("rows")

// add100 is the counter step.
func add100(n int, _ bool) (int, error) { return n + 100, nil }

// TestUntypedCounterDependsOnTheLedger shows the defect typed keys fix: the
// same untyped counter gives 300 on the memory ledger and 100 on a codec
// ledger, whose values come back as float64.
func TestUntypedCounterDependsOnTheLedger(t *testing.T) {
	want := map[string]int{"Memory": 300, "JSONCodec": 100}
	for _, l := range ledgers {
		e := newTestEntanglement(t, 0, qpool.WithLedger(l.open()))
		for range 3 {
			require.NoError(t, e.Update("rows", func(old any, _ bool) (any, error) {
				n, _ := old.(int)
				return n + 100, nil
			}))
		}
		v, _ := e.GetState("rows")
		assert.EqualValues(t, want[l.name], v, l.name)
	}
}

// TestKeyCounterSameOnEveryLedger is the counter with a typed key:
// 300 on every ledger.
func TestKeyCounterSameOnEveryLedger(t *testing.T) {
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		for range 3 {
			require.NoError(t, rows.Update(e, add100))
		}
		n, ok, err := rows.Get(e)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, 300, n)
	})
}

// TestKeyMemoryLedgerStoresT checks that the in-memory ledger keeps the T
// itself, not an encoded form.
func TestKeyMemoryLedgerStoresT(t *testing.T) {
	type point struct{ X, Y int }
	p := qpool.NewKey[*point]("p")
	e := newTestEntanglement(t, 0)
	want := &point{1, 2}
	require.NoError(t, p.Set(e, want))
	v, _ := e.GetState("p")
	require.Same(t, want, v.(*point), "stored as given")
	got, ok, err := p.Get(e)
	require.NoError(t, err)
	require.True(t, ok)
	require.Same(t, want, got)
}

type record struct {
	Name  string
	Tags  []string
	Inner struct {
		On     bool
		Scores map[string]int
	}
	At time.Time
}

// TestKeyRoundTrip checks that each kind of value comes back with its type
// and value on both ledgers: the codec ledger's generic form is converted.
func TestKeyRoundTrip(t *testing.T) {
	rec := record{Name: "r", Tags: []string{"a", "b"}, At: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	rec.Inner.On = true
	rec.Inner.Scores = map[string]int{"x": 1, "y": -2}
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		roundTrip(t, e, 42)
		roundTrip(t, e, int64(-1<<53+1))
		roundTrip(t, e, uint8(200))
		roundTrip(t, e, 0.1)
		roundTrip(t, e, "héllo")
		roundTrip(t, e, true)
		roundTrip(t, e, []string{"a", "b"})
		roundTrip(t, e, map[string]int{"a": 1})
		roundTrip(t, e, rec)
		roundTrip(t, e, &rec)
		roundTrip(t, e, []string(nil))
	})
}

func roundTrip[T any](t *testing.T, e *qpool.Entanglement, v T) {
	t.Helper()
	k := qpool.NewKey[T](fmt.Sprintf("%T", v))
	require.NoError(t, k.Set(e, v))
	got, ok, err := k.Get(e)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, v, got)
}

// TestKeyTypeError checks that a value that does not convert is a
// *TypeError matching ErrType, never a zero value, on both ledgers: a
// string read as an int, a float with a fraction as an int, an object as a
// string, and nil read as a type without nil.
func TestKeyTypeError(t *testing.T) {
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		for _, stored := range []any{"x", 1.5, map[string]any{"a": "b"}, nil} {
			require.NoError(t, e.UpdateState("bad", stored))
			n, ok, err := qpool.NewKey[int]("bad").Get(e)
			require.True(t, ok, "%#v", stored)
			require.ErrorIs(t, err, qpool.ErrType, "%#v", stored)
			require.Zero(t, n)
			var te *qpool.TypeError
			require.ErrorAs(t, err, &te)
			assert.Equal(t, "bad", te.Key)
			assert.Equal(t, e.ID(), te.Entanglement)
			assert.Equal(t, reflect.TypeFor[int](), te.Want)
			assert.Contains(t, err.Error(), `key "bad"`)

			_, _, asErr := qpool.GetStateAs[int](e, "bad") // one mechanism
			require.ErrorIs(t, asErr, qpool.ErrType)
		}
		// A struct is not filled half-way: the zero value comes back.
		type pair struct{ A, B int }
		require.NoError(t, e.UpdateState("half", map[string]any{"A": 1.0, "B": "two"}))
		p, _, err := qpool.NewKey[pair]("half").Get(e)
		require.ErrorIs(t, err, qpool.ErrType)
		require.Zero(t, p)
		var je *json.UnmarshalTypeError
		require.ErrorAs(t, err, &je, "the codec's error is wrapped")
	})
}

// TestGetStateAsNilIsTypeError: a nil read as an int used to come back as
// 0 with no error.
func TestGetStateAsNilIsTypeError(t *testing.T) {
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		require.NoError(t, e.UpdateState("nil", nil))
		_, ok, err := qpool.GetStateAs[int](e, "nil")
		require.True(t, ok)
		require.ErrorIs(t, err, qpool.ErrType)
		s, ok, err := qpool.GetStateAs[[]string](e, "nil")
		require.True(t, ok)
		require.NoError(t, err, "a nil slice is a []string")
		require.Nil(t, s)
		v, ok, err := qpool.GetStateAs[any](e, "nil")
		require.True(t, ok)
		require.NoError(t, err)
		require.Nil(t, v)
	})
}

// TestKeyUpdateDoesNotCallFnOnTypeError checks that Update returns the
// conversion error, records nothing and never calls fn with a zero value.
func TestKeyUpdateDoesNotCallFnOnTypeError(t *testing.T) {
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		require.NoError(t, e.UpdateState("rows", "not a number"))
		called := false
		err := rows.Update(e, func(n int, ok bool) (int, error) { called = true; return n + 100, nil })
		require.ErrorIs(t, err, qpool.ErrType)
		require.False(t, called)
		require.Len(t, e.GetStateHistory(0), 1, "nothing recorded")
		v, _ := e.GetState("rows")
		require.Equal(t, "not a number", v)
	})
}

// TestKeyUpdateFn checks what fn gets and that its error records nothing.
func TestKeyUpdateFn(t *testing.T) {
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		errStop := errors.New("stop")
		require.ErrorIs(t, rows.Update(e, func(n int, ok bool) (int, error) {
			require.False(t, ok)
			require.Zero(t, n)
			return 0, errStop
		}), errStop)
		require.Empty(t, e.GetStateHistory(0))
		require.NoError(t, rows.Update(e, func(n int, ok bool) (int, error) { return 7, nil }))
		require.NoError(t, rows.Update(e, func(n int, ok bool) (int, error) {
			require.True(t, ok)
			require.Equal(t, 7, n)
			return n * 2, nil
		}))
		n, _, _ := rows.Get(e)
		require.Equal(t, 14, n)
	})
}

// TestKeyConcurrentUpdates hammers one counter from many goroutines on both
// ledgers: no increment lost, whatever the interleaving.
func TestKeyConcurrentUpdates(t *testing.T) {
	const goroutines, each = 8, 100
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		var wg sync.WaitGroup
		errs := make(chan error, goroutines)
		for range goroutines {
			wg.Go(func() {
				for range each {
					if rand.IntN(4) == 0 {
						time.Sleep(time.Duration(rand.IntN(20)) * time.Microsecond)
					}
					if err := rows.Update(e, func(n int, _ bool) (int, error) { return n + 1, nil }); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		watchGroup(t, &wg)
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		n, _, err := rows.Get(e)
		require.NoError(t, err)
		require.Equal(t, goroutines*each, n)
	})
}

// watchGroup waits for wg, failing the test instead of hanging.
func watchGroup(t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	watchdog(t, done, "goroutines still running")
}

// TestKeyBadInput checks each error of the typed methods: an unnamed key,
// a nil function, and an ended entanglement.
func TestKeyBadInput(t *testing.T) {
	e := newTestEntanglement(t, 0)
	var unnamed qpool.Key[int]
	_, _, err := unnamed.Get(e)
	require.ErrorIs(t, err, qpool.ErrInvalidKey)
	require.ErrorIs(t, unnamed.Set(e, 1), qpool.ErrInvalidKey)
	require.ErrorIs(t, unnamed.Delete(e), qpool.ErrInvalidKey)
	require.ErrorIs(t, unnamed.Update(e, add100), qpool.ErrInvalidKey)
	_, err = unnamed.Await(t.Context(), e)
	require.ErrorIs(t, err, qpool.ErrInvalidKey)
	for _, err := range unnamed.Watch(t.Context(), e) {
		require.ErrorIs(t, err, qpool.ErrInvalidKey)
	}
	require.ErrorIs(t, rows.Update(e, nil), qpool.ErrNilFunc)
	require.Empty(t, e.GetStateHistory(0))

	require.NoError(t, rows.Set(e, 1))
	require.NoError(t, e.Close())
	_, ok, err := rows.Get(e)
	require.NoError(t, err)
	require.False(t, ok, "every key is absent after Close")
	require.ErrorIs(t, rows.Set(e, 2), qpool.ErrClosed)
	require.ErrorIs(t, rows.Delete(e), qpool.ErrClosed)
	require.ErrorIs(t, rows.Update(e, add100), qpool.ErrClosed)
	_, err = rows.Await(t.Context(), e)
	require.ErrorIs(t, err, qpool.ErrClosed)
	n := 0
	for _, err := range rows.Watch(t.Context(), e) {
		n++
		require.ErrorIs(t, err, qpool.ErrClosed)
	}
	require.Equal(t, 1, n)
}

func TestKeyNameAndDelete(t *testing.T) {
	require.Equal(t, "rows", rows.Name())
	require.Equal(t, "rows", fmt.Sprint(rows))
	require.Equal(t, qpool.NewKey[int]("rows"), rows, "comparable: one name, one key")
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		require.NoError(t, rows.Set(e, 5))
		require.NoError(t, rows.Delete(e))
		_, ok, err := rows.Get(e)
		require.NoError(t, err)
		require.False(t, ok)
	})
}

// TestKeyAwait hammers Await: many waiters on several keys, set after
// random delays from other goroutines, each waiter getting its key's value
// as a T; the waits on a key never set end with their context.
func TestKeyAwait(t *testing.T) {
	type job struct{ ID, Step int }
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		for round := range 20 {
			keys := make([]qpool.Key[job], 4)
			for i := range keys {
				keys[i] = qpool.NewKey[job](fmt.Sprintf("round-%d-key-%d", round, i))
			}
			never := qpool.NewKey[job](fmt.Sprintf("round-%d-never", round))
			ctx, cancel := context.WithCancel(t.Context()) // for the wait on never only
			var wg, neverWG sync.WaitGroup
			errs := make(chan error, 64)
			for w := range 16 {
				wg.Go(func() {
					i := w % len(keys)
					v, err := keys[i].Await(t.Context(), e)
					switch {
					case err != nil:
						errs <- err
					case v != job{i, round}:
						errs <- fmt.Errorf("key %d: got %+v", i, v)
					}
				})
			}
			neverWG.Go(func() {
				if _, err := never.Await(ctx, e); !errors.Is(err, context.Canceled) {
					errs <- fmt.Errorf("await of a key never set: %v", err)
				}
			})
			var setters sync.WaitGroup
			for i := range keys {
				setters.Go(func() {
					time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
					if err := keys[i].Set(e, job{i, round}); err != nil {
						errs <- err
					}
				})
			}
			watchGroup(t, &setters)
			watchGroup(t, &wg)
			cancel() // only the waiter on never is left
			watchGroup(t, &neverWG)
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
		}
	})
}

// TestKeyWatch hammers Watch: watchers started at random moments while a
// writer sets the key (and others, and deletes it), each seeing every value
// the key took, as a T, in order, once, and nothing else.
func TestKeyWatch(t *testing.T) {
	const values, watchers = 200, 6
	type progress struct{ Done int }
	key := qpool.NewKey[progress]("progress")
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		var wg sync.WaitGroup
		errs := make(chan error, watchers+1)
		for range watchers {
			time.Sleep(time.Duration(rand.IntN(100)) * time.Microsecond)
			wg.Go(func() {
				next := 0
				for v, err := range key.Watch(t.Context(), e) {
					if err != nil {
						errs <- err
						return
					}
					if v.Done != next {
						errs <- fmt.Errorf("got %d, want %d", v.Done, next)
						return
					}
					if next++; next == values {
						return // break: the sequence stops at once
					}
				}
				errs <- errors.New("watch ended early")
			})
		}
		wg.Go(func() {
			for i := range values {
				if err := key.Set(e, progress{i}); err != nil {
					errs <- err
					return
				}
				if i%10 == 0 {
					_ = e.UpdateState("other", i)
					_ = key.Delete(e)
				}
				if rand.IntN(8) == 0 {
					time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
				}
			}
		})
		watchGroup(t, &wg)
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	})
}

// TestKeyWatchEnds checks why a watch ends: a value that does not convert
// is reported and the watch goes on; then ctx's cause, or Close.
func TestKeyWatchEnds(t *testing.T) {
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		require.NoError(t, e.UpdateState("rows", "x"))
		require.NoError(t, rows.Set(e, 1))
		cause := errors.New("enough")
		ctx, cancel := context.WithCancelCause(t.Context())
		defer cancel(nil)
		errWatchdog := errors.New("watchdog: the watch did not end with its context")
		defer time.AfterFunc(10*time.Second, func() { cancel(errWatchdog) }).Stop()
		var got []int
		var errs []error
		for n, err := range rows.Watch(ctx, e) {
			if err != nil {
				errs = append(errs, err)
				continue
			}
			got = append(got, n)
			cancel(cause) // the watch is now waiting for a change
		}
		require.Equal(t, []int{1}, got)
		require.Len(t, errs, 2)
		require.ErrorIs(t, errs[0], qpool.ErrType)
		require.ErrorIs(t, errs[1], cause)

		done := make(chan error, 1)
		go func() {
			for _, err := range rows.Watch(t.Context(), e) {
				if err != nil && !errors.Is(err, qpool.ErrType) {
					done <- err
					return
				}
			}
			done <- errors.New("ended without a reason")
		}()
		time.Sleep(time.Millisecond) // usually parked by now; either way it must end
		require.NoError(t, e.Close())
		select {
		case err := <-done:
			require.ErrorIs(t, err, qpool.ErrClosed)
		case <-time.After(10 * time.Second):
			t.Fatal("watchdog: the watch did not end on Close")
		}
	})
}

// The benchmarks compare a typed key with the untyped calls it wraps, on
// the in-memory ledger: the same allocations (boxing the int, which
// UpdateState does anyway), and a few nanoseconds for the type assertion.

const benchValue = 1 << 20 // boxed, an int this large allocates

func BenchmarkKeySet(b *testing.B) {
	e := qpool.NewEntanglement("bench", nil, 0, qpool.WithRetention(1024))
	defer e.Close()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := rows.Set(e, benchValue+i); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUntypedUpdateState(b *testing.B) {
	e := qpool.NewEntanglement("bench", nil, 0, qpool.WithRetention(1024))
	defer e.Close()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := e.UpdateState("rows", benchValue+i); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeyGet(b *testing.B) {
	e := qpool.NewEntanglement("bench", nil, 0)
	defer e.Close()
	_ = rows.Set(e, benchValue)
	b.ReportAllocs()
	for b.Loop() {
		if n, _, err := rows.Get(e); err != nil || n != benchValue {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkUntypedGetState(b *testing.B) {
	e := qpool.NewEntanglement("bench", nil, 0)
	defer e.Close()
	_ = e.UpdateState("rows", benchValue)
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := e.GetState("rows"); v.(int) != benchValue {
			b.Fatal(v)
		}
	}
}

func BenchmarkKeyUpdate(b *testing.B) {
	e := qpool.NewEntanglement("bench", nil, 0, qpool.WithRetention(1024))
	defer e.Close()
	_ = rows.Set(e, benchValue)
	inc := func(n int, _ bool) (int, error) { return n + 1, nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := rows.Update(e, inc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUntypedUpdate(b *testing.B) {
	e := qpool.NewEntanglement("bench", nil, 0, qpool.WithRetention(1024))
	defer e.Close()
	_ = e.UpdateState("rows", benchValue)
	inc := func(old any, _ bool) (any, error) { return old.(int) + 1, nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Update("rows", inc); err != nil {
			b.Fatal(err)
		}
	}
}
