package qpool_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewPoolStartsNoGoroutine: NewPool "starts no goroutine: workers start
// with the first jobs", with or without a pool context. It looks for
// goroutines the library started that were not there before (goroutines of
// earlier tests may still be on their way out, so a plain count would not
// do).
func TestNewPoolStartsNoGoroutine(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := libraryGoroutines()
	pools := []*qpool.Pool{qpool.NewPool(), qpool.NewPool(qpool.WithContext(ctx), qpool.WithWorkers(8))}
	for id, stack := range libraryGoroutines() {
		if _, old := before[id]; !old {
			t.Errorf("NewPool started goroutine %s:\n%s", id, stack)
		}
	}
	for _, p := range pools {
		require.NoError(t, p.Close())
	}
}

// libraryGoroutines returns the stacks of the goroutines that the library
// started, by goroutine number.
func libraryGoroutines() map[string]string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	found := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "created by github.com/qpool/qpool.") {
			continue
		}
		header, _, _ := strings.Cut(g, " [")
		found[header] = g
	}
	return found
}

// TestWorkersStayOneIdleTimeout: a worker exits "between one and two idle
// timeouts after the last submission": not before one (the upper bound is
// TestIdlePoolHoldsNoGoroutines), on the fake clock, whatever the moment
// of the last submission within the reaper's period.
func TestWorkersStayOneIdleTimeout(t *testing.T) {
	const idle = time.Second
	for _, offset := range []time.Duration{0, idle / 3, idle - time.Millisecond} {
		t.Run(offset.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := qpool.NewPool(qpool.WithWorkers(2), qpool.WithIdleTimeout(idle))
				defer p.Close()
				require.NoError(t, p.Go(func() {})) // starts the reaper's period
				time.Sleep(offset)
				require.NoError(t, p.Go(func() {})) // the last submission
				p.Wait()
				time.Sleep(idle - time.Millisecond)
				synctest.Wait()
				assert.Positive(t, p.Stats().Workers, "a worker left before one idle timeout after the last submission")
				time.Sleep(idle + 2*time.Millisecond)
				synctest.Wait()
				assert.Zero(t, p.Stats().Workers, "a worker outlived two idle timeouts")
			})
		})
	}
}

// TestHotPathAllocations: Go runs a function "with no allocation of its
// own", and Schedule + Wait costs one allocation (the job with its future).
// Measured with testing.AllocsPerRun, so a regression fails CI rather than
// showing only in a benchmark. Skipped under the race detector, which
// allocates on its own account.
func TestHotPathAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's own allocations would be counted")
	}
	p := qpool.NewPool(qpool.WithWorkers(1))
	defer p.Close()
	fn := func() {}
	goAllocs := testing.AllocsPerRun(2000, func() {
		if err := p.Go(fn); err != nil {
			t.Fatal(err)
		}
		p.Wait()
	})
	assert.Zero(t, goAllocs, "Go allocated")
	job := func() (any, error) { return nil, nil }
	ids := make([]string, 2001)
	for i := range ids {
		ids[i] = fmt.Sprint("job-", i)
	}
	i := 0
	scheduleAllocs := testing.AllocsPerRun(2000, func() {
		if _, err := p.Schedule(ids[i], job).Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		i++
	})
	assert.LessOrEqual(t, scheduleAllocs, 1.05, "Schedule + Wait allocated more than its job")

	// A job that reads a value from its context (a trace span, a logger)
	// does not make the pool build a cancellable context for it.
	type key struct{}
	parent := context.WithValue(context.Background(), key{}, "span")
	valueJob := func(ctx context.Context) (any, error) { return ctx.Value(key{}), nil }
	valueAllocs := testing.AllocsPerRun(2000, func() {
		if v, err := qpool.Submit(p, ids[i%len(ids)], valueJob, qpool.WithParent(parent)).Wait(context.Background()); err != nil || v != "span" {
			t.Fatal(v, err)
		}
		i++
	})
	// The job, the copy of its configuration that WithParent makes, the
	// option's boxing and the parent's wrapper made once per submission.
	assert.LessOrEqual(t, valueAllocs, 4.05, "a job reading a value from its context allocated a context")
}

// countingLedger counts the reads an entanglement makes of its ledger.
type countingLedger struct {
	*qpool.MemoryLedger
	gets, reads atomic.Int64
}

func (l *countingLedger) Get(key string) (any, uint64, bool) {
	l.gets.Add(1)
	return l.MemoryLedger.Get(key)
}

func (l *countingLedger) Read(ctx context.Context, since uint64, limit int) ([]qpool.StateChange, error) {
	l.reads.Add(1)
	return l.MemoryLedger.Read(ctx, since, limit)
}

// TestAwaitPollsNothing: Await "sleeps until the next change": while no
// change is recorded it reads the ledger no more, however long it waits
// (on the fake clock, an hour), and each change wakes it once.
func TestAwaitPollsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &countingLedger{MemoryLedger: qpool.NewMemoryLedger()}
		e := qpool.NewEntanglement("await", nil, 0, qpool.WithLedger(l))
		defer e.Close()
		done := make(chan error, 1)
		go func() {
			_, err := e.Await(context.Background(), "wanted")
			done <- err
		}()
		synctest.Wait()
		idle := l.gets.Load() + l.reads.Load()
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Equal(t, idle, l.gets.Load()+l.reads.Load(), "Await read the ledger while nothing changed")
		for i := range 10 {
			require.NoError(t, e.UpdateState(fmt.Sprint("other-", i), i))
			synctest.Wait()
		}
		assert.LessOrEqual(t, l.gets.Load()+l.reads.Load()-idle, int64(2*10), "more than a look or two per change")
		require.NoError(t, e.UpdateState("wanted", true))
		require.NoError(t, <-done)
	})
}

// TestPanickingCallbacksLeaveTheEntanglementGoing: a callback that panics
// is recovered and logged, and "the entanglement goes on": every change is
// still recorded and delivered once, in order, to the callbacks that do not
// panic, with many updaters and panics at random.
func TestPanickingCallbacksLeaveTheEntanglementGoing(t *testing.T) {
	const updaters, each = 4, 300
	var (
		mu   sync.Mutex
		seen []uint64
	)
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	var rmu sync.Mutex
	panicNow := func() bool { rmu.Lock(); defer rmu.Unlock(); return rng.IntN(3) == 0 }
	e := qpool.NewEntanglement("panics", nil, 0,
		qpool.WithLogger(discardLogger()),
		qpool.WithOnChange(func(c qpool.StateChange) {
			mu.Lock()
			seen = append(seen, c.Sequence)
			mu.Unlock()
			if panicNow() {
				panic(errors.New("callback panic"))
			}
		}))
	defer e.Close()
	e.SetOnStateChange(func(_, _ map[string]any) {
		if panicNow() {
			panic("state callback panic")
		}
	})
	var wg sync.WaitGroup
	for u := range updaters {
		wg.Go(func() {
			for i := range each {
				if err := e.UpdateState(fmt.Sprint("k", u), i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	watchdog(t, done, "updaters with panicking callbacks")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, updaters*each)
	for i, s := range seen {
		require.Equal(t, uint64(i), s)
	}
	assert.Len(t, e.GetStateHistory(0), updaters*each)
}

// unreadableLedger holds history it cannot read back (a store that fails).
type unreadableLedger struct {
	*qpool.MemoryLedger
	closed atomic.Bool
}

func (l *unreadableLedger) Read(context.Context, uint64, int) ([]qpool.StateChange, error) {
	return nil, errUnreachable
}

func (l *unreadableLedger) Close() error {
	l.closed.Store(true)
	return l.MemoryLedger.Close()
}

// TestOpenEntanglementUnreadableLedger: OpenEntanglement "returns an error
// when the ledger cannot be read"; "the ledger is then left open for the
// caller".
func TestOpenEntanglementUnreadableLedger(t *testing.T) {
	l := &unreadableLedger{MemoryLedger: qpool.NewMemoryLedger()}
	_, err := l.Append(context.Background(), qpool.Mutation{Key: "k", Value: 1})
	require.NoError(t, err)
	e, err := qpool.OpenEntanglement(context.Background(), "unreadable", nil, time.Hour, qpool.WithLedger(l))
	require.ErrorIs(t, err, errUnreachable)
	assert.Nil(t, e)
	assert.False(t, l.closed.Load(), "the ledger was closed")
	_, err = l.Append(context.Background(), qpool.Mutation{Key: "k", Value: 2})
	assert.NoError(t, err, "the ledger is left open for the caller")
	require.NoError(t, l.Close())
}
