package boltledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/qpool/qpool"
	bbolt "go.etcd.io/bbolt"
)

// readBatch is how many records one read transaction decodes. Reading in
// batches keeps each transaction short: bbolt cannot remap a growing file
// while a read transaction is open, so a long one would stall writers.
const readBatch = 1024

// unixTime converts stored Unix nanoseconds to a time.Time.
func unixTime(nanos int64) time.Time { return time.Unix(0, nanos) }

// Read implements [qpool.Ledger]: it streams the changes from the file, a
// batch of 1024 per read transaction, up to the last change whose Append
// has returned or is returning. Only the slice returned is in memory.
func (l *Ledger) Read(ctx context.Context, since uint64, limit int) ([]qpool.StateChange, error) {
	l.mu.RLock()
	closed, first, next := l.closed, l.first, l.next
	l.mu.RUnlock()
	if closed {
		return nil, fmt.Errorf("boltledger: ledger %q: read: %w", l.id, qpool.ErrClosed)
	}
	since = max(since, first)
	if since >= next {
		return nil, nil
	}
	n := next - since
	if limit > 0 {
		n = min(n, uint64(limit))
	}
	out := make([]qpool.StateChange, 0, min(n, readBatch))
	for uint64(len(out)) < n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		want := min(n-uint64(len(out)), readBatch)
		got, err := l.readBatch(since, next, int(want))
		if err != nil {
			return nil, fmt.Errorf("boltledger: ledger %q: read from %d: %w", l.id, since, err)
		}
		if len(got) == 0 {
			break
		}
		out = append(out, got...)
		since = got[len(got)-1].Sequence + 1
	}
	return out, nil
}

// readBatch decodes up to n records with sequences in [since, next) in one
// read transaction.
func (l *Ledger) readBatch(since, next uint64, n int) (out []qpool.StateChange, err error) {
	defer shield(&err)()
	err = l.db.bolt.View(func(tx *bbolt.Tx) error {
		b, ok, err := lookup(tx, l.id)
		if !ok || err != nil {
			return err // nil: dropped meanwhile
		}
		end := seqKey(next)
		c := b.log.Cursor()
		for k, v := c.Seek(seqKey(since)); k != nil && len(out) < n && bytes.Compare(k, end) < 0; k, v = c.Next() {
			ch, err := l.decodeChange(k, v)
			if err != nil {
				return err
			}
			out = append(out, ch)
		}
		return nil
	})
	return out, mapError(err)
}

// decodeChange decodes one log entry.
func (l *Ledger) decodeChange(k, v []byte) (qpool.StateChange, error) {
	if len(k) != 8 {
		return qpool.StateChange{}, fmt.Errorf("%w: log key of %d bytes", ErrCorrupt, len(k))
	}
	seq := binary.BigEndian.Uint64(k)
	r, err := decodeRecord(v)
	if err != nil {
		return qpool.StateChange{}, fmt.Errorf("sequence %d: %w", seq, err)
	}
	c := qpool.StateChange{Sequence: seq, Timestamp: unixTime(r.nanos), Key: r.key, Deleted: r.deleted}
	if !r.deleted {
		if c.Value, err = l.decode(r.value); err != nil {
			return qpool.StateChange{}, fmt.Errorf("%w: sequence %d: value: %w", ErrCorrupt, seq, err)
		}
	}
	return c, nil
}

// Compact implements [qpool.Ledger]: it deletes the log records below
// before (never past the next sequence) in one fsync'd transaction; bbolt
// reuses the freed pages for later writes, so the file stops growing once
// retention keeps the history at a steady length.
func (l *Ledger) Compact(_ context.Context, before uint64) error {
	l.mu.RLock()
	closed, first, next := l.closed, l.first, l.next
	l.mu.RUnlock()
	if closed {
		return fmt.Errorf("boltledger: ledger %q: compact: %w", l.id, qpool.ErrClosed)
	}
	before = min(before, next)
	if before <= first {
		return nil
	}
	if err := l.deleteBelow(before); err != nil {
		return fmt.Errorf("boltledger: ledger %q: compact below %d: %w", l.id, before, err)
	}
	l.mu.Lock()
	l.first = max(l.first, before)
	l.mu.Unlock()
	return nil
}

// deleteBelow removes the log records below before and records the new
// first sequence.
func (l *Ledger) deleteBelow(before uint64) (err error) {
	defer shield(&err)()
	err = l.db.bolt.Update(func(tx *bbolt.Tx) error {
		b, ok, err := lookup(tx, l.id)
		if !ok || err != nil {
			return err
		}
		end := seqKey(before)
		c := b.log.Cursor()
		// Seek the first key afresh after each delete: a cursor's Next
		// after Delete is not documented to land on the following key.
		for k, _ := c.First(); k != nil && bytes.Compare(k, end) < 0; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		if cur := b.meta.Get(firstKey); cur != nil {
			if f, err := decodeUint64(cur, "first sequence"); err != nil || f >= before {
				return err
			}
		}
		return b.meta.Put(firstKey, binary.BigEndian.AppendUint64(nil, before))
	})
	return mapError(err)
}
