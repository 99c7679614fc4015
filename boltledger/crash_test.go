package boltledger_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/boltledger"
	"github.com/qpool/qpool/ledgertest"
	"github.com/stretchr/testify/require"
)

// crashRounds is how many times TestCrashKill kills a writer.
const crashRounds = 24

// ack is one change a child reported as acknowledged.
type ack struct {
	ledger  string
	seq     uint64
	key     string
	deleted bool
	n       int
}

// TestCrashKill starts a writer process on one file, kills it with SIGKILL
// at a random moment (sometimes before it opened the file, mostly while
// eight goroutines append), and then checks the file: bbolt's consistency
// check passes, every change the child acknowledged in any round is there
// with its key and value, each history runs from 0 with no gap, and the
// stored state is the replay of the history. Sequences continue across the
// rounds.
func TestCrashKill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.db")
	var acked []ack
	for round := range crashRounds {
		acks := killWriter(t, path, time.Duration(rand.IntN(400))*time.Millisecond)
		acked = append(acked, acks...)
		t.Logf("round %d: %d changes acknowledged before the kill", round, len(acks))
		checkCrashFile(t, path, acked)
	}
	require.NotEmpty(t, acked, "no child ever acknowledged a change: the test checked nothing")
}

// killWriter runs a writer child on path, kills it after delay (counted
// from its start), and returns the changes it acknowledged.
func killWriter(t *testing.T, path string, delay time.Duration) []ack {
	t.Helper()
	cmd, in, out := startChild(t, roleWriter, path)
	defer in.Close()
	killer := time.AfterFunc(delay, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
	defer killer.Stop()
	var acks []ack
	for out.Scan() {
		line := out.Text()
		if line == "ready" {
			continue
		}
		var a ack
		_, err := fmt.Sscanf(line, "ack %s %d %s %t %d", &a.ledger, &a.seq, &a.key, &a.deleted, &a.n)
		require.NoError(t, err, "child printed %q", line)
		acks = append(acks, a)
	}
	err := cmd.Wait()
	if killer.Stop() {
		t.Fatalf("the writer ended before it was killed: %v", err)
	}
	return acks
}

// checkCrashFile opens the file after a kill and checks it against acked.
func checkCrashFile(t *testing.T, path string, acked []ack) {
	t.Helper()
	db, err := boltledger.Open(path)
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	require.NoError(t, db.Verify(), "bbolt consistency check")
	histories := make(map[string][]qpool.StateChange)
	for i := range crashEntanglement {
		id := crashID(i)
		l, err := db.Ledger(id)
		require.NoError(t, err)
		first, next := l.Bounds()
		require.Zero(t, first)
		h, err := l.Read(t.Context(), 0, 0)
		require.NoError(t, err)
		requireGapFree(t, h, 0, next)
		state, snapNext := l.Snapshot()
		require.Equal(t, next, snapNext)
		require.Equal(t, ledgertest.Replay(h), state, "state of %s is not the replay of its history", id)
		histories[id] = h
		require.NoError(t, l.Close())
	}
	for _, a := range acked {
		h := histories[a.ledger]
		require.Less(t, a.seq, uint64(len(h)), "acknowledged %s #%d is missing", a.ledger, a.seq)
		c := h[a.seq]
		require.Equal(t, a.key, c.Key, "%s #%d", a.ledger, a.seq)
		require.Equal(t, a.deleted, c.Deleted, "%s #%d", a.ledger, a.seq)
		if !a.deleted {
			require.Equal(t, float64(a.n), c.Value, "%s #%d", a.ledger, a.seq)
		}
	}
}
