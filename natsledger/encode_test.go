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

// panicky is a value whose encoding panics.
type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic("MarshalJSON panics") }

// TestPanickingEncoderIsErrEncode: a value whose MarshalJSON panics is
// refused with qpool.ErrEncode, as any value the codec cannot encode, and
// the entanglement goes on (with a TTL and a callback, whose bookkeeping
// an update unwound by the panic would have left half done): before, the
// panic reached the caller of UpdateState.
func TestPanickingEncoderIsErrEncode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := startServer(t)
	id := uniqueID(t)
	l := open(t, connect(t, ts.url()), id)
	e, err := qpool.OpenEntanglement(ctx, id, nil, time.Hour, qpool.WithLedger(l))
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
