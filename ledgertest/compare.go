package ledgertest

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/qpool/qpool"
)

// sameChange reports whether a and b record the same change. Timestamps are
// compared with [time.Time.Equal]: a ledger may drop the monotonic reading
// and the location, but not the instant.
func sameChange(a, b qpool.StateChange) bool {
	return a.Sequence == b.Sequence && a.Key == b.Key && a.Deleted == b.Deleted &&
		reflect.DeepEqual(a.Value, b.Value) && a.Timestamp.Equal(b.Timestamp)
}

// describe formats a change for a problem report.
func describe(c qpool.StateChange) string {
	return fmt.Sprintf("{Sequence:%d Key:%q Value:%#v Deleted:%v Timestamp:%s}",
		c.Sequence, c.Key, c.Value, c.Deleted, c.Timestamp.Format(time.RFC3339Nano))
}

// compareChanges records a problem for every way got differs from want.
func compareChanges(p *problems, what string, got, want []qpool.StateChange) {
	if len(got) != len(want) {
		p.addf("%s returned %d changes, want %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if !sameChange(got[i], want[i]) {
			p.addf("%s: change %d is %s, want %s", what, i, describe(got[i]), describe(want[i]))
		}
	}
}

// Replay applies history to an empty state and returns the result: by
// the Ledger contract, what Snapshot must equal once history is the whole
// of Read(0, 0). Ledger tests of their own (a crash test, say) can check
// a reopened ledger against it.
func Replay(history []qpool.StateChange) map[string]any {
	state := make(map[string]any)
	for _, c := range history {
		if c.Deleted {
			delete(state, c.Key)
		} else {
			state[c.Key] = c.Value
		}
	}
	return state
}

// compareState records a problem unless got equals want.
func compareState(p *problems, what string, got, want map[string]any) {
	if len(got) == 0 && len(want) == 0 {
		return // a nil and an empty map are the same empty state
	}
	if !reflect.DeepEqual(got, want) {
		p.addf("%s is %#v, want %#v", what, got, want)
	}
}

// readAll reads every retained change, recording a problem on error.
func readAll(ctx context.Context, p *problems, l qpool.Ledger) ([]qpool.StateChange, bool) {
	return read(ctx, p, l, 0, 0)
}

// read calls Read, recording a problem on error.
func read(ctx context.Context, p *problems, l qpool.Ledger, since uint64, limit int) ([]qpool.StateChange, bool) {
	got, err := l.Read(ctx, since, limit)
	if err != nil {
		p.addf("Read(%d, %d): %v", since, limit, err)
		return nil, false
	}
	return got, true
}

// checkBounds records a problem unless Bounds returns first and next.
func checkBounds(p *problems, when string, l qpool.Ledger, first, next uint64) {
	if f, n := l.Bounds(); f != first || n != next {
		p.addf("%s: Bounds() = (%d, %d), want (%d, %d)", when, f, n, first, next)
	}
}

// checkGet records a problem unless Get(key) returns value, present.
func checkGet(p *problems, when string, l qpool.Ledger, key string, value any, present bool) {
	v, _, ok := l.Get(key)
	switch {
	case ok != present:
		p.addf("%s: Get(%q) reports present=%v, want %v", when, key, ok, present)
	case ok && !reflect.DeepEqual(v, value):
		p.addf("%s: Get(%q) = %#v, want %#v", when, key, v, value)
	}
}

func readName(since uint64, limit int) string { return fmt.Sprintf("Read(%d, %d)", since, limit) }
