// Command pipeline runs the fetch → process pipeline of the entanglement
// reference document: two jobs of a pool share state through an
// entanglement, the process job runs only once the fetch job has succeeded
// (qpool.WithDependencies, not sleeping or polling), and the program ends by
// printing the entanglement's ledger, change by change.
//
// Run it from the repository root:
//
//	go run ./examples/pipeline
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
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
}

// errNoData is the process job's error when the fetched data is missing.
var errNoData = errors.New("no data to process")

// fetchData stands for reading records from a source.
func fetchData() []int { return []int{1, 2, 3, 4, 5} }

// The state keys the jobs share, each declared once with its type: a job
// reads back a []int whatever the ledger (a durable one keeps JSON).
var (
	status        = qpool.NewKey[string]("status")
	rawData       = qpool.NewKey[[]int]("raw-data")
	processedData = qpool.NewKey[[]int]("processed-data")
)

// processData squares every record.
func processData(records []int) []int {
	out := make([]int, len(records))
	for i, r := range records {
		out[i] = r * r
	}
	return out
}

// run builds the pool and the entanglement, runs both jobs, and prints what
// they returned and the ledger. It closes both before it returns.
func run(ctx context.Context, w io.Writer) (err error) {
	pool := qpool.NewPool(qpool.WithWorkers(2), qpool.WithContext(ctx))
	defer pool.Close()
	jobs := []qpool.Job{{ID: "data-fetch"}, {ID: "data-process"}}
	e := qpool.NewEntanglement("data-pipeline", jobs, time.Hour)
	defer func() { err = errors.Join(err, e.Close()) }()

	fetch := qpool.Submit(pool, "data-fetch", func(context.Context) ([]int, error) {
		return fetchJob(e)
	})
	process := qpool.Submit(pool, "data-process", func(context.Context) ([]int, error) {
		return processJob(e)
	}, qpool.WithDependencies("data-fetch"))

	raw, err := fetch.Wait(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "data-fetch: fetched %d records %v\n", len(raw), raw)
	processed, err := process.Wait(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "data-process: processed %d records %v\n", len(processed), processed)
	printLedger(w, e)
	return nil
}

// fetchJob stores the fetched records under "raw-data".
func fetchJob(e *qpool.Entanglement) ([]int, error) {
	if err := status.Set(e, "fetching"); err != nil {
		return nil, err
	}
	data := fetchData()
	if err := rawData.Set(e, data); err != nil {
		return nil, err
	}
	return data, nil
}

// processJob reads "raw-data", which its dependency on data-fetch
// guarantees is there, and stores the result under "processed-data".
func processJob(e *qpool.Entanglement) ([]int, error) {
	raw, ok, err := rawData.Get(e)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errNoData
	}
	if err := status.Set(e, "processing"); err != nil {
		return nil, err
	}
	processed := processData(raw)
	if err := processedData.Set(e, processed); err != nil {
		return nil, err
	}
	return processed, status.Set(e, "done")
}

// printLedger prints every change of e, oldest first.
func printLedger(w io.Writer, e *qpool.Entanglement) {
	fmt.Fprintf(w, "ledger of %q:\n", e.ID())
	for _, c := range e.GetStateHistory(0) {
		fmt.Fprintf(w, "  #%d %s = %v\n", c.Sequence, c.Key, c.Value)
	}
}
