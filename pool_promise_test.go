package qpool_test

// Tests of the pool's promises under adversarial interleavings (issue 13,
// defects 1, 2, 4 and 5): each hammers one sentence of the docs from many
// goroutines over many rounds, with a watchdog that reports a hang as a
// failure.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
)

// watchdog fails t if done does not close within a generous bound.
func watchdog(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("watchdog: %s\n%s", what, buf[:runtime.Stack(buf, true)])
	}
}

// TestResizeDownLimitsIdleWorkers: four idle workers, Resize(1), then four
// jobs that block. Only one may start: an idle worker handed a job, or
// woken for a queued one, must respect the limit in force, not only a
// worker that looks for its next job. With and without a queue, by Go and
// by Schedule.
func TestResizeDownLimitsIdleWorkers(t *testing.T) {
	for _, size := range []int{0, 1, 64} {
		for _, useGo := range []bool{false, true} {
			t.Run(fmt.Sprintf("queue=%d/go=%v", size, useGo), func(t *testing.T) {
				for round := range 20 {
					resizeDownRound(t, size, useGo, round)
				}
			})
		}
	}
}

func resizeDownRound(t *testing.T, size int, useGo bool, round int) {
	p := qpool.NewPool(qpool.WithWorkers(4), qpool.WithQueueSize(size), qpool.WithIdleTimeout(time.Hour))
	defer p.Close()
	// Four workers, then idle.
	warm := make(gate)
	for i := range 4 {
		p.Schedule(fmt.Sprintf("warm-%d", i), warm.job)
	}
	waitFor(t, func() bool { return p.Stats().Running == 4 })
	warm.open()
	p.Wait()
	require.Equal(t, 4, p.Stats().Workers)

	p.Resize(1)
	var now, peak, started atomic.Int32
	g := make(gate)
	var submitted sync.WaitGroup
	var opened sync.Once
	// After a failure too: open the gate, let the submitters finish, then close.
	defer submitted.Wait()
	defer opened.Do(g.open)
	fn := func() {
		n := now.Add(1)
		started.Add(1)
		for m := peak.Load(); n > m && !peak.CompareAndSwap(m, n); m = peak.Load() {
		}
		<-g
		now.Add(-1)
	}
	for i := range 4 {
		submitted.Go(func() { // with no queue, a submission blocks
			if useGo {
				if err := p.Go(fn); err != nil {
					t.Error(err)
				}
				return
			}
			p.Schedule(fmt.Sprintf("job-%d", i), func() (any, error) { fn(); return nil, nil })
		})
	}
	// Either the limit holds (one job started, the pool down to one
	// worker) or it is broken (more than one started).
	settled := make(chan struct{})
	go func() {
		defer close(settled)
		for !(started.Load() > 1 || started.Load() == 1 && p.Stats().Workers == 1) {
			runtime.Gosched()
		}
	}()
	watchdog(t, settled, "no job started after Resize(1)")
	require.LessOrEqual(t, peak.Load(), int32(1), "round %d: %d jobs ran at once after Resize(1)", round, peak.Load())
	opened.Do(g.open)
	submitted.Wait()
	p.Wait()
	require.Equal(t, int32(4), started.Load())
	require.LessOrEqual(t, peak.Load(), int32(1), "round %d: %d jobs ran at once after Resize(1)", round, peak.Load())
}

// limitLog records the limits a test sets with Resize and the functions
// running, and checks each start against the limit in force. Resize is
// called under mu, so the history is exact: a task submitted when the
// history had v+1 entries was submitted under limit hist[v] or a later one.
// A function that starts at s may share the pool with functions that began
// earlier under a higher limit; the pool promises that the functions
// running at s number no more than the highest limit in force between the
// submission of the oldest of them and s (after Resize(n) returns, at most
// n run at once once the functions already running have finished).
type limitLog struct {
	mu      sync.Mutex
	hist    []int       // limits in the order they were set; hist[0] is the initial one
	running map[int]int // running functions by the history index at their submission
	now     int
	worst   string // the first violation seen
}

func (l *limitLog) resize(p *qpool.Pool, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hist = append(l.hist, n)
	p.Resize(n)
}

// submitted returns the history index in force at a submission.
func (l *limitLog) submitted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.hist) - 1
}

func (l *limitLog) start(v int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.now++
	l.running[v]++
	oldest := v
	for w := range l.running {
		oldest = min(oldest, w)
	}
	if bound := slices.Max(l.hist[oldest:]); l.now > bound && l.worst == "" {
		l.worst = fmt.Sprintf("%d functions ran at once; the limits in force since the oldest's submission were %v", l.now, l.hist[oldest:])
	}
}

func (l *limitLog) end(v int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.now--
	if l.running[v]--; l.running[v] == 0 {
		delete(l.running, v)
	}
}

// TestLimitHoldsWhileResizing submits from several goroutines, by Go and
// by Schedule, while another goroutine resizes the pool at random: no
// function may start while the limit in force (see limitLog) is already
// reached.
func TestLimitHoldsWhileResizing(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for round := range 40 {
			size := []int{0, 1, 4, 64}[round%4]
			initial := 1 + rand.IntN(6)
			p := qpool.NewPool(qpool.WithWorkers(initial), qpool.WithQueueSize(size), qpool.WithIdleTimeout(time.Hour))
			l := &limitLog{hist: []int{initial}, running: map[int]int{}}
			var wg sync.WaitGroup
			stop := make(chan struct{})
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					l.resize(p, 1+rand.IntN(6))
					for range rand.IntN(20) {
						runtime.Gosched()
					}
				}
			})
			var submitters sync.WaitGroup
			for s := range 4 {
				submitters.Go(func() {
					for i := range 150 {
						v := l.submitted()
						fn := func() {
							l.start(v)
							for range rand.IntN(4) {
								runtime.Gosched()
							}
							l.end(v)
						}
						if i%2 == 0 {
							if err := p.Go(fn); err != nil {
								t.Error(err)
							}
						} else {
							p.Schedule(fmt.Sprintf("%d-%d", s, i), func() (any, error) { fn(); return nil, nil })
						}
						if rand.IntN(8) == 0 {
							time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond) // let workers go idle
						}
					}
				})
			}
			submitters.Wait()
			p.Wait()
			close(stop)
			wg.Wait()
			if err := p.Close(); err != nil {
				t.Error(err)
			}
			if l.worst != "" {
				t.Errorf("round %d (queue %d): %s", round, size, l.worst)
				return
			}
		}
	}()
	watchdog(t, done, "the resize hammer hung")
}

// poolGoroutines lists the goroutines of the pool's own making that are
// alive: workers, dependent hand-offs, the idle reaper's and the context
// watchers' runs. It tells them from the test's goroutines by where they
// were created and what they run.
func poolGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		i := strings.LastIndex(g, "\ncreated by ")
		if i < 0 {
			continue
		}
		created := g[i:]
		if strings.Contains(created, "qpool_test.") || strings.Contains(created, "testing.") {
			continue // the test's own goroutines (submitters, the test itself)
		}
		if strings.Contains(g, "github.com/qpool/qpool.(") {
			found = append(found, g)
		}
	}
	return found
}

// poolGoroutinesAfterExit is poolGoroutines once those that have signalled
// their end have had a moment to return, as goleak allows: a goroutine is
// listed until it has returned from the function that signalled it.
func poolGoroutinesAfterExit() []string {
	alive := poolGoroutines()
	for i := 0; len(alive) > 0 && i < 50; i++ {
		if i < 20 {
			runtime.Gosched()
		} else {
			time.Sleep(time.Millisecond)
		}
		alive = poolGoroutines()
	}
	return alive
}

// TestShutdownNilMeansEverythingEnded races submitters (some of them
// rejected as intake stops) against Shutdown with a deadline far away:
// Shutdown must return nil, and nil means every accepted job has resolved
// and every goroutine of the pool has ended by the time it returns.
func TestShutdownNilMeansEverythingEnded(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for round := range 150 {
			p := qpool.NewPool(qpool.WithWorkers(1+round%4), qpool.WithQueueSize(round%3), qpool.WithIdleTimeout(time.Hour))
			var stop atomic.Bool
			var submissions atomic.Int64
			var submitters sync.WaitGroup
			var mu sync.Mutex
			var futs []*qpool.Future[any]
			for s := range 3 {
				submitters.Add(1)
				go func() { // not wg.Go: poolGoroutines tells the test's goroutines by their creator
					defer submitters.Done()
					for i := 0; !stop.Load(); i++ {
						if submissions.Add(1)%16 == 0 {
							runtime.Gosched() // spinning submitters would starve the rest on a busy machine
						}
						if i%2 == 0 {
							if err := p.Go(func() {}); err != nil && !errors.Is(err, qpool.ErrPoolClosed) {
								t.Error(err)
							}
							continue
						}
						f := p.Schedule(fmt.Sprintf("%d-%d", s, i), ok)
						mu.Lock()
						futs = append(futs, f)
						mu.Unlock()
					}
				}()
			}
			for n := int64(rand.IntN(40)); submissions.Load() < n; {
				runtime.Gosched()
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := p.Shutdown(ctx)
			workers := p.Stats().Workers // at once: a worker stops counting itself before it signals its end
			alive := poolGoroutinesAfterExit()
			cancel()
			stop.Store(true)
			submitters.Wait()
			if err != nil {
				t.Errorf("round %d: Shutdown with a minute to go returned %v", round, err)
				return
			}
			if len(alive) > 0 || workers != 0 {
				t.Errorf("round %d: Shutdown returned nil with %d workers counted and these goroutines of the pool alive:\n%s",
					round, workers, strings.Join(alive, "\n\n"))
				return
			}
			for _, f := range futs {
				select {
				case <-f.Done():
				default:
					t.Errorf("round %d: future %s unresolved after Shutdown returned nil", round, f.ID())
					return
				}
				if _, err := f.Wait(context.Background()); err != nil && !errors.Is(err, qpool.ErrPoolClosed) {
					t.Errorf("round %d: future %s: %v", round, f.ID(), err)
				}
			}
			s := p.Stats()
			if s.Submitted != s.Succeeded+s.Failed {
				t.Errorf("round %d: stats do not add up: %+v", round, s)
			}
		}
	}()
	watchdog(t, done, "Shutdown or a submitter hung")
}

// TestNonBlockingNoQueueSequentialSubmitter: a non-blocking pool with no
// queue and one worker, a submitter that waits for each job before the
// next. The worker of a resolved job is free, so no submission may fail
// with ErrQueueFull: whether the submitter waits on the future or on the
// pool, with Go or Schedule, with or without an idle timeout.
func TestNonBlockingNoQueueSequentialSubmitter(t *testing.T) {
	cases := []struct {
		name   string
		submit func(p *qpool.Pool, i int) error
	}{
		{"Schedule+Future.Wait", func(p *qpool.Pool, i int) error {
			_, err := p.Schedule(jobID(i), ok).Wait(context.Background())
			return err
		}},
		{"Submit+Future.Wait(ctx)", func(p *qpool.Pool, i int) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := qpool.Submit(p, jobID(i), func(context.Context) (int, error) { return i, nil }).Wait(ctx)
			return err
		}},
		{"Schedule+Done", func(p *qpool.Pool, i int) error {
			f := p.Schedule(jobID(i), ok)
			<-f.Done()
			_, err := f.Wait(context.Background())
			return err
		}},
		{"Schedule+Pool.Wait", func(p *qpool.Pool, i int) error {
			f := p.Schedule(jobID(i), ok)
			p.Wait()
			select {
			case <-f.Done():
			default:
				return errors.New("future unresolved after Pool.Wait")
			}
			_, err := f.Wait(context.Background())
			return err
		}},
		{"Go+Pool.Wait", func(p *qpool.Pool, i int) error {
			err := p.Go(func() {})
			p.Wait()
			return err
		}},
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, idle := range []time.Duration{time.Hour, 0} {
			for _, c := range cases {
				p := qpool.NewPool(qpool.WithWorkers(1), qpool.WithQueueSize(0), qpool.WithNonBlocking(),
					qpool.WithIdleTimeout(idle), qpool.WithResultTTL(0))
				var full int
				const n = 2000
				for i := range n {
					err := c.submit(p, i)
					if errors.Is(err, qpool.ErrQueueFull) {
						full++
					} else if err != nil {
						t.Errorf("%s, idle timeout %v: %v", c.name, idle, err)
					}
				}
				if full > 0 {
					t.Errorf("%s, idle timeout %v: %d of %d sequential submissions refused with ErrQueueFull while the worker was free",
						c.name, idle, full, n)
				}
				if err := p.Close(); err != nil {
					t.Error(err)
				}
			}
		}
	}()
	watchdog(t, done, "a sequential submitter hung")
}

// TestPoolContextCauseReachesRacingSubmitters cancels the pool's context
// with a cause while several goroutines submit: every rejection, and every
// accepted job the end of the context fails, must carry the cause as well
// as ErrPoolClosed.
func TestPoolContextCauseReachesRacingSubmitters(t *testing.T) {
	cause := errors.New("operator said stop")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for round := range 200 {
			ctx, cancel := context.WithCancelCause(context.Background())
			p := qpool.NewPool(qpool.WithContext(ctx), qpool.WithWorkers(2), qpool.WithQueueSize(round%3), qpool.WithLogger(discardLogger()))
			var submitters sync.WaitGroup
			var submissions atomic.Int64
			errs := make(chan error, 1024)
			for s := range 4 {
				submitters.Go(func() {
					rejected := 0
					for i := 0; rejected < 3; i++ {
						if submissions.Add(1)%16 == 0 {
							runtime.Gosched() // let the canceller in, even on one processor
						}
						var err error
						if i%2 == 0 {
							err = p.Go(func() {})
						} else {
							_, err = p.Schedule(fmt.Sprintf("%d-%d", s, i), ok).Wait(context.Background())
						}
						if err != nil {
							rejected++
							select {
							case errs <- err:
							default:
							}
						}
					}
				})
			}
			for n := int64(rand.IntN(40)); submissions.Load() < n; {
				runtime.Gosched()
			}
			cancel(cause)
			submitters.Wait()
			if err := p.Close(); err != nil {
				t.Error(err)
			}
			close(errs)
			for err := range errs {
				if !errors.Is(err, qpool.ErrPoolClosed) || !errors.Is(err, cause) {
					t.Errorf("round %d: a submission racing the end of the pool's context got %q: want ErrPoolClosed and the cause", round, err)
					return
				}
			}
		}
	}()
	watchdog(t, done, "a submitter hung")
}
