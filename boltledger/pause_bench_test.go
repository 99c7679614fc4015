package boltledger_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/qpool/qpool"
)

// BenchmarkPausingWriters: w writers, each pausing a random
// U[0, 2*pause) between appends (work between records). Reports the mean,
// median and 90th percentile Append latency, the changes per commit, and,
// measured in the same run with the process idle, how long a 100 µs timer
// (gather's maxGap) really takes to fire.
func BenchmarkPausingWriters(b *testing.B) {
	for _, w := range []int{1, 2, 4, 8} {
		for _, pause := range []time.Duration{0, 150 * time.Microsecond} {
			b.Run(fmt.Sprintf("writers=%d/pause=%v", w, 2*pause), func(b *testing.B) {
				db, _ := openDB(b)
				l := ledger(b, db, "pause")
				lats := make([][]time.Duration, w)
				rngs := make([]*rand.Rand, w)
				for g := range rngs {
					rngs[g] = rand.New(rand.NewPCG(uint64(g), 4))
				}
				runWriters(b, w, func(g, i int) error {
					if pause > 0 {
						time.Sleep(time.Duration(rngs[g].Int64N(int64(2 * pause))))
					}
					t0 := time.Now()
					_, err := l.Append(b.Context(), qpool.Mutation{Key: fmt.Sprint("w", g), Value: float64(i)})
					lats[g] = append(lats[g], time.Since(t0))
					return err
				})
				all := slices.Concat(lats...)
				slices.Sort(all)
				var sum time.Duration
				for _, x := range all {
					sum += x
				}
				b.ReportMetric(float64(sum.Microseconds())/float64(len(all)), "mean-append-µs")
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-append-µs")
				b.ReportMetric(float64(all[len(all)*9/10].Microseconds()), "p90-append-µs")
				s := db.Stats()
				b.ReportMetric(float64(s.Changes)/float64(max(s.Commits, 1)), "changes/commit")
				b.ReportMetric(float64(timer100(20).Microseconds()), "timer100µs-fires-after-µs")
			})
		}
	}
}

// timer100 returns the median time a 100 µs timer takes to fire.
func timer100(n int) time.Duration {
	xs := make([]time.Duration, n)
	for i := range xs {
		t0 := time.Now()
		tm := time.NewTimer(100 * time.Microsecond)
		<-tm.C
		xs[i] = time.Since(t0)
	}
	slices.Sort(xs)
	return xs[n/2]
}
