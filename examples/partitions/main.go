// Command partitions splits a sum over 1..n into partitions computed in
// parallel by a pool. Each partition stores its result in an entanglement;
// an aggregate job that depends on every partition (qpool.WithDependencies)
// combines the stored results once all of them are there.
//
// Run it from the repository root:
//
//	go run ./examples/partitions
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/qpool/qpool"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "partitions:", err)
		os.Exit(1)
	}
}

// errBadSplit is returned for a split that has no partition.
var errBadSplit = errors.New("partitions: need at least one partition")

// span is the part of 1..n one partition sums: from..to, inclusive.
type span struct{ from, to int }

// run sums 1..100 in four partitions.
func run(ctx context.Context, w io.Writer) error {
	return sumPartitions(ctx, w, 4, 100)
}

// split cuts 1..n into parts spans whose sizes differ by at most one.
func split(parts, n int) []span {
	spans := make([]span, parts)
	from := 1
	for i := range spans {
		size := n / parts
		if i < n%parts {
			size++
		}
		spans[i] = span{from, from + size - 1}
		from += size
	}
	return spans
}

// sumPartitions sums 1..n in parts partitions and prints each partial sum
// and the total. It closes its pool and entanglement before it returns.
func sumPartitions(ctx context.Context, w io.Writer, parts, n int) (err error) {
	if parts < 1 {
		return fmt.Errorf("%w: got %d", errBadSplit, parts)
	}
	pool := qpool.NewPool(qpool.WithWorkers(parts), qpool.WithContext(ctx))
	defer pool.Close()
	e := qpool.NewEntanglement("partitions", nil, time.Hour)
	defer func() { err = errors.Join(err, e.Close()) }()

	spans := split(parts, n)
	ids := make([]string, parts)
	for i, s := range spans {
		ids[i] = fmt.Sprintf("partition-%d", i+1)
		qpool.Submit(pool, ids[i], func(context.Context) (int, error) {
			sum := sumSpan(s)
			return sum, resultKey(ids[i]).Set(e, sum)
		}, qpool.WithEntanglement(e))
	}
	aggregate := qpool.Submit(pool, "aggregate", func(context.Context) (int, error) {
		return combine(e, ids)
	}, qpool.WithDependencies(ids...), qpool.WithEntanglement(e))

	total, err := aggregate.Wait(ctx)
	if err != nil {
		return err
	}
	for i, id := range ids {
		v, _, err := resultKey(id).Get(e)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s: sum(%d..%d) = %d\n", id, spans[i].from, spans[i].to, v)
	}
	fmt.Fprintf(w, "aggregate of %d partitions: %d (n(n+1)/2 = %d)\n", parts, total, n*(n+1)/2)
	return nil
}

// resultKey is the state key under which a partition stores its sum: an
// int, read back as an int whatever the ledger.
func resultKey(id string) qpool.Key[int] { return qpool.NewKey[int](id + "-result") }

// sumSpan adds the integers of s.
func sumSpan(s span) int {
	sum := 0
	for x := s.from; x <= s.to; x++ {
		sum += x
	}
	return sum
}

// combine adds the stored result of every partition. Its dependencies
// guarantee each is there; a missing one is an error, not a silent zero.
func combine(e *qpool.Entanglement, ids []string) (int, error) {
	total := 0
	for _, id := range ids {
		v, ok, err := resultKey(id).Get(e)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, fmt.Errorf("partitions: no result from %s", id)
		}
		total += v
	}
	return total, nil
}
