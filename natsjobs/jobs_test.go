package natsjobs_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
	"github.com/stretchr/testify/require"
)

type resizeArgs struct {
	Name  string `json:"name"`
	Width int    `json:"width"`
}

type thumb struct {
	Name string `json:"name"`
	Size int    `json:"size"`
}

// TestSubmitWait: typed jobs round-trip through the server; each record
// says one attempt and the worker that ran it.
func TestSubmitWait(t *testing.T) {
	ts := startServer(t)
	js := ts.connect(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	resize := natsjobs.Register(reg, "image.resize", func(_ context.Context, in resizeArgs) (thumb, error) {
		return thumb{Name: in.Name + ".thumb", Size: in.Width / 2}, nil
	})
	w := newWorker(t, js, reg, ns, natsjobs.WithConcurrency(8))
	c := newClient(t, js, ns)
	ctx := wctx(t, 20*time.Second)

	const n = 50
	futs := make([]*qpool.Future[thumb], n)
	for i := range futs {
		futs[i] = resize.Submit(ctx, c, fmt.Sprintf("resize-%d", i), resizeArgs{Name: fmt.Sprint(i), Width: 2 * i})
	}
	for i, f := range futs {
		v, err := f.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, thumb{Name: fmt.Sprint(i) + ".thumb", Size: i}, v)
	}
	rec, err := c.Result(ctx, "resize-7")
	require.NoError(t, err)
	require.NoError(t, rec.Err)
	require.Equal(t, 1, rec.Attempts)
	require.Equal(t, w.Name(), rec.Worker)
	require.JSONEq(t, `{"name":"7.thumb","size":7}`, string(rec.Value))
	st, err := c.Status(ctx, "resize-7")
	require.NoError(t, err)
	require.Equal(t, "image.resize", st.Name)
	require.NotNil(t, st.Result)
	// The worker counts an outcome after recording it, which is when the
	// future may resolve: wait for the count.
	waitFor(t, 5*time.Second, "the worker to count every outcome", func() bool { return w.Stats().Succeeded == n })
	require.Equal(t, int64(n), w.Stats().Succeeded)
}

// TestRetriesAndPermanent: retries follow WithRetry; a Permanent error and
// WithRetryIf (given to Register) stop them; the record keeps the attempts
// and the final error (the dead-letter record).
func TestRetriesAndPermanent(t *testing.T) {
	ts := startServer(t)
	js := ts.connect(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	var calls sync.Map // id -> *atomic.Int32
	count := func(id string) int32 {
		v, _ := calls.LoadOrStore(id, new(atomic.Int32))
		return v.(*atomic.Int32).Add(1)
	}
	type in struct {
		ID        string
		FailUntil int32 // fail attempts below this one
		Permanent bool
		Fatal     bool // an error RetryIf refuses
	}
	errFatal := errors.New("fatal")
	flaky := natsjobs.Register(reg, "flaky", func(_ context.Context, x in) (int32, error) {
		n := count(x.ID)
		switch {
		case x.Permanent:
			return 0, qpool.Permanent(fmt.Errorf("bad %d", n))
		case x.Fatal:
			return 0, errFatal
		case n < x.FailUntil:
			return 0, fmt.Errorf("transient %d", n)
		}
		return n, nil
	}, qpool.WithRetryIf(func(err error) bool { return !strings.Contains(err.Error(), "fatal") }))
	newWorker(t, js, reg, ns)
	c := newClient(t, js, ns)
	ctx := wctx(t, 20*time.Second)

	ok := flaky.Submit(ctx, c, "ok", in{ID: "ok", FailUntil: 3}, qpool.WithRetry(3, 5*time.Millisecond))
	exhausted := flaky.Submit(ctx, c, "exhausted", in{ID: "exhausted", FailUntil: 10}, qpool.WithRetry(3, 5*time.Millisecond))
	perm := flaky.Submit(ctx, c, "perm", in{ID: "perm", Permanent: true}, qpool.WithRetry(5, 5*time.Millisecond))
	fatal := flaky.Submit(ctx, c, "fatal", in{ID: "fatal", Fatal: true}, qpool.WithRetry(5, 5*time.Millisecond))
	// A backoff over a second goes as a scheduled message.
	sched := flaky.Submit(ctx, c, "sched", in{ID: "sched", FailUntil: 2}, qpool.WithRetry(2, 1100*time.Millisecond))

	v, err := ok.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, int32(3), v)

	_, err = exhausted.Wait(ctx)
	var re *natsjobs.RemoteError
	require.ErrorAs(t, err, &re)
	require.Equal(t, 3, re.Attempts)
	require.Contains(t, re.Message, "transient 3")
	rec, err := c.Result(ctx, "exhausted")
	require.NoError(t, err)
	require.Equal(t, 3, rec.Attempts)
	require.ErrorAs(t, rec.Err, &re)

	_, err = perm.Wait(ctx)
	require.True(t, qpool.IsPermanent(err), "got %v", err)
	require.ErrorAs(t, err, &re)
	require.Equal(t, 1, re.Attempts)

	_, err = fatal.Wait(ctx)
	require.ErrorAs(t, err, &re)
	require.Equal(t, 1, re.Attempts, "RetryIf given to Register stops retries")

	v, err = sched.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, int32(2), v)
	for id, want := range map[string]int32{"ok": 3, "exhausted": 3, "perm": 1, "fatal": 1, "sched": 2} {
		got, _ := calls.Load(id)
		require.Equal(t, want, got.(*atomic.Int32).Load(), id)
	}

	// WithRetryIf at submit cannot cross processes.
	_, err = flaky.Submit(ctx, c, "local", in{}, qpool.WithRetryIf(func(error) bool { return true })).Wait(ctx)
	require.ErrorIs(t, err, natsjobs.ErrLocalOption)
}

// TestTimeout: WithTimeout bounds an attempt; the error matches
// context.DeadlineExceeded across the network.
func TestTimeout(t *testing.T) {
	ts := startServer(t)
	js := ts.connect(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	slow := natsjobs.Register(reg, "slow", func(ctx context.Context, _ int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	newWorker(t, js, reg, ns)
	c := newClient(t, js, ns)
	ctx := wctx(t, 20*time.Second)
	_, err := slow.Submit(ctx, c, "t1", 1, qpool.WithTimeout(50*time.Millisecond), qpool.WithRetry(2, time.Millisecond)).Wait(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var re *natsjobs.RemoteError
	require.ErrorAs(t, err, &re)
	require.Equal(t, 2, re.Attempts, "a timeout is retried, as in a pool")
}

// TestDuplicateID: an ID is unique across clients; the second submission
// fails with ErrDuplicateJob and leaves the first job alone.
func TestDuplicateID(t *testing.T) {
	ts := startServer(t)
	js := ts.connect(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	var runs atomic.Int32
	echo := natsjobs.Register(reg, "echo", func(_ context.Context, s string) (string, error) {
		runs.Add(1)
		return s, nil
	})
	c1 := newClient(t, js, ns)
	c2 := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 20*time.Second)
	f1 := echo.Submit(ctx, c1, "dup", "first")
	_, err := echo.Submit(ctx, c2, "dup", "second").Wait(ctx)
	require.ErrorIs(t, err, natsjobs.ErrDuplicateJob)
	require.ErrorIs(t, err, qpool.ErrDuplicateJob)
	newWorker(t, js, reg, ns)
	v, err := f1.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, "first", v)
	_, err = echo.Submit(ctx, c1, "dup", "third").Wait(ctx)
	require.ErrorIs(t, err, natsjobs.ErrDuplicateJob, "a finished ID stays taken")
	require.Equal(t, int32(1), runs.Load())
}

// TestResultFromAnotherClient: a client that did not submit a job waits
// for it (Result, Handle.Future), before and after it finishes.
func TestResultFromAnotherClient(t *testing.T) {
	ts := startServer(t)
	js := ts.connect(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	release := make(chan struct{})
	gate := natsjobs.Register(reg, "gate", func(ctx context.Context, n int) (int, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return n * 10, nil
	})
	newWorker(t, js, reg, ns)
	c1 := newClient(t, js, ns)
	c2 := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 20*time.Second)
	mine := gate.Submit(ctx, c1, "g", 4)
	// Before it finishes: through c2's watcher.
	theirs := natsjobs.Declare[int, int]("gate").Future(ctx, c2, "g")
	got := make(chan *natsjobs.Record, 1)
	go func() {
		r, err := c2.Result(ctx, "g")
		if err != nil {
			r = &natsjobs.Record{Err: err}
		}
		got <- r
	}()
	close(release)
	for _, f := range []*qpool.Future[int]{mine, theirs} {
		v, err := f.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, 40, v)
	}
	r := <-got
	require.NoError(t, r.Err)
	require.Equal(t, "40", string(r.Value))
	// After it finished: found by lookup.
	v, err := gate.Future(ctx, c2, "g").Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, 40, v)
	_, err = c2.Status(ctx, "nobody")
	require.ErrorIs(t, err, natsjobs.ErrUnknownJob)
}

// TestRegisterDefaultsAndPanics: WithRetry given to Register applies to
// jobs submitted without one; a submission's own WithRetry wins; a panic
// fails the job at once, kind "panic", not retried.
func TestRegisterDefaultsAndPanics(t *testing.T) {
	ts := startServer(t)
	js := ts.connect(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	var mu sync.Mutex
	calls := map[string]int{}
	flaky := natsjobs.Register(reg, "flaky", func(_ context.Context, id string) (int, error) {
		mu.Lock()
		calls[id]++
		n := calls[id]
		mu.Unlock()
		if id == "panic" {
			panic("boom")
		}
		return n, fmt.Errorf("attempt %d", n)
	}, qpool.WithRetry(3, time.Millisecond))
	newWorker(t, js, reg, ns)
	c := newClient(t, js, ns)
	ctx := wctx(t, 20*time.Second)
	var re *natsjobs.RemoteError
	_, err := flaky.Submit(ctx, c, "default", "default").Wait(ctx)
	require.ErrorAs(t, err, &re)
	require.Equal(t, 3, re.Attempts, "Register's WithRetry is the default")
	_, err = flaky.Submit(ctx, c, "own", "own", qpool.WithRetry(2, time.Millisecond)).Wait(ctx)
	require.ErrorAs(t, err, &re)
	require.Equal(t, 2, re.Attempts, "the submission's WithRetry wins")
	_, err = flaky.Submit(ctx, c, "panic", "panic").Wait(ctx)
	require.ErrorAs(t, err, &re)
	require.Equal(t, "panic", re.Kind)
	require.Equal(t, 1, re.Attempts)
	require.Contains(t, re.Message, "boom")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, map[string]int{"default": 3, "own": 2, "panic": 1}, calls)
}

// TestHandlerGoexit: a handler that calls runtime.Goexit fails its job with
// the message of qpool.ErrGoexit, as a pool's job does, instead of leaving it running for
// ever (found by review: the run was never ended and its heartbeats went
// on until Shutdown).
func TestHandlerGoexit(t *testing.T) {
	ts := startServer(t)
	js := ts.connect(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	quit := natsjobs.Register(reg, "quit", func(context.Context, int) (int, error) {
		runtime.Goexit()
		return 0, nil
	})
	newWorker(t, js, reg, ns)
	c := newClient(t, js, ns)
	ctx := wctx(t, 20*time.Second)
	_, err := quit.Submit(ctx, c, "g1", 1, qpool.WithRetry(3, time.Millisecond)).Wait(ctx)
	require.ErrorContains(t, err, qpool.ErrGoexit.Error(), "the outcome names the Goexit (errors cross processes by kind and message)")
	var re *natsjobs.RemoteError
	require.ErrorAs(t, err, &re)
	require.Equal(t, 1, re.Attempts, "a Goexit is not retried, as a panic is not")
}

// TestFinishCostsNoAPIRequest: a job that no job depends on finishes
// without a JetStream API request of its own (a listing of its dependents
// would create and delete a consumer per job, the costliest thing a
// finisher did): the account's API count grows by less than one per job.
func TestFinishCostsNoAPIRequest(t *testing.T) {
	ts := startServer(t)
	js := ts.connect(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	echo := natsjobs.Register(reg, "echo", func(_ context.Context, n int) (int, error) { return n, nil })
	newWorker(t, ts.connect(t), reg, ns)
	c := newClient(t, js, ns)
	ctx := wctx(t, 20*time.Second)
	_, err := echo.Submit(ctx, c, "warm", 0).Wait(ctx) // streams, buckets and consumers made
	require.NoError(t, err)
	before, err := js.AccountInfo(ctx)
	require.NoError(t, err)
	const n = 40
	for i := range n {
		_, err := echo.Submit(ctx, c, fmt.Sprint("j", i), i).Wait(ctx)
		require.NoError(t, err)
	}
	after, err := js.AccountInfo(ctx)
	require.NoError(t, err)
	perJob := float64(after.API.Total-before.API.Total-1) / n // -1: the AccountInfo request
	t.Logf("JetStream API requests per job: %.2f", perJob)
	require.Less(t, perJob, 1.0)
}

// TestDuplicateSubmissionNeverRuns: a job to run now is submitted with its
// claim and its message sent together, so a duplicate submission stores a
// message too before its claim fails; the worker that gets it finds the
// claim of the first submission and drops it. Duplicates come from several
// goroutines while each first job is still unfinished: held back by a
// dependency or running. No duplicate's payload
// ever reaches a handler, and each first job runs once with its own.
func TestDuplicateSubmissionNeverRuns(t *testing.T) {
	ts := startServer(t)
	nsName := namespace()
	ns := natsjobs.WithNamespace(nsName)
	reg := natsjobs.NewRegistry()
	release := make(chan struct{})
	var mu sync.Mutex
	calls := map[string][]string{}
	echo := natsjobs.Register(reg, "echo", func(ctx context.Context, in resizeArgs) (string, error) {
		id := in.Name
		mu.Lock()
		calls[id] = append(calls[id], fmt.Sprint(in.Width))
		mu.Unlock()
		if in.Width == 0 { // a first submission: unfinished until released
			select {
			case <-release:
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		return id, nil
	})
	const n, dupers = 20, 4
	w := newWorker(t, ts.connect(t), reg, ns, natsjobs.WithConcurrency(n+8))
	c := newClient(t, ts.connect(t), ns)
	ctx := wctx(t, 30*time.Second)
	futs := make([]*qpool.Future[string], n)
	for i := range n {
		id := fmt.Sprint("d", i)
		var opts []qpool.JobOption
		if i%2 == 1 {
			opts = append(opts, qpool.WithDependencies("gate"))
		}
		futs[i] = echo.Submit(ctx, c, id, resizeArgs{Name: id}, opts...)
	}
	var wg sync.WaitGroup
	for g := range dupers {
		dc := newClient(t, ts.connect(t), ns)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, i := range rand.Perm(n) {
				time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
				id := fmt.Sprint("d", i)
				_, err := echo.Submit(ctx, dc, id, resizeArgs{Name: id, Width: g + 1}).Wait(ctx)
				if !errors.Is(err, natsjobs.ErrDuplicateJob) {
					t.Errorf("duplicate of %s: %v", id, err)
				}
			}
		}()
	}
	wg.Wait()
	// Every duplicate's message is gone from the queue while the first
	// submissions are unfinished: retracted by its client when its claim
	// was refused, or delivered and dropped by the worker. What stays are
	// the messages of the n/2 first submissions running (unacknowledged);
	// the other half waits for "gate", unpublished.
	queue, err := ts.connect(t).Stream(ctx, nsName+"_q_default")
	require.NoError(t, err)
	waitFor(t, 20*time.Second, "the duplicates' messages gone", func() bool {
		info, err := queue.Info(ctx)
		return err == nil && info.State.Msgs == n/2
	})
	t.Logf("dropped by the worker: %d of %d duplicates (the others retracted)", w.Stats().Dropped, n*dupers)
	close(release)
	_, err = echo.Submit(ctx, c, "gate", resizeArgs{Name: "gate", Width: 99}).Wait(ctx)
	require.NoError(t, err)
	for i, f := range futs {
		v, err := f.Wait(ctx)
		require.NoError(t, err, "d%d", i)
		require.Equal(t, fmt.Sprint("d", i), v)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		id := fmt.Sprint("d", i)
		require.Equal(t, []string{"0"}, calls[id], "%s ran with its first payload only", id)
	}
}
