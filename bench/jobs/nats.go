package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
)

// natsSystem is an embedded nats-server (file store in a temporary
// directory) with natsjobs on it, or (jobs false) the raw probe: a
// work-queue stream consumed and acknowledged, results written to a KV
// bucket and seen by one watcher.
type natsSystem struct {
	jobs  bool
	dir   string
	srv   *server.Server
	conns []*nats.Conn
}

func newNatsSystem(_ context.Context, jobs, syncAlways bool) (*natsSystem, error) {
	dir, err := os.MkdirTemp("", "benchjobs-nats-")
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true, SyncAlways: syncAlways})
	if err != nil {
		return nil, err
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		return nil, fmt.Errorf("nats-server not ready")
	}
	return &natsSystem{jobs: jobs, dir: dir, srv: srv}, nil
}

func (s *natsSystem) connect() (jetstream.JetStream, error) {
	nc, err := nats.Connect("nats://127.0.0.1:" + strconv.Itoa(s.srv.Addr().(*net.TCPAddr).Port))
	if err != nil {
		return nil, err
	}
	s.conns = append(s.conns, nc)
	return jetstream.New(nc)
}

func (s *natsSystem) close() {
	for _, nc := range s.conns {
		nc.Close()
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	_ = os.RemoveAll(s.dir)
}

var noopName = "noop"

func noopRegistry() *natsjobs.Registry {
	reg := natsjobs.NewRegistry()
	natsjobs.Register(reg, noopName, func(_ context.Context, n int) (int, error) { return n, nil })
	return reg
}

func (s *natsSystem) burnDown(ctx context.Context, n, workers int) (time.Duration, time.Duration, error) {
	if !s.jobs {
		return s.rawBurnDown(ctx, n, workers)
	}
	js, err := s.connect()
	if err != nil {
		return 0, 0, err
	}
	ns := natsjobs.WithNamespace("bd")
	c, err := natsjobs.NewClient(ctx, js, ns)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	noop := natsjobs.Declare[int, int](noopName)
	futs := make([]*qpool.Future[int], n)
	start := time.Now()
	err = parallelN(n, workers, func(i int) error {
		futs[i] = noop.Submit(ctx, c, strconv.Itoa(i), i)
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	inserted := time.Now()
	wjs, err := s.connect()
	if err != nil {
		return 0, 0, err
	}
	w, err := natsjobs.NewWorker(ctx, wjs, noopRegistry(), ns, natsjobs.WithConcurrency(workers))
	if err != nil {
		return 0, 0, err
	}
	defer w.Shutdown(ctx)
	for _, f := range futs {
		if _, err := f.Wait(ctx); err != nil {
			return 0, 0, err
		}
	}
	return inserted.Sub(start), time.Since(inserted), nil
}

func (s *natsSystem) rawBurnDown(ctx context.Context, n, workers int) (time.Duration, time.Duration, error) {
	js, err := s.connect()
	if err != nil {
		return 0, 0, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "bd", Subjects: []string{"bd.run"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage}); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	err = parallelN(n, workers, func(i int) error {
		_, err := js.Publish(ctx, "bd.run", strconv.AppendInt(nil, int64(i), 10))
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	inserted := time.Now()
	wjs, err := s.connect()
	if err != nil {
		return 0, 0, err
	}
	cons, err := wjs.CreateOrUpdateConsumer(ctx, "bd", jetstream.ConsumerConfig{Durable: "workers",
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000})
	if err != nil {
		return 0, 0, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(workers))
	if err != nil {
		return 0, 0, err
	}
	var done atomic.Int64
	all := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := it.Next()
				if err != nil {
					return
				}
				_ = m.Ack()
				if done.Add(1) == int64(n) {
					close(all)
				}
			}
		}()
	}
	<-all
	work := time.Since(inserted)
	it.Stop()
	wg.Wait()
	return inserted.Sub(start), work, nil
}

func (s *natsSystem) roundTrip(ctx context.Context, samples, workers int) ([]time.Duration, error) {
	ds := make([]time.Duration, samples)
	if !s.jobs {
		p, err := s.newProbe(ctx, workers)
		if err != nil {
			return nil, err
		}
		defer p.stop()
		for i := range ds {
			start := time.Now()
			if err := p.submitWait(ctx, strconv.Itoa(i)); err != nil {
				return nil, err
			}
			ds[i] = time.Since(start)
		}
		return ds, nil
	}
	js, err := s.connect()
	if err != nil {
		return nil, err
	}
	wjs, err := s.connect()
	if err != nil {
		return nil, err
	}
	ns := natsjobs.WithNamespace("rt")
	w, err := natsjobs.NewWorker(ctx, wjs, noopRegistry(), ns, natsjobs.WithConcurrency(workers))
	if err != nil {
		return nil, err
	}
	defer w.Shutdown(ctx)
	c, err := natsjobs.NewClient(ctx, js, ns)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	noop := natsjobs.Declare[int, int](noopName)
	for i := range ds {
		start := time.Now()
		if _, err := noop.Submit(ctx, c, strconv.Itoa(i), i).Wait(ctx); err != nil {
			return nil, err
		}
		ds[i] = time.Since(start)
	}
	return ds, nil
}

// probe is the raw round trip: publish, a consumer writes the result to a
// KV bucket and acks, one watcher resolves the waiter.
type probe struct {
	js      jetstream.JetStream
	mu      sync.Mutex
	waiters map[string]chan struct{}
	stop    func()
}

func (s *natsSystem) newProbe(ctx context.Context, workers int) (*probe, error) {
	js, err := s.connect()
	if err != nil {
		return nil, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "rt", Subjects: []string{"rt.run"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage}); err != nil {
		return nil, err
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "rt_results", Storage: jetstream.FileStorage})
	if err != nil {
		return nil, err
	}
	p := &probe{js: js, waiters: map[string]chan struct{}{}}
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			p.mu.Lock()
			ch := p.waiters[e.Key()]
			delete(p.waiters, e.Key())
			p.mu.Unlock()
			if ch != nil {
				close(ch)
			}
		}
	}()
	wjs, err := s.connect()
	if err != nil {
		return nil, err
	}
	wkv, err := wjs.KeyValue(ctx, "rt_results")
	if err != nil {
		return nil, err
	}
	cons, err := wjs.CreateOrUpdateConsumer(ctx, "rt", jetstream.ConsumerConfig{Durable: "workers",
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000})
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(workers))
	if err != nil {
		return nil, err
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := it.Next()
				if err != nil {
					return
				}
				if _, err := wkv.Put(context.Background(), string(m.Data()), m.Data()); err != nil {
					_ = m.Nak()
					continue
				}
				_ = m.Ack()
			}
		}()
	}
	p.stop = func() { it.Stop(); _ = w.Stop(); wg.Wait() }
	return p, nil
}

func (p *probe) submitWait(ctx context.Context, id string) error {
	ch := make(chan struct{})
	p.mu.Lock()
	p.waiters[id] = ch
	p.mu.Unlock()
	if _, err := p.js.Publish(ctx, "rt.run", []byte(id)); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
