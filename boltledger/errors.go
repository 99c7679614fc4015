package boltledger

import (
	"errors"
	"fmt"

	"github.com/qpool/qpool"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Sentinel errors for failures that only a file-backed ledger has. Failures
// that every ledger shares are reported with the root package's sentinels
// instead: [qpool.ErrClosed] after Close or Drop, [qpool.ErrConflict] for a
// guard that does not hold, [qpool.ErrInvalidKey] for a key bbolt cannot
// store.
var (
	// ErrLocked is returned by [Open] when another process holds the file
	// and did not release it within the lock timeout ([WithLockTimeout]).
	ErrLocked = errors.New("boltledger: file locked by another process")

	// ErrCorrupt is returned when the file, or a record in it, cannot be
	// read: it is not a bbolt file, it is too short for its meta pages or
	// for the pages they claim (cut short), its checksums fail, a page is
	// damaged, or a record does not decode. [Open] returns it for every
	// damaged file it detects, whatever bbolt made of it, and releases the
	// file.
	ErrCorrupt = errors.New("boltledger: corrupt file")

	// ErrForeign is returned by [Open] for a valid bbolt file that another
	// program wrote, or a newer version of this package.
	ErrForeign = errors.New("boltledger: not a boltledger file")

	// ErrReadOnly is returned by writes to a DB opened with [WithReadOnly].
	ErrReadOnly = errors.New("boltledger: read-only")

	// ErrFull is returned by a write that would grow the file past
	// [WithMaxSize]. Nothing of the failed write is recorded.
	ErrFull = errors.New("boltledger: file size limit reached")

	// ErrEncode is returned by Append for a value the codec cannot encode;
	// nothing is recorded. It wraps [qpool.ErrEncode], which every ledger
	// with a codec returns for such a value.
	ErrEncode = fmt.Errorf("boltledger: cannot encode value: %w", qpool.ErrEncode)

	// ErrInUse is returned by [DB.Ledger] for an ID whose ledger is already
	// open in the same DB.
	ErrInUse = errors.New("boltledger: ledger already open")

	// ErrNotFile is returned by [Open] for a path that names something
	// other than a regular file, such as a directory. It wraps the file
	// system's error, if there was one.
	ErrNotFile = errors.New("boltledger: not a regular file")

	// ErrInvalidID is returned by [DB.Ledger] for an empty ID or one too
	// long to be a bbolt key.
	ErrInvalidID = errors.New("boltledger: invalid ledger id")
)

// mapError wraps a bbolt error in the sentinel callers test for. The bbolt
// error stays in the chain, so errors.Is works for both.
func mapError(err error) error {
	var s error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bolterrors.ErrTimeout):
		s = ErrLocked
	case errors.Is(err, bolterrors.ErrDatabaseNotOpen), errors.Is(err, bolterrors.ErrTxClosed):
		s = qpool.ErrClosed
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum),
		errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrInvalidMapping),
		errors.Is(err, bolterrors.ErrIncompatibleValue):
		s = ErrCorrupt
	case errors.Is(err, bolterrors.ErrDatabaseReadOnly), errors.Is(err, bolterrors.ErrTxNotWritable):
		s = ErrReadOnly
	case errors.Is(err, bolterrors.ErrMaxSizeReached):
		s = ErrFull
	case errors.Is(err, bolterrors.ErrKeyTooLarge), errors.Is(err, bolterrors.ErrKeyRequired):
		s = qpool.ErrInvalidKey
	default:
		return err
	}
	if errors.Is(err, s) {
		return err
	}
	return fmt.Errorf("%w: %w", s, err)
}
