package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain fails the tests if any goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestResumes interrupts a run after its second step and runs again: the
// second run prints the recovered history and does only the rest.
func TestResumes(t *testing.T) {
	c := config{path: filepath.Join(t.TempDir(), "d.db"), steps: 3}
	ctx, cancel := context.WithCancel(t.Context())
	var out bytes.Buffer
	w := &cancelAfter{w: &out, line: "step 2 recorded (on disk)\n", cancel: cancel}
	require.ErrorIs(t, run(ctx, c, w), context.Canceled)
	require.Contains(t, out.String(), "recovered 0 changes")

	out.Reset()
	require.NoError(t, run(t.Context(), c, &out))
	s := out.String()
	require.Contains(t, s, "recovered 4 changes")
	require.Contains(t, s, "resuming at step 3 of 3")
	require.Contains(t, s, "step 3 recorded")
	require.NotContains(t, s, "step 1 recorded")

	out.Reset()
	require.NoError(t, run(t.Context(), c, &out))
	require.Contains(t, out.String(), "recovered 6 changes")
	require.Contains(t, out.String(), "all 3 steps are done")
}

// cancelAfter cancels when line is written.
type cancelAfter struct {
	w      *bytes.Buffer
	line   string
	cancel context.CancelFunc
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	if string(p) == c.line {
		c.cancel()
	}
	return c.w.Write(p)
}
