package bench

import (
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// SpinEnv names the environment variable that fixes the spin count of the
// CPU workload, so that every process of one run does the same work.
const SpinEnv = "QBENCH_SPIN"

var spinSink atomic.Uint64

// Spin burns CPU for n rounds of a xorshift generator. The result is
// published only when it is zero (never, in practice), so the loop cannot
// be optimised away and tasks on different cores share no cache line.
func Spin(n int) {
	x := uint64(n) | 1
	for range n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	if x == 0 {
		spinSink.Add(1)
	}
}

// CalibrateSpin returns the spin count that takes about target on one core:
// from the fastest of seven timed spins of 4M rounds, scaled.
func CalibrateSpin(target time.Duration) int {
	const rounds = 1 << 22
	best := time.Duration(1 << 62)
	for range 7 {
		start := time.Now()
		Spin(rounds)
		best = min(best, time.Since(start))
	}
	return max(int(float64(rounds)*float64(target)/float64(best)), 1)
}

var spinOnce = sync.OnceValue(func() int {
	if n, err := strconv.Atoi(os.Getenv(SpinEnv)); err == nil && n > 0 {
		return n
	}
	return CalibrateSpin(time.Microsecond)
})

// SpinCount is the spin count of the CPU workload: QBENCH_SPIN when set,
// else calibrated once per process to about 1 µs.
func SpinCount() int { return spinOnce() }
