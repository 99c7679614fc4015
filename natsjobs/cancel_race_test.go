package natsjobs_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool/natsjobs"
)

// TestCancelRacingTheOutcomeOnACluster: on a 3-server cluster with
// WithReplicas(3), Client.Cancel through another server issued the moment
// Submit returned must find the job (docs/jobs.md: "Status/Cancel/Result/
// Handle.Future in one process after Submit returned ... in another" read
// the acknowledged write): it returns nil, never ErrUnknownJob nor a raw
// JetStream error, and the job's future resolves. (Written by an attack
// on the public API: the leader refuses a Cancel's create of the outcome
// while the worker's create is in process, and Cancel then read nothing and
// returned "key not found": 1 to 3 of 250 jobs in 6 of 8 runs.)
func TestCancelRacingTheOutcomeOnACluster(t *testing.T) {
	t.Run("Queued", func(t *testing.T) { cancelRace(t, false) })
	t.Run("Racing", func(t *testing.T) { cancelRace(t, true) })
}

// cancelRace: with workers, the cancel races the job's run and end
// (random sleeps): Cancel must return nil ("Cancel of a finished job does
// nothing and returns nil"), and the future resolves either way.
func cancelRace(t *testing.T, withWorkers bool) {
	servers := startCluster(t, 3)
	r3 := natsjobs.WithReplicas(3)
	ns := natsjobs.WithNamespace(namespace())
	clients := make([]*natsjobs.Client, len(servers))
	for i := range servers {
		clients[i] = newClusterClient(t, connectHome(t, servers, i), ns, r3)
	}
	h := natsjobs.Declare[clusterJob, string]("cjob")
	if withWorkers {
		h = newClusterFleet(t, servers, 3, ns, r3).cjob
	}
	ctx := wctx(t, 15*time.Second)
	n := 400
	if withWorkers {
		n = 250
	}
	var mu sync.Mutex
	var bad []string
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < n && ctx.Err() == nil; i += 8 {
				id := fmt.Sprint("k", i)
				f := h.Submit(ctx, clients[i%3], id, clusterJob{ID: id, Sleep: rand.IntN(4)})
				if withWorkers {
					time.Sleep(time.Duration(rand.IntN(5000)) * time.Microsecond)
				}
				select {
				case <-f.Done():
					_, err := f.Wait(ctx)
					if withWorkers && err == nil {
						continue // finished before the Cancel: nothing to race
					}
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s: Submit failed: %v", id, err))
					mu.Unlock()
					continue
				default:
				}
				if err := clients[(i+1+i%2)%3].Cancel(ctx, id); err != nil {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("Cancel(%s) via another server after Submit returned: %v (ErrUnknownJob %v)", id, err, errors.Is(err, natsjobs.ErrUnknownJob)))
					mu.Unlock()
					continue
				}
				if _, err := f.Wait(ctx); !errors.Is(err, context.Canceled) && !(withWorkers && err == nil) {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s: cancelled job's future: %v", id, err))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("watchdog")
	}
	if len(bad) > 0 {
		t.Fatalf("%d of %d jobs: %v", len(bad), n, bad[:min(len(bad), 5)])
	}
}

// TestCancelRacingTheRunOneServer: one server; Client.Cancel (through
// another client) racing the job's run and end must return nil: the job was
// submitted, so never ErrUnknownJob, and "Cancel of a finished job does
// nothing and returns nil".
func TestCancelRacingTheRunOneServer(t *testing.T) {
	ts := startServer(t)
	ns := natsjobs.WithNamespace(namespace())
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "c", func(ctx context.Context, in int) (int, error) {
		select {
		case <-time.After(time.Duration(in) * time.Microsecond):
		case <-ctx.Done():
		}
		return in, nil
	})
	c0 := newClient(t, ts.connect(t), ns, quiet)
	c1 := newClient(t, ts.connect(t), ns, quiet)
	for range 2 {
		newWorker(t, ts.connect(t), reg, ns, quiet, natsjobs.WithConcurrency(8))
	}
	ctx := wctx(t, 15*time.Second)
	var mu sync.Mutex
	var bad []string
	var wg sync.WaitGroup
	const n = 600
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < n && ctx.Err() == nil; i += 8 {
				id := fmt.Sprint("c", i)
				f := h.Submit(ctx, c0, id, rand.IntN(3000))
				time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
				if err := c1.Cancel(ctx, id); err != nil {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("Cancel(%s): %v (ErrUnknownJob %v)", id, err, errors.Is(err, natsjobs.ErrUnknownJob)))
					mu.Unlock()
				}
				if _, err := f.Wait(ctx); err != nil && !errors.Is(err, context.Canceled) {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s: future: %v", id, err))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("watchdog")
	}
	if len(bad) > 0 {
		t.Fatalf("%d of %d jobs: %v", len(bad), n, bad[:min(len(bad), 5)])
	}
}
