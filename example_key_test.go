package qpool_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qpool/qpool"
)

// Typed keys are declared once, next to the type they hold.
var (
	rowsDone = qpool.NewKey[int]("rows-done")
	stage    = qpool.NewKey[string]("stage")
)

func ExampleKey() {
	pool := qpool.NewPool(qpool.WithWorkers(4))
	defer pool.Close()
	e := qpool.NewEntanglement("import", nil, time.Hour)
	defer e.Close()

	// Ten batches of 100 rows each add to one counter, without lost
	// updates. fn gets the old value as an int on every ledger, durable
	// ones included, so the result does not depend on where state lives.
	for i := range 10 {
		pool.Schedule(fmt.Sprint("batch-", i), func() (any, error) {
			return nil, rowsDone.Update(e, func(n int, _ bool) (int, error) { return n + 100, nil })
		})
	}
	pool.Wait()
	if err := stage.Set(e, "imported"); err != nil {
		fmt.Println(err)
	}

	n, ok, err := rowsDone.Get(e)
	fmt.Println(n, ok, err)
	s, _, _ := stage.Get(e)
	fmt.Println(s)
	// Output:
	// 1000 true <nil>
	// imported
}

func ExampleKey_Await() {
	type report struct {
		Rows   int
		Errors []string
	}
	summary := qpool.NewKey[report]("summary")

	pool := qpool.NewPool(qpool.WithWorkers(2))
	defer pool.Close()
	e := qpool.NewEntanglement("handoff", nil, time.Hour)
	defer e.Close()

	consumer := qpool.Submit(pool, "consumer", func(ctx context.Context) (int, error) {
		r, err := summary.Await(ctx, e) // the job's context: shutdown ends the wait
		return r.Rows, err
	})
	pool.Schedule("producer", func() (any, error) {
		return nil, summary.Set(e, report{Rows: 1200})
	})
	fmt.Println(consumer.Wait(context.Background()))
	// Output: 1200 <nil>
}

func ExampleKey_Watch() {
	e := qpool.NewEntanglement("progress", nil, time.Hour)
	defer e.Close()
	for _, s := range []string{"fetching", "processing", "done"} {
		_ = stage.Set(e, s)
	}

	for s, err := range stage.Watch(context.Background(), e) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(s)
		if s == "done" {
			break
		}
	}
	// Output:
	// fetching
	// processing
	// done
}

func ExampleTypeError() {
	e := qpool.NewEntanglement("mixed", nil, time.Hour)
	defer e.Close()
	_ = e.UpdateState("rows-done", "many") // not an int

	n, ok, err := rowsDone.Get(e)
	fmt.Println(n, ok, errors.Is(err, qpool.ErrType))
	var te *qpool.TypeError
	if errors.As(err, &te) {
		fmt.Printf("%s holds %#v, not %v\n", te.Key, te.Got, te.Want)
	}
	// Output:
	// 0 true true
	// rows-done holds "many", not int
}
