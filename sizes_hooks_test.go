package qpool

import (
	"testing"
	"unsafe"
)

// TestObservedSizes keeps an observed job's record small: its extra part
// and record share one allocation of at most 160 bytes (a size class), and
// the job stays 96 bytes.
func TestObservedSizes(t *testing.T) {
	if s := unsafe.Sizeof(job{}); s != 96 {
		t.Errorf("job is %d bytes, want 96", s)
	}
	if s := unsafe.Sizeof(observedExtra{}); s > 160 {
		t.Errorf("observedExtra is %d bytes, want at most 160", s)
	}
}
