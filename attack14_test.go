package qpool_test

// Attack on issue 14's features (typed keys, groups, permanent errors and
// WithRetryIf, the dependency window and retention defaults, nil and zero
// values), written from the godoc and docs only. Every wait has a watchdog.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// a14NoPanic runs fn and fails the test with the panic value if it panics.
func a14NoPanic(t *testing.T, what string, fn func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v", what, r)
		}
	}()
	fn()
}

// a14Ctx is a context that a watchdog ends, with errWatchdog as its cause.
func a14Ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeoutCause(context.Background(), 10*time.Second, errWatchdog)
	t.Cleanup(cancel)
	return ctx
}

// ---- Typed keys ----

type a14Unexported struct {
	Public  int
	private int
}

// TestAttack14KeyEdgeValues stores edge values through typed keys on the
// memory ledger and a JSON ledger, and checks that what comes back is
// either the value (same type) or a clear error, never a panic and never a
// silently different value where the docs promise the same one.
func TestAttack14KeyEdgeValues(t *testing.T) {
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		// Negative zero keeps its sign through JSON ("-0").
		negz := qpool.NewKey[float64]("negz")
		require.NoError(t, negz.Set(e, math.Copysign(0, -1)))
		v, ok, err := negz.Get(e)
		require.NoError(t, err)
		require.True(t, ok)
		assert.True(t, math.Signbit(v), "-0 lost its sign")

		// 2^53 is exact in a float64.
		big := qpool.NewKey[int64]("big")
		require.NoError(t, big.Set(e, 1<<53))
		b, _, err := big.Get(e)
		require.NoError(t, err)
		assert.Equal(t, int64(1<<53), b)

		// Beyond 2^53: lossy or an error on a codec ledger (documented),
		// never a panic.
		for _, n := range []int64{1<<53 + 1, math.MaxInt64, math.MinInt64} {
			require.NoError(t, big.Set(e, n))
			a14NoPanic(t, "Get of a large int", func() {
				got, ok, err := big.Get(e)
				require.True(t, ok)
				if err != nil {
					require.ErrorIs(t, err, qpool.ErrType)
				} else if got != n {
					t.Logf("%d came back as %d (documented precision loss)", n, got)
				}
			})
		}
		umax := qpool.NewKey[uint64]("umax")
		require.NoError(t, umax.Set(e, math.MaxUint64))
		a14NoPanic(t, "Get of MaxUint64", func() {
			_, _, err := umax.Get(e)
			if err != nil {
				require.ErrorIs(t, err, qpool.ErrType)
			}
		})

		// nil slice and empty slice, nil map and empty map: both read back
		// without an error as a slice (map) of length 0.
		sl := qpool.NewKey[[]int]("slice")
		require.NoError(t, sl.Set(e, nil))
		s, ok, err := sl.Get(e)
		require.NoError(t, err, "a nil slice stored through a Key[[]int] reads back")
		require.True(t, ok)
		assert.Empty(t, s)
		require.NoError(t, sl.Set(e, []int{}))
		s, _, err = sl.Get(e)
		require.NoError(t, err)
		assert.Empty(t, s)

		mp := qpool.NewKey[map[string]int]("map")
		require.NoError(t, mp.Set(e, nil))
		m, ok, err := mp.Get(e)
		require.NoError(t, err, "a nil map stored through a Key[map[string]int] reads back")
		require.True(t, ok)
		assert.Empty(t, m)
		require.NoError(t, mp.Set(e, map[string]int{"a": 1}))
		m, _, err = mp.Get(e)
		require.NoError(t, err)
		assert.Equal(t, map[string]int{"a": 1}, m)

		// A pointer, and a nil pointer.
		ptr := qpool.NewKey[*int]("ptr")
		five := 5
		require.NoError(t, ptr.Set(e, &five))
		p, _, err := ptr.Get(e)
		require.NoError(t, err)
		require.NotNil(t, p)
		assert.Equal(t, 5, *p)
		require.NoError(t, ptr.Set(e, nil))
		p, ok, err = ptr.Get(e)
		require.NoError(t, err, "a nil pointer reads back as nil")
		require.True(t, ok)
		assert.Nil(t, p)

		// A time in a named zone, with a monotonic reading: the same instant.
		loc, err := time.LoadLocation("America/New_York")
		if err != nil {
			loc = time.FixedZone("X", -5*3600)
		}
		now := time.Now().In(loc)
		tk := qpool.NewKey[time.Time]("time")
		require.NoError(t, tk.Set(e, now))
		tv, _, err := tk.Get(e)
		require.NoError(t, err)
		assert.True(t, tv.Equal(now), "%v != %v", tv, now)

		// A struct with an unexported field: no panic; the exported field
		// survives.
		uk := qpool.NewKey[a14Unexported]("unexported")
		require.NoError(t, uk.Set(e, a14Unexported{Public: 1, private: 2}))
		u, _, err := uk.Get(e)
		require.NoError(t, err)
		assert.Equal(t, 1, u.Public)
		if u.private != 2 {
			t.Logf("unexported field lost on this ledger: %+v", u)
		}
	})
}

// a14Panicky is a value whose JSON encoding panics.
type a14Panicky struct{}

func (a14Panicky) MarshalJSON() ([]byte, error) { panic("a14Panicky.MarshalJSON") }

// TestAttack14KeyReadAsAnotherType reads values through keys of another
// type: a clear *TypeError, never a panic.
func TestAttack14KeyReadAsAnotherType(t *testing.T) {
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		require.NoError(t, qpool.NewKey[int]("n").Set(e, 300))
		require.NoError(t, qpool.NewKey[float64]("f").Set(e, 1.5))
		require.NoError(t, qpool.NewKey[string]("s").Set(e, "42"))
		require.NoError(t, qpool.NewKey[[]int]("sl").Set(e, []int{1}))

		check := func(name string, get func() error) {
			t.Helper()
			a14NoPanic(t, name, func() {
				err := get()
				require.Error(t, err, name)
				var te *qpool.TypeError
				require.ErrorAs(t, err, &te, name)
				require.ErrorIs(t, err, qpool.ErrType, name)
				_ = err.Error()
			})
		}
		check("int as string", func() error { _, _, err := qpool.NewKey[string]("n").Get(e); return err })
		check("int as int8", func() error { _, _, err := qpool.NewKey[int8]("n").Get(e); return err })
		check("int as bool", func() error { _, _, err := qpool.NewKey[bool]("n").Get(e); return err })
		check("1.5 as int", func() error { _, _, err := qpool.NewKey[int]("f").Get(e); return err })
		check("string as int", func() error { _, _, err := qpool.NewKey[int]("s").Get(e); return err })
		check("slice as map", func() error { _, _, err := qpool.NewKey[map[string]int]("sl").Get(e); return err })
		check("int as struct", func() error { _, _, err := qpool.NewKey[a14Unexported]("n").Get(e); return err })
		check("int as Await string", func() error {
			_, err := qpool.NewKey[string]("n").Await(a14Ctx(t), e)
			return err
		})
		check("int as Update string", func() error {
			return qpool.NewKey[string]("n").Update(e, func(string, bool) (string, error) {
				t.Error("fn called on a TypeError")
				return "", nil
			})
		})
		// An int read as a float64 converts on every ledger.
		f, _, err := qpool.NewKey[float64]("n").Get(e)
		require.NoError(t, err)
		assert.Equal(t, 300.0, f)
	})
}

// TestAttack14KeyReadsUnencodableValue: on the memory ledger the untyped
// API stores anything (a channel, a function); a typed key of another type
// reading it must return a *TypeError, not panic.
func TestAttack14KeyReadsUnencodableValue(t *testing.T) {
	e := newTestEntanglement(t, 0)
	require.NoError(t, e.UpdateState("ch", make(chan int)))
	require.NoError(t, e.UpdateState("fn", func() {}))
	for _, name := range []string{"ch", "fn"} {
		a14NoPanic(t, "Key[int].Get of "+name, func() {
			_, ok, err := qpool.NewKey[int](name).Get(e)
			require.True(t, ok)
			require.ErrorIs(t, err, qpool.ErrType, name)
		})
		a14NoPanic(t, "GetStateAs[string] of "+name, func() {
			_, _, err := qpool.GetStateAs[string](e, name)
			require.ErrorIs(t, err, qpool.ErrType, name)
		})
	}
}

// TestAttack14KeyReadsPanickyValue: the same with a stored value whose
// MarshalJSON panics (stored through the untyped API on the memory
// ledger): the typed read re-encodes it to convert it, and the encoder's
// panic must come back as a *TypeError, not as a panic ("a value that does
// not convert is a *TypeError").
func TestAttack14KeyReadsPanickyValue(t *testing.T) {
	e := newTestEntanglement(t, 0)
	require.NoError(t, e.UpdateState("panicky", a14Panicky{}))
	a14NoPanic(t, "Key[int].Get of a value whose MarshalJSON panics", func() {
		_, ok, err := qpool.NewKey[int]("panicky").Get(e)
		require.True(t, ok)
		require.ErrorIs(t, err, qpool.ErrType)
	})
	a14NoPanic(t, "GetStateAs[string] of a value whose MarshalJSON panics", func() {
		_, _, err := qpool.GetStateAs[string](e, "panicky")
		require.ErrorIs(t, err, qpool.ErrType)
	})
}

// TestAttack14KeyWatchSeesEveryIncrement: many goroutines increment one
// typed counter with Update while watchers (started at random moments)
// range over Key.Watch and Await waits: every watcher sees 1, 2, …, N with
// none missed or repeated, the final value is N, and nothing hangs.
func TestAttack14KeyWatchSeesEveryIncrement(t *testing.T) {
	const goroutines, each, watchers = 6, 40, 4
	const total = goroutines * each
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		ctr := qpool.NewKey[int]("ctr")
		ctx, cancel := context.WithCancel(a14Ctx(t))
		defer cancel()
		var wg sync.WaitGroup
		errs := make(chan error, goroutines+2*watchers)
		for w := range watchers {
			wg.Go(func() {
				time.Sleep(time.Duration(rand.IntN(200*(w+1))) * time.Microsecond)
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
				errs <- fmt.Errorf("watcher %d: sequence ended at %d without an error", w, want)
			})
			wg.Go(func() {
				v, err := ctr.Await(ctx, e)
				if err != nil || v < 1 || v > total {
					errs <- fmt.Errorf("Await: %d, %v", v, err)
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
		watchGroup(t, &wg)
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		n, _, err := ctr.Get(e)
		require.NoError(t, err)
		require.Equal(t, total, n)
	})
}

// TestAttack14KeyAwaitRacingClose: Awaits and Watches of a key that is
// never set end with ErrClosed when the entanglement closes, whatever the
// timing.
func TestAttack14KeyAwaitRacingClose(t *testing.T) {
	for round := range 20 {
		e := qpool.NewEntanglement(fmt.Sprintf("await-close-%d", round), nil, 0)
		k := qpool.NewKey[int]("never")
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for range 4 {
			wg.Go(func() {
				_, err := k.Await(a14Ctx(t), e)
				if !errors.Is(err, qpool.ErrClosed) {
					errs <- fmt.Errorf("Await: %v", err)
				}
			})
			wg.Go(func() {
				var last error
				for _, err := range k.Watch(a14Ctx(t), e) {
					last = err
				}
				if !errors.Is(last, qpool.ErrClosed) {
					errs <- fmt.Errorf("Watch ended with %v", last)
				}
			})
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		require.NoError(t, e.Close())
		watchGroup(t, &wg)
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
}

// TestAttack14KeyNilContext: the typed keys given a nil context (as
// Future.Wait accepts) must not panic.
func TestAttack14KeyNilContext(t *testing.T) {
	e := newTestEntanglement(t, 0)
	k := qpool.NewKey[int]("k")
	require.NoError(t, k.Set(e, 1))
	a14NoPanic(t, "Key.Await(nil ctx)", func() {
		//lint:ignore SA1012 the attack passes a nil context on purpose
		v, err := k.Await(nil, e) //nolint:staticcheck
		if err == nil {
			assert.Equal(t, 1, v)
		}
	})
	a14NoPanic(t, "Key.Watch(nil ctx)", func() {
		for v, err := range k.Watch(nil, e) { //nolint:staticcheck
			if err == nil {
				assert.Equal(t, 1, v)
			}
			break
		}
	})
	a14NoPanic(t, "Entanglement.Await(nil ctx)", func() {
		_, _ = e.Await(nil, "k") //nolint:staticcheck
	})
}

// ---- Groups ----

// TestAttack14GroupFirstErrorIsTheCause: with WithCancelOnError and
// WithFirstError, several jobs fail at about the same time with distinct
// errors while the others return their context's error once it ends.
// Wait's error must be the failure that cancelled the group (its context's
// cause), never a later one or a cancellation.
func TestAttack14GroupFirstErrorIsTheCause(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(8))
	for round := range 30 {
		g := qpool.NewGroup[int](context.Background(), p, qpool.WithCancelOnError(), qpool.WithFirstError())
		failures := map[error]bool{}
		for i := range 12 {
			if i%4 == 1 {
				fe := fmt.Errorf("round %d job %d fails", round, i)
				failures[fe] = true
				g.Go(func(ctx context.Context) (int, error) {
					time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
					return 0, fe
				})
				continue
			}
			g.Go(func(ctx context.Context) (int, error) {
				<-ctx.Done()
				return 0, ctx.Err()
			})
		}
		done := make(chan struct{})
		var err error
		go func() { _, err = g.Wait(); close(done) }()
		watchdog(t, done, "group Wait")
		require.Error(t, err)
		cause := context.Cause(g.Context())
		require.True(t, failures[cause] || errors.Is(cause, qpool.ErrGroupClosed), "cause %v", cause)
		found := false
		for fe := range failures {
			if errors.Is(err, fe) {
				found = true
			}
		}
		require.True(t, found, "round %d: Wait's first error %v is none of the failures", round, err)
		require.False(t, errors.Is(err, context.Canceled), "round %d: Wait's first error is a cancellation: %v", round, err)
	}
}

// TestAttack14GroupRetriedAttemptDoesNotCancel: a job whose first attempt
// fails and second succeeds has not failed: WithCancelOnError must not
// cancel the group for the failed attempt.
func TestAttack14GroupRetriedAttemptDoesNotCancel(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(4))
	for range 10 {
		g := qpool.NewGroup[int](context.Background(), p, qpool.WithCancelOnError())
		var attempts atomic.Int32
		g.Go(func(ctx context.Context) (int, error) {
			if attempts.Add(1) == 1 {
				return 0, errors.New("transient")
			}
			return 1, nil
		}, qpool.WithRetry(3, time.Millisecond))
		release := make(chan struct{})
		g.Go(func(ctx context.Context) (int, error) {
			select {
			case <-release:
				return 2, nil
			case <-ctx.Done():
				return 0, context.Cause(ctx)
			}
		})
		waitFor(t, func() bool { return attempts.Load() >= 2 })
		time.Sleep(time.Millisecond)
		close(release)
		done := make(chan struct{})
		var vals []int
		var err error
		go func() { vals, err = g.Wait(); close(done) }()
		watchdog(t, done, "group Wait")
		require.NoError(t, err, "a retried attempt cancelled the group")
		require.Equal(t, []int{1, 2}, vals)
	}
}

// TestAttack14GroupPanicAndGoexit: a panicking job and a job that calls
// runtime.Goexit resolve with a *PanicError naming the generated ID and
// ErrGoexit; Wait reports both, in submission order, and does not hang;
// Wait twice returns the same; Go after Wait fails with ErrGroupClosed.
func TestAttack14GroupPanicAndGoexit(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(2))
	g := qpool.NewGroup[int](context.Background(), p)
	f0 := g.Go(func(context.Context) (int, error) { panic("boom") })
	f1 := g.Go(func(context.Context) (int, error) { runtime.Goexit(); return 0, nil })
	f2 := g.Go(func(context.Context) (int, error) { return 7, nil })
	done := make(chan struct{})
	var vals, vals2 []int
	var err, err2 error
	go func() { vals, err = g.Wait(); vals2, err2 = g.Wait(); close(done) }()
	watchdog(t, done, "group Wait with a panic and a Goexit")
	var pe *qpool.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, f0.ID(), pe.JobID)
	assert.ErrorIs(t, err, qpool.ErrGoexit)
	assert.Equal(t, []int{0, 0, 7}, vals)
	assert.Equal(t, vals, vals2)
	assert.Equal(t, err.Error(), err2.Error())
	_, e1 := wait(t, f1)
	assert.ErrorIs(t, e1, qpool.ErrGoexit)
	v2, _ := wait(t, f2)
	assert.Equal(t, 7, v2)
	_, e3 := wait(t, g.Go(func(context.Context) (int, error) { return 1, nil }))
	assert.ErrorIs(t, e3, qpool.ErrGroupClosed)
	_, e4 := wait(t, g.Submit("explicit-after-wait", func(context.Context) (int, error) { return 1, nil }))
	assert.ErrorIs(t, e4, qpool.ErrGroupClosed)
}

// TestAttack14GroupOverClosingPool: submitters give jobs to groups while the
// pool closes; every future resolves (a value or ErrPoolClosed), Wait and
// Results end, nothing hangs.
func TestAttack14GroupOverClosingPool(t *testing.T) {
	for round := range 15 {
		p := qpool.NewPool(qpool.WithWorkers(2), qpool.WithQueueSize(rand.IntN(4)))
		g := qpool.NewGroup[int](context.Background(), p, qpool.WithCancelOnError())
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for s := range 3 {
			wg.Go(func() {
				for i := range 10 {
					f := g.Go(func(ctx context.Context) (int, error) {
						time.Sleep(time.Duration(rand.IntN(100)) * time.Microsecond)
						return s*100 + i, nil
					})
					_, err := wait(t, f)
					if err != nil && !errors.Is(err, qpool.ErrPoolClosed) && !errors.Is(err, qpool.ErrGroupClosed) &&
						!errors.Is(err, context.Canceled) {
						errs <- fmt.Errorf("round %d: unexpected %v", round, err)
					}
				}
			})
		}
		wg.Go(func() {
			n := 0
			for range g.Results() {
				n++
			}
		})
		time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
		closed := make(chan struct{})
		go func() { _ = p.Close(); close(closed) }()
		watchdog(t, closed, "Close with a group's submitters")
		watchGroup(t, &wg)
		done := make(chan struct{})
		go func() { _, _ = g.Wait(); close(done) }()
		watchdog(t, done, "group Wait over a closed pool")
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
}

// TestAttack14GroupResultsAfterWait: Results after Wait ends, yielding each
// result not yet taken once.
func TestAttack14GroupResultsAfterWait(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(2))
	g := qpool.NewGroup[int](context.Background(), p)
	for i := range 5 {
		g.Go(func(context.Context) (int, error) { return i, nil })
	}
	done := make(chan struct{})
	seen := 0
	go func() {
		_, _ = g.Wait()
		for range g.Results() {
			seen++
		}
		for range g.Results() {
			seen += 100
		}
		close(done)
	}()
	watchdog(t, done, "Results after Wait")
	assert.Equal(t, 5, seen)
}

// TestAttack14GroupDAGByGeneratedIDs: each group job depends on the
// previous one by its generated ID, submitted only after it finished, under
// the default options.
func TestAttack14GroupDAGByGeneratedIDs(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(2))
	g := qpool.NewGroup[int](context.Background(), p)
	prev := g.Go(func(context.Context) (int, error) { return 0, nil })
	for i := 1; i < 50; i++ {
		_, err := wait(t, prev)
		require.NoError(t, err)
		prev = g.Go(func(context.Context) (int, error) { return i, nil }, qpool.WithDependencies(prev.ID()))
	}
	done := make(chan struct{})
	var vals []int
	var err error
	go func() { vals, err = g.Wait(); close(done) }()
	watchdog(t, done, "group DAG")
	require.NoError(t, err)
	for i, v := range vals {
		require.Equal(t, i, v)
	}
}

// ---- Permanent errors and WithRetryIf ----

// TestAttack14NilPermanentErrors: a job returning a nil *PermanentError in
// an error, or one with a nil Err, with retries, an observer and a
// dependent, must not crash the pool.
func TestAttack14NilPermanentErrors(t *testing.T) {
	var finished atomic.Int32
	p := newTestPool(t, qpool.WithWorkers(2), qpool.WithObserver(qpool.Observer{
		Finished: func(_ context.Context, e qpool.JobEvent) { finished.Add(1) },
	}))
	cases := map[string]error{
		"typed-nil":  (*qpool.PermanentError)(nil),
		"nil-Err":    &qpool.PermanentError{},
		"joined-nil": errors.Join(errors.New("x"), &qpool.PermanentError{}),
	}
	for name, perr := range cases {
		var attempts atomic.Int32
		f := p.Schedule(name, func() (any, error) { attempts.Add(1); return nil, perr }, qpool.WithRetry(3, 0))
		d := p.Schedule(name+"-dep", ok, qpool.WithDependencies(name))
		// Not wait(): the checks below call errors.Is themselves.
		select {
		case <-f.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("watchdog: %s never resolved", name)
		}
		_, err := f.Wait(nil) //nolint:staticcheck
		require.Error(t, err, name)
		assert.True(t, qpool.IsPermanent(err), name)
		a14NoPanic(t, name+": errors.Is on the job's error", func() { _ = errors.Is(err, qpool.ErrPoolClosed) })
		a14NoPanic(t, name+": the job's error message", func() { _ = err.Error() })
		assert.EqualValues(t, 1, attempts.Load(), "%s: a permanent error was retried", name)
		select {
		case <-d.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("watchdog: %s's dependent never resolved", name)
		}
		var de *qpool.DependencyError
		_, err = d.Wait(nil) //nolint:staticcheck
		assert.ErrorAs(t, err, &de, name)
		a14NoPanic(t, name+": the dependent's error message", func() { _ = err.Error() })
		a14NoPanic(t, name+": errors.Is on the error", func() { _ = errors.Is(err, qpool.ErrDependencyFailed) })
	}
	p.Wait()
	assert.EqualValues(t, 2*len(cases), finished.Load())
}

// TestAttack14RetryIfGoexit: a WithRetryIf predicate that calls
// runtime.Goexit must not leave the job unresolved.
func TestAttack14RetryIfGoexit(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(1))
	f := p.Schedule("goexit-retryif", func() (any, error) { return nil, errors.New("fail") },
		qpool.WithRetry(3, 0), qpool.WithRetryIf(func(error) bool { runtime.Goexit(); return true }))
	_, err := wait(t, f)
	require.Error(t, err)
	// The pool still works.
	v, err := wait(t, p.Schedule("after", ok))
	require.NoError(t, err)
	assert.Equal(t, "ok", v)
}

// TestAttack14RetryIfPanics: a predicate that panics with nil (a
// *runtime.PanicNilError since Go 1.21) or with an error value ends the job
// with a *PanicError naming the job, counted in Stats.Panicked, not retried.
func TestAttack14RetryIfPanics(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(1))
	for i, pv := range []any{nil, io14EOF, "text"} {
		id := fmt.Sprintf("retryif-panic-%d", i)
		var attempts atomic.Int32
		f := p.Schedule(id, func() (any, error) { attempts.Add(1); return nil, errors.New("fail") },
			qpool.WithRetry(3, 0), qpool.WithRetryIf(func(error) bool { panic(pv) }))
		_, err := wait(t, f)
		var pe *qpool.PanicError
		require.ErrorAs(t, err, &pe, "%d: %v", i, err)
		assert.Equal(t, id, pe.JobID)
		assert.EqualValues(t, 1, attempts.Load())
	}
	p.Wait()
	s := p.Stats()
	assert.EqualValues(t, 3, s.Panicked)
	assert.EqualValues(t, 0, s.Retried)
}

var io14EOF = errors.New("a14 EOF")

// TestAttack14AttemptCounts: the attempt counts of the observer and of
// Stats agree with the attempts run, for a job retried twice then refused
// by RetryIf, and for one that turns permanent on its second attempt,
// also when the permanent error is wrapped in errors.Join and fmt.Errorf.
func TestAttack14AttemptCounts(t *testing.T) {
	var mu sync.Mutex
	last := map[string]qpool.JobEvent{}
	p := newTestPool(t, qpool.WithWorkers(2), qpool.WithObserver(qpool.Observer{
		Finished: func(_ context.Context, e qpool.JobEvent) { mu.Lock(); last[e.ID] = e; mu.Unlock() },
	}))
	errRetry, errStop := errors.New("retry me"), errors.New("stop")
	var n1 atomic.Int32
	f1 := p.Schedule("retryif", func() (any, error) {
		if n1.Add(1) <= 2 {
			return nil, errRetry
		}
		return nil, errStop
	}, qpool.WithRetry(10, 0), qpool.WithRetryIf(func(err error) bool { return errors.Is(err, errRetry) }))
	var n2 atomic.Int32
	f2 := p.Schedule("permanent", func() (any, error) {
		if n2.Add(1) == 1 {
			return nil, errRetry
		}
		return nil, fmt.Errorf("wrapped: %w", errors.Join(errors.New("other"), qpool.Permanent(errStop)))
	}, qpool.WithRetry(10, 0), qpool.WithRetryIf(func(error) bool { return true }))
	_, err := wait(t, f1)
	require.ErrorIs(t, err, errStop)
	_, err = wait(t, f2)
	require.ErrorIs(t, err, errStop)
	require.True(t, qpool.IsPermanent(err))
	p.Wait()
	assert.EqualValues(t, 3, n1.Load())
	assert.EqualValues(t, 2, n2.Load())
	mu.Lock()
	assert.Equal(t, 3, last["retryif"].Attempt)
	assert.Equal(t, 2, last["permanent"].Attempt)
	mu.Unlock()
	assert.EqualValues(t, 3, p.Stats().Retried)
}

// ---- Dependency window and retention defaults ----

// TestAttack14DAGDiamondUnderDefaults: a diamond DAG submitted in order,
// each level only after the previous finished, under the default options.
func TestAttack14DAGDiamondUnderDefaults(t *testing.T) {
	p := newTestPool(t)
	for round := range 50 {
		a := fmt.Sprintf("a%d", round)
		_, err := wait(t, p.Schedule(a, ok))
		require.NoError(t, err)
		b := p.Schedule("b"+a, ok, qpool.WithDependencies(a))
		c := p.Schedule("c"+a, ok, qpool.WithDependencies(a))
		if rand.IntN(2) == 0 {
			_, _ = wait(t, b)
		}
		d := p.Schedule("d"+a, ok, qpool.WithDependencies(b.ID(), c.ID(), a))
		_, err = wait(t, d)
		require.NoError(t, err, "round %d", round)
	}
}

// TestAttack14OutcomeBound: "A pool remembers at most 65,536 outcomes"
// (WithDependencyWindow). It read "the oldest going first past that" while
// the bound is per registry shard (2,048 in each of 32): with one worker
// and 2×65,536 jobs, 554 of the newest 65,536 outcomes were forgotten. The
// godoc now says what holds, and this checks it: the oldest outcome is
// forgotten (ErrUnknownDependency, not ErrInvalidJob), the last 2,048 jobs
// to finish are all remembered (a dependency on each works), and no more
// than 65,536 are.
func TestAttack14OutcomeBound(t *testing.T) {
	const bound, shardBound = 65536, 2048
	const n = 2 * bound
	p := newTestPool(t, qpool.WithWorkers(1))
	nop := func() (any, error) { return nil, nil }
	for i := range n {
		p.Schedule(fmt.Sprintf("o%d", i), nop)
	}
	p.Wait()
	_, err := wait(t, p.Schedule("dep-first", ok, qpool.WithDependencies("o0")))
	require.ErrorIs(t, err, qpool.ErrUnknownDependency)
	require.NotErrorIs(t, err, qpool.ErrInvalidJob)
	remembered := 0
	for i := range n {
		_, found := p.Job(fmt.Sprintf("o%d", i))
		if found {
			remembered++
		} else if i >= n-shardBound {
			t.Fatalf("o%d, among the last %d jobs to finish, is forgotten", i, shardBound)
		}
	}
	assert.LessOrEqual(t, remembered, bound)
	last := fmt.Sprintf("o%d", n-shardBound)
	_, err = wait(t, p.Schedule("dep-last", ok, qpool.WithDependencies(last)))
	assert.NoError(t, err, "a dependency on %s", last)
}

// a14Big is a large result whose collection a finalizer reports.
type a14Big struct{ b [1 << 16]byte }

// TestAttack14DroppedFuturesFreeValues: under the default options, a
// finished job's value is collected once its future is dropped, also for a
// failed job's value, and for a group's values once the group is dropped.
func TestAttack14DroppedFuturesFreeValues(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(2))
	var freed atomic.Int32
	mk := func() *a14Big {
		b := new(a14Big)
		runtime.SetFinalizer(b, func(*a14Big) { freed.Add(1) })
		return b
	}
	const jobs = 20
	func() {
		for i := range jobs {
			f := qpool.Submit(p, fmt.Sprintf("big%d", i), func(context.Context) (*a14Big, error) {
				if i%2 == 0 {
					return mk(), errors.New("failed with a value")
				}
				return mk(), nil
			})
			_, _ = wait(t, f)
		}
		g := qpool.NewGroup[*a14Big](context.Background(), p)
		for range jobs {
			g.Go(func(context.Context) (*a14Big, error) { return mk(), nil })
		}
		_, _ = g.Wait()
	}()
	p.Wait()
	waitFor(t, func() bool {
		runtime.GC()
		return freed.Load() == 2*jobs
	})
}

// ---- Nil and zero values ----

// TestAttack14NilAndZero calls every method of nil and zero futures,
// pools, groups, keys and entanglements, and nil options: errors, never
// panics, nothing hangs.
func TestAttack14NilAndZero(t *testing.T) {
	ctx := a14Ctx(t)
	fn := func(context.Context) (int, error) { return 1, nil }
	futures := map[string]*qpool.Future[int]{"nil": nil, "zero": {}}
	for name, f := range futures {
		a14NoPanic(t, name+" future", func() {
			_, err := f.Wait(ctx)
			assert.ErrorIs(t, err, qpool.ErrInvalidFuture)
			_, err = f.Wait(nil) //nolint:staticcheck
			assert.ErrorIs(t, err, qpool.ErrInvalidFuture)
			f.Cancel()
			assert.Empty(t, f.ID())
			select {
			case <-f.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("watchdog: Done of an invalid future never closed")
			}
		})
	}
	pools := map[string]*qpool.Pool{"nil": nil, "zero": {}}
	for name, p := range pools {
		a14NoPanic(t, name+" pool", func() {
			_, err := wait(t, qpool.Submit(p, "x", fn))
			assert.ErrorIs(t, err, qpool.ErrInvalidPool)
			_, err = wait(t, p.Schedule("x", ok))
			assert.ErrorIs(t, err, qpool.ErrInvalidPool)
			assert.ErrorIs(t, p.Go(func() {}), qpool.ErrInvalidPool)
			assert.False(t, p.Cancel("x"))
			_, found := p.Job("x")
			assert.False(t, found)
			assert.Empty(t, p.Jobs(0, 0))
			_, found = p.Result("x")
			assert.False(t, found)
			assert.Empty(t, p.Entanglements(0))
			p.Resize(3)
			p.Wait()
			_ = p.Stats()
			assert.ErrorIs(t, p.Shutdown(ctx), qpool.ErrInvalidPool)
			assert.ErrorIs(t, p.Close(), qpool.ErrInvalidPool)
		})
		a14NoPanic(t, "group over "+name+" pool", func() {
			g := qpool.NewGroup[int](ctx, p)
			_, err := wait(t, g.Go(fn))
			assert.Error(t, err)
			_, err = g.Wait()
			assert.Error(t, err)
		})
	}
	groups := map[string]*qpool.Group[int]{"nil": nil, "zero": {}}
	for name, g := range groups {
		a14NoPanic(t, name+" group", func() {
			_, err := wait(t, g.Go(fn))
			assert.ErrorIs(t, err, qpool.ErrInvalidJob)
			_, err = wait(t, g.Submit("x", fn))
			assert.ErrorIs(t, err, qpool.ErrInvalidJob)
			done := make(chan struct{})
			go func() {
				defer close(done)
				a14NoPanic(t, name+" group Results", func() {
					for range g.Results() {
					}
				})
				a14NoPanic(t, name+" group Wait", func() { _, _ = g.Wait() })
			}()
			watchdog(t, done, name+" group Wait/Results")
			c := g.Context()
			if c == nil {
				t.Errorf("%s group: Context() returned a nil context", name)
			} else {
				_ = c.Err()
			}
		})
	}
	a14NoPanic(t, "nil options", func() {
		p := qpool.NewPool(nil)
		defer p.Close()
		g := qpool.NewGroup[int](nil, p, nil) //nolint:staticcheck
		_, err := wait(t, g.Go(fn, nil, qpool.WithRetryIf(nil)))
		assert.NoError(t, err)
		_, err = g.Wait()
		assert.NoError(t, err)
	})
	var zeroKey qpool.Key[int]
	k := qpool.NewKey[int]("k")
	for _, e := range []*qpool.Entanglement{nil, {}} {
		for _, key := range []qpool.Key[int]{zeroKey, k} {
			a14NoPanic(t, fmt.Sprintf("key %q on %v", key.Name(), e == nil), func() {
				_, _, err := key.Get(e)
				_ = err
				assert.Error(t, key.Set(e, 1))
				assert.Error(t, key.Delete(e))
				assert.Error(t, key.Update(e, add100))
				_, err = key.Await(ctx, e)
				assert.Error(t, err)
				for _, err := range key.Watch(ctx, e) {
					assert.Error(t, err)
				}
				_ = key.String()
			})
		}
	}
	a14NoPanic(t, "Key.Update with nil fn", func() {
		e := newTestEntanglement(t, 0)
		assert.ErrorIs(t, k.Update(e, nil), qpool.ErrNilFunc)
	})
	a14NoPanic(t, "Permanent(nil)", func() {
		assert.Nil(t, qpool.Permanent(nil))
		assert.False(t, qpool.IsPermanent(nil))
	})
	_ = reflect.TypeOf(0)
}

// TestAttack14GroupCancelEndsRetryBackoff: a group job sleeping a long
// retry backoff when WithCancelOnError cancels the group (another job
// failed) must end at once: "the sleep ends early if the job is cancelled",
// and "running jobs see their context end". Wait must not wait out the
// backoff.
func TestAttack14GroupCancelEndsRetryBackoff(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(2))
	g := qpool.NewGroup[int](context.Background(), p, qpool.WithCancelOnError())
	var attempts atomic.Int32
	errFlaky := errors.New("flaky")
	slow := g.Go(func(ctx context.Context) (int, error) {
		attempts.Add(1)
		return 0, errFlaky
	}, qpool.WithRetry(3, time.Hour))
	waitFor(t, func() bool { return attempts.Load() == 1 })
	time.Sleep(time.Millisecond) // into the backoff
	errBoom := errors.New("boom")
	g.Go(func(ctx context.Context) (int, error) { return 0, errBoom })
	done := make(chan struct{})
	var err error
	go func() { _, err = g.Wait(); close(done) }()
	watchdog(t, done, "group Wait with a job in a one-hour retry backoff after the group was cancelled")
	require.ErrorIs(t, err, errBoom)
	_, err = wait(t, slow)
	require.Error(t, err)
	assert.EqualValues(t, 1, attempts.Load(), "retried after the group was cancelled")
}

// TestAttack14ParentCancelEndsRetryBackoff: the same with the group's
// parent context ending.
func TestAttack14ParentCancelEndsRetryBackoff(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(2))
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := qpool.NewGroup[int](parent, p)
	var attempts atomic.Int32
	slow := g.Go(func(ctx context.Context) (int, error) {
		attempts.Add(1)
		return 0, errors.New("flaky")
	}, qpool.WithRetry(3, time.Hour))
	waitFor(t, func() bool { return attempts.Load() == 1 })
	time.Sleep(time.Millisecond)
	cancel()
	_, err := wait(t, slow)
	require.Error(t, err)
	done := make(chan struct{})
	go func() { _, _ = g.Wait(); close(done) }()
	watchdog(t, done, "group Wait after its parent ended during a retry backoff")
	assert.EqualValues(t, 1, attempts.Load())
}

// TestAttack14CancelEndsRetryBackoff: Pool.Cancel of a job sleeping a
// one-hour retry backoff resolves it at once, with no further attempt and
// OutcomeCanceled (its future has what the function last returned, as
// Future.Cancel says for a running job).
func TestAttack14CancelEndsRetryBackoff(t *testing.T) {
	var mu sync.Mutex
	outcomes := map[string]qpool.Outcome{}
	p := newTestPool(t, qpool.WithWorkers(2), qpool.WithObserver(qpool.Observer{
		Finished: func(_ context.Context, e qpool.JobEvent) { mu.Lock(); outcomes[e.ID] = e.Outcome; mu.Unlock() },
	}))
	var attempts atomic.Int32
	f := p.Schedule("backoff-cancel", func() (any, error) { attempts.Add(1); return nil, errors.New("flaky") },
		qpool.WithRetry(3, time.Hour))
	waitFor(t, func() bool { return attempts.Load() == 1 })
	time.Sleep(time.Millisecond)
	require.True(t, p.Cancel("backoff-cancel"))
	_, err := wait(t, f)
	require.Error(t, err)
	p.Wait()
	assert.EqualValues(t, 1, attempts.Load())
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, qpool.OutcomeCanceled, outcomes["backoff-cancel"])
}

// TestAttack14CancelOnErrorFailsWaitingDependents: a group job waiting for
// a dependency that is blocked (outside the group) must resolve as soon as
// another group job fails, with an error wrapping the cause, without
// running, and without waiting for the dependency.
func TestAttack14CancelOnErrorFailsWaitingDependents(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(2))
	gate := make(chan struct{})
	blocker := p.Schedule("a14-blocker", func() (any, error) { <-gate; return nil, nil })
	defer func() { close(gate); _, _ = wait(t, blocker) }()
	g := qpool.NewGroup[int](context.Background(), p, qpool.WithCancelOnError())
	var ran atomic.Bool
	dep := g.Go(func(context.Context) (int, error) { ran.Store(true); return 1, nil },
		qpool.WithDependencies("a14-blocker"))
	waitFor(t, func() bool { j, ok := p.Job(dep.ID()); return ok && j.State == qpool.JobWaiting })
	errBoom := errors.New("boom")
	g.Go(func(context.Context) (int, error) { return 0, errBoom })
	_, err := wait(t, dep)
	require.ErrorIs(t, err, errBoom, "the waiting job's error wraps the cause")
	assert.False(t, ran.Load())
	done := make(chan struct{})
	go func() { _, _ = g.Wait(); close(done) }()
	watchdog(t, done, "group Wait")
}

// TestAttack14KeyEndsOnExpiry: a typed Await and Watch on an entanglement
// whose TTL runs out end with ErrExpired.
func TestAttack14KeyEndsOnExpiry(t *testing.T) {
	e := qpool.NewEntanglement("a14-expiry", nil, 20*time.Millisecond)
	defer e.Close()
	k := qpool.NewKey[int]("never")
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		_, err := k.Await(a14Ctx(t), e)
		if !errors.Is(err, qpool.ErrExpired) {
			errs <- fmt.Errorf("Await: %v", err)
		}
	})
	wg.Go(func() {
		var last error
		for _, err := range k.Watch(a14Ctx(t), e) {
			last = err
		}
		if !errors.Is(last, qpool.ErrExpired) {
			errs <- fmt.Errorf("Watch ended with %v", last)
		}
	})
	watchGroup(t, &wg)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestAttack14CodecCheckPanickyValue: WithCodecCheck(JSONCodec{}) given a
// value whose encoding panics must refuse it with an error, not panic.
func TestAttack14CodecCheckPanickyValue(t *testing.T) {
	e := newTestEntanglement(t, 0, qpool.WithCodecCheck(qpool.JSONCodec{}))
	a14NoPanic(t, "UpdateState of a value whose MarshalJSON panics", func() {
		err := e.UpdateState("p", a14Panicky{})
		require.Error(t, err)
	})
	a14NoPanic(t, "Key.Set of a value whose MarshalJSON panics", func() {
		err := qpool.NewKey[a14Panicky]("p").Set(e, a14Panicky{})
		require.Error(t, err)
	})
}

// TestAttack14ClosingPoolRetries: WithRetry's godoc said "a job of a
// closing pool [is] not retried" while Close let a failing job run all
// its attempts, sleeping every backoff (with WithRetry(3, time.Hour) Close
// waited out the hour), as docs/pool.md said ("an aborting pool"). The
// godoc now says what the code does: Close lets a running job use its
// attempts, and Shutdown past its deadline (an aborting pool) retries no
// more and ends the backoff's sleep.
func TestAttack14ClosingPoolRetries(t *testing.T) {
	for round := range 5 {
		p := qpool.NewPool(qpool.WithWorkers(1))
		var attempts atomic.Int32
		f := p.Schedule("retry-during-close", func() (any, error) {
			attempts.Add(1)
			return nil, errors.New("flaky")
		}, qpool.WithRetry(4, 5*time.Millisecond))
		waitFor(t, func() bool { return attempts.Load() >= 1 })
		done := make(chan struct{})
		go func() { _ = p.Close(); close(done) }()
		watchdog(t, done, "Close")
		_, err := wait(t, f)
		require.Error(t, err)
		assert.EqualValues(t, 4, attempts.Load(), "round %d: Close cut the job's attempts short", round)
	}
	for round := range 5 {
		p := qpool.NewPool(qpool.WithWorkers(1))
		var attempts atomic.Int32
		f := p.Schedule("retry-during-shutdown", func() (any, error) {
			attempts.Add(1)
			return nil, errors.New("flaky")
		}, qpool.WithRetry(3, time.Hour))
		waitFor(t, func() bool { return attempts.Load() >= 1 })
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(20))*time.Millisecond)
		done := make(chan struct{})
		go func() { _ = p.Shutdown(ctx); close(done) }()
		watchdog(t, done, "Shutdown past its deadline, with a job in an hour's backoff")
		cancel()
		_, err := wait(t, f)
		require.Error(t, err)
		assert.EqualValues(t, 1, attempts.Load(), "round %d: an aborting pool retried the job", round)
	}
}

// TestAttack14KeyUpdateFnPanics: a Key.Update whose fn panics propagates
// the panic to its caller (the caller's function), but must leave no lock
// held: other goroutines' Sets, Updates, Awaits and Watches go on, on the
// memory ledger and on a JSON ledger.
func TestAttack14KeyUpdateFnPanics(t *testing.T) {
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		k := qpool.NewKey[int]("k")
		require.NoError(t, k.Set(e, 1))
		for range 5 {
			func() {
				defer func() { _ = recover() }()
				_ = k.Update(e, func(int, bool) (int, error) { panic("fn panics") })
			}()
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 20 {
					assert.NoError(t, k.Update(e, func(n int, _ bool) (int, error) { return n + 1, nil }))
				}
			})
		}
		watchGroup(t, &wg)
		n, _, err := k.Get(e)
		require.NoError(t, err)
		assert.Equal(t, 81, n)
		v, err := k.Await(a14Ctx(t), e)
		require.NoError(t, err)
		assert.Equal(t, 81, v)
	})
}

// TestAttack14GroupExplicitIDsOfGeneratedForm: Group.Submit refuses every
// ID of the generated form "g<group>#<index>", including ones for groups
// not made yet, so no explicit ID can collide with a generated one; IDs
// that only look alike are accepted.
func TestAttack14GroupExplicitIDsOfGeneratedForm(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(2))
	g := qpool.NewGroup[int](context.Background(), p)
	first := g.Go(func(context.Context) (int, error) { return 0, nil })
	_, _ = wait(t, first)
	var groupNo, idx int
	_, err := fmt.Sscanf(first.ID(), "g%d#%d", &groupNo, &idx)
	require.NoError(t, err, first.ID())
	fn := func(context.Context) (int, error) { return 1, nil }
	for _, id := range []string{first.ID(), fmt.Sprintf("g%d#1", groupNo), fmt.Sprintf("g%d#0", groupNo+1),
		fmt.Sprintf("g%d#5", groupNo+1000)} {
		_, err := wait(t, g.Submit(id, fn))
		assert.ErrorIs(t, err, qpool.ErrInvalidJob, "%q", id)
	}
	// A later group's generated ID is still free: nothing took it.
	g2 := qpool.NewGroup[int](context.Background(), p)
	for range 3 {
		_, err := wait(t, g2.Go(fn))
		require.NoError(t, err)
	}
	_, err = g2.Wait()
	require.NoError(t, err)
	_, _ = g.Wait()
}

// TestAttack14GroupNonBlockingRejections: a group over a WithNonBlocking
// pool with no queue and one busy worker: Go's jobs are refused with
// ErrQueueFull; with WithCancelOnError the group's context ends with that
// cause; Wait returns and reports it.
func TestAttack14GroupNonBlockingRejections(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(1), qpool.WithQueueSize(0), qpool.WithNonBlocking())
	gate := make(chan struct{})
	g := qpool.NewGroup[int](context.Background(), p, qpool.WithCancelOnError())
	busy := g.Go(func(ctx context.Context) (int, error) {
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return 1, nil
	})
	waitFor(t, func() bool { return p.Stats().Running == 1 })
	_, err := wait(t, g.Go(func(context.Context) (int, error) { return 2, nil }))
	require.ErrorIs(t, err, qpool.ErrQueueFull)
	close(gate)
	_, _ = wait(t, busy)
	done := make(chan struct{})
	go func() { _, err = g.Wait(); close(done) }()
	watchdog(t, done, "group Wait")
	require.ErrorIs(t, err, qpool.ErrQueueFull)
	require.ErrorIs(t, context.Cause(g.Context()), qpool.ErrQueueFull)
}

// TestAttack14OutsideDependentOfCancelledGroupJob: a job outside the group
// that depends on a queued group job, which the end of the group's parent
// context fails without running, fails with ErrDependencyFailed, and its
// cause is the parent's cause.
func TestAttack14OutsideDependentOfCancelledGroupJob(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(1))
	gate := make(chan struct{})
	blocker := p.Schedule("a14-gate", func() (any, error) { <-gate; return nil, nil })
	waitFor(t, func() bool { return p.Stats().Running == 1 })
	errStop := errors.New("parent stopped")
	parent, cancel := context.WithCancelCause(context.Background())
	g := qpool.NewGroup[int](parent, p)
	var ran atomic.Bool
	queued := g.Go(func(context.Context) (int, error) { ran.Store(true); return 1, nil })
	outside := p.Schedule("a14-outside", ok, qpool.WithDependencies(queued.ID()))
	cancel(errStop)
	_, qerr := wait(t, queued)
	require.ErrorIs(t, qerr, errStop)
	_, oerr := wait(t, outside)
	require.ErrorIs(t, oerr, qpool.ErrDependencyFailed)
	require.ErrorIs(t, oerr, errStop)
	var de *qpool.DependencyError
	require.ErrorAs(t, oerr, &de)
	assert.Equal(t, queued.ID(), de.Dependency)
	close(gate)
	_, _ = wait(t, blocker)
	done := make(chan struct{})
	go func() { _, _ = g.Wait(); close(done) }()
	watchdog(t, done, "group Wait")
	assert.False(t, ran.Load(), "the queued job ran after its group was cancelled")
}

// TestAttack14KeyWatchOneSeqManyRanges: one sequence from Key.Watch ranged
// by several goroutines at once: each range starts from the oldest change
// and sees every value, none missed or repeated, while a writer goes on.
// A range's end under a cancelled context yields ctx's cause.
func TestAttack14KeyWatchOneSeqManyRanges(t *testing.T) {
	const total = 200
	forEachLedger(t, func(t *testing.T, e *qpool.Entanglement) {
		k := qpool.NewKey[int]("k")
		ctx, cancel := context.WithCancelCause(a14Ctx(t))
		seq := k.Watch(ctx, e)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for r := range 4 {
			wg.Go(func() {
				time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
				want := 1
				for v, err := range seq {
					if err != nil {
						errs <- fmt.Errorf("range %d at %d: %w", r, want, err)
						return
					}
					if v != want {
						errs <- fmt.Errorf("range %d: got %d, want %d", r, v, want)
						return
					}
					if want == total {
						return
					}
					want++
				}
			})
		}
		wg.Go(func() {
			for i := 1; i <= total; i++ {
				if err := k.Set(e, i); err != nil {
					errs <- err
					return
				}
			}
		})
		watchGroup(t, &wg)
		errStop := errors.New("stop watching")
		cancel(errStop)
		var last error
		for _, err := range seq {
			last = err
		}
		assert.ErrorIs(t, last, errStop, "a watch ended by ctx yields its cause")
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// TestAttack14CodecCheckTypedNaN: on the memory ledger with
// WithCodecCheck(JSONCodec{}), a typed NaN is refused with ErrEncode,
// as bbolt and NATS refuse it, and nothing is recorded.
func TestAttack14CodecCheckTypedNaN(t *testing.T) {
	e := newTestEntanglement(t, 0, qpool.WithCodecCheck(qpool.JSONCodec{}))
	k := qpool.NewKey[float64]("f")
	require.ErrorIs(t, k.Set(e, math.NaN()), qpool.ErrEncode)
	require.ErrorIs(t, k.Update(e, func(float64, bool) (float64, error) { return math.Inf(1), nil }), qpool.ErrEncode)
	_, ok, err := k.Get(e)
	require.NoError(t, err)
	assert.False(t, ok)
	assert.Empty(t, e.GetStateHistory(0))
}

// TestAttack14GroupStatsOverClosingPool: Stats add up (Submitted ==
// Succeeded + Failed) after groups' submitters race Close, refusals and
// ErrGroupClosed jobs included.
func TestAttack14GroupStatsOverClosingPool(t *testing.T) {
	for round := range 10 {
		p := qpool.NewPool(qpool.WithWorkers(2), qpool.WithQueueSize(rand.IntN(3)))
		g := qpool.NewGroup[int](context.Background(), p)
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				for range 20 {
					g.Go(func(context.Context) (int, error) { return 1, nil })
				}
			})
		}
		wg.Go(func() {
			time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
			_, _ = g.Wait()
		})
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		closed := make(chan struct{})
		go func() { _ = p.Close(); close(closed) }()
		watchdog(t, closed, "Close")
		watchGroup(t, &wg)
		done := make(chan struct{})
		go func() { _, _ = g.Wait(); close(done) }()
		watchdog(t, done, "group Wait")
		s := p.Stats()
		require.Equal(t, s.Submitted, s.Succeeded+s.Failed, "round %d: %+v", round, s)
	}
}
