package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsledger"
)

// runWorker is one process: its own connection, ledger, entanglement and
// pool. It processes the partitions assigned to it, and worker 0 also
// aggregates them all.
func runWorker(url, id string, worker, workers int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := nats.Connect(url, nats.ReconnectBufSize(-1), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	l, err := natsledger.Open(ctx, nc, id)
	if err != nil {
		return err
	}
	e, err := qpool.OpenEntanglement(ctx, id, nil, time.Hour, qpool.WithLedger(l))
	if err != nil {
		return err
	}
	defer e.Close()

	pool := qpool.NewPool(qpool.WithWorkers(4))
	defer pool.Close()
	var futures []*qpool.Future[any]
	for p := worker; p < partitions; p += workers {
		futures = append(futures, pool.Schedule(fmt.Sprintf("partition-%d", p), func() (any, error) {
			return nil, processPartition(e, worker, p)
		}, qpool.WithEntanglement(e)))
	}
	if worker == 0 {
		futures = append(futures, pool.Schedule("aggregate", func() (any, error) {
			return nil, aggregate(ctx, e)
		}, qpool.WithEntanglement(e)))
	}
	for _, f := range futures {
		if _, err := f.Wait(ctx); err != nil {
			return fmt.Errorf("worker %d: %s: %w", worker, f.ID(), err)
		}
	}
	total, err := totalKey.Await(ctx, e)
	if err != nil {
		return err
	}
	fmt.Printf("worker %d: sees total = %v\n", worker, total)
	return nil
}

// The state keys, declared with their types. The ledger keeps JSON, whose
// numbers decode as float64; the keys read them back as ints.
var (
	processedKey = qpool.NewKey[int]("processed")
	totalKey     = qpool.NewKey[int]("total")
)

// partitionKey is the key of partition p's result.
func partitionKey(p int) qpool.Key[int] { return qpool.NewKey[int](fmt.Sprintf("partition-%d", p)) }

// processPartition stores a partition's result and counts it with an
// atomic read-modify-write, which JetStream checks across processes.
func processPartition(e *qpool.Entanglement, worker, p int) error {
	result := (p + 1) * 100
	if err := partitionKey(p).Set(e, result); err != nil {
		return err
	}
	fmt.Printf("worker %d: partition-%d = %d\n", worker, p, result)
	return processedKey.Update(e, func(n int, _ bool) (int, error) { return n + 1, nil })
}

// aggregate waits for every partition, whichever process wrote it, and
// stores their sum.
func aggregate(ctx context.Context, e *qpool.Entanglement) error {
	sum := 0
	for p := range partitions {
		v, err := partitionKey(p).Await(ctx, e)
		if err != nil {
			return err
		}
		sum += v
	}
	return totalKey.Set(e, sum)
}
