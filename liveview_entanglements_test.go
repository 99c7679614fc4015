package qpool_test

import (
	"context"
	"sync"
	"testing"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPoolEntanglements: Pool.Entanglements lists each open entanglement
// that live jobs name once, leaves out closed ones and those of finished
// jobs, honours the limit, and can be called while jobs come and go.
func TestPoolEntanglements(t *testing.T) {
	p := qpool.NewPool(qpool.WithWorkers(2), qpool.WithQueueSize(64))
	defer p.Close()
	gate := make(chan struct{})
	var openGate sync.Once
	defer openGate.Do(func() { close(gate) }) // a failed check must not leave Close waiting on the jobs
	block := func() (any, error) { <-gate; return nil, nil }
	e1 := qpool.NewEntanglement("e1", nil, 0)
	e2 := qpool.NewEntanglement("e2", nil, 0)
	closed := qpool.NewEntanglement("closed", nil, 0)
	done := qpool.NewEntanglement("done", nil, 0)
	defer func() { _ = e1.Close(); _ = e2.Close(); _ = done.Close() }()

	_, err := p.Schedule("finished", func() (any, error) { return nil, nil }, qpool.WithEntanglement(done)).Wait(context.Background())
	require.NoError(t, err)
	p.Schedule("a", block, qpool.WithEntanglement(e1))
	p.Schedule("b", block, qpool.WithEntanglement(e1))
	p.Schedule("c", block, qpool.WithEntanglement(e2))
	p.Schedule("d", block, qpool.WithEntanglement(closed))
	p.Schedule("e", block)
	require.NoError(t, closed.Close())

	got := map[string]int{}
	for _, e := range p.Entanglements(0) {
		got[e.ID()]++
	}
	require.Equal(t, map[string]int{"e1": 1, "e2": 1}, got)
	require.Len(t, p.Entanglements(1), 1)

	// Racing the jobs' ends: nothing breaks, and a finished job's
	// entanglement drops out.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				assert.LessOrEqual(t, len(p.Entanglements(0)), 2)
			}
		}
	})
	openGate.Do(func() { close(gate) })
	p.Wait()
	close(stop)
	wg.Wait()
	require.Empty(t, p.Entanglements(0))
	require.Nil(t, (*qpool.Pool)(nil).Entanglements(0))
}
