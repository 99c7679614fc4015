package boltledger_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/boltledger"
	"github.com/stretchr/testify/require"
)

// openDB opens a DB in a fresh temporary file, closed (and checked with
// bbolt's consistency check) in t.Cleanup.
func openDB(t testing.TB, opts ...boltledger.Option) (*boltledger.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	db, err := boltledger.Open(path, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := db.Verify(); !errors.Is(err, qpool.ErrClosed) { // a test may close db itself
			require.NoError(t, err)
		}
		require.NoError(t, db.Close())
	})
	return db, path
}

// reopenDB opens path again after the caller closed it.
func reopenDB(t *testing.T, path string, opts ...boltledger.Option) *boltledger.DB {
	t.Helper()
	db, err := boltledger.Open(path, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

// ledger opens id's ledger on db.
func ledger(t testing.TB, db *boltledger.DB, id string) *boltledger.Ledger {
	t.Helper()
	l, err := db.Ledger(id)
	require.NoError(t, err)
	return l
}

// requireGapFree checks that history's sequences run first, first+1, … next-1.
func requireGapFree(t *testing.T, history []qpool.StateChange, first, next uint64) {
	t.Helper()
	require.Len(t, history, int(next-first))
	for i, c := range history {
		require.Equal(t, first+uint64(i), c.Sequence, "change %d", i)
	}
}

// fileSize returns the size of the file at path.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Size()
}
