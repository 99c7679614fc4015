package main

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
)

// asynqSystem is asynq on Redis at Redis's defaults (no AOF: a write is
// in memory when acknowledged, on disk at the next snapshot).
type asynqSystem struct {
	opt asynq.RedisClientOpt
}

func newAsynq(addr string) (*asynqSystem, error) {
	s := &asynqSystem{opt: asynq.RedisClientOpt{Addr: addr}}
	c := asynq.NewClient(s.opt)
	defer c.Close()
	return s, nil
}

func (s *asynqSystem) server(workers int, done *atomic.Int64) (*asynq.Server, error) {
	srv := asynq.NewServer(s.opt, asynq.Config{Concurrency: workers, LogLevel: asynq.FatalLevel,
		// Tuned: by default an idle server looks for new tasks once a
		// second, which is the round trip then.
		TaskCheckInterval: time.Millisecond})
	mux := asynq.NewServeMux()
	mux.HandleFunc("noop", func(context.Context, *asynq.Task) error {
		done.Add(1)
		return nil
	})
	return srv, srv.Start(mux)
}

func (s *asynqSystem) burnDown(ctx context.Context, n, workers int) (time.Duration, time.Duration, error) {
	insp := asynq.NewInspector(s.opt)
	defer insp.Close()
	_, _ = insp.DeleteAllCompletedTasks("default")
	c := asynq.NewClient(s.opt)
	defer c.Close()
	start := time.Now()
	err := parallelN(n, workers, func(i int) error {
		_, err := c.EnqueueContext(ctx, asynq.NewTask("noop", strconv.AppendInt(nil, int64(i), 10)))
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	inserted := time.Now()
	var done atomic.Int64
	srv, err := s.server(workers, &done)
	if err != nil {
		return 0, 0, err
	}
	defer srv.Shutdown()
	for done.Load() < int64(n) {
		time.Sleep(time.Millisecond)
	}
	// Done is after the handler: the task leaves the active list.
	for {
		qi, err := insp.GetQueueInfo("default")
		if err != nil {
			return 0, 0, err
		}
		if qi.Pending == 0 && qi.Active == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return inserted.Sub(start), time.Since(inserted), nil
}

func (s *asynqSystem) roundTrip(ctx context.Context, samples, workers int) ([]time.Duration, error) {
	var done atomic.Int64
	srv, err := s.server(workers, &done)
	if err != nil {
		return nil, err
	}
	defer srv.Shutdown()
	c := asynq.NewClient(s.opt)
	defer c.Close()
	insp := asynq.NewInspector(s.opt)
	defer insp.Close()
	ds := make([]time.Duration, samples)
	for i := range ds {
		id := "rt-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.Itoa(i)
		start := time.Now()
		if _, err := c.EnqueueContext(ctx, asynq.NewTask("noop", nil), asynq.TaskID(id), asynq.Retention(time.Hour)); err != nil {
			return nil, err
		}
		for {
			ti, err := insp.GetTaskInfo("default", id)
			if err == nil && ti.State == asynq.TaskStateCompleted {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		ds[i] = time.Since(start)
	}
	return ds, nil
}

func (s *asynqSystem) close() {}
