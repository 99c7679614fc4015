package qpool_test

// The tests in this file run every code example of the reference document,
// "Quantum Entanglement in QPool" (entanglement.md), as close to its wording
// as Go allows, and check what its text promises. Where the document's code
// is racy or never ends, the test says how it was adapted, and why.
//
// The TestRegression tests below them pin down defects of the document's
// earlier implementation, so that they do not come back.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"maps"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// errNoData is the document's errors.New("no data to process"), named so
// that tests can match it with errors.Is.
var errNoData = errors.New("no data to process")

// fetchData stands for the document's data source.
func fetchData() []int { return []int{1, 2, 3} }

// processData doubles every item of the fetched data.
func processData(value any) []int {
	in, _ := value.([]int)
	out := make([]int, len(in))
	for i, x := range in {
		out[i] = 2 * x
	}
	return out
}

func processPartition1() []int { return []int{1, 2, 3} }
func processPartition2() []int { return []int{4, 5, 6} }

// combineResults sums every partition; a missing partition (nil) adds
// nothing, which is how the document's unsynchronised aggregate went wrong.
func combineResults(parts ...any) int {
	sum := 0
	for _, p := range parts {
		xs, _ := p.([]int)
		for _, x := range xs {
			sum += x
		}
	}
	return sum
}

// specMetrics is what the document's monitor collects.
type specMetrics struct {
	Round int
	CPU   int // percent
}

// newMetricsCollector returns the document's collectMetrics: each call is one
// round, with a CPU load that follows a fixed pattern.
func newMetricsCollector() func() specMetrics {
	loads := []int{20, 90, 50}
	round := 0
	return func() specMetrics {
		round++
		return specMetrics{Round: round, CPU: loads[(round-1)%len(loads)]}
	}
}

// adjustScale returns how many replicas the metrics call for.
func adjustScale(metrics any) int {
	m, _ := metrics.(specMetrics)
	switch {
	case m.CPU >= 80:
		return 4
	case m.CPU >= 50:
		return 2
	default:
		return 1
	}
}

// newSpecPool returns a pool closed when the test ends.
func newSpecPool(t *testing.T, opts ...qpool.Option) *qpool.Pool {
	t.Helper()
	p := qpool.NewPool(opts...)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

// newSpecEntanglement returns an entanglement closed when the test ends.
func newSpecEntanglement(t *testing.T, id string, jobs []qpool.Job, ttl time.Duration, opts ...qpool.EntanglementOption) *qpool.Entanglement {
	t.Helper()
	e := qpool.NewEntanglement(id, jobs, ttl, opts...)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	return e
}

// Creating an Entanglement.
func TestSpecCreatingAnEntanglement(t *testing.T) {
	// Create an entanglement with two related jobs
	jobs := []qpool.Job{
		{ID: "data-fetch"},
		{ID: "data-process"},
	}
	entanglement := qpool.NewEntanglement("data-pipeline", jobs, 1*time.Hour)
	defer func() { require.NoError(t, entanglement.Close()) }()

	want := []qpool.Job{{ID: "data-fetch"}, {ID: "data-process"}}
	require.Equal(t, "data-pipeline", entanglement.ID())
	require.Equal(t, want, entanglement.Jobs())
	require.False(t, entanglement.IsExpired())

	// Neither the caller's slice nor the returned one is shared.
	jobs[0].ID = "changed-by-caller"
	got := entanglement.Jobs()
	got[1].ID = "changed-by-reader"
	require.Equal(t, want, entanglement.Jobs())
}

// specFetch and specProcess are the document's two jobs, verbatim but for
// errNoData.
func specFetch(entanglement *qpool.Entanglement) func() (any, error) {
	return func() (any, error) {
		data := fetchData()
		if err := entanglement.UpdateState("raw-data", data); err != nil {
			return nil, err
		}
		return "fetch-complete", nil
	}
}

func specProcess(entanglement *qpool.Entanglement) func() (any, error) {
	return func() (any, error) {
		if value, exists := entanglement.GetState("raw-data"); exists {
			processedData := processData(value)
			if err := entanglement.UpdateState("processed-data", processedData); err != nil {
				return nil, err
			}
			return "process-complete", nil
		}
		return nil, errNoData
	}
}

// Sharing State Between Jobs. The document schedules both jobs with nothing
// ordering them, so data-process may run first; each subtest makes one
// ordering deterministic.
func TestSpecSharingStateBetweenJobs(t *testing.T) {
	ctx := t.Context()
	jobs := []qpool.Job{{ID: "data-fetch"}, {ID: "data-process"}}

	t.Run("ProcessDependsOnFetch", func(t *testing.T) {
		pool := newSpecPool(t, qpool.WithWorkers(2))
		entanglement := newSpecEntanglement(t, "data-pipeline", jobs, time.Hour)
		fetch := pool.Schedule("data-fetch", specFetch(entanglement))
		process := pool.Schedule("data-process", specProcess(entanglement), qpool.WithDependencies("data-fetch"))

		v, err := fetch.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, "fetch-complete", v)
		v, err = process.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, "process-complete", v)
		got, ok := entanglement.GetState("processed-data")
		require.True(t, ok)
		require.Equal(t, []int{2, 4, 6}, got)
	})

	t.Run("ProcessStartsAfterFetchCompleted", func(t *testing.T) {
		pool := newSpecPool(t, qpool.WithWorkers(2))
		entanglement := newSpecEntanglement(t, "data-pipeline", jobs, time.Hour)
		_, err := pool.Schedule("data-fetch", specFetch(entanglement)).Wait(ctx)
		require.NoError(t, err)

		// Even if this job starts after data-fetch is complete,
		// it will still see the state changes
		v, err := pool.Schedule("data-process", specProcess(entanglement)).Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, "process-complete", v)
		history := entanglement.GetStateHistory(0)
		require.Len(t, history, 2)
		require.Equal(t, "raw-data", history[0].Key)
		require.Equal(t, "processed-data", history[1].Key)
	})

	t.Run("ProcessBeforeFetchFailsWithNoData", func(t *testing.T) {
		// The document's no-wait variant, with the bad ordering forced: the
		// failure is the job's own error on its future, not a panic.
		pool := newSpecPool(t, qpool.WithWorkers(2))
		entanglement := newSpecEntanglement(t, "data-pipeline", jobs, time.Hour)
		v, err := pool.Schedule("data-process", specProcess(entanglement)).Wait(ctx)
		require.ErrorIs(t, err, errNoData)
		require.EqualError(t, err, "no data to process")
		var pe *qpool.PanicError
		require.False(t, errors.As(err, &pe))
		require.Nil(t, v)
		_, ok := entanglement.GetState("processed-data")
		require.False(t, ok)
		require.Zero(t, pool.Stats().Panicked)
	})

	t.Run("NoWaitAsWrittenSucceedsOrReportsNoData", func(t *testing.T) {
		// The document's code as written: either ordering may happen, and
		// each run ends in one of exactly two documented outcomes.
		for i := range 50 {
			pool := qpool.NewPool(qpool.WithWorkers(2))
			entanglement := qpool.NewEntanglement("data-pipeline", jobs, time.Hour)
			fetch := pool.Schedule("data-fetch", specFetch(entanglement))
			process := pool.Schedule("data-process", specProcess(entanglement))
			_, err := fetch.Wait(ctx)
			require.NoError(t, err)
			v, err := process.Wait(ctx)
			_, processed := entanglement.GetState("processed-data")
			if err != nil {
				require.ErrorIs(t, err, errNoData, "run %d", i)
				require.False(t, processed, "run %d", i)
			} else {
				require.Equal(t, "process-complete", v, "run %d", i)
				require.True(t, processed, "run %d", i)
			}
			require.NoError(t, pool.Close())
			require.NoError(t, entanglement.Close())
		}
	})
}

// State Change Notifications.
func TestSpecStateChangeNotifications(t *testing.T) {
	var buf bytes.Buffer
	logger := log.New(&buf, "", 0) // the document's log.Printf, into a buffer
	entanglement := newSpecEntanglement(t, "notify", nil, time.Hour)

	// Set up a callback for state changes
	entanglement.OnStateChange = func(oldState, newState map[string]any) {
		logger.Printf("State changed from %v to %v", oldState, newState)
	}

	// All state changes will trigger this callback
	require.NoError(t, entanglement.UpdateState("status", "processing"))
	// Logs: State changed from map[] to map[status:processing]
	// Read with no synchronisation: the callback must have returned already.
	require.Equal(t, "State changed from map[] to map[status:processing]\n", buf.String())

	require.NoError(t, entanglement.UpdateState("status", "done"))
	require.NoError(t, entanglement.DeleteState("status"))
	require.Equal(t, strings.Join([]string{
		"State changed from map[] to map[status:processing]",
		"State changed from map[status:processing] to map[status:done]",
		"State changed from map[status:done] to map[]",
	}, "\n")+"\n", buf.String())
}

// Accessing State History.
func TestSpecAccessingStateHistory(t *testing.T) {
	entanglement := newSpecEntanglement(t, "history", nil, time.Hour)
	for i := range 8 {
		require.NoError(t, entanglement.UpdateState(fmt.Sprintf("k%d", i%3), i))
	}

	// Get complete state history
	var out bytes.Buffer
	history := entanglement.GetStateHistory(0)
	for _, change := range history {
		fmt.Fprintf(&out, "At %v: %s = %v\n", change.Timestamp, change.Key, change.Value)
	}
	require.Len(t, history, 8)
	for i, change := range history {
		require.Equal(t, uint64(i), change.Sequence)
		require.Equal(t, fmt.Sprintf("k%d", i%3), change.Key)
		require.Equal(t, i, change.Value)
		require.False(t, change.Deleted)
		if i > 0 {
			require.False(t, change.Timestamp.Before(history[i-1].Timestamp), "timestamps go back at %d", i)
		}
	}
	require.Equal(t, 8, strings.Count(out.String(), "\n"))
	require.Contains(t, out.String(), ": k1 = 7\n")

	// Get state changes since a specific sequence number
	recentChanges := entanglement.GetStateHistory(5)
	require.Len(t, recentChanges, 3)
	for _, change := range recentChanges {
		require.GreaterOrEqual(t, change.Sequence, uint64(5))
	}
	require.Equal(t, history[5:], recentChanges)
	require.Empty(t, entanglement.GetStateHistory(8))
	require.Empty(t, entanglement.GetStateHistory(1000))
}

// Distributed Data Processing. The document's aggregate reads both results
// whenever it happens to run, and may combine nothing; here it waits for both
// partitions, first through dependencies, then through Await.
func TestSpecDistributedDataProcessing(t *testing.T) {
	ctx := t.Context()
	partition := func(entanglement *qpool.Entanglement, key string, process func() []int) func() (any, error) {
		return func() (any, error) {
			data := process()
			if err := entanglement.UpdateState(key, data); err != nil {
				return nil, err
			}
			return data, nil
		}
	}

	t.Run("Dependencies", func(t *testing.T) {
		pool := newSpecPool(t, qpool.WithWorkers(3))
		entanglement := newSpecEntanglement(t, "partitions", nil, time.Hour)
		pool.Schedule("partition-1", partition(entanglement, "part1-result", processPartition1))
		pool.Schedule("partition-2", partition(entanglement, "part2-result", processPartition2))
		aggregate := pool.Schedule("aggregate", func() (any, error) {
			part1, _ := entanglement.GetState("part1-result")
			part2, _ := entanglement.GetState("part2-result")
			return combineResults(part1, part2), nil
		}, qpool.WithDependencies("partition-1", "partition-2"))

		v, err := aggregate.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, 21, v)
	})

	t.Run("Await", func(t *testing.T) {
		// The aggregate is scheduled first and holds a worker while it
		// awaits, so the pool needs a worker for each partition besides.
		pool := newSpecPool(t, qpool.WithWorkers(3))
		entanglement := newSpecEntanglement(t, "partitions", nil, time.Hour)
		aggregate := qpool.Submit(pool, "aggregate", func(ctx context.Context) (int, error) {
			part1, err := entanglement.Await(ctx, "part1-result")
			if err != nil {
				return 0, err
			}
			part2, err := entanglement.Await(ctx, "part2-result")
			if err != nil {
				return 0, err
			}
			return combineResults(part1, part2), nil
		})
		pool.Schedule("partition-2", partition(entanglement, "part2-result", processPartition2))
		pool.Schedule("partition-1", partition(entanglement, "part1-result", processPartition1))

		v, err := aggregate.Wait(ctx)
		require.NoError(t, err)
		require.Equal(t, 21, v)
	})
}

// Coordinated Task Execution. The document's monitor loops forever with
// time.Sleep(time.Second), so neither its job nor the pool's Close would ever
// end. Adapted: the loop also ends when a context is cancelled, and the
// sleep is a ticker select; synctest's fake clock makes the seconds instant.
func TestSpecCoordinatedTaskExecution(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pool := qpool.NewPool(qpool.WithWorkers(2))
		entanglement := qpool.NewEntanglement("coordination", nil, time.Hour)
		collectMetrics := newMetricsCollector()
		stop, cancel := context.WithCancel(context.Background())
		defer cancel()

		monitor := pool.Schedule("monitor", func() (any, error) {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				metrics := collectMetrics()
				if err := entanglement.UpdateState("system-metrics", metrics); err != nil {
					return nil, err
				}
				select { // was: time.Sleep(time.Second)
				case <-tick.C:
				case <-stop.Done():
					return nil, stop.Err()
				}
			}
		})

		var scaled []int // written by a scaler job, read after its Wait
		scaler := func() (any, error) {
			if metrics, exists := entanglement.GetState("system-metrics"); exists {
				scaled = append(scaled, adjustScale(metrics))
			}
			return nil, nil
		}

		synctest.Wait() // the monitor has stored round 1 and sleeps
		_, err := pool.Schedule("scaler", scaler).Wait(context.Background())
		require.NoError(t, err)
		require.Equal(t, []int{1}, scaled) // round 1: CPU 20%

		time.Sleep(1500 * time.Millisecond) // round 2 at 1s
		synctest.Wait()
		_, err = pool.Schedule("scaler", scaler).Wait(context.Background())
		require.NoError(t, err)
		require.Equal(t, []int{1, 4}, scaled) // round 2: CPU 90%

		time.Sleep(time.Second) // round 3 at 2s
		synctest.Wait()
		history := entanglement.GetStateHistory(0)
		require.Len(t, history, 3)
		for i, change := range history {
			require.Equal(t, "system-metrics", change.Key)
			require.Equal(t, i+1, change.Value.(specMetrics).Round)
		}

		cancel()
		_, err = monitor.Wait(context.Background())
		require.ErrorIs(t, err, context.Canceled)
		require.NoError(t, pool.Close())
		require.NoError(t, entanglement.Close())
	})
}

// The history returned to a caller is the caller's: changing it changes
// nothing in the ledger.
func TestRegressionHistoryBelongsToCaller(t *testing.T) {
	e := newSpecEntanglement(t, "history-owned", nil, time.Hour)
	require.NoError(t, e.UpdateState("a", 1))
	require.NoError(t, e.UpdateState("b", 2))
	want := e.GetStateHistory(0)

	h := e.GetStateHistory(0)
	h[0].Key, h[0].Value, h[0].Sequence, h[0].Deleted = "mutated", "x", 99, true
	h[1] = qpool.StateChange{}
	_ = append(h[:1], qpool.StateChange{Key: "appended"})
	require.Equal(t, want, e.GetStateHistory(0))

	v, ok := e.GetState("a")
	require.True(t, ok)
	require.Equal(t, 1, v)

	snap := e.Snapshot()
	snap["a"] = "mutated"
	delete(snap, "b")
	require.Equal(t, map[string]any{"a": 1, "b": 2}, e.Snapshot())
}

// The maps handed to OnStateChange never change after the call, whatever
// updates follow.
func TestRegressionOnStateChangeMapsNeverChange(t *testing.T) {
	e := newSpecEntanglement(t, "maps-frozen", nil, time.Hour)
	type call struct{ old, new, oldCopy, newCopy map[string]any }
	var calls []call
	e.OnStateChange = func(oldState, newState map[string]any) {
		calls = append(calls, call{oldState, newState, maps.Clone(oldState), maps.Clone(newState)})
	}

	require.NoError(t, e.UpdateState("a", 1))
	require.NoError(t, e.UpdateState("b", 2))
	require.NoError(t, e.UpdateState("a", 3))
	require.NoError(t, e.DeleteState("b"))
	require.NoError(t, e.Update("a", func(old any, _ bool) (any, error) { return old.(int) + 1, nil }))
	require.NoError(t, e.UpdateState("c", 5))

	require.Len(t, calls, 6)
	for i, c := range calls {
		require.Equal(t, c.oldCopy, c.old, "old state of call %d changed", i)
		require.Equal(t, c.newCopy, c.new, "new state of call %d changed", i)
	}
	require.Equal(t, map[string]any{}, calls[0].old)
	require.Equal(t, map[string]any{"a": 1}, calls[0].new)
	require.Equal(t, map[string]any{"a": 3}, calls[3].new)
	require.Equal(t, map[string]any{"a": 4, "c": 5}, calls[5].new)
	require.Equal(t, e.Snapshot(), calls[5].new)
}

// The maps handed to OnStateChange belong to the callback, as its doc says:
// a callback that changes them changes neither the state nor what later
// callbacks see.
func TestRegressionOnStateChangeMapsBelongToCallback(t *testing.T) {
	e := newSpecEntanglement(t, "maps-owned", nil, time.Hour)
	type call struct{ old, new map[string]any }
	var calls []call
	e.OnStateChange = func(oldState, newState map[string]any) {
		calls = append(calls, call{maps.Clone(oldState), maps.Clone(newState)})
		oldState["scribbled-old"] = true
		newState["scribbled-new"] = true
		delete(newState, "a")
	}

	require.NoError(t, e.UpdateState("a", 1))
	require.NoError(t, e.UpdateState("b", 2))

	require.Equal(t, map[string]any{"a": 1, "b": 2}, e.Snapshot())
	require.Equal(t, []call{
		{old: map[string]any{}, new: map[string]any{"a": 1}},
		{old: map[string]any{"a": 1}, new: map[string]any{"a": 1, "b": 2}},
	}, calls)
}

// A callback that calls UpdateState itself must not deadlock, and its
// change is delivered after the one that triggered it, in sequence order.
// The callbacks run on the updater's goroutine, not the test's, so they
// check with assert, not require.
func TestRegressionReentrantCallbackDoesNotDeadlock(t *testing.T) {
	var mu sync.Mutex // guards seen: a nested change may be delivered on any goroutine
	var seen []string
	var e *qpool.Entanglement
	e = newSpecEntanglement(t, "reentrant", nil, time.Hour, qpool.WithOnChange(func(c qpool.StateChange) {
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%d:%s", c.Sequence, c.Key))
		mu.Unlock()
		if c.Key == "request" {
			assert.NoError(t, e.UpdateState("reply", c.Value))
			_ = e.GetStateHistory(0)
			_ = e.Snapshot()
		}
	}))
	var states []string
	e.OnStateChange = func(_, newState map[string]any) {
		states = append(states, fmt.Sprint(newState))
		if _, ok := newState["reply"]; ok && newState["ack"] == nil {
			assert.NoError(t, e.UpdateState("ack", true))
		}
	}

	done := make(chan error, 1)
	go func() { done <- e.UpdateState("request", 42) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second): // watchdog: turns a deadlock into a failure
		require.FailNow(t, "UpdateState from a callback deadlocked")
	}

	require.Equal(t, map[string]any{"request": 42, "reply": 42, "ack": true}, e.Snapshot())
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"0:request", "1:reply", "2:ack"}, seen)
	require.Equal(t, []string{
		"map[request:42]",
		"map[reply:42 request:42]",
		"map[ack:true reply:42 request:42]",
	}, states)
}

// Expiry happens: once the TTL since the last change has passed, the state
// is gone and updates fail with ErrExpired. The clock is synctest's.
func TestRegressionExpiryHappens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		expired := make(chan string, 1)
		e := qpool.NewEntanglement("short-lived", nil, time.Minute,
			qpool.WithOnExpire(func(id string) { expired <- id }))
		require.NoError(t, e.UpdateState("k", 1))

		watch := e.Watch(context.Background(), 0)
		require.Equal(t, "k", (<-watch).Key)

		time.Sleep(30 * time.Second)
		require.NoError(t, e.UpdateState("k", 2)) // the TTL restarts here
		time.Sleep(59 * time.Second)
		synctest.Wait()
		require.False(t, e.IsExpired(), "expired less than a TTL after the last change")
		require.Equal(t, 2, (<-watch).Value)

		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.True(t, e.IsExpired())
		require.Equal(t, "short-lived", <-expired)
		_, ok := e.GetState("k")
		require.False(t, ok)
		require.Empty(t, e.Snapshot())
		require.Empty(t, e.GetStateHistory(0))
		require.ErrorIs(t, e.UpdateState("k", 3), qpool.ErrExpired)
		require.ErrorIs(t, e.DeleteState("k"), qpool.ErrExpired)
		require.ErrorIs(t, e.Update("k", func(any, bool) (any, error) { return 4, nil }), qpool.ErrExpired)
		_, err := e.Await(context.Background(), "k")
		require.ErrorIs(t, err, qpool.ErrExpired)
		_, open := <-watch
		require.False(t, open, "a watch outlived expiry")
		_, open = <-e.Watch(context.Background(), 0)
		require.False(t, open)
		require.NoError(t, e.Close())
		require.True(t, e.IsExpired())
	})
}
