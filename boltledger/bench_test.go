package boltledger_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	bbolt "go.etcd.io/bbolt"
)

// The benchmarks compare, in one run, the ledger's Append with raw bbolt
// doing the same work per change (encode the value as JSON, put a log
// record under the next sequence, put the state entry, update the
// sequence): one db.Update per change, and db.Batch with MaxBatchSize
// equal to the writer count. ns/op is wall time per change over all
// writers, so 1e9/(ns/op) is changes per second.

var benchWriters = []int{1, 64}

// runWriters splits b.N changes over w goroutines running fn(writer, i).
func runWriters(b *testing.B, w int, fn func(writer, i int) error) {
	b.ReportAllocs()
	var wg sync.WaitGroup
	errs := make(chan error, w)
	b.ResetTimer()
	for g := range w {
		n := b.N / w
		if g < b.N%w {
			n++
		}
		wg.Go(func() {
			for i := range n {
				if err := fn(g, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, w := range benchWriters {
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			db, _ := openDB(b)
			l := ledger(b, db, "bench")
			runWriters(b, w, func(g, i int) error {
				_, err := l.Append(b.Context(), qpool.Mutation{Key: fmt.Sprintf("w%d", g), Value: float64(i)})
				return err
			})
			s := db.Stats()
			b.ReportMetric(float64(s.Changes)/float64(max(s.Commits, 1)), "changes/commit")
		})
	}
}

func BenchmarkRawUpdate(b *testing.B) {
	for _, w := range benchWriters {
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			r := openRaw(b, 0)
			runWriters(b, w, func(g, i int) error { return r.db.Update(r.put(g, i)) })
		})
	}
}

func BenchmarkRawBatch(b *testing.B) {
	for _, w := range benchWriters {
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			r := openRaw(b, w)
			runWriters(b, w, func(g, i int) error { return r.db.Batch(r.put(g, i)) })
		})
	}
}

// raw is the raw-bbolt baseline: a log bucket and a state bucket.
type raw struct {
	db *bbolt.DB
}

// openRaw opens a bbolt file with MaxBatchSize set to batch (if > 0).
func openRaw(b *testing.B, batch int) *raw {
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	if batch > 0 {
		db.MaxBatchSize = batch
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range []string{"log", "state", "meta"} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return &raw{db: db}
}

// put returns the transaction function recording one change, as the
// ledger does: JSON value, log record under the next sequence, state
// entry, sequence. Batch may run it more than once; each run is in its
// own transaction attempt, so it reads the sequence afresh.
func (r *raw) put(g, i int) func(tx *bbolt.Tx) error {
	key := fmt.Sprintf("w%d", g)
	return func(tx *bbolt.Tx) error {
		v, err := json.Marshal(float64(i))
		if err != nil {
			return err
		}
		meta := tx.Bucket([]byte("meta"))
		var seq uint64
		if b := meta.Get([]byte("next")); b != nil {
			seq = binary.BigEndian.Uint64(b)
		}
		rec := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
		rec = append(append(rec, key...), v...)
		if err := tx.Bucket([]byte("log")).Put(binary.BigEndian.AppendUint64(nil, seq), rec); err != nil {
			return err
		}
		if err := tx.Bucket([]byte("state")).Put([]byte(key), append(binary.BigEndian.AppendUint64(nil, seq+1), v...)); err != nil {
			return err
		}
		return meta.Put([]byte("next"), binary.BigEndian.AppendUint64(nil, seq+1))
	}
}
