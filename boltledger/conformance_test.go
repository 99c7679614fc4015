package boltledger_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/boltledger"
	"github.com/qpool/qpool/ledgertest"
	"github.com/stretchr/testify/require"
)

// owned is a ledger that owns its DB: closing or dropping it closes the
// file, and Reopen opens the file again, as a restarted process would.
type owned struct {
	*boltledger.Ledger
	db   *boltledger.DB
	path string
}

func (o owned) Close() error { return errors.Join(o.Ledger.Close(), o.db.Close()) }

func (o owned) Drop(ctx context.Context) error {
	return errors.Join(o.Ledger.Drop(ctx), o.db.Close())
}

// Reopen implements ledgertest.Reopener.
func (o owned) Reopen() (qpool.Ledger, error) { return openOwned(o.path) }

func openOwned(path string) (qpool.Ledger, error) {
	db, err := boltledger.Open(path)
	if err != nil {
		return nil, err
	}
	l, err := db.Ledger("conformance")
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return owned{l, db, path}, nil
}

// TestConformance runs the ledgertest suite with one file per check, each
// reopened from disk by the durability checks.
func TestConformance(t *testing.T) {
	ledgertest.Run(t, func(t *testing.T) qpool.Ledger {
		l, err := openOwned(filepath.Join(t.TempDir(), "ledger.db"))
		require.NoError(t, err)
		return l
	})
}

// TestConformanceSharedFile runs the suite with every check's ledger in one
// file, so the ledgers of many entanglements share one committer and one
// file.
func TestConformanceSharedFile(t *testing.T) {
	db, _ := openDB(t)
	var n atomic.Int64
	ledgertest.Run(t, func(t *testing.T) qpool.Ledger {
		return ledger(t, db, fmt.Sprintf("check-%d", n.Add(1)))
	})
}
