package bench

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// ants starts the goroutines of its default pool at import; ignore
	// those, and only those, by ignoring what runs before any test.
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}
