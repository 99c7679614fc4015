// Command monitor runs the coordinated-task use case of the entanglement
// reference document: a monitor job stores fresh "system-metrics" in an
// entanglement at every tick, and a scaler job reacts to each of them
// through Watch by resizing a worker pool. After a few rounds the scaler is
// done and the monitor's context is cancelled, so the program ends cleanly:
// the document's endless loop with time.Sleep would never let it.
//
// Run it from the repository root:
//
//	go run ./examples/monitor
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
		fmt.Fprintln(os.Stderr, "monitor:", err)
		os.Exit(1)
	}
}

const (
	// rounds is how many metrics the scaler handles before the program ends.
	rounds = 5
	// interval is the time between two rounds of the monitor.
	interval = 20 * time.Millisecond
)

var (
	// metrics is the state key the monitor writes and the scaler watches.
	metrics = qpool.NewKey[Metrics]("system-metrics")
	// scale is the state key where the scaler records the workers it set.
	scale = qpool.NewKey[int]("workers")
)

// Metrics is one round of measurements.
type Metrics struct {
	Round int
	CPU   int // percent
}

// loads is the CPU load the monitor reports, round after round.
var loads = []int{35, 72, 91, 64, 18}

// collectMetrics stands for measuring the system in round r (1-based).
func collectMetrics(r int) Metrics {
	return Metrics{Round: r, CPU: loads[(r-1)%len(loads)]}
}

// adjustScale returns how many workers a CPU load calls for.
func adjustScale(m Metrics) int {
	switch {
	case m.CPU >= 80:
		return 4
	case m.CPU >= 50:
		return 2
	default:
		return 1
	}
}

// run starts the monitor and the scaler, lets the scaler handle rounds
// metrics, then stops the monitor. It closes its pools and entanglement
// before it returns.
func run(ctx context.Context, w io.Writer) (err error) {
	pool := qpool.NewPool(qpool.WithWorkers(2), qpool.WithContext(ctx))
	defer pool.Close()
	workers := qpool.NewPool(qpool.WithWorkers(1)) // the pool being scaled
	defer workers.Close()
	jobs := []qpool.Job{{ID: "monitor"}, {ID: "scaler"}}
	e := qpool.NewEntanglement("coordination", jobs, time.Hour)
	defer func() { err = errors.Join(err, e.Close()) }()

	monitor := qpool.Submit(pool, "monitor", func(ctx context.Context) (int, error) {
		return monitorLoop(ctx, e)
	})
	scaler := qpool.Submit(pool, "scaler", func(ctx context.Context) (int, error) {
		return scaleLoop(ctx, e, workers, w)
	})

	// Both futures resolve without ctx: the jobs end when the pool's
	// context does, and the monitor when it is cancelled below.
	_, scaleErr := scaler.Wait(context.Background())
	monitor.Cancel()
	_, monErr := monitor.Wait(context.Background())
	if scaleErr != nil {
		return scaleErr
	}
	if !errors.Is(monErr, context.Canceled) {
		return fmt.Errorf("monitor: %w", monErr)
	}
	fmt.Fprintln(w, "monitor stopped; scaler done")
	return nil
}

// monitorLoop stores fresh metrics every interval until ctx ends, and
// returns how many rounds it ran with ctx's error.
func monitorLoop(ctx context.Context, e *qpool.Entanglement) (int, error) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for r := 1; ; r++ {
		if err := metrics.Set(e, collectMetrics(r)); err != nil {
			return r - 1, err
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return r, context.Cause(ctx)
		}
	}
}

// scaleLoop resizes workers for every metrics change, in order, until it
// has handled rounds of them. It returns how many it handled. The watch
// yields each Metrics the monitor stored, from the first, and ends with
// ctx's error (or the entanglement's end), which scaleLoop returns.
func scaleLoop(ctx context.Context, e *qpool.Entanglement, workers *qpool.Pool, w io.Writer) (int, error) {
	handled := 0
	for m, err := range metrics.Watch(ctx, e) {
		if err != nil {
			return handled, err
		}
		n := adjustScale(m)
		workers.Resize(n)
		if err := scale.Set(e, n); err != nil {
			return handled, err
		}
		fmt.Fprintf(w, "round %d: cpu %d%% -> %d worker(s)\n", m.Round, m.CPU, workers.Stats().MaxWorkers)
		if handled++; handled == rounds {
			return rounds, nil
		}
	}
	return handled, errors.New("monitor: the watch ended without a reason") // Watch always yields one
}
