package natsledger_test

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsledger"
)

// The benchmarks compare the ledger with raw JetStream doing the same work
// against the same embedded server, over the same TCP loopback transport.
// The machine is shared and noisy, so each benchmark interleaves them:
// every iteration runs one round of each side, in rotating order, timing
// each in wall-clock and in CPU time of the whole process (client and
// embedded server), and reports each side's figures and the ratio of the
// ledger's time to the raw side's (below 1 is faster). Where it helps,
// a third side, "echo", is raw JetStream plus what read-your-own-writes
// inherently costs: an ordered consumer that receives every message back.
// See docs/distributed.md.

// side is one contender of an interleaved benchmark.
type side struct {
	name      string
	round     func()
	wall, cpu time.Duration
}

// cpuTime returns the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// interleave runs every side once per iteration, rotating the order, and
// reports per unit (an operation, a message): each side's wall time and,
// for rounds of many units, CPU time (rusage is too coarse for one
// operation), and "ratio", the ledger's wall time over raw's. sides[0]
// must be raw and the ledger must be named "ledger".
func interleave(b *testing.B, units int, unit string, sides ...*side) {
	for i := 0; b.Loop(); i++ {
		for k := range sides {
			sd := sides[(i+k)%len(sides)]
			start, startCPU := time.Now(), cpuTime()
			sd.round()
			sd.wall += time.Since(start)
			sd.cpu += cpuTime() - startCPU
		}
	}
	n := float64(b.N * units)
	for _, sd := range sides {
		b.ReportMetric(float64(sd.wall.Nanoseconds())/n, sd.name+"-ns/"+unit)
		if units > 1 {
			b.ReportMetric(float64(sd.cpu.Nanoseconds())/n, sd.name+"-cpu-ns/"+unit)
		}
		if sd.name == "ledger" {
			b.ReportMetric(float64(sd.wall)/float64(sides[0].wall), "ratio")
		}
	}
}

// echo counts the messages an ordered consumer receives from a stream.
type echo struct{ got chan struct{} }

// newEcho consumes stream from its end with an ordered consumer, as the
// ledger's replica feed does.
func newEcho(b *testing.B, js jetstream.JetStream, stream string) *echo {
	cons, err := js.OrderedConsumer(context.Background(), stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		b.Fatal(err)
	}
	e := &echo{got: make(chan struct{}, 1<<16)}
	cc, err := cons.Consume(func(jetstream.Msg) { e.got <- struct{}{} }, jetstream.PullMaxMessages(1024))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cc.Stop)
	return e
}

// wait waits for n messages.
func (e *echo) wait(n int) {
	for range n {
		<-e.got
	}
}

// benchStream creates a raw stream and returns a subject in it.
func benchStream(b *testing.B, js jetstream.JetStream, name string) string {
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.FileStorage,
	})
	if err != nil {
		b.Fatal(err)
	}
	return name + ".k"
}

func benchEntanglement(b *testing.B, nc *nats.Conn, id string, opts ...natsledger.Option) *qpool.Entanglement {
	l := open(b, nc, id, opts...)
	e, err := qpool.OpenEntanglement(context.Background(), id, nil, 0, qpool.WithLedger(l))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	return e
}

func newJS(b *testing.B, nc *nats.Conn) jetstream.JetStream {
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	return js
}

// BenchmarkSyncUpdate: one writer, each update waiting for its
// acknowledgement: js.Publish against UpdateState (which waits for its
// own change to reach the local replica), and "echo", js.Publish with a
// message ID followed by waiting for an ordered consumer to receive it.
func BenchmarkSyncUpdate(b *testing.B) {
	nc := connect(b, startServer(b).url())
	js := newJS(b, nc)
	rawSubj := benchStream(b, js, "rawsync")
	echoSubj := benchStream(b, js, "echosync")
	ech := newEcho(b, js, "echosync")
	e := benchEntanglement(b, nc, "sync")
	ctx := context.Background()
	i := 0
	interleave(b, 1, "op",
		&side{name: "raw", round: func() {
			i++
			if _, err := js.Publish(ctx, rawSubj, fmt.Appendf(nil, "%d", i)); err != nil {
				b.Fatal(err)
			}
		}},
		&side{name: "ledger", round: func() {
			if err := e.UpdateState("k", i); err != nil {
				b.Fatal(err)
			}
		}},
		&side{name: "echo", round: func() {
			if _, err := js.Publish(ctx, echoSubj, fmt.Appendf(nil, "%d", i), jetstream.WithMsgID(nuid.Next())); err != nil {
				b.Fatal(err)
			}
			ech.wait(1)
		}},
	)
}

// BenchmarkConcurrentUpdate: rounds of 2,000 updates: raw asynchronous
// publishing from one goroutine, then waiting for every ack, against
// UpdateState from 16, 64 or 256 goroutines; "echo" is the raw side with
// message IDs, also waiting for an ordered consumer to receive every
// message; "rawid" is the raw side with message IDs and no consumer;
// "blocking" is the same writers as the ledger's, each publishing
// asynchronously with a message ID and waiting for its own ack, with no
// replica at all: the least any blocking UpdateState with deduplication
// costs. ns per update; a ratio of 1.25 is 0.8 × raw throughput.
func BenchmarkConcurrentUpdate(b *testing.B) {
	const perRound = 2000
	for _, writers := range []int{16, 64, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			nc := connect(b, startServer(b).url())
			js := newJS(b, nc)
			rawSubj := benchStream(b, js, "rawasync")
			echoSubj := benchStream(b, js, "echoasync")
			blockSubj := benchStream(b, js, "blockasync")
			idSubj := benchStream(b, js, "idasync")
			ech := newEcho(b, js, "echoasync")
			e := benchEntanglement(b, nc, "concurrent")
			interleave(b, perRound, "update",
				&side{name: "raw", round: func() { publishAll(b, js, rawSubj, perRound, false) }},
				&side{name: "ledger", round: func() {
					var wg sync.WaitGroup
					for w := range writers {
						wg.Go(func() {
							for n := w; n < perRound; n += writers {
								if err := e.UpdateState("k", n); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					wg.Wait()
				}},
				&side{name: "echo", round: func() {
					publishAll(b, js, echoSubj, perRound, true)
					ech.wait(perRound)
				}},
				&side{name: "rawid", round: func() { publishAll(b, js, idSubj, perRound, true) }},
				&side{name: "blocking", round: func() {
					var wg sync.WaitGroup
					for w := range writers {
						wg.Go(func() {
							for n := w; n < perRound; n += writers {
								if err := publishAndWait(js, blockSubj, n); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					wg.Wait()
				}},
			)
		})
	}
}

// publishAndWait publishes one message with a message ID and waits for
// its acknowledgement.
// publishAll publishes n messages to subj asynchronously, each with a
// message ID when withID is set, and waits for every acknowledgement.
func publishAll(b *testing.B, js jetstream.JetStream, subj string, n int, withID bool) {
	b.Helper()
	for i := range n {
		data := fmt.Appendf(nil, "%d", i)
		var err error
		if withID { // the same calls as a user's, no option slice of ours
			_, err = js.PublishAsync(subj, data, jetstream.WithMsgID(nuid.Next()))
		} else {
			_, err = js.PublishAsync(subj, data)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
}

func publishAndWait(js jetstream.JetStream, subj string, n int) error {
	f, err := js.PublishAsync(subj, fmt.Appendf(nil, "%d", n), jetstream.WithMsgID(nuid.Next()))
	if err != nil {
		return err
	}
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	}
}

// BenchmarkHistoryRead reads a 20,000-change history from the stream: a
// raw ordered consumer against GetStateHistory(0) with a replica cache too
// small to help, so both go to the server. ns per change.
func BenchmarkHistoryRead(b *testing.B) {
	const n = 20_000
	nc := connect(b, startServer(b).url())
	id := "history"
	e := benchEntanglement(b, nc, id, natsledger.WithCacheSize(16))
	fill(b, e, n)
	js := newJS(b, nc)
	ctx := context.Background()
	interleave(b, n, "change",
		&side{name: "raw", round: func() {
			cons, err := js.OrderedConsumer(ctx, natsledger.StreamName(id), jetstream.OrderedConsumerConfig{})
			if err != nil {
				b.Fatal(err)
			}
			msgs, err := cons.Messages()
			if err != nil {
				b.Fatal(err)
			}
			for range n {
				if _, err := msgs.Next(); err != nil {
					b.Fatal(err)
				}
			}
			msgs.Stop()
		}},
		&side{name: "ledger", round: func() {
			if h := e.GetStateHistory(0); len(h) != n {
				b.Fatalf("%d changes, want %d", len(h), n)
			}
		}},
	)
}

// fill records n small changes from 64 goroutines.
func fill(b *testing.B, e *qpool.Entanglement, n int) {
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			for i := w; i < n; i += 64 {
				if err := e.UpdateState(fmt.Sprintf("k%d", i%100), i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
