package boltledger_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs a child role when the test binary is re-executed by a
// fault test, and otherwise the tests, failing if a goroutine outlives them.
func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role))
	}
	goleak.VerifyTestMain(m)
}
