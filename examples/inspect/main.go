// Command inspect runs a pool with a steady trickle of jobs and an
// entanglement that the jobs update, and serves the inspector's live page
// for them. It prints the URL to open.
//
// Run it from the repository root:
//
//	go run ./examples/inspect            # http://127.0.0.1:8080/qpool/
//	go run ./examples/inspect -addr :9090
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/inspect"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to serve the inspector on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err == nil {
		err = run(ctx, ln, os.Stdout, 300*time.Millisecond)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "inspect:", err)
		os.Exit(1)
	}
}

// run serves the inspector on ln and submits a job every interval until
// ctx ends, then shuts everything down in order: the server, the trickle,
// the pool, the entanglement.
func run(ctx context.Context, ln net.Listener, out io.Writer, interval time.Duration) error {
	pool := qpool.NewPool(qpool.WithWorkers(6),
		qpool.WithResultTTL(time.Minute),     // the page shows how a job ended for a minute
		qpool.WithObserver(qpool.Observer{}), // the pool records submission and start times
	)
	orders := qpool.NewEntanglement("orders", nil, time.Hour, qpool.WithRetention(1000))
	defer orders.Close()

	insp, err := inspect.New(
		inspect.WithPool("emails", pool),
		inspect.WithEntanglement(orders),
		inspect.WithCancel(), // a demo: in production, put it behind your auth first
	)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/qpool/", http.StripPrefix("/qpool", insp))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(out, "inspector: open http://%s/qpool/\n", ln.Addr())

	trickle(ctx, pool, orders, interval)

	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return errors.Join(err, pool.Shutdown(sctx))
}

// trickle submits an order's e-mail job every interval until ctx ends.
// Each job takes 2 to 6 intervals, sometimes fails and is retried, and records the
// order's progress in the entanglement.
func trickle(ctx context.Context, pool *qpool.Pool, orders *qpool.Entanglement, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		id := fmt.Sprintf("order-%d", n)
		_ = orders.UpdateState(id, "received")
		// The future is not waited for: the page shows how the job ends.
		qpool.Submit(pool, "email/"+id, func(jctx context.Context) (string, error) {
			_ = orders.UpdateState(id, "sending")
			select {
			case <-time.After(interval * time.Duration(2+rand.IntN(5))):
			case <-jctx.Done():
				return "", jctx.Err()
			}
			if rand.IntN(5) == 0 {
				return "", errors.New("smtp: 451 try again later")
			}
			return "sent", orders.UpdateState(id, "e-mail sent")
		}, qpool.WithRetry(2, 200*time.Millisecond), qpool.WithTimeout(10*time.Second))
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
