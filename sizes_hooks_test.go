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

// TestShardSize: a registry shard is a whole number of cache lines (192
// bytes), so that every shard's fields sit on the same lines relative to
// its lock, and ends with at least a line of padding, so that no shard's
// lock shares a line with its neighbour's fields.
func TestShardSize(t *testing.T) {
	var s idShard
	size := unsafe.Sizeof(s)
	if size%64 != 0 {
		t.Errorf("idShard is %d bytes, not a multiple of 64", size)
	}
	if pad := size - (unsafe.Offsetof(s.outcomes) + unsafe.Sizeof(s.outcomes)); pad < 64 {
		t.Errorf("idShard has %d bytes of padding after its fields, want at least a cache line", pad)
	}
}
