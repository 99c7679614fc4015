package qpool_test

import (
	"testing"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/ledgertest"
)

// TestMemoryLedgerConformance runs the ledger conformance suite on the
// reference ledger, as every backend does with its own.
func TestMemoryLedgerConformance(t *testing.T) {
	ledgertest.Run(t, func(*testing.T) qpool.Ledger { return qpool.NewMemoryLedger() })
}
