package boltledger_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/boltledger"
	"github.com/qpool/qpool/ledgertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"
)

// watchdog turns a hang into a failure; no test asserts a duration.
const watchdog = 30 * time.Second

// TestLockedFile has a child process hold the file; Open fails with
// ErrLocked after the bounded wait instead of hanging, and succeeds once
// the child let go.
func TestLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "locked.db")
	cmd, stdin, out := startChild(t, roleHolder, path)
	require.True(t, out.Scan(), "the holder did not start")
	require.Equal(t, "holding", out.Text())

	done := make(chan error, 1)
	go func() { // ends when Open returns
		db, err := boltledger.Open(path, boltledger.WithLockTimeout(200*time.Millisecond))
		if err == nil {
			err = errors.Join(errors.New("Open succeeded on a held file"), db.Close())
		}
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, boltledger.ErrLocked)
	case <-time.After(watchdog):
		t.Fatal("Open hung on a locked file")
	}
	require.NoError(t, stdin.Close()) // the holder closes the file and exits
	require.NoError(t, cmd.Wait())
	db, err := boltledger.Open(path)
	require.NoError(t, err)
	require.NoError(t, db.Close())
}

// TestForeignAndCorruptFiles opens files that are not boltledger files:
// each gets a clear error wrapping a sentinel, never a panic.
func TestForeignAndCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign.db")
	b, err := bbolt.Open(foreign, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, b.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket([]byte("someone-elses"))
		return err
	}))
	require.NoError(t, b.Close())

	cases := []struct {
		name string
		path string
		want error
	}{
		{"ForeignBboltFile", foreign, boltledger.ErrForeign},
		{"RandomBytes", writeFile(t, dir, "random", randomBytes(1<<16)), boltledger.ErrCorrupt},
		{"ShortGarbage", writeFile(t, dir, "short", []byte("not a database")), boltledger.ErrCorrupt},
		{"Text", writeFile(t, dir, "text", []byte(strings.Repeat("hello world\n", 2000))), boltledger.ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, err := boltledger.Open(c.path, boltledger.WithLockTimeout(time.Second))
			if db != nil {
				_ = db.Close()
			}
			require.ErrorIs(t, err, c.want)
			require.Contains(t, err.Error(), c.path)
		})
	}
}

// readEverything opens path and reads every ledger in it, returning the
// first error.
func readEverything(t *testing.T, path string) error {
	db, err := boltledger.Open(path, boltledger.WithLockTimeout(time.Second))
	if err != nil {
		return err
	}
	defer db.Close()
	ids, err := db.IDs()
	if err != nil {
		return err
	}
	for _, id := range ids {
		l, err := db.Ledger(id)
		if err != nil {
			return err
		}
		_, err = l.Read(t.Context(), 0, 0)
		l.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// TestReadOnlyFile opens a file read-only: updates fail with ErrReadOnly,
// record nothing, and the state stays what the file holds.
func TestReadOnlyFile(t *testing.T) {
	db, path := openDB(t)
	e, err := qpool.OpenEntanglement(t.Context(), "ro", nil, 0, qpool.WithLedger(ledger(t, db, "ro")))
	require.NoError(t, err)
	require.NoError(t, e.UpdateState("a", "before"))
	require.NoError(t, e.Close())
	require.NoError(t, db.Close())

	ro := reopenDB(t, path, boltledger.WithReadOnly())
	e2, err := qpool.OpenEntanglement(t.Context(), "ro", nil, 0, qpool.WithLedger(ledger(t, ro, "ro")))
	require.NoError(t, err)
	defer e2.Close()
	require.ErrorIs(t, e2.UpdateState("a", "after"), boltledger.ErrReadOnly)
	require.ErrorIs(t, e2.UpdateState("b", 1), boltledger.ErrReadOnly)
	require.Equal(t, map[string]any{"a": "before"}, e2.Snapshot())
	require.Equal(t, ledgertest.Replay(e2.GetStateHistory(0)), e2.Snapshot(), "the cache equals the file")
}

// TestDiskFull caps the file's size, as a full disk would, and writes from
// eight goroutines until writes fail: the failures are ErrFull, exactly
// the changes whose UpdateState returned nil are in the history (a failed
// group commit fails all its changes and records none of them), the cache
// equals the file, and a reopen without the cap finds the same state.
func TestDiskFull(t *testing.T) {
	db, path := openDB(t, boltledger.WithMaxSize(1<<20))
	e, err := qpool.OpenEntanglement(t.Context(), "full", nil, 0, qpool.WithLedger(ledger(t, db, "full")))
	require.NoError(t, err)
	big := strings.Repeat("z", 16<<10)
	var mu sync.Mutex
	ok := make(map[string]bool)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				key := fmt.Sprintf("w%d-%d", w, i)
				err := e.UpdateState(key, big)
				if err != nil {
					assert.ErrorIs(t, err, boltledger.ErrFull) // assert: not on the test's goroutine
					return
				}
				mu.Lock()
				ok[key] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.NotEmpty(t, ok)
	require.Less(t, len(ok), 8*200, "the size cap was never reached")
	h := e.GetStateHistory(0)
	recorded := make(map[string]bool, len(h))
	for _, c := range h {
		recorded[c.Key] = true
	}
	require.Equal(t, ok, recorded, "the history holds exactly the acknowledged changes")
	seen := e.Snapshot()
	require.Equal(t, ledgertest.Replay(h), seen, "the cache equals the file's history")
	require.NoError(t, e.Close())
	require.NoError(t, db.Close())

	db2 := reopenDB(t, path)
	l := ledger(t, db2, "full")
	state, next := l.Snapshot()
	require.Equal(t, seen, state)
	require.Equal(t, uint64(len(h)), next)
	require.NoError(t, db2.Verify())
	require.NoError(t, l.Close())
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	return b
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}
