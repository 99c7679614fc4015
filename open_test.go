package qpool_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpenEntanglementResumesLedger(t *testing.T) {
	l := qpool.NewMemoryLedger()
	ctx := context.Background()
	for i := range 3 {
		_, err := l.Append(ctx, qpool.Mutation{Key: "k", Value: float64(i)})
		require.NoError(t, err)
	}
	e, err := qpool.OpenEntanglement(ctx, "resumed", nil, time.Hour, qpool.WithLedger(l))
	require.NoError(t, err)
	defer e.Close()
	v, _ := e.GetState("k")
	assert.Equal(t, float64(2), v)
	require.NoError(t, e.UpdateState("k", float64(3)))
	h := e.GetStateHistory(0)
	require.Len(t, h, 4)
	assert.Equal(t, uint64(3), h[3].Sequence, "sequences continue where they stopped")
}

func TestOpenEntanglementExpiredWhileClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := qpool.NewMemoryLedger()
		_, err := l.Append(context.Background(), qpool.Mutation{Key: "k", Value: "v"})
		require.NoError(t, err)
		time.Sleep(2 * time.Hour)
		expired := ""
		e, err := qpool.OpenEntanglement(context.Background(), "stale", nil, time.Hour,
			qpool.WithLedger(l), qpool.WithOnExpire(func(id string) { expired = id }))
		require.NoError(t, err)
		defer e.Close()
		assert.True(t, e.IsExpired(), "expired on open, not later")
		assert.Equal(t, "stale", expired)
		_, found := e.GetState("k")
		assert.False(t, found, "the ledger was dropped")
		assert.ErrorIs(t, e.UpdateState("k", "w"), qpool.ErrExpired)
	})
}

func TestGetStateAs(t *testing.T) {
	type point struct{ X, Y int }
	e := newTestEntanglement(t, 0)
	require.NoError(t, e.UpdateState("p", point{1, 2}))
	p, ok, err := qpool.GetStateAs[point](e, "p")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, point{1, 2}, p)

	// A generic decoded form, as a durable ledger returns it, converts too.
	require.NoError(t, e.UpdateState("q", map[string]any{"X": float64(3), "Y": float64(4)}))
	q, ok, err := qpool.GetStateAs[point](e, "q")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, point{3, 4}, q)

	_, ok, err = qpool.GetStateAs[point](e, "missing")
	assert.NoError(t, err)
	assert.False(t, ok)

	require.NoError(t, e.UpdateState("s", "not a point"))
	_, ok, err = qpool.GetStateAs[point](e, "s")
	assert.True(t, ok)
	assert.Error(t, err)
}
