package natsledger_test

// Attack on issue 14's typed keys over the NATS ledger, from the public API
// only: edge values read back the same before and after a reopen and as on
// the memory ledger, and typed updates from two processes' entanglements
// on one stream lose nothing, with every watcher seeing every value.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsledger"
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
// the NATS ledger is the same before and after a reopen, and the same as on
// the memory ledger where the docs promise it (every value but the
// integers beyond 2^53, whose precision loss is documented).
func TestAttack14TypedEdgeValuesSurviveReopen(t *testing.T) {
	mem := qpool.NewEntanglement("edge", nil, 0)
	defer mem.Close()
	onMem := a14Values(t, mem, true)

	srv := startServer(t)
	id := uniqueID(t)
	ctx := context.Background()
	l, err := natsledger.Open(ctx, connect(t, srv.url()), id)
	require.NoError(t, err)
	e, err := qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(l))
	require.NoError(t, err)
	before := a14Values(t, e, true)
	require.NoError(t, e.Close())

	l, err = natsledger.Open(ctx, connect(t, srv.url()), id)
	require.NoError(t, err)
	e, err = qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(l))
	require.NoError(t, err)
	defer e.Close()
	after := a14Values(t, e, false)

	lossy := map[string]bool{"two53plus1": true, "maxint64": true, "minint64": true, "maxuint64": true}
	for name, m := range onMem {
		assert.Equal(t, before[name], after[name], "%s: before reopen %v, after %v", name, before[name], after[name])
		if !lossy[name] {
			assert.Equal(t, m, before[name], "%s: memory %v, nats %v", name, m, before[name])
		} else if !reflect.DeepEqual(m, before[name]) {
			t.Logf("%s (documented loss): memory %v, nats %v, after reopen %v", name, m, before[name], after[name])
		}
	}
}

// TestAttack14TypedCounterFromTwoProcesses: two entanglements on one
// stream, each on its own connection (two processes), increment one typed
// counter from several goroutines each, while watchers on both check they
// see 1..N, none missed or repeated, and Awaits on both return. A third
// open afterwards reads N; a NaN is refused with qpool.ErrEncode.
func TestAttack14TypedCounterFromTwoProcesses(t *testing.T) {
	const perSide, each = 3, 10
	const total = 2 * perSide * each
	srv := startServer(t)
	id := uniqueID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var es [2]*qpool.Entanglement
	for i := range es {
		l, err := natsledger.Open(ctx, connect(t, srv.url()), id)
		require.NoError(t, err)
		es[i], err = qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(l))
		require.NoError(t, err)
	}
	ctr := qpool.NewKey[int]("ctr")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i, e := range es {
		wg.Go(func() {
			time.Sleep(time.Duration(rand.IntN(5000)) * time.Microsecond)
			want := 1
			for v, err := range ctr.Watch(ctx, e) {
				if err != nil {
					errs <- fmt.Errorf("watcher %d at %d: %w", i, want, err)
					return
				}
				if v != want {
					errs <- fmt.Errorf("watcher %d: got %d, want %d", i, v, want)
					return
				}
				if want == total {
					return
				}
				want++
			}
		})
		wg.Go(func() {
			if v, err := ctr.Await(ctx, e); err != nil || v < 1 {
				errs <- fmt.Errorf("Await %d: %d, %v", i, v, err)
			}
		})
		for range perSide {
			wg.Go(func() {
				for range each {
					if err := ctr.Update(e, func(n int, _ bool) (int, error) { return n + 1, nil }); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(25 * time.Second):
		t.Fatal("watchdog: updaters or watchers still running")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, e := range es {
		// The other side's last change reaches this replica eventually.
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, _, err := ctr.Get(e)
			require.NoError(t, err)
			if n == total {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("side %d: counter %d, want %d", i, n, total)
			}
			time.Sleep(time.Millisecond)
		}
		require.ErrorIs(t, qpool.NewKey[float64]("ctr").Set(e, math.NaN()), qpool.ErrEncode)
		require.NoError(t, e.Close())
	}
	l, err := natsledger.Open(ctx, connect(t, srv.url()), id)
	require.NoError(t, err)
	e, err := qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(l))
	require.NoError(t, err)
	defer e.Close()
	n, _, err := ctr.Get(e)
	require.NoError(t, err)
	require.Equal(t, total, n)
	_, _, err = qpool.NewKey[string]("ctr").Get(e)
	var te *qpool.TypeError
	require.True(t, errors.As(err, &te), "%v", err)
}

// TestAttack14TypedWatchSurvivesServerRestart: Key.Watch says "a ledger
// that cannot be read for a while delays it ... and does not end it". A
// typed watch ranging while the NATS server restarts yields every value
// set before and after, with no error, and a value of another type in the
// middle as a *TypeError, after which the watch goes on.
func TestAttack14TypedWatchSurvivesServerRestart(t *testing.T) {
	srv := startServer(t)
	id := uniqueID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := natsledger.Open(ctx, connect(t, srv.url()), id)
	require.NoError(t, err)
	e, err := qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(l))
	require.NoError(t, err)
	defer e.Close()
	k := qpool.NewKey[int]("v")
	const total = 10
	got := make(chan string, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for v, err := range k.Watch(ctx, e) {
			if err != nil {
				var te *qpool.TypeError
				if errors.As(err, &te) {
					got <- "type-error"
					continue
				}
				got <- "end: " + err.Error()
				return
			}
			got <- fmt.Sprint(v)
			if v == total {
				return
			}
		}
	}()
	for i := 1; i <= 5; i++ {
		require.NoError(t, k.Set(e, i))
	}
	require.NoError(t, e.UpdateState("v", "not an int"))
	srv.restart()
	// Wait until the ledger appends again, on another key.
	deadline := time.Now().Add(10 * time.Second)
	for e.UpdateState("ping", 1) != nil {
		if time.Now().After(deadline) {
			t.Fatal("watchdog: the ledger never appended again after the restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 6; i <= total; i++ {
		require.NoError(t, k.Set(e, i))
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("watchdog: the typed watch never saw the last value")
	}
	close(got)
	var seen []string
	for s := range got {
		seen = append(seen, s)
	}
	assert.Equal(t, []string{"1", "2", "3", "4", "5", "type-error", "6", "7", "8", "9", "10"}, seen)
}
