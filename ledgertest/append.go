package ledgertest

import (
	"context"
	"fmt"

	"github.com/qpool/qpool"
)

// set is an unguarded mutation that sets key to value.
func set(key string, value any) qpool.Mutation { return qpool.Mutation{Key: key, Value: value} }

// del is an unguarded mutation that deletes key. Its Value must be ignored.
func del(key string) qpool.Mutation {
	return qpool.Mutation{Key: key, Delete: true, Value: "ignored because Delete is set"}
}

// appendAll appends ms in order and returns the changes Append returned.
// It records a problem and stops at the first error.
func appendAll(ctx context.Context, p *problems, l qpool.Ledger, ms []qpool.Mutation) ([]qpool.StateChange, bool) {
	out := make([]qpool.StateChange, 0, len(ms))
	for _, m := range ms {
		c, err := l.Append(ctx, m)
		if err != nil {
			p.addf("Append(%+v) after %d appends: %v", m, len(out), err)
			return out, false
		}
		out = append(out, c)
	}
	return out, true
}

// mixed returns n mutations over keys distinct keys: mostly sets of
// float64 and string values, with a deletion every 5th and a nil value
// every 11th, so histories exercise every kind of change.
func mixed(n, keys int) []qpool.Mutation {
	ms := make([]qpool.Mutation, n)
	for i := range ms {
		key := fmt.Sprintf("key-%d", i%keys)
		switch {
		case i%5 == 4:
			ms[i] = del(key)
		case i%11 == 10:
			ms[i] = set(key, nil)
		case i%2 == 0:
			ms[i] = set(key, float64(i))
		default:
			ms[i] = set(key, fmt.Sprintf("value-%d", i))
		}
	}
	return ms
}

// recorded returns the change a conforming ledger records for m at seq,
// without a timestamp.
func recorded(seq uint64, m qpool.Mutation) qpool.StateChange {
	c := qpool.StateChange{Sequence: seq, Key: m.Key, Value: m.Value, Deleted: m.Delete}
	if m.Delete {
		c.Value = nil
	}
	return c
}

// checkAcks records a problem for each change Append returned that does not
// record its mutation at the expected sequence (first, first+1, …).
func checkAcks(p *problems, first uint64, ms []qpool.Mutation, acks []qpool.StateChange) {
	for i, c := range acks {
		want := recorded(first+uint64(i), ms[i])
		want.Timestamp = c.Timestamp
		if !sameChange(c, want) {
			p.addf("Append #%d returned %s, want %s", i, describe(c), describe(want))
		}
	}
}
