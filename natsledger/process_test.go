package natsledger_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"

	"github.com/qpool/qpool"
	"github.com/stretchr/testify/require"
)

// child returns the command that re-executes the test binary in mode.
func child(t *testing.T, mode, url, id string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, urlEnv+"="+url, idEnv+"="+id)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	return cmd
}

func runReport(t *testing.T, cmd *exec.Cmd) childReport {
	out, err := cmd.Output()
	require.NoError(t, err)
	var r childReport
	require.NoError(t, json.Unmarshal(out, &r))
	return r
}

// TestProcesses has three OS processes, each with its own pool, update one
// entanglement at once: all end with the same history and state, the
// atomic counter counts every increment, and a process started afterwards
// replays the same history.
func TestProcesses(t *testing.T) {
	const procs, jobs = 3, 60
	const total = procs * jobs * 2
	ts := startServer(t)
	id := uniqueID(t)
	reports := make([]childReport, procs)
	var wg sync.WaitGroup
	for p := range procs {
		cmd := child(t, "update", ts.url(), id,
			procEnv+"="+strconv.Itoa(p), jobsEnv+"="+strconv.Itoa(jobs), totalEnv+"="+strconv.Itoa(total))
		wg.Go(func() { reports[p] = runReport(t, cmd) })
	}
	wg.Wait()
	late := runReport(t, child(t, "replay", ts.url(), id, totalEnv+"="+strconv.Itoa(total)))

	want := reports[0]
	require.Len(t, want.History, total)
	for i, c := range want.History {
		require.Equal(t, uint64(i), c.Sequence)
	}
	require.Equal(t, float64(procs*jobs), want.State["counter"])
	require.Len(t, want.State, procs*jobs+1)
	for p, r := range reports[1:] {
		require.Equal(t, want, r, "process %d", p+1)
	}
	require.Equal(t, want, late, "late process")
}

// TestKilledProcess kills a process with SIGKILL while it updates from
// four goroutines: the stream holds whole changes only, and the state a
// new process replays is exactly the replay of the history.
func TestKilledProcess(t *testing.T) {
	ts := startServer(t)
	id := uniqueID(t)
	cmd := child(t, "loop", ts.url(), id)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()

	l := open(t, connect(t, ts.url()), id)
	h, err := l.Read(context.Background(), 0, 0)
	require.NoError(t, err)
	_, next := l.Bounds()
	require.Len(t, h, int(next))
	require.GreaterOrEqual(t, len(h), 21)
	replayed := map[string]any{}
	last := map[string]float64{}
	for i, c := range h {
		require.Equal(t, uint64(i), c.Sequence)
		n, ok := c.Value.(float64)
		require.True(t, ok, "change %d: %#v", i, c.Value)
		if prev, seen := last[c.Key]; seen {
			require.Equal(t, prev+1, n, "change %d of %s", i, c.Key)
		}
		last[c.Key] = n
		replayed[c.Key] = c.Value
	}
	state, _ := l.Snapshot()
	require.Equal(t, replayed, state)
	e, err := qpool.OpenEntanglement(context.Background(), id, nil, 0, qpool.WithLedger(l))
	require.NoError(t, err)
	require.Equal(t, replayed, e.Snapshot())
	require.NoError(t, e.Close())
	t.Logf("%d changes stored before the kill", len(h))
}
