package boltledger_test

import (
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/boltledger"
	"github.com/stretchr/testify/require"
)

// TestTTLSurvivesRestart runs in a synctest bubble, whose fake clock is the
// one the ledger stamps changes with, so the restart can happen "59
// minutes later" without waiting. An entanglement with a one-hour TTL is
// closed; reopened before its deadline it is alive with its state, and its
// deadline still counts from the last change, not from the reopening; an
// entanglement whose deadline passed while the file was closed is expired
// on open and its data is deleted from the file.
func TestTTLSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ttl.db")
	synctest.Test(t, func(t *testing.T) {
		withEntanglement(t, path, "short", func(e *qpool.Entanglement) {
			require.NoError(t, e.UpdateState("k", "v"))
		})
		time.Sleep(59 * time.Minute) // the process is down

		var expired bool
		withEntanglement(t, path, "short", func(e *qpool.Entanglement) {
			synctest.Wait()
			require.False(t, e.IsExpired())
			v, ok := e.GetState("k")
			require.True(t, ok)
			require.Equal(t, "v", v)
			time.Sleep(2 * time.Minute) // past the hour since the last change, not since the open
			synctest.Wait()
			expired = e.IsExpired()
		})
		require.True(t, expired, "the deadline restarted on open instead of counting from the last change")
		requireIDs(t, path, nil)

		withEntanglement(t, path, "down", func(e *qpool.Entanglement) {
			require.NoError(t, e.UpdateState("k", "v"))
		})
		time.Sleep(2 * time.Hour) // expires while the process is down
		withEntanglement(t, path, "down", func(e *qpool.Entanglement) {
			synctest.Wait()
			require.True(t, e.IsExpired())
			_, ok := e.GetState("k")
			require.False(t, ok)
			require.ErrorIs(t, e.UpdateState("k", "again"), qpool.ErrExpired)
		})
		requireIDs(t, path, nil)
	})
}

// withEntanglement opens the file and entanglement id with a one-hour TTL,
// runs fn, and closes both.
func withEntanglement(t *testing.T, path, id string, fn func(e *qpool.Entanglement)) {
	t.Helper()
	db, err := boltledger.Open(path)
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	l, err := db.Ledger(id)
	require.NoError(t, err)
	e, err := qpool.OpenEntanglement(t.Context(), id, nil, time.Hour, qpool.WithLedger(l))
	require.NoError(t, err)
	defer func() { require.NoError(t, e.Close()) }()
	fn(e)
}

// requireIDs checks which entanglements the file holds.
func requireIDs(t *testing.T, path string, want []string) {
	t.Helper()
	db, err := boltledger.Open(path)
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	ids, err := db.IDs()
	require.NoError(t, err)
	slices.Sort(ids)
	require.Equal(t, want, ids)
}
