// Command distributed shows one entanglement shared by pools in several
// processes through NATS JetStream.
//
// With no flags it starts an embedded NATS server (JetStream in a
// temporary directory) and two worker processes, each with its own pool.
// The workers split eight partitions between them, count them with an
// atomic Update, and one of them aggregates the partitions once they all
// exist, waiting with Await rather than polling. At the end the parent
// prints the shared history.
//
//	go run ./examples/distributed
//
// With -nats it joins an existing deployment instead of starting a
// server; with -worker it runs one worker only, so the same program can
// run on several machines:
//
//	go run ./examples/distributed -nats nats://host:4222
//	go run ./examples/distributed -nats nats://host:4222 -id demo -worker 0 -workers 2   # machine A
//	go run ./examples/distributed -nats nats://host:4222 -id demo -worker 1 -workers 2   # machine B
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

const partitions = 8

func main() {
	url := flag.String("nats", "", "URL of an existing NATS deployment with JetStream (default: start an embedded server)")
	id := flag.String("id", fmt.Sprintf("distributed-demo-%d", time.Now().Unix()), "entanglement ID")
	worker := flag.Int("worker", -1, "run only this worker (0-based) instead of starting the workers")
	workers := flag.Int("workers", 2, "number of workers sharing the entanglement")
	flag.Parse()

	var err error
	switch {
	case *worker >= 0 && *url == "":
		err = fmt.Errorf("-worker needs -nats")
	case *worker >= 0:
		err = runWorker(*url, *id, *worker, *workers)
	default:
		err = runDemo(*url, *id, *workers)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "distributed:", err)
		os.Exit(1)
	}
}
