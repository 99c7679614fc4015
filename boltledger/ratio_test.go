package boltledger_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/boltledger"
)

// BenchmarkRatios measures the targets as ratios of rounds that
// interleave the ledger and raw bbolt, so that the disk's drift (fsync
// times vary several times within minutes on a shared machine) hits both
// sides of each ratio alike. Each iteration is one round: every case
// writes a fixed number of changes, in a rotating order, and the round's
// time per change gives one ratio per target. The metrics are the medians
// over the rounds:
//
//   - batch-ratio-64w: ledger throughput / raw db.Batch throughput, 64
//     writers, MaxBatchSize 64 (target ≥ 0.8);
//   - update-ratio-64w: ledger throughput / raw one-db.Update-per-change
//     throughput, 64 writers (target ≥ 10);
//   - latency-ratio-1w: ledger time per change / raw db.Update time per
//     change, one writer, alternating one change each, medians of the
//     changes in a round (target ≤ 1.2);
//   - mean-latency-ratio-1w: the same with the means, which the slow
//     outliers (a first change after a burst waits for the burst's
//     writers, on a 100 µs timer that fires late in an idle process) weigh
//     on.
func BenchmarkRatios(b *testing.B) {
	cases, single := newRatioCases(b)
	var batch, update, latency, meanLatency []float64
	for round := 0; b.Loop(); round++ {
		per := make(map[string]float64, len(cases))
		for i := range cases {
			c := cases[(i+round)%len(cases)]
			per[c.name] = c.run(b)
		}
		batch = append(batch, per["raw-batch-64w"]/per["ledger-64w"])
		update = append(update, per["raw-update-64w"]/per["ledger-64w"])
		med, avg := single(b)
		latency, meanLatency = append(latency, med), append(meanLatency, avg)
	}
	b.ReportMetric(median(batch), "batch-ratio-64w")
	b.ReportMetric(median(update), "update-ratio-64w")
	b.ReportMetric(median(latency), "latency-ratio-1w")
	b.ReportMetric(median(meanLatency), "mean-latency-ratio-1w")
	b.ReportMetric(0, "ns/op") // a round's time means nothing here
}

// ratioCase writes a fixed number of changes and returns the time per change.
type ratioCase struct {
	name string
	run  func(b *testing.B) float64
}

// newRatioCases returns the multi-writer cases, and the single-writer
// comparison, which alternates one ledger Append and one raw db.Update so
// that both see the same disk, and returns the ratio of their median
// times per change.
func newRatioCases(b *testing.B) ([]ratioCase, func(b *testing.B) (float64, float64)) {
	db, err := boltledger.Open(filepath.Join(b.TempDir(), "ratio.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	l, err := db.Ledger("ratio")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Close() })
	ledger := func(g, i int) error {
		_, err := l.Append(b.Context(), qpool.Mutation{Key: fmt.Sprintf("w%d", g), Value: float64(i)})
		return err
	}
	update, batch := openRaw(b, 0), openRaw(b, 64)
	rawUpdate := func(g, i int) error { return update.db.Update(update.put(g, i)) }
	rawBatch := func(g, i int) error { return batch.db.Batch(batch.put(g, i)) }
	single := func(b *testing.B) (medianRatio, meanRatio float64) {
		var ours, theirs []float64
		for i := range 40 {
			start := time.Now()
			if err := ledger(0, i); err != nil {
				b.Fatal(err)
			}
			mid := time.Now()
			if err := rawUpdate(0, i); err != nil {
				b.Fatal(err)
			}
			ours, theirs = append(ours, float64(mid.Sub(start))), append(theirs, float64(time.Since(mid)))
		}
		return median(ours) / median(theirs), mean(ours) / mean(theirs)
	}
	return []ratioCase{
		{"ledger-64w", timed(64, 32, ledger)},
		{"raw-batch-64w", timed(64, 32, rawBatch)},
		{"raw-update-64w", timed(64, 2, rawUpdate)},
	}, single
}

// timed returns a case running fn each times from each of w goroutines.
func timed(w, each int, fn func(g, i int) error) func(b *testing.B) float64 {
	return func(b *testing.B) float64 {
		var wg sync.WaitGroup
		start := time.Now()
		for g := range w {
			wg.Go(func() {
				for i := range each {
					if err := fn(g, i); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return float64(time.Since(start)) / float64(w*each)
	}
}

func mean(xs []float64) float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(max(len(xs), 1))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
