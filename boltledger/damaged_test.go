//go:build !race

package boltledger_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/boltledger"
	"github.com/stretchr/testify/require"
)

// TestDamagedPages writes a real ledger file, overwrites a stretch of it
// past the meta pages, and reads everything back. A damaged file may still
// read (the damage fell on free space), but every error must wrap
// ErrCorrupt, and nothing may panic: bbolt's own panics and faults are
// turned into ErrCorrupt.
//
// bbolt checksums its meta pages but not its data pages, and it reads them
// through unsafe pointers. Under the race detector, whose checkptr checks
// abort the process on such a pointer (a fatal error no recover sees), a
// damaged data page can end the test binary; so this file builds only
// without -race, and .ci/run runs it that way. The damage comes from a
// fixed seed, so every run reads the same 40 files.
func TestDamagedPages(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	db, err := boltledger.Open(good)
	require.NoError(t, err)
	l, err := db.Ledger("d")
	require.NoError(t, err)
	for i := range 200 {
		_, err := l.Append(t.Context(), qpool.Mutation{Key: fmt.Sprintf("k%d", i%20), Value: map[string]any{"i": float64(i)}})
		require.NoError(t, err)
	}
	require.NoError(t, db.Close())
	orig, err := os.ReadFile(good)
	require.NoError(t, err)
	var failures int
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 40 {
		data := append([]byte(nil), orig...)
		off := 2*4096 + rng.IntN(len(data)-2*4096-64)
		damage := make([]byte, 1+rng.IntN(64))
		for j := range damage {
			damage[j] = byte(rng.IntN(256))
		}
		copy(data[off:], damage)
		path := writeFile(t, dir, fmt.Sprintf("damaged-%d", i), data)
		if err := readEverything(t, path); err != nil {
			failures++
			require.True(t, errors.Is(err, boltledger.ErrCorrupt) || errors.Is(err, boltledger.ErrForeign), "%v", err)
		}
	}
	t.Logf("%d of 40 damaged files reported corruption", failures)
}
