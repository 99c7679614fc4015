package qpool

import (
	"encoding/json"
	"fmt"
)

// Codec turns state values into bytes and back, for ledgers that keep values
// outside the process's memory (on disk, on a server). Such a ledger returns
// from Get, Read and Snapshot what Unmarshal into an any produces, not the
// Go value that was stored: with [JSONCodec], numbers come back as float64,
// structs as map[string]any. A [Key], or [GetStateAs], decodes into the
// caller's type.
type Codec interface {
	// Marshal encodes v. An error means v cannot be stored, and the
	// ledger records nothing.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into the value v points to.
	Unmarshal(data []byte, v any) error
}

// JSONCodec is the default [Codec]: encoding/json.
type JSONCodec struct{}

var _ Codec = JSONCodec{}

// Marshal implements [Codec] with [json.Marshal].
func (JSONCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal implements [Codec] with [json.Unmarshal].
func (JSONCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// encodes reports whether c encodes v, as [WithCodecCheck] asks: the
// codec's error, or a panic in the encoding (a value's MarshalJSON, the
// codec itself: user code) as an error (TestAttack14CodecCheckPanickyValue).
func encodes(c Codec, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = codecPanic(v, r)
		}
	}()
	_, err = c.Marshal(v)
	return err
}

// codecPanic is the error of a codec that panicked on v with r; a panic
// with an error wraps it, for errors.Is and errors.As.
func codecPanic(v any, r any) error {
	if err, ok := r.(error); ok {
		return fmt.Errorf("qpool: the codec panicked on a %T: %w", v, err)
	}
	return fmt.Errorf("qpool: the codec panicked on a %T: %v", v, r)
}

// CodecLedger is implemented by ledgers that encode values; [GetStateAs]
// uses its codec to convert what the ledger returns into the caller's type.
type CodecLedger interface {
	Ledger
	// Codec returns the codec the ledger encodes values with.
	Codec() Codec
}

// GetStateAs returns key's value as a T. A value that already is a T (always
// the case with the in-memory ledger, when T is what was stored) is returned
// as is; otherwise it is re-encoded and decoded into a T with the ledger's
// codec ([JSONCodec] unless the ledger is a [CodecLedger]), which turns the
// generic form a durable ledger returns back into the caller's struct,
// number or slice type. It reports false when key is absent, and a
// [*TypeError] (matching [ErrType]) when the value does not decode into a
// T, or is nil and T has no nil value. [Key.Get] does the same for a key
// declared once with its type.
func GetStateAs[T any](e *Entanglement, key string) (T, bool, error) {
	return getAs[T](e, key)
}
