package qpool_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qpool/qpool"
)

// holdLedger is a MemoryLedger whose next Append can be held: it then
// blocks until release is closed and fails, recording nothing. It records
// the Timestamp of the last change it acknowledged.
type holdLedger struct {
	*qpool.MemoryLedger
	mu      sync.Mutex
	hold    chan struct{} // non-nil: the next Append blocks on it and fails
	lastAck time.Time
}

var errHeldAppend = errors.New("held append fails")

func (l *holdLedger) Append(ctx context.Context, m qpool.Mutation) (qpool.StateChange, error) {
	l.mu.Lock()
	h := l.hold
	l.hold = nil
	l.mu.Unlock()
	if h != nil {
		<-h
		return qpool.StateChange{}, errHeldAppend
	}
	c, err := l.MemoryLedger.Append(ctx, m)
	if err == nil {
		l.mu.Lock()
		if c.Timestamp.After(l.lastAck) {
			l.lastAck = c.Timestamp
		}
		l.mu.Unlock()
	}
	return c, err
}

// TestExpiryAfterFailedInFlightUpdateIsBounded hammers the promise of
// docs/entanglement.md "TTL and Close": when the reaper finds an update in
// flight with the TTL run out, it looks again after ttl/8 (at most 10 ms),
// and if that update then fails, the entanglement expires at most that
// much later than ttl after its last change. Under a fake clock
// (synctest), each round makes a few acknowledged updates at random times,
// then holds one update inside the ledger's Append across the TTL edge (or,
// some rounds, releases it before) and fails it. Asserted, with step =
// min(ttl/8, 10ms):
//   - never before ttl after the last acknowledged change;
//   - when the held update failed no later than step after the TTL edge,
//     expiry comes at most step after the edge;
//   - in every case, at most step after the later of the edge and the
//     failure (the update in flight holds expiry off until it fails).
func TestExpiryAfterFailedInFlightUpdateIsBounded(t *testing.T) {
	ttls := []time.Duration{time.Millisecond, 3 * time.Millisecond, 16 * time.Millisecond,
		50 * time.Millisecond, 80 * time.Millisecond, 200 * time.Millisecond, time.Second}
	for round := range 400 {
		ttl := ttls[rand.N(len(ttls))]
		seed := rand.Uint64()
		passed := t.Run(fmt.Sprintf("round%d-ttl%v", round, ttl), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				expiryBoundRound(t, ttl, rand.New(rand.NewPCG(seed, uint64(round))))
			})
		})
		if !passed {
			t.Fatalf("round %d failed (ttl %v, seed %d)", round, ttl, seed)
		}
	}
}

func expiryBoundRound(t *testing.T, ttl time.Duration, r *rand.Rand) {
	step := max(min(ttl/8, 10*time.Millisecond), time.Microsecond)
	l := &holdLedger{MemoryLedger: qpool.NewMemoryLedger()}
	var expiredAt time.Time
	expired := make(chan struct{})
	e := qpool.NewEntanglement("hold", nil, ttl, qpool.WithLedger(l),
		qpool.WithLogger(discardLogger()),
		qpool.WithOnExpire(func(string) { expiredAt = time.Now(); close(expired) }))
	defer e.Close()

	// A few acknowledged updates, each well inside the TTL of the one before.
	for i := range 1 + r.IntN(4) {
		time.Sleep(time.Duration(r.Int64N(int64(ttl * 3 / 4))))
		if err := e.UpdateState("k", i); err != nil {
			t.Fatalf("acknowledged update %d: %v", i, err)
		}
	}
	l.mu.Lock()
	last := l.lastAck
	l.mu.Unlock()
	edge := last.Add(ttl)

	// The held update starts before the edge, so it is in flight (or
	// already failed) when the reaper first looks.
	time.Sleep(time.Duration(r.Int64N(int64(ttl))))
	release := make(chan struct{})
	l.mu.Lock()
	l.hold = release
	l.mu.Unlock()
	updErr := make(chan error, 1)
	go func() { updErr <- e.UpdateState("k", "held") }()
	synctest.Wait() // the update is blocked in Append

	// Fail it at a random time: before the edge, within step after it,
	// or several steps later.
	var failAt time.Time
	switch r.IntN(3) {
	case 0:
		if d := time.Until(edge); d > 0 {
			time.Sleep(time.Duration(r.Int64N(int64(d))))
		}
	case 1:
		time.Sleep(time.Until(edge) + time.Duration(r.Int64N(int64(step)+1)))
	default:
		time.Sleep(time.Until(edge) + time.Duration(r.Int64N(int64(4*step)+1)))
	}
	failAt = time.Now()
	close(release)
	if err := <-updErr; !errors.Is(err, errHeldAppend) {
		t.Fatalf("held update: got %v, want the ledger's error", err)
	}
	select {
	case <-expired:
	case <-time.After(ttl + 10*step + time.Second): // virtual time
		t.Fatalf("not expired %v after the failure (edge %v after last change)", ttl+10*step+time.Second, ttl)
	}
	if expiredAt.Before(edge) {
		t.Fatalf("expired %v before ttl after the last acknowledged change", edge.Sub(expiredAt))
	}
	if !failAt.After(edge.Add(step)) && expiredAt.After(edge.Add(step)) {
		t.Fatalf("update failed %v after the edge, expiry came %v after it: more than ttl/8 capped at 10ms (%v)",
			failAt.Sub(edge), expiredAt.Sub(edge), step)
	}
	later := edge
	if failAt.After(later) {
		later = failAt
	}
	if expiredAt.After(later.Add(step)) {
		t.Fatalf("expired %v after the later of the edge and the failure; bound %v", expiredAt.Sub(later), step)
	}
	if !e.IsExpired() {
		t.Fatal("OnExpire ran but IsExpired is false")
	}
}

// TestLoneUpdaterSeesCallbackReturned hammers the OnStateChange godoc:
// "When one goroutine updates with no other update in flight, the callback
// has returned before UpdateState returns." One updater at a time, many
// rounds, callbacks that spin, sleep or yield for random lengths; each
// callback sets a marker as its last act, which the updater checks right
// after UpdateState returns. Covered: the OnStateChange field,
// SetOnStateChange and WithOnChange.
func TestLoneUpdaterSeesCallbackReturned(t *testing.T) {
	busy := func() {
		switch rand.N(4) {
		case 0:
		case 1:
			for range rand.N(2000) {
				runtime.Gosched()
			}
		case 2:
			time.Sleep(rand.N(200 * time.Microsecond))
		default:
			end := time.Now().Add(rand.N(100 * time.Microsecond))
			for time.Now().Before(end) {
			}
		}
	}
	modes := []string{"field", "SetOnStateChange", "WithOnChange"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, mode := range modes {
			for round := range 20 {
				var marker atomic.Int64
				marker.Store(-1)
				var opts []qpool.EntanglementOption
				if mode == "WithOnChange" {
					opts = append(opts, qpool.WithOnChange(func(c qpool.StateChange) {
						busy()
						marker.Store(int64(c.Value.(int)))
					}))
				}
				e := qpool.NewEntanglement(fmt.Sprintf("lone-%s-%d", mode, round), nil, 0, opts...)
				fn := func(_, newState map[string]any) {
					busy()
					marker.Store(int64(newState["k"].(int)))
				}
				switch mode {
				case "field":
					e.OnStateChange = fn
				case "SetOnStateChange":
					e.SetOnStateChange(fn)
				}
				for i := range 40 {
					if err := e.UpdateState("k", i); err != nil {
						t.Errorf("%s round %d update %d: %v", mode, round, i, err)
						return
					}
					if got := marker.Load(); got != int64(i) {
						t.Errorf("%s round %d: UpdateState(%d) returned with the callback's marker at %d",
							mode, round, i, got)
						_ = e.Close()
						return
					}
				}
				if err := e.Close(); err != nil {
					t.Errorf("close: %v", err)
					return
				}
			}
		}
	}()
	watchdog(t, done, "lone updater with callbacks")
}

// TestJobsSchedulingIntoTheirOwnFullPoolDoNotHangClose hammers the promise
// of doc.go "# Caveats" and docs/pool.md: a job that submits into its own
// saturated pool and then waits for that job blocks until a worker frees
// up or the pool closes; Close does not hang on it, it fails the blocked
// submission with ErrPoolClosed and the job ends. Each round: random
// worker counts (1-3) and queue sizes (0-2); one parent per worker runs
// and waits at a gate, fillers fill the queue, more parents block on the
// full queue; then the gate opens, every parent submits children into the
// saturated pool and waits for them with its own context, and Close races
// the submissions at a random moment. Every future resolves and Close
// returns, within the watchdog.
//
// The pool is saturated before any child is submitted, as the promise
// says: a child accepted into the queue while every worker is held by a
// parent waiting for it is not covered (Close waits for accepted jobs).
func TestJobsSchedulingIntoTheirOwnFullPoolDoNotHangClose(t *testing.T) {
	done := make(chan struct{})
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	go func() {
		defer close(done)
		for round := range 400 {
			if !saturatedPoolRound(round, fail) {
				return
			}
		}
	}()
	watchdog(t, done, "jobs submitting into their own full pool, Close racing")
	for _, f := range failures {
		t.Error(f)
	}
}

// saturatedPoolRound runs one round; it returns false when the round hung.
func saturatedPoolRound(round int, fail func(string, ...any)) bool {
	workers, queue := 1+rand.N(3), rand.N(3)
	p := qpool.NewPool(qpool.WithWorkers(workers), qpool.WithQueueSize(queue),
		qpool.WithLogger(discardLogger()))
	gate := make(chan struct{})
	started := make(chan struct{}, workers)
	var mu sync.Mutex
	var futures []*qpool.Future[int]
	keep := func(f *qpool.Future[int]) {
		mu.Lock()
		futures = append(futures, f)
		mu.Unlock()
	}
	parent := func(id string, waitGate bool) *qpool.Future[int] {
		return qpool.Submit(p, id, func(ctx context.Context) (int, error) {
			if waitGate {
				started <- struct{}{}
				<-gate
			}
			var mine []*qpool.Future[int]
			for c := range 1 + rand.N(3) {
				if rand.N(2) == 0 {
					runtime.Gosched()
				}
				f := qpool.Submit(p, fmt.Sprintf("%s-child%d", id, c), func(context.Context) (int, error) {
					return 1, nil
				})
				keep(f)
				mine = append(mine, f)
			}
			sum := 0
			for _, f := range mine {
				v, err := f.Wait(ctx)
				if err != nil {
					return sum, err
				}
				sum += v
			}
			return sum, nil
		})
	}
	for w := range workers {
		keep(parent(fmt.Sprintf("r%d-running%d", round, w), true))
	}
	for range workers {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			fail("round %d: %d workers did not all start a parent", round, workers)
			return false
		}
	}
	for q := range queue { // every worker is held: these fill the queue
		keep(qpool.Submit(p, fmt.Sprintf("r%d-filler%d", round, q), func(context.Context) (int, error) { return 0, nil }))
	}
	extra := make(chan struct{})
	go func() { // these block on the full queue until Close
		defer close(extra)
		for j := range rand.N(3) {
			keep(parent(fmt.Sprintf("r%d-queued%d", round, j), false))
		}
	}()
	close(gate)
	if rand.N(2) == 0 {
		time.Sleep(rand.N(300 * time.Microsecond))
	}
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			fail("round %d: Close: %v", round, err)
		}
	case <-time.After(5 * time.Second):
		fail("round %d (workers %d, queue %d): Close hung", round, workers, queue)
		return false
	}
	select {
	case <-extra:
	case <-time.After(time.Second):
		fail("round %d: a submission still blocked after Close returned", round)
		return false
	}
	mu.Lock()
	all := append([]*qpool.Future[int](nil), futures...)
	mu.Unlock()
	for _, f := range all {
		select {
		case <-f.Done():
		case <-time.After(time.Second):
			fail("round %d: future %q unresolved after Close returned", round, f.ID())
			return false
		}
		if _, err := f.Wait(context.Background()); err != nil && !errors.Is(err, qpool.ErrPoolClosed) {
			fail("round %d: future %q: %v, want nil or ErrPoolClosed", round, f.ID(), err)
		}
	}
	if s := p.Stats(); s.Submitted != s.Succeeded+s.Failed {
		fail("round %d: stats do not add up: %+v", round, s)
	}
	return true
}
