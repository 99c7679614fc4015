package ledgertest_test

import (
	"context"
	"encoding/json"

	"github.com/qpool/qpool"
)

// float32Numbers is a codec ledger that keeps numbers as float32: what it
// hands back still has the types a JSON ledger's has, so only a check of
// the values, as typed keys read them, sees the loss.
type float32Numbers struct{ *qpool.MemoryLedger }

func (float32Numbers) Codec() qpool.Codec { return qpool.JSONCodec{} }

func (l float32Numbers) Append(ctx context.Context, m qpool.Mutation) (qpool.StateChange, error) {
	if !m.Delete {
		data, err := json.Marshal(m.Value)
		if err != nil {
			return qpool.StateChange{}, err
		}
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return qpool.StateChange{}, err
		}
		m.Value = toFloat32(v)
	}
	return l.MemoryLedger.Append(ctx, m)
}

// toFloat32 rounds every number in v, a decoded JSON value, to float32.
func toFloat32(v any) any {
	switch v := v.(type) {
	case float64:
		return float64(float32(v))
	case []any:
		for i := range v {
			v[i] = toFloat32(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = toFloat32(v[k])
		}
	}
	return v
}
