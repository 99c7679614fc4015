package natsjobs_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qpool/qpool/natsjobs"
)

// The multi-process tests re-execute the test binary with childEnv set to
// a mode; TestMain then runs childMain instead of the tests.
const (
	childEnv = "QPOOL_NATSJOBS_CHILD"
	urlEnv   = "QPOOL_NATSJOBS_URL"
	nsEnv    = "QPOOL_NATSJOBS_NS"
	nameEnv  = "QPOOL_NATSJOBS_NAME"
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
	if err := runChild(mode); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// runChild runs a worker (mode "worker") that prints "start <id>" as each
// job starts, until its stdin closes; then it shuts down and exits.
func runChild(mode string) error {
	if mode != "worker" {
		return fmt.Errorf("unknown mode %q", mode)
	}
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
	w, err := natsjobs.NewWorker(ctx, js, reg, natsjobs.WithNamespace(os.Getenv(nsEnv)),
		natsjobs.WithWorkerName(name), natsjobs.WithConcurrency(4), natsjobs.WithAckWait(time.Second))
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
