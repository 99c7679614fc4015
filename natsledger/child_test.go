package natsledger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsledger"
)

// The multi-process tests re-execute the test binary with childEnv set to
// a mode; TestMain then runs childMain instead of the tests.
const (
	childEnv = "QPOOL_NATSLEDGER_CHILD"
	urlEnv   = "QPOOL_NATSLEDGER_URL"
	idEnv    = "QPOOL_NATSLEDGER_ID"
	procEnv  = "QPOOL_NATSLEDGER_PROC"
	jobsEnv  = "QPOOL_NATSLEDGER_JOBS"
	totalEnv = "QPOOL_NATSLEDGER_TOTAL"
)

// childReport is what a child prints on stdout: the history and state it
// ended with.
type childReport struct {
	History []childChange  `json:"history"`
	State   map[string]any `json:"state"`
}

type childChange struct {
	Sequence uint64 `json:"seq"`
	Key      string `json:"key"`
	Value    any    `json:"value"`
	Deleted  bool   `json:"deleted"`
}

func childMain(mode string) int {
	run := runChild
	if mode == "server" {
		run = func(string) error { return runServer() }
	}
	if err := run(mode); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

func runChild(mode string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := nats.Connect(os.Getenv(urlEnv), connOptions()...)
	if err != nil {
		return err
	}
	defer nc.Close()
	id := os.Getenv(idEnv)
	// A small cache makes the history read below go to the stream.
	l, err := natsledger.Open(ctx, nc, id, natsledger.WithCacheSize(16))
	if err != nil {
		return err
	}
	e, err := qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(l))
	if err != nil {
		return err
	}
	defer e.Close()
	switch mode {
	case "update":
		proc, _ := strconv.Atoi(os.Getenv(procEnv))
		jobs, _ := strconv.Atoi(os.Getenv(jobsEnv))
		if err := updateFromPool(e, proc, jobs); err != nil {
			return err
		}
	case "loop":
		return updateForever(e)
	}
	total, _ := strconv.ParseUint(os.Getenv(totalEnv), 10, 64)
	if err := waitFor(ctx, l, total); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(report(e))
}

// updateFromPool runs jobs jobs on a pool of its own; each increments the
// shared counter and sets a key of its own, then reads its own write.
func updateFromPool(e *qpool.Entanglement, proc, jobs int) error {
	p := qpool.NewPool(qpool.WithWorkers(4))
	defer p.Close()
	futures := make([]*qpool.Future[any], jobs)
	for i := range jobs {
		futures[i] = p.Schedule(fmt.Sprintf("job-%d", i), func() (any, error) {
			err := e.Update("counter", func(old any, _ bool) (any, error) {
				n, _ := old.(float64)
				return n + 1, nil
			})
			if err != nil {
				return nil, err
			}
			key := fmt.Sprintf("p%d-%d", proc, i)
			if err := e.UpdateState(key, float64(i)); err != nil {
				return nil, err
			}
			if v, ok := e.GetState(key); !ok || v != float64(i) {
				return nil, fmt.Errorf("read-your-own-writes: %s = %v, %v", key, v, ok)
			}
			return nil, nil
		})
	}
	for _, f := range futures {
		if _, err := f.Wait(context.Background()); err != nil {
			return err
		}
	}
	return nil
}

// updateForever updates from four goroutines until the process is killed,
// saying "ready" on stdout once changes are flowing.
func updateForever(e *qpool.Entanglement) error {
	errs := make(chan error, 4)
	for w := range 4 {
		go func() {
			for n := 0; ; n++ {
				if err := e.UpdateState(fmt.Sprintf("k%d", w), n); err != nil {
					errs <- err
					return
				}
				if w == 0 && n == 20 {
					fmt.Println("ready")
				}
			}
		}()
	}
	return <-errs
}

// waitFor waits until the ledger holds total changes.
func waitFor(ctx context.Context, l qpool.Ledger, total uint64) error {
	for {
		ch := l.Changed()
		if _, next := l.Bounds(); next >= total {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			_, next := l.Bounds()
			return fmt.Errorf("%d of %d changes: %w", next, total, ctx.Err())
		}
	}
}

func report(e *qpool.Entanglement) childReport {
	r := childReport{State: e.Snapshot()}
	for _, c := range e.GetStateHistory(0) {
		r.History = append(r.History, childChange{c.Sequence, c.Key, c.Value, c.Deleted})
	}
	return r
}
