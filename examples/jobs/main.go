// Command jobs shows named jobs running on worker processes through NATS
// JetStream with natsjobs: a producer submits a small DAG of jobs, the
// workers run them (a job reads its dependencies' results by ID), and the
// producer prints each result as its future resolves.
//
// With no flags it starts an embedded NATS server (JetStream in a
// temporary directory), two worker processes and the producer:
//
//	go run ./examples/jobs
//
// With -nats it joins an existing deployment (nats-server 2.12 or later
// with JetStream) instead; with -worker it runs one worker only, until
// its standard input closes or it is interrupted, so the workers can run
// on other machines:
//
//	go run ./examples/jobs -nats nats://host:4222 -ns demo -worker w1   # on each worker machine
//	go run ./examples/jobs -nats nats://host:4222 -ns demo -workers 0   # the producer alone
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	url := flag.String("nats", "", "URL of an existing NATS deployment with JetStream (default: start an embedded server)")
	ns := flag.String("ns", fmt.Sprintf("jobsdemo%d", time.Now().Unix()), "namespace of the streams and buckets")
	worker := flag.String("worker", "", "run only a worker with this name")
	workers := flag.Int("workers", 2, "worker processes to start beside the producer")
	flag.Parse()

	var err error
	switch {
	case *worker != "" && *url == "":
		err = fmt.Errorf("-worker needs -nats")
	case *worker != "":
		err = runWorker(*url, *ns, *worker)
	default:
		err = runDemo(*url, *ns, *workers)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "jobs:", err)
		os.Exit(1)
	}
}
