package qpool_test

import (
	"context"
	"errors"
	"testing"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
)

var errInMarshal = errors.New("marshal failed by panicking")

// panicsWithError is a value whose MarshalJSON panics with an error.
type panicsWithError struct{}

func (panicsWithError) MarshalJSON() ([]byte, error) { panic(errInMarshal) }

// TestCodecPanicWrapsItsError: a codec that panics with an error, on a
// typed read that converts and under WithCodecCheck, gives an error that
// errors.Is finds the panic's error in, besides *TypeError / ErrEncode.
func TestCodecPanicWrapsItsError(t *testing.T) {
	e, err := qpool.OpenEntanglement(context.Background(), "codec-panic", nil, 0)
	require.NoError(t, err)
	defer e.Close()
	require.NoError(t, e.UpdateState("v", panicsWithError{}))
	_, _, err = qpool.NewKey[string]("v").Get(e)
	require.ErrorIs(t, err, qpool.ErrType)
	require.ErrorIs(t, err, errInMarshal)

	c, err := qpool.OpenEntanglement(context.Background(), "codec-check", nil, 0, qpool.WithCodecCheck(qpool.JSONCodec{}))
	require.NoError(t, err)
	defer c.Close()
	err = c.UpdateState("v", panicsWithError{})
	require.ErrorIs(t, err, qpool.ErrEncode)
	require.ErrorIs(t, err, errInMarshal)
}
