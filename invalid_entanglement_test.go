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

// TestNilAndZeroEntanglement: the methods of a nil *Entanglement and of a
// zero Entanglement, and typed keys given one, refuse with
// ErrInvalidEntanglement instead of panicking; so does the zero Key's
// Update with a nil function (ErrInvalidKey), and PermanentError and
// EntanglementFrom take their zero inputs. Found by an adversarial review.
func TestNilAndZeroEntanglement(t *testing.T) {
	var n qpool.Key[int] // the zero Key
	require.NotPanics(t, func() {
		e := qpool.NewEntanglement("e", nil, 0)
		defer e.Close()
		assert.ErrorIs(t, n.Update(e, nil), qpool.ErrInvalidKey)
		assert.Equal(t, "qpool: permanent error", (&qpool.PermanentError{}).Error())
		_, ok := qpool.EntanglementFrom(nil) //nolint:staticcheck // a nil ctx must not panic
		assert.False(t, ok)
	})
	rows := qpool.NewKey[int]("rows")
	for name, e := range map[string]*qpool.Entanglement{"nil": nil, "zero": {}} {
		t.Run(name, func(t *testing.T) {
			require.NotPanics(t, func() {
				assert.ErrorIs(t, e.UpdateState("k", 1), qpool.ErrInvalidEntanglement)
				assert.ErrorIs(t, e.DeleteState("k"), qpool.ErrInvalidEntanglement)
				assert.ErrorIs(t, e.Update("k", func(any, bool) (any, error) { return 1, nil }), qpool.ErrInvalidEntanglement)
				_, found := e.GetState("k")
				assert.False(t, found)
				assert.Empty(t, e.Snapshot())
				assert.Empty(t, e.GetStateHistory(0))
				_, err := e.History(context.Background(), 0)
				assert.ErrorIs(t, err, qpool.ErrInvalidEntanglement)
				_, err = e.Await(context.Background(), "k")
				assert.ErrorIs(t, err, qpool.ErrInvalidEntanglement)
				_, open := <-e.Watch(context.Background(), 0)
				assert.False(t, open)
				e.AddJob(qpool.Job{ID: "j"})
				assert.False(t, e.RemoveJob("j"))
				assert.Empty(t, e.Jobs())
				assert.Empty(t, e.ID())
				assert.False(t, e.IsExpired())
				e.SetOnStateChange(func(_, _ map[string]any) {})
				assert.ErrorIs(t, rows.Set(e, 1), qpool.ErrInvalidEntanglement)
				_, _, err = rows.Get(e)
				assert.NoError(t, err, "Get reports an absent key, as on a closed entanglement")
				assert.ErrorIs(t, rows.Update(e, func(n int, _ bool) (int, error) { return n + 1, nil }), qpool.ErrInvalidEntanglement)
				_, _, err = qpool.GetStateAs[int](e, "k")
				assert.NoError(t, err)
				assert.NoError(t, e.Close())
			})
		})
	}
}

// TestKeyWatchOnNilEntanglement: a typed key's Watch of a nil or zero
// entanglement yields ErrInvalidEntanglement (the zero Key's, ErrInvalidKey)
// and ends, instead of panicking (found by an adversarial review).
func TestKeyWatchOnNilEntanglement(t *testing.T) {
	for name, e := range map[string]*qpool.Entanglement{"nil": nil, "zero": {}} {
		for kname, k := range map[string]qpool.Key[int]{"named": qpool.NewKey[int]("k"), "zero": {}} {
			t.Run(name+"/"+kname, func(t *testing.T) {
				require.NotPanics(t, func() {
					n := 0
					for _, err := range k.Watch(context.Background(), e) {
						n++
						if kname == "zero" {
							assert.ErrorIs(t, err, qpool.ErrInvalidKey)
						} else {
							assert.ErrorIs(t, err, qpool.ErrInvalidEntanglement)
						}
					}
					assert.Equal(t, 1, n, "one error, then the end")
				})
			})
		}
	}
}
