package qpool_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/qpool/qpool"
)

func ExampleNewPool() {
	pool := qpool.NewPool(qpool.WithWorkers(4), qpool.WithQueueSize(64))
	defer pool.Close()

	f := pool.Schedule("greet", func() (any, error) { return "hello from a worker", nil })
	v, err := f.Wait(context.Background())
	fmt.Println(v, err)
	// Output: hello from a worker <nil>
}

func ExamplePool_Schedule() {
	pool := qpool.NewPool(qpool.WithWorkers(2))
	defer pool.Close()

	words := []string{"alpha", "beta", "gamma"}
	futures := make([]*qpool.Future[any], len(words))
	for i, w := range words {
		futures[i] = pool.Schedule("upper-"+w, func() (any, error) {
			return strings.ToUpper(w), nil
		})
	}
	// Futures resolve in any order; waiting them in order prints in order.
	for _, f := range futures {
		v, err := f.Wait(context.Background())
		fmt.Println(f.ID(), v, err)
	}
	// Output:
	// upper-alpha ALPHA <nil>
	// upper-beta BETA <nil>
	// upper-gamma GAMMA <nil>
}

func ExampleSubmit() {
	pool := qpool.NewPool()
	defer pool.Close()

	// Submit is the typed, context-aware form: the future is a Future[int].
	square := qpool.Submit(pool, "square", func(ctx context.Context) (int, error) {
		return 12 * 12, nil
	})
	n, err := square.Wait(context.Background())
	fmt.Println(n+1, err)

	invalid := qpool.Submit[int](pool, "", nil)
	_, err = invalid.Wait(context.Background())
	fmt.Println(errors.Is(err, qpool.ErrInvalidJob))
	// Output:
	// 145 <nil>
	// true
}

func ExampleWithDependencies() {
	pool := qpool.NewPool(qpool.WithWorkers(2))
	defer pool.Close()

	var fetched []int // written by fetch, read by process: the dependency orders them
	pool.Schedule("fetch", func() (any, error) {
		fetched = []int{1, 2, 3}
		return nil, nil
	})
	process := pool.Schedule("process", func() (any, error) {
		sum := 0
		for _, x := range fetched {
			sum += x
		}
		return sum, nil
	}, qpool.WithDependencies("fetch"))
	fmt.Println(process.Wait(context.Background()))

	// A job whose dependency fails does not run, nor do the jobs that
	// depend on it. The error names the failed dependency and the root
	// cause, however long the chain.
	errDiskFull := errors.New("disk full")
	pool.Schedule("broken", func() (any, error) { return nil, errDiskFull })
	pool.Schedule("after-broken", func() (any, error) { return "ran", nil },
		qpool.WithDependencies("broken"))
	last := pool.Schedule("last", func() (any, error) { return "ran", nil },
		qpool.WithDependencies("after-broken"))
	_, err := last.Wait(context.Background())
	fmt.Println(err)
	fmt.Println(errors.Is(err, qpool.ErrDependencyFailed), errors.Is(err, errDiskFull))
	var de *qpool.DependencyError
	if errors.As(err, &de) {
		fmt.Println(de.Dependency, de.Origin)
	}
	// Output:
	// 6 <nil>
	// qpool: job "last": dependency failed: "after-broken", because "broken" failed: disk full
	// true true
	// after-broken broken
}

func ExampleWithRetry() {
	pool := qpool.NewPool()
	defer pool.Close()

	attempts := 0 // only one attempt runs at a time
	f := pool.Schedule("flaky", func() (any, error) {
		attempts++
		if attempts < 3 {
			return nil, fmt.Errorf("attempt %d: temporary failure", attempts)
		}
		return "ok", nil
	}, qpool.WithRetry(5, time.Millisecond))
	v, err := f.Wait(context.Background())
	fmt.Println(v, err, "after", attempts, "attempts")
	// Output: ok <nil> after 3 attempts
}

func ExamplePermanent() {
	pool := qpool.NewPool()
	defer pool.Close()

	errNotFound := errors.New("404 not found")
	attempts := 0 // only one attempt runs at a time
	f := pool.Schedule("fetch", func() (any, error) {
		attempts++
		return nil, fmt.Errorf("fetch /missing: %w", qpool.Permanent(errNotFound))
	}, qpool.WithRetry(5, time.Millisecond))
	_, err := f.Wait(context.Background())
	fmt.Println(errors.Is(err, errNotFound), qpool.IsPermanent(err), "after", attempts, "attempt")
	// Output: true true after 1 attempt
}

func ExampleNewEntanglement() {
	jobs := []qpool.Job{{ID: "data-fetch"}, {ID: "data-process"}}
	e := qpool.NewEntanglement("data-pipeline", jobs, time.Hour)
	defer e.Close()

	if err := e.UpdateState("raw-data", []int{1, 2, 3}); err != nil {
		fmt.Println(err)
	}
	v, ok := e.GetState("raw-data")
	fmt.Println(e.ID(), e.Jobs())
	fmt.Println(v, ok)
	_, ok = e.GetState("processed-data")
	fmt.Println(ok)
	// Output:
	// data-pipeline [{data-fetch} {data-process}]
	// [1 2 3] true
	// false
}

func ExampleEntanglement_Watch() {
	e := qpool.NewEntanglement("events", nil, time.Hour)
	defer e.Close()
	_ = e.UpdateState("status", "started")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := e.Watch(ctx, 0) // from the first change: history, then live

	_ = e.UpdateState("progress", 50)
	_ = e.DeleteState("progress")
	for range 3 {
		c := <-changes
		fmt.Println(c.Sequence, c.Key, c.Value, c.Deleted)
	}
	// Output:
	// 0 status started false
	// 1 progress 50 false
	// 2 progress <nil> true
}

func ExampleEntanglement_Await() {
	pool := qpool.NewPool(qpool.WithWorkers(2))
	defer pool.Close()
	e := qpool.NewEntanglement("handoff", nil, time.Hour)
	defer e.Close()

	consumer := qpool.Submit(pool, "consumer", func(ctx context.Context) (string, error) {
		v, err := e.Await(ctx, "result") // sleeps until "result" is set
		if err != nil {
			return "", err
		}
		return fmt.Sprint("got ", v), nil
	})
	pool.Schedule("producer", func() (any, error) {
		return nil, e.UpdateState("result", 42)
	})
	fmt.Println(consumer.Wait(context.Background()))
	// Output: got 42 <nil>
}

func ExampleEntanglement_Update() {
	pool := qpool.NewPool(qpool.WithWorkers(4))
	defer pool.Close()
	e := qpool.NewEntanglement("counter", nil, time.Hour)
	defer e.Close()

	// Concurrent read-modify-write without lost updates.
	for i := range 10 {
		pool.Schedule(fmt.Sprint("inc-", i), func() (any, error) {
			return nil, e.Update("count", func(old any, exists bool) (any, error) {
				n, _ := old.(int)
				return n + 1, nil
			})
		})
	}
	pool.Wait()
	v, _ := e.GetState("count")
	fmt.Println(v, len(e.GetStateHistory(0)))
	// Output: 10 10
}

func ExampleEntanglement_GetStateHistory() {
	e := qpool.NewEntanglement("history", nil, time.Hour)
	defer e.Close()
	for _, s := range []string{"queued", "fetching", "processing", "done"} {
		_ = e.UpdateState("status", s)
	}
	_ = e.UpdateState("rows", 1200)

	for _, c := range e.GetStateHistory(0) {
		fmt.Printf("#%d %s = %v\n", c.Sequence, c.Key, c.Value)
	}
	fmt.Println("since 3:")
	for _, c := range e.GetStateHistory(3) {
		fmt.Printf("#%d %s = %v\n", c.Sequence, c.Key, c.Value)
	}
	// Output:
	// #0 status = queued
	// #1 status = fetching
	// #2 status = processing
	// #3 status = done
	// #4 rows = 1200
	// since 3:
	// #3 status = done
	// #4 rows = 1200
}
