package main

import (
	"context"
	"fmt"
	"time"

	"github.com/qpool/qpool/natsjobs"
)

// The job types. Producers need only these declarations; workers register
// functions under the same names.
var (
	fetch   = natsjobs.Declare[int, int]("fetch")       // fetch a partition: its size
	process = natsjobs.Declare[int, int]("process")     // process a fetched partition
	report  = natsjobs.Declare[[]int, string]("report") // sum the processed partitions
)

// register adds the handlers of a worker named name to reg. c is the
// worker's own client: a job reads the results of its dependencies by ID.
func register(reg *natsjobs.Registry, c *natsjobs.Client, name string, log func(string, ...any)) {
	natsjobs.Register(reg, fetch.Name(), func(ctx context.Context, part int) (int, error) {
		log("%s: fetch %d", name, part)
		select {
		case <-time.After(time.Duration(100*part) * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return 10 * part, nil
	})
	natsjobs.Register(reg, process.Name(), func(ctx context.Context, part int) (int, error) {
		size, err := fetch.Future(ctx, c, fetchID(part)).Wait(ctx) // succeeded: a dependency
		if err != nil {
			return 0, err
		}
		log("%s: process %d (size %d)", name, part, size)
		return size * size, nil
	})
	natsjobs.Register(reg, report.Name(), func(ctx context.Context, parts []int) (string, error) {
		sum := 0
		for _, p := range parts {
			v, err := process.Future(ctx, c, processID(p)).Wait(ctx)
			if err != nil {
				return "", err
			}
			sum += v
		}
		log("%s: report of %d partitions", name, len(parts))
		return fmt.Sprintf("sum of squares = %d", sum), nil
	})
}

func fetchID(p int) string   { return fmt.Sprintf("fetch-%d", p) }
func processID(p int) string { return fmt.Sprintf("process-%d", p) }
