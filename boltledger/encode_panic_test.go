package boltledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/boltledger"
	"github.com/stretchr/testify/require"
)

// panicky is a value whose encoding panics.
type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic("MarshalJSON panics") }

// TestPanickingEncoderIsErrEncode: a value whose MarshalJSON panics is
// refused with ErrEncode, as any value the codec cannot encode, and the
// entanglement goes on (with a TTL and a callback, whose bookkeeping an
// update unwound by the panic would have left half done): before, the
// panic reached the caller of UpdateState.
func TestPanickingEncoderIsErrEncode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, _ := openDB(t)
	e, err := qpool.OpenEntanglement(ctx, "p", nil, time.Hour, qpool.WithLedger(ledger(t, db, "p")))
	require.NoError(t, err)
	defer e.Close()
	seen := make(chan string, 4)
	e.SetOnStateChange(func(_, now map[string]any) {
		for k := range now {
			seen <- k
		}
	})
	var uerr error
	require.NotPanics(t, func() { uerr = e.UpdateState("bad", panicky{}) })
	require.ErrorIs(t, uerr, boltledger.ErrEncode)
	require.ErrorIs(t, uerr, qpool.ErrEncode)
	require.NoError(t, e.UpdateState("good", 1))
	select {
	case k := <-seen:
		require.Equal(t, "good", k)
	case <-ctx.Done():
		t.Fatal("watchdog: the callback never saw the next update")
	}
	h, err := e.History(ctx, 0)
	require.NoError(t, err)
	require.Len(t, h, 1)
}
