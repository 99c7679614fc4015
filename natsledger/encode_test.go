package natsledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
)

// TestUnencodableValue: a value the codec cannot encode is refused with an
// error matching qpool.ErrEncode, as on every codec ledger, and nothing is
// recorded; an entanglement opened under another name than its ledger's is
// refused with qpool.ErrInvalidEntanglement.
func TestUnencodableValue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := startServer(t)
	id := uniqueID(t)
	l := open(t, connect(t, ts.url()), id)
	_, err := qpool.OpenEntanglement(ctx, id+"-other", nil, 0, qpool.WithLedger(l))
	require.ErrorIs(t, err, qpool.ErrInvalidEntanglement)
	e, err := qpool.OpenEntanglement(ctx, id, nil, 0, qpool.WithLedger(l))
	require.NoError(t, err)
	defer e.Close()
	for _, v := range []any{make(chan int), func() {}} {
		require.ErrorIs(t, e.UpdateState("bad", v), qpool.ErrEncode, "%T", v)
	}
	h, err := e.History(ctx, 0)
	require.NoError(t, err)
	require.Empty(t, h)
}
