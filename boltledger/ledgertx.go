package boltledger

import (
	"encoding/binary"
	"fmt"

	"github.com/qpool/qpool"
	bbolt "go.etcd.io/bbolt"
)

// ledgerTxs are the ledgers a write transaction has opened, in the order
// of their first change. A batch usually spans few ledgers, so a list
// searched from the end beats a map; the map takes over past a few.
type ledgerTxs struct {
	list  []*ledgerTx
	index map[*Ledger]*ledgerTx
}

// listed is how many ledgers ledgerTxs finds by scanning its list.
const listed = 8

// get returns l's part of tx, opening it on l's first change.
func (o *ledgerTxs) get(tx *bbolt.Tx, l *Ledger) (*ledgerTx, error) {
	if o.index != nil {
		if lt := o.index[l]; lt != nil {
			return lt, nil
		}
	} else {
		for i := len(o.list) - 1; i >= 0; i-- {
			if o.list[i].l == l {
				return o.list[i], nil
			}
		}
	}
	lt, err := openLedgerTx(tx, l.id)
	if err != nil {
		return nil, err
	}
	lt.l = l
	o.list = append(o.list, lt)
	if len(o.list) > listed && o.index == nil {
		o.index = make(map[*Ledger]*ledgerTx, 2*listed)
		for _, lt := range o.list {
			o.index[lt.l] = lt
		}
	} else if o.index != nil {
		o.index[l] = lt
	}
	return lt, nil
}

// ledgerTx is one ledger's part of a write transaction.
type ledgerTx struct {
	l *Ledger
	buckets
	next uint64
	last int64
}

// openLedgerTx opens id's buckets in tx, creating them on the first change.
func openLedgerTx(tx *bbolt.Tx, id string) (*ledgerTx, error) {
	b, ok, err := lookup(tx, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		b, err = create(tx, id)
		return &ledgerTx{buckets: b}, err
	}
	lt := &ledgerTx{buckets: b}
	if lt.next, err = decodeUint64(b.meta.Get(nextKey), "next sequence"); err != nil {
		return nil, err
	}
	last, err := decodeUint64(b.meta.Get(lastKey), "last timestamp")
	lt.last = int64(last)
	return lt, err
}

// put checks r's guard and, if it holds, records r's change in the log and
// the state; it sets r.change, or r.err for a guard that fails. An error
// returned fails the whole transaction.
func (lt *ledgerTx) put(r *request, now int64) error {
	key := []byte(r.m.Key)
	if r.m.Guarded {
		var cur uint64
		if v := lt.state.Get(key); v != nil {
			rev, _, err := decodeStateEntry(v)
			if err != nil {
				return err
			}
			cur = rev
		}
		if cur != r.m.Revision {
			r.err = fmt.Errorf("%w: key %q is at revision %d, not %d", qpool.ErrConflict, r.m.Key, cur, r.m.Revision)
			return nil
		}
	}
	seq, ts := lt.next, max(now, lt.last)
	rec := appendRecord(nil, record{nanos: ts, key: r.m.Key, value: r.raw, deleted: r.m.Delete})
	if err := lt.log.Put(seqKey(seq), rec); err != nil {
		return err
	}
	var err error
	if r.m.Delete {
		err = lt.state.Delete(key)
	} else {
		err = lt.state.Put(key, appendStateEntry(nil, seq+1, r.raw))
	}
	if err != nil {
		return err
	}
	lt.next, lt.last = seq+1, ts
	r.change = qpool.StateChange{Sequence: seq, Timestamp: unixTime(ts), Key: r.m.Key, Value: r.m.Value, Deleted: r.m.Delete}
	return nil
}

// saveMeta writes the ledger's next sequence and last timestamp.
func (lt *ledgerTx) saveMeta() error {
	buf := binary.BigEndian.AppendUint64(make([]byte, 0, 16), lt.next)
	buf = binary.BigEndian.AppendUint64(buf, uint64(lt.last))
	if err := lt.meta.Put(nextKey, buf[:8]); err != nil { // bbolt keeps buf until commit
		return err
	}
	return lt.meta.Put(lastKey, buf[8:])
}
