package boltledger_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/boltledger"
	"github.com/stretchr/testify/require"
)

// The fault tests re-execute the test binary as a child process with
// childEnv naming its role and childPath the file.
const (
	childEnv  = "BOLTLEDGER_TEST_CHILD"
	childPath = "BOLTLEDGER_TEST_PATH"
)

// Child roles.
const (
	roleWriter = "writer" // write from several goroutines, print each acknowledged change
	roleHolder = "holder" // hold the file open until stdin closes
)

// Crash test shape: the writer's goroutines and entanglements.
const (
	crashWriters      = 8
	crashEntanglement = 2
	childLifetime     = 30 * time.Second // a child ends by itself if its parent forgets it
)

// runChild runs a child role and returns its exit code.
func runChild(role string) int {
	var err error
	switch role {
	case roleWriter:
		err = runWriter(os.Getenv(childPath))
	case roleHolder:
		err = runHolder(os.Getenv(childPath))
	default:
		err = fmt.Errorf("unknown child role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// crashID names the crash test's i-th entanglement.
func crashID(i int) string { return "crash-" + strconv.Itoa(i) }

// runWriter opens the file and appends to its ledgers from several
// goroutines until killed, printing "ack <ledger> <seq> <key> <deleted>
// <n>" after each Append returns. Each line is one write to stdout, so a
// kill never leaves half a line that could be misread.
func runWriter(path string) error {
	db, err := boltledger.Open(path, boltledger.WithLockTimeout(10*time.Second))
	if err != nil {
		return err
	}
	defer db.Close()
	ledgers := make([]*boltledger.Ledger, crashEntanglement)
	for i := range ledgers {
		if ledgers[i], err = db.Ledger(crashID(i)); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	ctx, cancel := context.WithTimeout(context.Background(), childLifetime)
	defer cancel()
	var wg sync.WaitGroup
	for w := range crashWriters {
		wg.Go(func() { writeUntil(ctx, ledgers, w) })
	}
	wg.Wait()
	return nil
}

// writeUntil appends sets and some deletions, alternating between the
// ledgers, until ctx ends or an Append fails.
func writeUntil(ctx context.Context, ledgers []*boltledger.Ledger, w int) {
	for n := 0; ctx.Err() == nil; n++ {
		i := (w + n) % len(ledgers)
		key := fmt.Sprintf("w%d-%d", w, n%5)
		m := qpool.Mutation{Key: key, Value: float64(n)}
		if n%7 == 6 {
			m = qpool.Mutation{Key: key, Delete: true}
		}
		c, err := ledgers[i].Append(ctx, m)
		if err != nil {
			return
		}
		_, _ = os.Stdout.WriteString(fmt.Sprintf("ack %s %d %s %t %d\n", crashID(i), c.Sequence, key, m.Delete, n))
	}
}

// runHolder opens the file, prints "holding" and keeps it open until stdin
// closes (or childLifetime passes).
func runHolder(path string) error {
	db, err := boltledger.Open(path)
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Println("holding")
	done := make(chan struct{})
	go func() { // ends when stdin closes or the process exits
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(childLifetime):
	}
	return nil
}

// startChild starts the test binary in role on path, with its stdin and
// stdout piped.
func startChild(t *testing.T, role, path string) (*exec.Cmd, io.WriteCloser, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, childPath+"="+path)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	return cmd, in, bufio.NewScanner(out)
}
