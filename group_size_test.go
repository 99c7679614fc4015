package qpool

import (
	"strconv"
	"testing"
	"unsafe"
)

// TestGroupCallSize keeps a group's job as small as Submit's, in the
// 128-byte size class of call[int] (it was 144 bytes): the group's flags
// live in the job's, above the pool's own.
func TestGroupCallSize(t *testing.T) {
	if s, c := unsafe.Sizeof(gcall[int]{}), unsafe.Sizeof(call[int]{}); s > 128 || c > 128 {
		t.Errorf("gcall[int] is %d bytes and call[int] %d, want both at most 128", s, c)
	}
	if flagDepFailed >= gStarted {
		t.Errorf("the pool's job flags reach the group's (flagDepFailed %#x, gStarted %#x)", flagDepFailed, gStarted)
	}
}

// TestGroupGeneratedIDs: the IDs a group makes a block at a time, by
// counting in decimal, are "g<n>#" and the index, across the carries.
func TestGroupGeneratedIDs(t *testing.T) {
	g := &Group[int]{prefix: "g7#"}
	for _, base := range []int{0, 64, 960, 9984, 99968, 999936} {
		b := g.idBlock(base)
		for k := range idChunk {
			start := uint16(0)
			if k > 0 {
				start = b.end[k-1]
			}
			if got, want := b.ids[start:b.end[k]], "g7#"+strconv.Itoa(base+k); got != want {
				t.Fatalf("ID %d is %q, want %q", base+k, got, want)
			}
		}
	}
}
