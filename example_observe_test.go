package qpool_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/qpool/qpool"
)

// An observer that counts finished jobs by outcome and logs retries, as a
// metrics exporter would. Observer functions run outside the pool's locks
// and may be slow or panic without harming the pool; Close waits for them.
func ExampleWithObserver() {
	var mu sync.Mutex
	outcomes := map[qpool.Outcome]int{}
	pool := qpool.NewPool(qpool.WithWorkers(2), qpool.WithObserver(qpool.Observer{
		Retried: func(_ context.Context, e qpool.JobEvent) {
			fmt.Printf("retry %s after attempt %d: %v\n", e.ID, e.Attempt, e.Err)
		},
		Finished: func(_ context.Context, e qpool.JobEvent) {
			mu.Lock()
			outcomes[e.Outcome]++
			mu.Unlock()
		},
	}))

	flaky := 0
	pool.Schedule("flaky", func() (any, error) {
		if flaky++; flaky < 2 {
			return nil, errors.New("try again")
		}
		return "ok", nil
	}, qpool.WithRetry(3, time.Millisecond))
	pool.Schedule("broken", func() (any, error) { return nil, errors.New("no") })
	qpool.Submit(pool, "slow", func(ctx context.Context) (int, error) {
		<-ctx.Done() // WithTimeout's deadline
		return 0, ctx.Err()
	}, qpool.WithTimeout(time.Millisecond))
	pool.Schedule("", func() (any, error) { return nil, nil }) // rejected: empty ID
	_ = pool.Close()                                           // waits for every Finished

	for _, o := range []qpool.Outcome{qpool.OutcomeOK, qpool.OutcomeError, qpool.OutcomeTimeout, qpool.OutcomeRejected} {
		fmt.Println(o, outcomes[o])
	}
	// Output:
	// retry flaky after attempt 1: try again
	// ok 1
	// error 1
	// timeout 1
	// rejected 1
}

// WithParent carries the submitter's context values (a trace span, a
// request ID) into the job and to the observer, without its cancellation.
func ExampleWithParent() {
	type requestID struct{}
	pool := qpool.NewPool(qpool.WithObserver(qpool.Observer{
		Submitted: func(ctx context.Context, e qpool.JobEvent) {
			fmt.Println("submitted", e.ID, "for request", ctx.Value(requestID{}))
		},
	}))
	defer pool.Close()

	ctx := context.WithValue(context.Background(), requestID{}, "r-42")
	f := qpool.Submit(pool, "report", func(ctx context.Context) (string, error) {
		return fmt.Sprint("built for request ", ctx.Value(requestID{})), nil
	}, qpool.WithParent(ctx))
	v, _ := f.Wait(context.Background())
	fmt.Println(v)
	// Output:
	// submitted report for request r-42
	// built for request r-42
}

// The live view: the jobs a pool holds now, one by ID, and the age of the
// oldest queued job, read without stopping the pool.
func ExamplePool_Jobs() {
	pool := qpool.NewPool(qpool.WithWorkers(1))
	defer pool.Close()

	gate := make(chan struct{})
	started := make(chan struct{})
	pool.Schedule("first", func() (any, error) { close(started); <-gate; return nil, nil })
	<-started
	pool.Schedule("second", func() (any, error) { return nil, nil })

	for _, state := range []qpool.JobState{qpool.JobRunning, qpool.JobQueued} {
		for _, j := range pool.Jobs(state, 10) {
			fmt.Println(j.ID, j.State, j.Attempt)
		}
	}
	fmt.Println(pool.Cancel("second"))
	j, _ := pool.Job("second")
	fmt.Println(j.State, j.Err)
	close(gate)
	// Output:
	// first running 1
	// second queued 0
	// true
	// done qpool: job "second": context canceled
}
