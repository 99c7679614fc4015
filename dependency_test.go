package qpool_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rootCauseError is the error a failing head returns: a type of its own,
// so that errors.As can be checked through a failed dependency.
type rootCauseError struct{ code int }

func (e *rootCauseError) Error() string { return fmt.Sprintf("root cause %d", e.code) }

// maxDependencyErrorLen bounds the message of a job failed by a dependency
// whose IDs are short and whose root cause says "root cause N": the two IDs
// (the dependency and the job whose failure it was) and the cause, once.
const maxDependencyErrorLen = 200

// scheduleChain schedules n jobs named prefix0 … prefix(n-1). The first
// runs head; each other one depends on the one before and counts in ran if
// it runs.
func scheduleChain(t testing.TB, p *qpool.Pool, prefix string, n int, head func() (any, error), ran *atomic.Int64) []*qpool.Future[any] {
	t.Helper()
	futs := make([]*qpool.Future[any], n)
	futs[0] = p.Schedule(prefix+"0", head)
	fn := func() (any, error) { ran.Add(1); return nil, nil }
	for i := 1; i < n; i++ {
		futs[i] = p.Schedule(prefix+strconv.Itoa(i), fn, qpool.WithDependencies(prefix+strconv.Itoa(i-1)))
	}
	return futs
}

// waitAll waits for every future under one watchdog, which reports a hang
// as a failure, and returns their errors.
func waitAll(t testing.TB, futs []*qpool.Future[any], watchdog time.Duration) []error {
	t.Helper()
	ctx, cancel := context.WithTimeoutCause(context.Background(), watchdog, errWatchdog)
	defer cancel()
	errs := make([]error, len(futs))
	for i, f := range futs {
		_, err := f.Wait(ctx)
		if errors.Is(err, errWatchdog) {
			t.Fatalf("watchdog: future %q (%d of %d) never resolved", f.ID(), i, len(futs))
		}
		errs[i] = err
	}
	return errs
}

// checkDependencyError checks the error of job id, failed because dep
// failed, whose root cause is cause, the error of job origin: bounded,
// naming dep, origin and the cause once, and reaching both the cause and
// ErrDependencyFailed.
func checkDependencyError(t testing.TB, err error, id, dep, origin string, cause error) {
	t.Helper()
	require.ErrorIs(t, err, qpool.ErrDependencyFailed, "job %q", id)
	require.ErrorIs(t, err, cause, "job %q: the root cause is wrapped", id)
	msg := err.Error()
	require.LessOrEqual(t, len(msg), maxDependencyErrorLen, "job %q: message of %d bytes, bounded by %d: %.300s…", id, len(msg), maxDependencyErrorLen, msg)
	// Named once besides what the cause's own message says (a job
	// cancelled says "qpool: job "a": context canceled").
	named := func(s string) int { return strings.Count(msg, s) - strings.Count(cause.Error(), s) }
	require.Equal(t, 1, named(strconv.Quote(dep)), "job %q: names its failed dependency %q once: %s", id, dep, msg)
	require.Equal(t, 1, strings.Count(msg, cause.Error()), "job %q: names the root cause once: %s", id, msg)
	if origin != dep {
		require.Equal(t, 1, named(strconv.Quote(origin)), "job %q: names the origin %q once: %s", id, origin, msg)
	}
	var de *qpool.DependencyError
	require.ErrorAs(t, err, &de, "job %q", id)
	require.Equal(t, qpool.DependencyError{ID: id, Dependency: dep, Origin: origin, Cause: cause}, *de, "job %q", id)
}

// The error of a job whose dependency failed for a dependency of its own
// does not nest the dependency's error: the Nth job of a failed chain has
// an error as long as the first one's (it was 52 KB at depth 1,000).
func TestFailedDependencyErrorIsBounded(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(2))
	const n = 1000
	cause := &rootCauseError{7}
	g := make(gate)
	var ran atomic.Int64
	futs := scheduleChain(t, p, "c", n, func() (any, error) { <-g; return nil, cause }, &ran)
	g.open()
	errs := waitAll(t, futs, 10*time.Second)
	require.Same(t, cause, errs[0], "the head's own error is returned as is")
	for i := 1; i < n; i++ {
		id := "c" + strconv.Itoa(i)
		checkDependencyError(t, errs[i], id, "c"+strconv.Itoa(i-1), "c0", cause)
		var re *rootCauseError
		require.ErrorAs(t, errs[i], &re, "job %q", id)
		require.Same(t, cause, re, "job %q", id)
	}

	// A job submitted after the chain failed fails at registration, with
	// the same shape.
	late := p.Schedule("late", ok, qpool.WithDependencies("c"+strconv.Itoa(n-1)))
	errs = waitAll(t, []*qpool.Future[any]{late}, 10*time.Second)
	checkDependencyError(t, errs[0], "late", "c"+strconv.Itoa(n-1), "c0", cause)

	// A job that failed at registration is registered all the same: a job
	// depending on it finds it failed, not unknown.
	later := p.Schedule("later", ok, qpool.WithDependencies("late"))
	errs = waitAll(t, []*qpool.Future[any]{later}, 10*time.Second)
	checkDependencyError(t, errs[0], "later", "late", "c0", cause)
	p.Wait()
	assert.Zero(t, ran.Load(), "no dependent of a failed job runs")
}

// A job whose function returns a *DependencyError (here the error of
// another future it waited for) failed by itself: its dependents name it
// as the origin and wrap its error as the cause, rather than taking the
// origin and cause from its error.
func TestDependencyErrorReturnedByAFunctionIsItsOwn(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(2))
	cause := &rootCauseError{3}
	g := make(gate)
	x := p.Schedule("x", func() (any, error) { <-g; return nil, cause })
	y := p.Schedule("y", ok, qpool.WithDependencies("x"))
	b := p.Schedule("b", func() (any, error) { _, err := y.Wait(context.Background()); return nil, err })
	c := p.Schedule("c", ok, qpool.WithDependencies("b"))
	g.open()
	errs := waitAll(t, []*qpool.Future[any]{x, y, b, c}, 10*time.Second)
	checkDependencyError(t, errs[1], "y", "x", "x", cause)
	require.Same(t, errs[1], errs[2], "b returns y's error as it is")
	var de *qpool.DependencyError
	require.ErrorAs(t, errs[3], &de)
	assert.Equal(t, "b", de.Dependency)
	assert.Equal(t, "b", de.Origin, "b failed by itself")
	assert.Same(t, errs[2], de.Cause, "b's own error is the cause")
	assert.ErrorIs(t, errs[3], cause)
}

// A chain of 10,000 whose head fails resolves in memory linear in its
// length: the head is woken and every dependent resolves. It allocated
// O(N²) before (a chain of 4,000 allocated about 800 MB) and did not
// resolve the head under -race within 20 s.
func TestFailedChainOf10000ResolvesInLinearMemory(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(2))
	const n = 10_000
	cause := &rootCauseError{10}
	g := make(gate)
	var ran atomic.Int64
	futs := scheduleChain(t, p, "c", n, func() (any, error) { <-g; return nil, cause }, &ran)
	headDone := futs[0].Done() // made before the head fails: resolution must close it

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	g.open()
	select {
	case <-headDone:
	case <-time.After(10 * time.Second):
		t.Fatal("watchdog: the failed head's future was never woken")
	}
	errs := waitAll(t, futs, 10*time.Second)
	p.Wait()
	runtime.ReadMemStats(&after)

	// About 200 bytes a job are needed (the error, the bookkeeping);
	// 4 KB a job is generous and still far below N² (260 KB a job here).
	const perJob = 4 << 10
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("resolving the chain allocated %d bytes, %d per job", alloc, alloc/n)
	assert.Less(t, alloc, uint64(n*perJob), "resolving the chain allocated %d bytes, %d per job", alloc, alloc/n)
	require.ErrorIs(t, errs[0], cause)
	for i := 1; i < n; i++ {
		require.ErrorIs(t, errs[i], qpool.ErrDependencyFailed, "job %d", i)
		require.ErrorIs(t, errs[i], cause, "job %d", i)
	}
	assert.Zero(t, ran.Load())
	assert.Zero(t, p.Stats().Waiting)
}

// Resolving a failed chain does not recurse: the stack of the goroutine
// that resolves the head does not grow with the chain. The test lowers the
// stack limit to 1 MB while a chain of 100,000 (20,000 under the race
// detector) resolves; recursion through the chain overflows it (a crash of
// the test binary, reported as "goroutine stack exceeds 1048576-byte
// limit"), and quadratic work trips the watchdog.
func TestFailedChainResolvesIteratively(t *testing.T) {
	p := newTestPool(t, qpool.WithWorkers(2))
	const n = longChain
	cause := &rootCauseError{100}
	g := make(gate)
	var ran atomic.Int64
	futs := scheduleChain(t, p, "c", n, func() (any, error) { <-g; return nil, cause }, &ran)

	old := debug.SetMaxStack(1 << 20)
	g.open()
	errs := waitAll(t, futs, 20*time.Second)
	debug.SetMaxStack(old)

	require.ErrorIs(t, errs[0], cause)
	for i := 1; i < n; i++ {
		require.ErrorIs(t, errs[i], qpool.ErrDependencyFailed, "job %d", i)
		require.ErrorIs(t, errs[i], cause, "job %d", i)
	}
	checkDependencyError(t, errs[n-1], "c"+strconv.Itoa(n-1), "c"+strconv.Itoa(n-2), "c0", cause)
	p.Wait()
	assert.Zero(t, ran.Load())
	assert.Zero(t, p.Stats().Waiting)
}

// nodeError is the error of a DAG node that fails by itself.
type nodeError struct{ node int }

func (e *nodeError) Error() string { return fmt.Sprintf("node %d failed", e.node) }

// TestDependencyDAGHammer submits random DAGs from several goroutines at
// once (a node depends on up to three earlier nodes, often on its
// submitter's previous one, so chains are long), with random nodes failing, random
// cancellations and random timing, and checks every node's outcome
// against the outcomes of its dependencies: a node with a failed
// dependency did not run and names one of its dependencies that failed,
// with that dependency's root cause, in a bounded message; any other node
// ran once with its own result. The counters add up: no future resolved
// twice.
func TestDependencyDAGHammer(t *testing.T) {
	const rounds, submitters, perSubmitter = 30, 6, 60
	const nodes = submitters * perSubmitter
	for round := range rounds {
		rng := rand.New(rand.NewPCG(uint64(round), 13))
		p := qpool.NewPool(qpool.WithWorkers(1+rng.IntN(4)), qpool.WithResultTTL(time.Minute))
		id := func(i int) string { return "n" + strconv.Itoa(i) }

		// The DAG: deps[i] are earlier nodes. Node i is submitted by
		// submitter i%submitters, after all its dependencies were.
		deps := make([][]int, nodes)
		fails := make([]bool, nodes)
		cancels := make([]bool, nodes)
		for i := range nodes {
			fails[i] = rng.IntN(30) == 0
			cancels[i] = rng.IntN(30) == 0
			if i < submitters {
				continue
			}
			if rng.IntN(5) != 0 { // the submitter's previous node: long chains
				deps[i] = append(deps[i], i-submitters)
			}
			for range rng.IntN(3) { // any earlier node: fan-outs and diamonds
				if d := rng.IntN(i); rng.IntN(3) == 0 && !contains(deps[i], d) {
					deps[i] = append(deps[i], d)
				}
			}
		}
		submitted := make([]chan struct{}, nodes)
		for i := range submitted {
			submitted[i] = make(chan struct{})
		}
		futs := make([]*qpool.Future[any], nodes)
		ran := make([]atomic.Int32, nodes)
		watchdog := time.After(10 * time.Second)
		var hung atomic.Bool
		var wg sync.WaitGroup
		for s := range submitters {
			seed := rng.Uint64()
			wg.Go(func() {
				r := rand.New(rand.NewPCG(seed, 1))
				for i := s; i < nodes; i += submitters {
					for _, d := range deps[i] {
						select {
						case <-submitted[d]:
						case <-watchdog:
							hung.Store(true)
							return
						}
					}
					var opts []qpool.JobOption
					if len(deps[i]) > 0 {
						ds := make([]string, len(deps[i]))
						for k, d := range deps[i] {
							ds[k] = id(d)
						}
						opts = append(opts, qpool.WithDependencies(ds...))
					}
					node, fail, spin := i, fails[i], r.IntN(3)
					futs[i] = p.Schedule(id(i), func() (any, error) {
						ran[node].Add(1)
						for range spin {
							runtime.Gosched()
						}
						if fail {
							return nil, &nodeError{node}
						}
						return node, nil
					}, opts...)
					close(submitted[i])
					if cancels[i] {
						if r.IntN(2) == 0 {
							runtime.Gosched()
						}
						futs[i].Cancel()
					}
				}
			})
		}
		wg.Wait()
		require.False(t, hung.Load(), "watchdog: round %d: a submitter never saw a dependency submitted", round)

		vals := make([]any, nodes)
		errs := make([]error, nodes)
		ctx, cancel := context.WithTimeoutCause(context.Background(), 10*time.Second, errWatchdog)
		for i, f := range futs {
			vals[i], errs[i] = f.Wait(ctx)
			if errors.Is(errs[i], errWatchdog) {
				cancel()
				require.NoError(t, p.Close())
				t.Fatalf("watchdog: round %d: node %d never resolved", round, i)
			}
		}
		cancel()
		p.Wait()

		for i := range nodes {
			checkDAGNode(t, round, i, deps[i], fails[i], cancels[i], vals[i], errs, int(ran[i].Load()))
			// A resolved future is final: a second Wait agrees.
			_, again := futs[i].Wait(context.Background())
			require.Equal(t, errs[i], again, "round %d node %d", round, i)
		}
		s := p.Stats()
		require.Equal(t, uint64(nodes), s.Submitted, "round %d: %+v", round, s)
		require.Equal(t, s.Submitted, s.Succeeded+s.Failed, "round %d: each future resolved once: %+v", round, s)
		require.Zero(t, s.Waiting, "round %d", round)
		require.NoError(t, p.Close())
	}
}

// checkDAGNode checks node i's outcome against its dependencies' outcomes.
func checkDAGNode(t *testing.T, round, i int, deps []int, fails, canceled bool, val any, errs []error, ran int) {
	t.Helper()
	err := errs[i]
	require.LessOrEqual(t, ran, 1, "round %d node %d ran %d times", round, i, ran)
	var failedDeps []int
	for _, d := range deps {
		if errs[d] != nil {
			failedDeps = append(failedDeps, d)
		}
	}
	// A cancelled node that had not started ends with context.Canceled.
	if canceled && ran == 0 && errors.Is(err, context.Canceled) && !errors.Is(err, qpool.ErrDependencyFailed) {
		return
	}
	if len(failedDeps) == 0 {
		require.Equal(t, 1, ran, "round %d node %d: its dependencies succeeded, so it ran (err %v)", round, i, err)
		if fails {
			var ne *nodeError
			require.ErrorAs(t, err, &ne, "round %d node %d", round, i)
			require.Equal(t, i, ne.node)
		} else {
			require.NoError(t, err, "round %d node %d", round, i)
			require.Equal(t, i, val)
		}
		return
	}
	require.Zero(t, ran, "round %d node %d ran although dependencies %v failed", round, i, failedDeps)
	var de *qpool.DependencyError
	require.ErrorAs(t, err, &de, "round %d node %d", round, i)
	dep, perr := strconv.Atoi(strings.TrimPrefix(de.Dependency, "n"))
	require.NoError(t, perr, "round %d node %d: %+v", round, i, de)
	require.Contains(t, failedDeps, dep, "round %d node %d names dependency %q, which did not fail: %v", round, i, de.Dependency, err)
	// The origin and the cause are the failed dependency's own, or, when it
	// failed for a dependency, the ones its error names.
	origin, cause := de.Dependency, errs[dep]
	var depDE *qpool.DependencyError
	if errors.As(errs[dep], &depDE) {
		origin, cause = depDE.Origin, depDE.Cause
	}
	checkDependencyError(t, err, "n"+strconv.Itoa(i), de.Dependency, origin, cause)
	// The origin failed by itself: its function's error or a cancellation.
	o, _ := strconv.Atoi(strings.TrimPrefix(origin, "n"))
	if !errors.Is(cause, context.Canceled) {
		var ne *nodeError
		require.ErrorAs(t, cause, &ne, "round %d node %d: cause %v", round, i, cause)
		require.Equal(t, o, ne.node, "round %d node %d: the cause is the origin's own error", round, i)
	}
}

func contains(s []int, x int) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// BenchmarkDependentScheduleWait submits a job and a job that depends on
// it, and waits for the dependent: the cost of a dependency that succeeds.
func BenchmarkDependentScheduleWait(b *testing.B) {
	p := qpool.NewPool(qpool.WithResultTTL(time.Second))
	defer p.Close()
	ctx := context.Background()
	fn := func() (any, error) { return nil, nil }
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := 2 * i & (len(ids) - 1)
		p.Schedule(ids[k], fn)
		if _, err := p.Schedule(ids[k+1], fn, qpool.WithDependencies(ids[k])).Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDependencyChainFailure fails the head of a chain of 1,000
// waiting jobs and waits for the last one: the cost of a failure cascade,
// per chain.
func BenchmarkDependencyChainFailure(b *testing.B) {
	const n = 1000
	p := qpool.NewPool(qpool.WithResultTTL(time.Second))
	defer p.Close()
	ctx := context.Background()
	boom := errors.New("boom")
	fn := func() (any, error) { return nil, nil }
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		base := i * n
		g := make(chan struct{})
		p.Schedule(ids[base&(len(ids)-1)], func() (any, error) { <-g; return nil, boom })
		var last *qpool.Future[any]
		for k := 1; k < n; k++ {
			last = p.Schedule(ids[(base+k)&(len(ids)-1)], fn, qpool.WithDependencies(ids[(base+k-1)&(len(ids)-1)]))
		}
		close(g)
		if _, err := last.Wait(ctx); !errors.Is(err, boom) {
			b.Fatal(err)
		}
	}
}
