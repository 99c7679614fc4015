package boltledger

import (
	"bytes"
	"errors"
	"fmt"
	"runtime/debug"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The file's layout. Everything is a top-level bucket, so that a commit
// rewrites as few pages as possible (each level of nesting is one more
// page written and synced per commit): metaBucket, whose formatKey names
// the layout version, and three buckets per entanglement ID: "m/"+ID with
// the keys next, first and last (8 bytes, big-endian), "l/"+ID with the
// history keyed by big-endian sequence, and "s/"+ID with the current state
// keyed by state key. The small "m/" buckets live inline in the root page.
var (
	metaBucket    = []byte("qpool.boltledger")
	formatKey     = []byte("format")
	formatVersion = []byte("1")
	nextKey       = []byte("next")  // sequence of the next change
	firstKey      = []byte("first") // oldest sequence not compacted away
	lastKey       = []byte("last")  // Unix nanoseconds of the last change
)

// Prefixes of an entanglement's bucket names.
const (
	metaPrefix  = "m/"
	logPrefix   = "l/"
	statePrefix = "s/"
	prefixLen   = 2
)

// buckets are one entanglement's buckets in a transaction.
type buckets struct {
	meta, log, state *bbolt.Bucket
}

// lookup returns id's buckets; ok is false when nothing is stored for id.
func lookup(tx *bbolt.Tx, id string) (b buckets, ok bool, err error) {
	b.meta = tx.Bucket([]byte(metaPrefix + id))
	if b.meta == nil {
		return b, false, nil
	}
	b.log, b.state = tx.Bucket([]byte(logPrefix+id)), tx.Bucket([]byte(statePrefix+id))
	if b.log == nil || b.state == nil {
		return b, false, fmt.Errorf("%w: entanglement %q lacks its log or state bucket", ErrCorrupt, id)
	}
	return b, true, nil
}

// create makes id's empty buckets.
func create(tx *bbolt.Tx, id string) (b buckets, err error) {
	if b.meta, err = tx.CreateBucket([]byte(metaPrefix + id)); err != nil {
		return b, err
	}
	if b.log, err = tx.CreateBucket([]byte(logPrefix + id)); err != nil {
		return b, err
	}
	b.state, err = tx.CreateBucket([]byte(statePrefix + id))
	return b, err
}

// drop deletes id's buckets, if any.
func drop(tx *bbolt.Tx, id string) error {
	for _, p := range []string{metaPrefix, logPrefix, statePrefix} {
		err := tx.DeleteBucket([]byte(p + id))
		if err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
			return err
		}
	}
	return nil
}

// initLayout checks that b is a boltledger file, or empty, and writes the
// layout into an empty file.
func initLayout(b *bbolt.DB, readOnly bool) (err error) {
	defer shield(&err)()
	if err := b.View(checkLayout); err != nil || readOnly {
		return mapError(err)
	}
	return mapError(b.Update(func(tx *bbolt.Tx) error {
		if tx.Bucket(metaBucket) != nil {
			return nil
		}
		meta, err := tx.CreateBucket(metaBucket)
		if err != nil {
			return err
		}
		return meta.Put(formatKey, formatVersion)
	}))
}

// checkLayout accepts an empty file or one with this package's layout.
func checkLayout(tx *bbolt.Tx) error {
	meta := tx.Bucket(metaBucket)
	if meta == nil {
		return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			return fmt.Errorf("%w: unknown top-level bucket %q", ErrForeign, name)
		})
	}
	if v := meta.Get(formatKey); !bytes.Equal(v, formatVersion) {
		return fmt.Errorf("%w: layout version %q, want %q", ErrForeign, v, formatVersion)
	}
	return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
		if !bytes.Equal(name, metaBucket) && !hasPrefix(name, metaPrefix, logPrefix, statePrefix) {
			return fmt.Errorf("%w: unknown top-level bucket %q", ErrForeign, name)
		}
		return nil
	})
}

// hasPrefix reports whether name starts with one of prefixes and has an
// ID after it.
func hasPrefix(name []byte, prefixes ...string) bool {
	for _, p := range prefixes {
		if len(name) > len(p) && string(name[:len(p)]) == p {
			return true
		}
	}
	return false
}

// shield makes a fault or panic inside bbolt an error wrapping ErrCorrupt;
// use it as defer shield(&err)(). bbolt trusts its file and panics (or
// faults on a page pointer past the mapping) on some corrupt pages; a file
// is input to us, and bad input must get an error, not crash the process.
// bbolt's managed transactions roll back on a panic before it reaches
// here. [debug.SetPanicOnFault] is per goroutine, so it is restored on
// the way out.
// The functions in cleanup run after a recovered panic, to release what
// the panic left behind.
func shield(err *error, cleanup ...func()) func() {
	old := debug.SetPanicOnFault(true)
	return func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			*err = fmt.Errorf("%w: bbolt failed reading the file: %v", ErrCorrupt, r)
			for _, c := range cleanup {
				c()
			}
		}
	}
}
