package qpool_test

import (
	"context"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
)

func TestSmoke(t *testing.T) {
	p := qpool.NewPool(qpool.WithWorkers(2))
	f := p.Schedule("a", func() (any, error) { return 1, nil })
	g := qpool.Submit(p, "b", func(ctx context.Context) (string, error) { return "x", nil }, qpool.WithDependencies("a"))
	v, err := f.Wait(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, v)
	s, err := g.Wait(context.Background())
	require.NoError(t, err)
	require.Equal(t, "x", s)
	for i := 0; i < 1000; i++ {
		require.NoError(t, p.Go(func() {}))
	}
	p.Wait()
	require.NoError(t, p.Close())
	st := p.Stats()
	require.Equal(t, st.Submitted, st.Succeeded+st.Failed)

	e := qpool.NewEntanglement("x", nil, time.Hour)
	var logs []string
	e.OnStateChange = func(o, n map[string]any) { logs = append(logs, fmtMap(o)+"->"+fmtMap(n)) }
	require.NoError(t, e.UpdateState("status", "processing"))
	require.Equal(t, []string{"map[]->map[status:processing]"}, logs)
	require.Len(t, e.GetStateHistory(0), 1)
	require.NoError(t, e.Close())
}
