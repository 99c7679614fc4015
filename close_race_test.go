package qpool_test

// Promise tests for Close against everything that runs callbacks or feeds
// watches: many goroutines, random timing, many rounds, a watchdog.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
)

// lateCallbacks counts the callbacks that start after Close has returned.
type lateCallbacks struct {
	closed atomic.Bool // set right after Close returns
	mu     sync.Mutex
	late   map[string]int
	hooks  atomic.Int64 // OnExpire calls
}

func (l *lateCallbacks) start(kind string) {
	if l.closed.Load() {
		l.mu.Lock()
		if l.late == nil {
			l.late = make(map[string]int)
		}
		l.late[kind]++
		l.mu.Unlock()
	}
	if rand.N(4) == 0 {
		runtime.Gosched() // let Close overtake a callback in progress
	}
}

func (l *lateCallbacks) options() []qpool.EntanglementOption {
	return []qpool.EntanglementOption{
		qpool.WithOnChange(func(qpool.StateChange) { l.start("OnChange") }),
		qpool.WithOnStateChange(func(_, _ map[string]any) { l.start("OnStateChange") }),
		qpool.WithOnExpire(func(string) { l.start("OnExpire"); l.hooks.Add(1) }),
	}
}

// waitGroupOrFatal waits for wg, or fails the test after a watchdog's time.
func waitGroupOrFatal(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("watchdog: %s never finished", what)
	}
}

// After Close returns no callback starts: not OnStateChange, not OnChange,
// not OnExpire, on an updater's goroutine, the reaper or the follower of a
// shared ledger. Updaters keep updating while another goroutine closes the
// entanglement, and each callback notes whether Close had returned when it
// started. The updater delivering its own change used to skip the check
// that the entanglement was still open, and Close did not wait for a
// callback already under way, nor for an OnExpire hook about to run.
func TestNoCallbackStartsAfterCloseReturns(t *testing.T) {
	cases := []struct {
		name   string
		ttl    func() time.Duration
		shared bool
	}{
		{"local", func() time.Duration { return 0 }, false},
		{"expiring", func() time.Duration { return rand.N(400*time.Microsecond) + 50*time.Microsecond }, false},
		{"shared", func() time.Duration { return 0 }, true},
		{"shared-expiring", func() time.Duration { return rand.N(400*time.Microsecond) + 50*time.Microsecond }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const rounds, updaters, per = 150, 3, 60
			for round := range rounds {
				var l lateCallbacks
				ttl := tc.ttl()
				opts := l.options()
				var mem *qpool.MemoryLedger
				var other *qpool.Entanglement
				if tc.shared {
					mem = qpool.NewMemoryLedger()
					opts = append(opts, qpool.WithLedger(sharedLedger{mem}))
					other = qpool.NewEntanglement("s", nil, 0, qpool.WithLedger(sharedLedger{mem}))
				}
				e := qpool.NewEntanglement("s", nil, ttl, opts...)

				var wg sync.WaitGroup
				for g := range updaters {
					wg.Add(1)
					go func() {
						defer wg.Done()
						target := e
						if other != nil && g == 0 {
							target = other // another process's changes reach the follower
						}
						for i := range per {
							if err := target.UpdateState(fmt.Sprint("k", g), i); err != nil {
								if !errors.Is(err, qpool.ErrClosed) && !errors.Is(err, qpool.ErrExpired) {
									t.Errorf("update: %v", err)
								}
								if target == e {
									return
								}
							}
							if rand.N(8) == 0 {
								time.Sleep(rand.N(50 * time.Microsecond))
							}
						}
					}()
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					time.Sleep(rand.N(500 * time.Microsecond))
					if err := e.Close(); err != nil {
						t.Errorf("Close: %v", err)
					}
					l.closed.Store(true)
				}()
				waitGroupOrFatal(t, &wg, "updaters and Close")
				if e.IsExpired() {
					// The hook runs once, whatever Close does; wait for it
					// so that a late start is counted.
					waitFor(t, func() bool { return l.hooks.Load() == 1 })
				}
				if other != nil {
					require.NoError(t, other.Close())
					require.NoError(t, mem.Close())
				}
				l.mu.Lock()
				require.Empty(t, l.late, "round %d (ttl %v): callbacks started after Close returned", round, ttl)
				l.mu.Unlock()
			}
		})
	}
}

// The OnExpire hook does not start after Close returns either, when Close
// comes just after the reaper has ended the entanglement: Close used to
// wait for the reaper's run but not for the hook it was about to call.
func TestNoExpireHookAfterCloseReturns(t *testing.T) {
	const rounds = 1000
	for round := range rounds {
		var l lateCallbacks
		ttl := rand.N(100*time.Microsecond) + 10*time.Microsecond
		e := qpool.NewEntanglement("x", nil, ttl, l.options()...)
		var wg sync.WaitGroup
		wg.Add(2)
		for range 2 { // two closers, one of which may find it expired
			go func() {
				defer wg.Done()
				time.Sleep(ttl - 10*time.Microsecond + rand.N(20*time.Microsecond))
				if err := e.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				l.closed.Store(true)
			}()
		}
		waitGroupOrFatal(t, &wg, "Close")
		if e.IsExpired() {
			waitFor(t, func() bool { return l.hooks.Load() == 1 })
		}
		l.mu.Lock()
		require.Empty(t, l.late, "round %d (ttl %v): the hook started after Close returned", round, ttl)
		l.mu.Unlock()
	}
}

// A watch's channel closes only when its ctx ends, on Close or on expiry,
// and until then yields every change from since, in order, none missed or
// repeated. Watchers start at random sequences and some cancel their ctx,
// while updaters write and the entanglement is closed or expires.
func TestWatchClosesOnlyOnCtxCloseOrExpiry(t *testing.T) {
	const rounds, updaters, watchers, per = 60, 3, 4, 40
	for round := range rounds {
		var ttl time.Duration
		if round%2 == 1 {
			ttl = rand.N(time.Millisecond) + 100*time.Microsecond
		}
		e := qpool.NewEntanglement("w", nil, ttl)
		var closing atomic.Bool // set before Close is called
		var wg sync.WaitGroup
		for g := range updaters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					if e.UpdateState(fmt.Sprint("k", g), i) != nil {
						return
					}
					if rand.N(4) == 0 {
						time.Sleep(rand.N(100 * time.Microsecond))
					}
				}
			}()
		}
		for range watchers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var cancelled atomic.Bool
				if rand.N(2) == 0 {
					stop := time.AfterFunc(rand.N(time.Millisecond), func() { cancelled.Store(true); cancel() })
					defer stop.Stop()
				}
				since := uint64(rand.N(per))
				next := since
				for c := range e.Watch(ctx, since) {
					if c.Sequence != next {
						t.Errorf("round %d: watch from %d got sequence %d, want %d", round, since, c.Sequence, next)
						return
					}
					next++
				}
				// Closed: the entanglement ended or ctx did.
				if !cancelled.Load() && !closing.Load() && !e.IsExpired() {
					t.Errorf("round %d: watch closed with ctx live and the entanglement open", round)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(rand.N(2 * time.Millisecond))
			if ttl > 0 && rand.N(2) == 0 {
				return // let it expire, once idle
			}
			closing.Store(true)
			if err := e.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
		waitGroupOrFatal(t, &wg, "watchers") // a watch that never closes hangs here
		require.NoError(t, e.Close())
	}
}
