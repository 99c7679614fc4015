package qpool_test

import (
	"context"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// namedLedger is a memory ledger opened for one entanglement, as
// boltledger's and natsledger's are.
type namedLedger struct {
	*qpool.MemoryLedger
	id string
}

func (l *namedLedger) ID() string { return l.id }

// TestInvalidEntanglement: an empty ID, or a ledger opened for another
// entanglement, gives an entanglement that refuses everything with
// ErrInvalidEntanglement and never touches the ledger; OpenEntanglement
// returns the error.
func TestInvalidEntanglement(t *testing.T) {
	other := &namedLedger{qpool.NewMemoryLedger(), "A"}
	_, err := other.Append(context.Background(), qpool.Mutation{Key: "secret", Value: 1})
	require.NoError(t, err)

	cases := map[string]func() *qpool.Entanglement{
		"empty id":         func() *qpool.Entanglement { return qpool.NewEntanglement("", nil, time.Hour) },
		"another's ledger": func() *qpool.Entanglement { return qpool.NewEntanglement("B", nil, time.Hour, qpool.WithLedger(other)) },
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			e := build()
			assert.ErrorIs(t, e.UpdateState("k", 1), qpool.ErrInvalidEntanglement)
			assert.ErrorIs(t, e.DeleteState("k"), qpool.ErrInvalidEntanglement)
			assert.ErrorIs(t, e.Update("k", func(any, bool) (any, error) { return 1, nil }), qpool.ErrInvalidEntanglement)
			_, found := e.GetState("secret")
			assert.False(t, found, "the refused ledger was read")
			assert.Empty(t, e.Snapshot())
			assert.Empty(t, e.GetStateHistory(0))
			_, err := e.History(context.Background(), 0)
			assert.ErrorIs(t, err, qpool.ErrInvalidEntanglement)
			_, err = e.Await(context.Background(), "k")
			assert.ErrorIs(t, err, qpool.ErrInvalidEntanglement)
			_, open := <-e.Watch(context.Background(), 0)
			assert.False(t, open, "a watch of an invalid entanglement is closed")
			require.NoError(t, e.Close())
		})
	}
	// The refused ledger is untouched and still open for its owner.
	v, _, ok := other.Get("secret")
	assert.True(t, ok)
	assert.Equal(t, 1, v)
	_, err = other.Append(context.Background(), qpool.Mutation{Key: "more", Value: 2})
	assert.NoError(t, err, "Close of the refused entanglement closed the ledger")

	_, err = qpool.OpenEntanglement(context.Background(), "B", nil, 0, qpool.WithLedger(other))
	assert.ErrorIs(t, err, qpool.ErrInvalidEntanglement)
	_, err = qpool.OpenEntanglement(context.Background(), "", nil, 0)
	assert.ErrorIs(t, err, qpool.ErrInvalidEntanglement)
	e, err := qpool.OpenEntanglement(context.Background(), "A", nil, 0, qpool.WithLedger(other))
	require.NoError(t, err, "the ledger's own entanglement opens")
	v, ok = e.GetState("secret")
	assert.True(t, ok)
	assert.Equal(t, 1, v)
	require.NoError(t, e.Close())
}

// TestCodecCheck: an entanglement built WithCodecCheck refuses, as a codec
// ledger does, a value its codec cannot encode, with ErrEncode, recording
// nothing; encodable values are stored as given.
func TestCodecCheck(t *testing.T) {
	e := qpool.NewEntanglement("checked", nil, 0, qpool.WithCodecCheck(qpool.JSONCodec{}))
	defer e.Close()
	for name, v := range map[string]any{"channel": make(chan int), "function": func() {}, "complex": 1i} {
		err := e.UpdateState(name, v)
		assert.ErrorIs(t, err, qpool.ErrEncode, name)
		assert.ErrorIs(t, e.Update(name, func(any, bool) (any, error) { return v, nil }), qpool.ErrEncode, name)
	}
	assert.Empty(t, e.GetStateHistory(0), "a refused value was recorded")
	type point struct{ X, Y int }
	require.NoError(t, e.UpdateState("p", point{1, 2}))
	v, _ := e.GetState("p")
	assert.Equal(t, point{1, 2}, v, "the value is stored as given, not encoded")
	require.NoError(t, e.DeleteState("p"))

	plain := qpool.NewEntanglement("plain", nil, 0)
	defer plain.Close()
	assert.NoError(t, plain.UpdateState("ch", make(chan int)), "without the check the memory ledger stores anything")
}
