package boltledger_test

// Attack on issue 14's typed keys over the bbolt ledger, from the public
// API only: edge values read back the same before and after a reopen and
// as on the memory ledger, unencodable values fail cleanly, concurrent
// typed updates lose nothing, and watches see every value.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/boltledger"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type a14Inner struct {
	P *int
	B []byte
	T time.Time
}

type a14Outer struct {
	Name  string
	Inner a14Inner
	Tags  []string
	Opt   *a14Inner
	Nums  map[string]float64
	Empty []int
	Nil   []int
}

// a14Values sets edge values through typed keys and returns a function
// that reads them all back, as a map from key name to the value read (or
// the error's text).
func a14Values(t *testing.T, e *qpool.Entanglement, set bool) map[string]any {
	t.Helper()
	seven := 7
	at := time.Date(2024, 3, 10, 1, 59, 59, 123456789, time.FixedZone("X", 3600+1800))
	out := map[string]any{}
	var errs []error
	do := func(name string, setf func() error, getf func() (any, error)) {
		if set {
			if err := setf(); err != nil {
				errs = append(errs, fmt.Errorf("set %s: %w", name, err))
			}
		}
		v, err := getf()
		if err != nil {
			out[name] = "error: " + err.Error()
			return
		}
		if tm, ok := v.(time.Time); ok {
			v = tm.UTC().Format(time.RFC3339Nano)
		}
		out[name] = v
	}
	typed := func(name string, v any) {
		switch x := v.(type) {
		case float64:
			k := qpool.NewKey[float64](name)
			do(name, func() error { return k.Set(e, x) }, func() (any, error) {
				v, _, err := k.Get(e)
				return fmt.Sprintf("%v signbit=%v", v, math.Signbit(v)), err
			})
		case int64:
			k := qpool.NewKey[int64](name)
			do(name, func() error { return k.Set(e, x) }, func() (any, error) { v, _, err := k.Get(e); return v, err })
		case uint64:
			k := qpool.NewKey[uint64](name)
			do(name, func() error { return k.Set(e, x) }, func() (any, error) { v, _, err := k.Get(e); return v, err })
		case []byte:
			k := qpool.NewKey[[]byte](name)
			do(name, func() error { return k.Set(e, x) }, func() (any, error) { v, _, err := k.Get(e); return v, err })
		case []int:
			k := qpool.NewKey[[]int](name)
			do(name, func() error { return k.Set(e, x) }, func() (any, error) {
				v, _, err := k.Get(e)
				return fmt.Sprintf("%v len=%d", v, len(v)), err
			})
		case map[string]int:
			k := qpool.NewKey[map[string]int](name)
			do(name, func() error { return k.Set(e, x) }, func() (any, error) {
				v, _, err := k.Get(e)
				return fmt.Sprintf("%v len=%d", v, len(v)), err
			})
		case *int:
			k := qpool.NewKey[*int](name)
			do(name, func() error { return k.Set(e, x) }, func() (any, error) {
				v, _, err := k.Get(e)
				if v == nil {
					return "nil", err
				}
				return *v, err
			})
		case time.Time:
			k := qpool.NewKey[time.Time](name)
			do(name, func() error { return k.Set(e, x) }, func() (any, error) { v, _, err := k.Get(e); return v, err })
		case a14Outer:
			k := qpool.NewKey[a14Outer](name)
			do(name, func() error { return k.Set(e, x) }, func() (any, error) {
				v, _, err := k.Get(e)
				// Times compared as instants, pointers by target.
				return fmt.Sprintf("%s %v %s %v %v %v %v %v", v.Name, *v.Inner.P, v.Inner.B, v.Inner.T.UTC(), v.Tags,
					v.Opt == nil, v.Nums, len(v.Empty)+len(v.Nil)), err
			})
		default:
			t.Fatalf("no case for %T", v)
		}
	}
	typed("negzero", math.Copysign(0, -1))
	typed("smallfloat", 5e-324)
	typed("maxfloat", math.MaxFloat64)
	typed("two53", int64(1<<53))
	typed("two53plus1", int64(1<<53+1))
	typed("maxint64", int64(math.MaxInt64))
	typed("minint64", int64(math.MinInt64))
	typed("maxuint64", uint64(math.MaxUint64))
	typed("bytes", []byte{0, 1, 2, 255})
	typed("nilbytes", []byte(nil))
	typed("nilslice", []int(nil))
	typed("emptyslice", []int{})
	typed("nilmap", map[string]int(nil))
	typed("ptr", &seven)
	typed("nilptr", (*int)(nil))
	typed("time", at)
	typed("zerotime", time.Time{})
	typed("struct", a14Outer{Name: "n", Inner: a14Inner{P: &seven, B: []byte("xy"), T: at}, Tags: []string{"a"},
		Nums: map[string]float64{"pi": math.Pi}, Empty: []int{}})
	for _, err := range errs {
		t.Error(err)
	}
	return out
}

// TestAttack14TypedEdgeValuesSurviveReopen: what typed keys read back on
// the bbolt ledger is the same before and after a reopen, and the same as
// on the memory ledger where the docs promise it (every value but the
// integers beyond 2^53, whose precision loss is documented).
func TestAttack14TypedEdgeValuesSurviveReopen(t *testing.T) {
	mem := qpool.NewEntanglement("edge", nil, 0)
	defer mem.Close()
	onMem := a14Values(t, mem, true)

	path := t.TempDir() + "/edge.db"
	db, err := boltledger.Open(path)
	require.NoError(t, err)
	l, err := db.Ledger("edge")
	require.NoError(t, err)
	e, err := qpool.OpenEntanglement(context.Background(), "edge", nil, 0, qpool.WithLedger(l))
	require.NoError(t, err)
	before := a14Values(t, e, true)
	require.NoError(t, e.Close())
	require.NoError(t, db.Close())

	db = reopenDB(t, path)
	e, err = qpool.OpenEntanglement(context.Background(), "edge", nil, 0, qpool.WithLedger(ledger(t, db, "edge")))
	require.NoError(t, err)
	defer e.Close()
	after := a14Values(t, e, false)

	lossy := map[string]bool{"two53plus1": true, "maxint64": true, "minint64": true, "maxuint64": true}
	for name, m := range onMem {
		assert.Equal(t, before[name], after[name], "%s: before reopen %v, after %v", name, before[name], after[name])
		if !lossy[name] {
			assert.Equal(t, m, before[name], "%s: memory %v, bbolt %v", name, m, before[name])
		} else if !reflect.DeepEqual(m, before[name]) {
			t.Logf("%s (documented loss): memory %v, bbolt %v, after reopen %v", name, m, before[name], after[name])
		}
	}
}

// TestAttack14UnencodableTypedValues: NaN and ±Inf (which JSON cannot
// encode) given to Key.Set and returned from Key.Update's fn fail with an
// error matching qpool.ErrEncode, record nothing, and do not make Update
// retry for ever.
func TestAttack14UnencodableTypedValues(t *testing.T) {
	db, _ := openDB(t)
	e, err := qpool.OpenEntanglement(context.Background(), "nan", nil, 0, qpool.WithLedger(ledger(t, db, "nan")))
	require.NoError(t, err)
	defer e.Close()
	k := qpool.NewKey[float64]("f")
	require.NoError(t, k.Set(e, 1))
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		err := k.Set(e, bad)
		require.ErrorIs(t, err, qpool.ErrEncode, "%v", bad)
		calls := 0
		done := make(chan error, 1)
		go func() {
			done <- k.Update(e, func(float64, bool) (float64, error) { calls++; return bad, nil })
		}()
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("watchdog: Update returning NaN never returned")
		}
		require.ErrorIs(t, err, qpool.ErrEncode, "%v", bad)
		assert.LessOrEqual(t, calls, 2, "fn called %d times", calls)
		v, _, err := k.Get(e)
		require.NoError(t, err)
		assert.Equal(t, 1.0, v, "an unencodable value changed the key")
	}
	assert.Len(t, e.GetStateHistory(0), 1)
}

// TestAttack14TypedCounterHammerAcrossReopen: goroutines increment one
// typed counter on the bbolt ledger while watchers check they see 1..N,
// none missed or repeated; after a reopen the counter is N and more
// increments go on from there.
func TestAttack14TypedCounterHammerAcrossReopen(t *testing.T) {
	const goroutines, each = 8, 25
	const total = goroutines * each
	path := t.TempDir() + "/ctr.db"
	db, err := boltledger.Open(path)
	require.NoError(t, err)
	e, err := qpool.OpenEntanglement(context.Background(), "ctr", nil, 0, qpool.WithLedger(ledger(t, db, "ctr")))
	require.NoError(t, err)
	ctr := qpool.NewKey[int]("ctr")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2*goroutines)
	for w := range 3 {
		wg.Go(func() {
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
			want := 1
			for v, err := range ctr.Watch(ctx, e) {
				if err != nil {
					errs <- fmt.Errorf("watcher %d at %d: %w", w, want, err)
					return
				}
				if v != want {
					errs <- fmt.Errorf("watcher %d: got %d, want %d", w, v, want)
					return
				}
				if want == total {
					return
				}
				want++
			}
		})
	}
	for range goroutines {
		wg.Go(func() {
			for range each {
				if err := ctr.Update(e, func(n int, _ bool) (int, error) { return n + 1, nil }); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("watchdog: updaters or watchers still running")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	require.NoError(t, e.Close())
	require.NoError(t, db.Close())

	db = reopenDB(t, path)
	e, err = qpool.OpenEntanglement(context.Background(), "ctr", nil, 0, qpool.WithLedger(ledger(t, db, "ctr")))
	require.NoError(t, err)
	defer e.Close()
	n, ok, err := ctr.Get(e)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, total, n)
	require.NoError(t, ctr.Update(e, func(n int, _ bool) (int, error) { return n + 100, nil }))
	n, _, err = ctr.Get(e)
	require.NoError(t, err)
	require.Equal(t, total+100, n)
	// The untyped view of the same key, for contrast, is a float64.
	raw, _ := e.GetState("ctr")
	_, isFloat := raw.(float64)
	assert.True(t, isFloat, "untyped value on bbolt is %T", raw)
	// A key of another type reads it with a *TypeError, not a panic.
	_, _, err = qpool.NewKey[string]("ctr").Get(e)
	var te *qpool.TypeError
	require.True(t, errors.As(err, &te), "%v", err)
}

// a14NumberCodec is JSON that decodes numbers as json.Number, which the Key
// godoc says keeps integers beyond 2^53.
type a14NumberCodec struct{}

func (a14NumberCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

func (a14NumberCodec) Unmarshal(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	return d.Decode(v)
}

// TestAttack14NumberCodecKeepsLargeInts: with a codec that decodes numbers
// as json.Number, a Key[int64] and a Key[uint64] round-trip values beyond
// 2^53 exactly, before and after a reopen ("a codec that decodes numbers as
// encoding/json.Number keeps them").
func TestAttack14NumberCodecKeepsLargeInts(t *testing.T) {
	path := t.TempDir() + "/num.db"
	vals := []int64{1<<53 + 1, math.MaxInt64, math.MinInt64, 1 << 60}
	k := qpool.NewKey[int64]("i")
	u := qpool.NewKey[uint64]("u")
	for pass := range 2 {
		db, err := boltledger.Open(path, boltledger.WithCodec(a14NumberCodec{}))
		require.NoError(t, err)
		e, err := qpool.OpenEntanglement(context.Background(), "num", nil, 0, qpool.WithLedger(ledger(t, db, "num")))
		require.NoError(t, err)
		for i, v := range vals {
			name := fmt.Sprintf("i%d", i)
			ki := qpool.NewKey[int64](name)
			if pass == 0 {
				require.NoError(t, ki.Set(e, v))
			}
			got, ok, err := ki.Get(e)
			require.NoError(t, err, "pass %d: %d", pass, v)
			require.True(t, ok)
			assert.Equal(t, v, got, "pass %d", pass)
		}
		if pass == 0 {
			require.NoError(t, u.Set(e, math.MaxUint64))
			require.NoError(t, k.Set(e, 0))
			require.NoError(t, k.Update(e, func(n int64, _ bool) (int64, error) { return n + math.MaxInt64, nil }))
		}
		got, _, err := u.Get(e)
		require.NoError(t, err)
		assert.Equal(t, uint64(math.MaxUint64), got, "pass %d", pass)
		n, _, err := k.Get(e)
		require.NoError(t, err)
		assert.Equal(t, int64(math.MaxInt64), n, "pass %d", pass)
		require.NoError(t, e.Close())
		require.NoError(t, db.Close())
	}
}
