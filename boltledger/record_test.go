package boltledger

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode feeds garbage to the record decoders: each returns an error
// wrapping ErrCorrupt or a record that encodes back to exactly the input;
// neither panics. The seed corpus is in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add(appendRecord(nil, record{nanos: 1, key: "k", value: []byte(`"v"`)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeRecord error %v does not wrap ErrCorrupt", err)
			}
		} else if got := appendRecord(nil, r); !bytes.Equal(got, b) {
			t.Fatalf("decodeRecord(%x) = %+v, which encodes as %x", b, r, got)
		}
		rev, v, err := decodeStateEntry(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeStateEntry error %v does not wrap ErrCorrupt", err)
			}
		} else if got := appendStateEntry(nil, rev, v); !bytes.Equal(got, b) {
			t.Fatalf("decodeStateEntry(%x) = %d %x, which encodes as %x", b, rev, v, got)
		}
	})
}

// TestRecordRoundTrip checks the encodings of a set, a deletion and a
// state entry.
func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []record{
		{nanos: 1700000000000000000, key: "key", value: []byte(`{"a":1}`)},
		{nanos: -5, key: "gone", deleted: true},
		{nanos: 0, key: string(make([]byte, 300)), value: []byte("null")},
	} {
		got, err := decodeRecord(appendRecord(nil, r))
		if err != nil || got.nanos != r.nanos || got.key != r.key || got.deleted != r.deleted || !bytes.Equal(got.value, r.value) {
			t.Fatalf("round trip of %+v gave %+v, %v", r, got, err)
		}
	}
	rev, v, err := decodeStateEntry(appendStateEntry(nil, 7, []byte("1")))
	if err != nil || rev != 7 || string(v) != "1" {
		t.Fatalf("state entry round trip gave %d %q %v", rev, v, err)
	}
}
