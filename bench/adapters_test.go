package bench

import (
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// These tests check only that every adapter runs its workload correctly on
// a tiny size: every task ran exactly once and the collected results are
// right. They never look at a clock.

func TestRunnersRunEveryTaskOnce(t *testing.T) {
	t.Setenv(SpinEnv, "10")
	for _, w := range PoolWorkloads() {
		for _, rc := range Runners() {
			t.Run(w.Name+"/"+rc.Name, func(t *testing.T) {
				var count atomic.Int64
				const n = 500
				require.NoError(t, RunPool(rc, min(WorkersFor(w.Workers), 16), n, w.Task(&count)))
				require.EqualValues(t, n, count.Load())
			})
		}
	}
}

func TestResultRunnersCollectEveryResult(t *testing.T) {
	const n = 1000
	ids := IDs(n)
	for _, rc := range ResultRunners() {
		t.Run(rc.Name, func(t *testing.T) {
			out := make([]int, n)
			var calls atomic.Int64
			fn := func(i int) int { calls.Add(1); return ResultFn(i) }
			require.NoError(t, rc.R.Run(4, ids, fn, out))
			require.NoError(t, CheckResults(out))
			require.EqualValues(t, n, calls.Load())
		})
	}
}

func TestEntangledRunnersRecordEveryUpdate(t *testing.T) {
	const n, groups = 800, 8
	ids, keys := IDs(n), Keys(16)
	for _, rc := range EntangledRunners() {
		t.Run(rc.Name, func(t *testing.T) {
			found, stores, err := rc.R.Run(4, groups, ids, keys)
			require.NoError(t, err)
			require.EqualValues(t, n, found)
			require.Len(t, stores, groups)
			var total uint64
			for _, s := range stores {
				total += s.Len()
				s.Close()
			}
			require.EqualValues(t, n, total)
		})
	}
}

func TestStoresRecordAndRead(t *testing.T) {
	keys := Keys(10)
	for _, sc := range Stores() {
		t.Run(sc.Name, func(t *testing.T) {
			s := sc.New()
			defer s.Close()
			if es, ok := s.(*EntStore); ok {
				es.Arm()
			}
			for i := range 100 {
				require.NoError(t, s.Update(keys[i%len(keys)], i))
			}
			require.EqualValues(t, 100, s.Len())
			v, ok := s.Get(keys[3])
			require.True(t, ok)
			require.Equal(t, 93, v)
			_, ok = s.Get("absent")
			require.False(t, ok)
			require.Equal(t, 10, s.Tail(90))
			require.Equal(t, 100, s.Tail(0))
			require.Equal(t, 0, s.Tail(100))
			if es, ok := s.(*EntStore); ok && es.hook != 0 {
				es.WaitSeen(100)
				require.EqualValues(t, 100, es.Seen())
			}
		})
	}
}

func TestCasesAreUniqueAndHaveFloors(t *testing.T) {
	seen := map[string]bool{}
	floors := map[string]bool{}
	for _, c := range Cases() {
		require.False(t, seen[c.Name()], c.Name())
		seen[c.Name()] = true
		if c.Impl == c.Floor {
			floors[c.Group] = true
		}
	}
	for _, c := range Cases() {
		require.True(t, floors[c.Group], "group %s has no floor case", c.Group)
	}
}

func TestSpinCalibrates(t *testing.T) {
	require.Positive(t, CalibrateSpin(1000))
}
