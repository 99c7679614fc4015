// Command otel runs a pool with a steady trickle of jobs (a few of them
// failing and retried) and serves its metrics for Prometheus at /metrics,
// through the OpenTelemetry SDK and its Prometheus exporter, with the
// qpool/otel module observing the pool.
//
// Run it from the repository root and scrape it:
//
//	go run ./examples/otel -addr 127.0.0.1:2112
//	curl -s http://127.0.0.1:2112/metrics | grep qpool_
//
// The Prometheus exporter and its client library are this example's
// dependencies, not the otel module's: the module needs only the
// OpenTelemetry API, and the application picks the SDK and exporters.
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
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"github.com/qpool/qpool"
	qpoolotel "github.com/qpool/qpool/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:2112", "address to serve /metrics on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err == nil {
		err = run(ctx, ln, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "otel:", err)
		os.Exit(1)
	}
}

// run serves /metrics on ln and feeds the pool until ctx ends.
func run(ctx context.Context, ln net.Listener, out io.Writer) (err error) {
	// The exporter is a metric reader: Prometheus's scrape makes it collect,
	// which is when the pool's gauges are read.
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		// Prometheus names: dots become underscores, the unit and _total
		// are appended (qpool.job.duration -> qpool_job_duration_seconds).
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
	)
	if err != nil {
		return err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer func() { err = errors.Join(err, mp.Shutdown(context.Background())) }()

	// Spans go to the global TracerProvider, a no-op until the application
	// sets one (otel.SetTracerProvider with an OTLP exporter, say).
	tel, err := qpoolotel.New(qpoolotel.WithMeterProvider(mp), qpoolotel.WithPoolName("demo"))
	if err != nil {
		return err
	}
	p := qpool.NewPool(qpool.WithWorkers(4), qpool.WithObserver(tel.Observer()))
	defer p.Close()
	unregister, err := tel.Register(p)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, unregister()) }()

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(out, "metrics at http://%s/metrics\n", ln.Addr())

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := srv.Shutdown(shutdown)
			if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
				err = errors.Join(err, serr)
			}
			return err
		case <-tick.C:
		}
		// A job of 0-50ms; one in five fails its first attempt and is retried.
		flaky := rand.IntN(5) == 0
		tries := 0
		qpool.Submit(p, "job-"+strconv.Itoa(i), func(ctx context.Context) (struct{}, error) {
			tries++
			select {
			case <-time.After(time.Duration(rand.IntN(50)) * time.Millisecond):
			case <-ctx.Done():
				return struct{}{}, ctx.Err()
			}
			if flaky && tries == 1 {
				return struct{}{}, errors.New("flaky")
			}
			return struct{}{}, nil
		}, qpool.WithRetry(2, 10*time.Millisecond))
	}
}
