package qpool_test

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/qpool/qpool"
)

func ExampleNewGroup() {
	pool := qpool.NewPool(qpool.WithWorkers(4))
	defer pool.Close()

	// No IDs to invent: Go generates them. Wait returns the values in the
	// order the jobs were given, whatever order they finished in.
	g := qpool.NewGroup[int](context.Background(), pool)
	for i := range 5 {
		g.Go(func(ctx context.Context) (int, error) { return i * i, nil })
	}
	squares, err := g.Wait()
	fmt.Println(squares, err)
	// Output: [0 1 4 9 16] <nil>
}

func ExampleWithCancelOnError() {
	pool := qpool.NewPool(qpool.WithWorkers(2))
	defer pool.Close()

	errNotFound := errors.New("not found")
	g := qpool.NewGroup[string](context.Background(), pool,
		qpool.WithCancelOnError(), qpool.WithFirstError())
	g.Go(func(ctx context.Context) (string, error) {
		<-ctx.Done() // a long job: it stops when a sibling fails
		return "", context.Cause(ctx)
	})
	g.Go(func(ctx context.Context) (string, error) { return "", errNotFound })

	_, err := g.Wait()
	fmt.Println(err)
	fmt.Println(errors.Is(context.Cause(g.Context()), errNotFound))
	// Output:
	// not found
	// true
}

func ExampleGroup_Results() {
	pool := qpool.NewPool(qpool.WithWorkers(4))
	defer pool.Close()

	g := qpool.NewGroup[string](context.Background(), pool)
	for _, name := range []string{"b", "c", "a"} {
		g.Submit("load-"+name, func(ctx context.Context) (string, error) { return name + name, nil })
	}
	// Results come as the jobs finish; sort them here for a stable output.
	var got []string
	for r := range g.Results() {
		got = append(got, fmt.Sprintf("%s=%s", r.ID, r.Value))
	}
	slices.Sort(got)
	fmt.Println(got)
	if _, err := g.Wait(); err != nil { // closes the group
		fmt.Println(err)
	}
	// Output: [load-a=aa load-b=bb load-c=cc]
}
