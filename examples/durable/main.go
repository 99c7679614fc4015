// Command durable shows an entanglement whose state and history live in a
// bbolt file and survive the process. Each run opens the file, prints the
// history it recovered, and then runs the remaining steps of a small job,
// one pool job per step, recording each step durably. Kill it (Ctrl-C, or
// kill -9) halfway and run it again: it resumes after the last recorded
// step. Once every step is done, a further run only prints the history;
// -reset starts over.
//
// Run it from the repository root:
//
//	go run ./examples/durable
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/boltledger"
)

// doneKey holds the last step recorded, declared with its type: the file
// keeps JSON, whose numbers decode as float64, and the key reads an int.
var doneKey = qpool.NewKey[int]("done")

// resultKey is the key of a step's result.
func resultKey(step int) qpool.Key[int] { return qpool.NewKey[int](fmt.Sprintf("result-%d", step)) }

// config is what one run does.
type config struct {
	path  string        // the bbolt file
	steps int           // how many steps the job has in all
	pause time.Duration // between steps, so there is time to kill the run
	reset bool          // delete the file first
}

func main() {
	var c config
	flag.StringVar(&c.path, "file", filepath.Join(os.TempDir(), "qpool-durable.db"), "bbolt file holding the entanglement")
	flag.IntVar(&c.steps, "steps", 10, "steps of the job in all")
	flag.DurationVar(&c.pause, "pause", 500*time.Millisecond, "pause between steps")
	flag.BoolVar(&c.reset, "reset", false, "delete the file and start over")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, c, os.Stdout)
	stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "durable:", err)
		os.Exit(1)
	}
}

// run opens the file and the entanglement, prints what it recovered, and
// runs the steps not done yet. It closes everything before it returns.
func run(ctx context.Context, c config, w io.Writer) (err error) {
	if c.reset {
		if err := os.Remove(c.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	db, err := boltledger.Open(c.path)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	l, err := db.Ledger("durable-demo")
	if err != nil {
		return err
	}
	e, err := qpool.OpenEntanglement(ctx, "durable-demo", nil, 24*time.Hour, qpool.WithLedger(l))
	if err != nil {
		return errors.Join(err, l.Close())
	}
	defer func() { err = errors.Join(err, e.Close()) }()
	printHistory(w, c.path, e)
	done, _, err := doneKey.Get(e)
	if err != nil {
		return err
	}
	if done >= c.steps {
		fmt.Fprintf(w, "all %d steps are done; run with -reset to start over\n", c.steps)
		return nil
	}
	fmt.Fprintf(w, "resuming at step %d of %d\n", done+1, c.steps)
	return runSteps(ctx, c, e, done, w)
}

// printHistory prints every change the file holds.
func printHistory(w io.Writer, path string, e *qpool.Entanglement) {
	h := e.GetStateHistory(0)
	fmt.Fprintf(w, "recovered %d changes from %s\n", len(h), path)
	for _, c := range h {
		fmt.Fprintf(w, "  #%d %s %s = %v\n", c.Sequence, c.Timestamp.Format(time.TimeOnly), c.Key, c.Value)
	}
}

// runSteps runs steps done+1 … c.steps, one pool job each, in order.
func runSteps(ctx context.Context, c config, e *qpool.Entanglement, done int, w io.Writer) error {
	pool := qpool.NewPool(qpool.WithWorkers(1), qpool.WithContext(ctx))
	defer pool.Close()
	for step := done + 1; step <= c.steps; step++ {
		if err := ctx.Err(); err != nil { // interrupted: the next run resumes here
			return err
		}
		f := qpool.Submit(pool, fmt.Sprintf("step-%d", step), func(ctx context.Context) (struct{}, error) {
			return struct{}{}, doStep(ctx, e, step, c.pause)
		})
		if _, err := f.Wait(ctx); err != nil {
			return err
		}
		fmt.Fprintf(w, "step %d recorded (on disk)\n", step)
	}
	return nil
}

// doStep does one step's work and records its result and progress. Each
// UpdateState returns only once the change is fsync'd.
func doStep(ctx context.Context, e *qpool.Entanglement, step int, pause time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-time.After(pause): // the "work"
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := resultKey(step).Set(e, step*step); err != nil {
		return err
	}
	return doneKey.Set(e, step)
}
