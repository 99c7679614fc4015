package natsjobs_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool"
	"github.com/qpool/qpool/natsjobs"
)

// The multi-process tests re-execute the test binary with childEnv set to
// a mode; TestMain then runs childMain instead of the tests.
const (
	childEnv = "QPOOL_NATSJOBS_CHILD"
	urlEnv   = "QPOOL_NATSJOBS_URL"
	nsEnv    = "QPOOL_NATSJOBS_NS"
	nameEnv  = "QPOOL_NATSJOBS_NAME"
	concEnv  = "QPOOL_NATSJOBS_CONC"  // a worker's concurrency (default 4)
	chainEnv = "QPOOL_NATSJOBS_CHAIN" // mode chain: prefix,length,parity,failhead
)

// workIn is the input of the children's "work" job.
type workIn struct {
	ID    string `json:"id"`
	Sleep int    `json:"sleep_ms"`
}

// chaosIn is the input of the children's "chaos" job: it fails with
// probability FailP, or panics.
type chaosIn struct {
	ID    string  `json:"id"`
	FailP float64 `json:"fail_p"`
	Panic bool    `json:"panic"`
	Sleep int     `json:"sleep_ms"`
}

func childMain(mode string) int {
	run := runChild
	if mode == "server" {
		run = func(string) error { return runClusterServer() } // cluster_test.go
	}
	if err := run(mode); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// runChild runs a worker (mode "worker") that prints "start <id>" as each
// job starts, until its stdin closes; then it shuts down and exits. Mode
// "chain" submits its half of a dependency chain (see chainLinks), prints
// "submitted" and exits.
func runChild(mode string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := nats.Connect(os.Getenv(urlEnv), connOptions()...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	switch mode {
	case "worker":
	case "chain":
		return submitChainHalf(ctx, js)
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	name := os.Getenv(nameEnv)
	var outMu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	reg := natsjobs.NewRegistry()
	natsjobs.Register(reg, "work", func(ctx context.Context, in workIn) (string, error) {
		outMu.Lock()
		fmt.Fprintln(out, "start", in.ID)
		out.Flush()
		outMu.Unlock()
		select {
		case <-time.After(time.Duration(in.Sleep) * time.Millisecond):
		case <-ctx.Done():
			outMu.Lock()
			fmt.Fprintln(out, "stop", in.ID, context.Cause(ctx))
			out.Flush()
			outMu.Unlock()
			return "", ctx.Err()
		}
		return name, nil
	})
	natsjobs.Register(reg, "chaos", func(ctx context.Context, in chaosIn) (string, error) {
		outMu.Lock()
		fmt.Fprintln(out, "start", in.ID)
		out.Flush()
		outMu.Unlock()
		if in.Panic {
			panic("chaos " + in.ID)
		}
		select {
		case <-time.After(time.Duration(in.Sleep) * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		if rand.Float64() < in.FailP {
			return "", fmt.Errorf("chaos %s: transient", in.ID)
		}
		return in.ID, nil
	})
	conc, err := strconv.Atoi(os.Getenv(concEnv))
	if err != nil {
		conc = 4
	}
	w, err := natsjobs.NewWorker(ctx, js, reg, natsjobs.WithNamespace(os.Getenv(nsEnv)),
		natsjobs.WithWorkerName(name), natsjobs.WithConcurrency(conc), natsjobs.WithAckWait(time.Second))
	if err != nil {
		return err
	}
	outMu.Lock()
	fmt.Fprintln(out, "ready")
	out.Flush()
	outMu.Unlock()
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	return w.Shutdown(sctx)
}

// chainLink is link i of a chain of "chaos" jobs: ID prefix-i, depending
// on link i-1; the head fails (one attempt) if failHead.
func chainLink(prefix string, i int, failHead bool) (id string, in chaosIn, opts []qpool.JobOption) {
	id = fmt.Sprintf("%s-%d", prefix, i)
	in = chaosIn{ID: id}
	opts = []qpool.JobOption{qpool.WithRetry(1, 0)}
	if i == 0 && failHead {
		in.FailP = 1
	}
	if i > 0 {
		opts = append(opts, qpool.WithDependencies(fmt.Sprintf("%s-%d", prefix, i-1)))
	}
	return id, in, opts
}

// submitChainHalf submits the links of the chain chainEnv describes whose
// index has the given parity, last link first (so most are submitted
// before the job they depend on).
func submitChainHalf(ctx context.Context, js jetstream.JetStream) error {
	var prefix string
	var n, parity int
	var failHead bool
	f := strings.Split(os.Getenv(chainEnv), ",")
	if len(f) != 4 {
		return fmt.Errorf("bad %s %q", chainEnv, os.Getenv(chainEnv))
	}
	prefix = f[0]
	n, _ = strconv.Atoi(f[1])
	parity, _ = strconv.Atoi(f[2])
	failHead = f[3] == "1"
	c, err := natsjobs.NewClient(ctx, js, natsjobs.WithNamespace(os.Getenv(nsEnv)))
	if err != nil {
		return err
	}
	defer c.Close()
	chaos := natsjobs.Declare[chaosIn, string]("chaos")
	for i := n - 1; i >= 0; i-- {
		if i%2 != parity {
			continue
		}
		id, in, opts := chainLink(prefix, i, failHead)
		fut := chaos.Submit(ctx, c, id, in, opts...)
		select {
		case <-fut.Done():
			// Resolved at once: a submit error, or (the chain's failure
			// reached it meanwhile) an outcome, which is fine.
			var re *natsjobs.RemoteError
			if _, err := fut.Wait(ctx); err != nil && !errors.As(err, &re) && !errors.Is(err, qpool.ErrDependencyFailed) {
				return fmt.Errorf("submit %s: %w", id, err)
			}
		default:
		}
	}
	fmt.Println("submitted")
	return nil
}
