package boltledger

import (
	"encoding/binary"
	"fmt"
)

// recordVersion is the first byte of every log record and state entry, so
// that a later format can be told apart from this one.
const recordVersion = 1

// flagDeleted marks a record that removes its key.
const flagDeleted = 1

// record is one change as the log bucket stores it, under the big-endian
// sequence as key. The layout is
//
//	version(1) flags(1) unix-nanos(8, big-endian) uvarint(len key) key value
//
// where value is the codec's encoding, empty for a deletion.
type record struct {
	nanos   int64
	key     string
	value   []byte
	deleted bool
}

// recordHeader is the size of the fixed part of a record.
const recordHeader = 1 + 1 + 8

// appendRecord appends r's encoding to dst.
func appendRecord(dst []byte, r record) []byte {
	var flags byte
	if r.deleted {
		flags = flagDeleted
	}
	dst = append(dst, recordVersion, flags)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.nanos))
	dst = binary.AppendUvarint(dst, uint64(len(r.key)))
	dst = append(dst, r.key...)
	return append(dst, r.value...)
}

// decodeRecord decodes b, which bbolt owns: the value returned aliases b
// and is valid only during the transaction. Garbage gives an error
// wrapping [ErrCorrupt], never a panic.
func decodeRecord(b []byte) (record, error) {
	if len(b) < recordHeader {
		return record{}, fmt.Errorf("%w: record of %d bytes is shorter than its header", ErrCorrupt, len(b))
	}
	if b[0] != recordVersion {
		return record{}, fmt.Errorf("%w: record version %d, want %d", ErrCorrupt, b[0], recordVersion)
	}
	if b[1]&^flagDeleted != 0 {
		return record{}, fmt.Errorf("%w: record has unknown flags %#x", ErrCorrupt, b[1])
	}
	r := record{nanos: int64(binary.BigEndian.Uint64(b[2:])), deleted: b[1]&flagDeleted != 0}
	rest := b[recordHeader:]
	n, w := binary.Uvarint(rest)
	// A length in more bytes than it needs is rejected too, so that every
	// record has exactly one encoding.
	if w <= 0 || n == 0 || n > uint64(len(rest)-w) || w != len(binary.AppendUvarint(nil, n)) {
		return record{}, fmt.Errorf("%w: record key length is invalid", ErrCorrupt)
	}
	r.key = string(rest[w : w+int(n)])
	r.value = rest[w+int(n):]
	if r.deleted && len(r.value) != 0 {
		return record{}, fmt.Errorf("%w: deletion record of key %q carries a value", ErrCorrupt, r.key)
	}
	return r, nil
}

// appendStateEntry encodes a state bucket value: the version byte, the
// revision (sequence+1 of the change that set the key, big-endian) and the
// codec's encoding of the value.
func appendStateEntry(dst []byte, revision uint64, value []byte) []byte {
	dst = append(dst, recordVersion)
	dst = binary.BigEndian.AppendUint64(dst, revision)
	return append(dst, value...)
}

// decodeStateEntry decodes a state bucket value; the value aliases b.
func decodeStateEntry(b []byte) (revision uint64, value []byte, err error) {
	if len(b) < 9 || b[0] != recordVersion {
		return 0, nil, fmt.Errorf("%w: state entry of %d bytes is malformed", ErrCorrupt, len(b))
	}
	revision = binary.BigEndian.Uint64(b[1:])
	if revision == 0 {
		return 0, nil, fmt.Errorf("%w: state entry has revision 0", ErrCorrupt)
	}
	return revision, b[9:], nil
}

// seqKey is the log bucket key of a sequence: big-endian, so that bbolt's
// byte order is sequence order.
func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }

// decodeUint64 decodes an 8-byte big-endian meta value.
func decodeUint64(b []byte, what string) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: %s is %d bytes, want 8", ErrCorrupt, what, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
