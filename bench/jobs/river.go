package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// riverSystem is river on PostgreSQL at its defaults (synchronous_commit
// on: a job is durable when its insert commits).
type riverSystem struct {
	pool *pgxpool.Pool
}

type noopArgs struct {
	N int `json:"n"`
}

func (noopArgs) Kind() string { return "noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

func newRiver(ctx context.Context, url string) (*riverSystem, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, err
	}
	m, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return nil, err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	if _, err := pool.Exec(ctx, "TRUNCATE river_job"); err != nil {
		return nil, err
	}
	return &riverSystem{pool: pool}, nil
}

func (s *riverSystem) client(workers int) (*river.Client[pgx.Tx], error) {
	ws := river.NewWorkers()
	river.AddWorker(ws, &noopWorker{})
	return river.NewClient(riverpgxv5.New(s.pool), &river.Config{
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}},
		Workers: ws,
		Logger:  quiet,
		// Tuned: the defaults (100 ms between fetches, a poll every
		// second) cap a burn-down at about MaxWorkers jobs per 100 ms.
		FetchCooldown:     time.Millisecond,
		FetchPollInterval: 10 * time.Millisecond,
	})
}

func (s *riverSystem) burnDown(ctx context.Context, n, workers int) (time.Duration, time.Duration, error) {
	c, err := s.client(workers)
	if err != nil {
		return 0, 0, err
	}
	// Inserted one job per call, by workers goroutines, as the other
	// systems submit (river's InsertMany would batch them).
	start := time.Now()
	err = parallelN(n, workers, func(i int) error {
		_, err := c.Insert(ctx, noopArgs{N: i}, nil)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	inserted := time.Now()
	events, cancel := c.SubscribeConfig(&river.SubscribeConfig{ChanSize: n + 1, Kinds: []river.EventKind{river.EventKindJobCompleted}})
	defer cancel()
	if err := c.Start(ctx); err != nil {
		return 0, 0, err
	}
	for range n {
		<-events
	}
	work := time.Since(inserted)
	return inserted.Sub(start), work, c.Stop(ctx)
}

func (s *riverSystem) roundTrip(ctx context.Context, samples, workers int) ([]time.Duration, error) {
	c, err := s.client(workers)
	if err != nil {
		return nil, err
	}
	events, cancel := c.Subscribe(river.EventKindJobCompleted)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	defer c.Stop(ctx)
	ds := make([]time.Duration, samples)
	for i := range ds {
		start := time.Now()
		res, err := c.Insert(ctx, noopArgs{N: i}, nil)
		if err != nil {
			return nil, err
		}
		for e := range events {
			if e.Job.ID == res.Job.ID {
				break
			}
		}
		ds[i] = time.Since(start)
	}
	return ds, nil
}

func (s *riverSystem) close() { s.pool.Close() }
