package qpool_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/ledgertest"
	"github.com/stretchr/testify/require"
)

// TestMemoryLedgerConformance runs the ledger conformance suite on the
// reference ledger, as every backend does with its own.
func TestMemoryLedgerConformance(t *testing.T) {
	ledgertest.Run(t, func(*testing.T) qpool.Ledger { return qpool.NewMemoryLedger() })
}

// TestMemoryLedgerStateUnderChurn adds, reads, deletes and re-adds keys
// while readers run without locks, through every path of the read-mostly
// state map (misses, promotion, deleted cells dropped at promotion and
// revived), and checks the state against a plain map.
func TestMemoryLedgerStateUnderChurn(t *testing.T) {
	l := qpool.NewMemoryLedger()
	defer l.Close()
	ctx := context.Background()
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for r := range 2 {
		readers.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("k%d", (i*7+r)%300)
				if v, rev, ok := l.Get(key); ok && (v == nil || rev == 0) {
					t.Errorf("Get(%q) = %v, %d, true", key, v, rev)
					return
				}
			}
		})
	}
	model := map[string]any{}
	for round := range 20 {
		for i := range 300 {
			key := fmt.Sprintf("k%d", i)
			switch (i + round) % 3 {
			case 0:
				_, err := l.Append(ctx, qpool.Mutation{Key: key, Delete: true})
				require.NoError(t, err)
				delete(model, key)
			default:
				v := float64(round*1000 + i)
				_, err := l.Append(ctx, qpool.Mutation{Key: key, Value: v})
				require.NoError(t, err)
				model[key] = v
			}
			if i%10 == 0 {
				l.Get(fmt.Sprintf("k%d", i+1)) // misses drive promotion
			}
		}
		snap, _ := l.Snapshot()
		require.Equal(t, model, snap, "round %d", round)
		for k, v := range model {
			got, rev, ok := l.Get(k)
			require.True(t, ok, k)
			require.Equal(t, v, got, k)
			require.NotZero(t, rev)
		}
	}
	close(stop)
	readers.Wait()
}
