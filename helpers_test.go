package qpool_test

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"
)

func fmtMap(m map[string]any) string { return fmt.Sprint(m) }

func jobID(i int) string { return fmt.Sprintf("job-%d", i) }

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// waitFor polls cond until it holds; a watchdog fails the test instead of
// hanging. It asserts nothing about time.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("watchdog: condition never held")
		}
		time.Sleep(time.Millisecond)
	}
}
