package qpool_test

import (
	"fmt"
	"testing"

	"github.com/qpool/qpool"
)

// FuzzLedger turns bytes into operations (set, delete, guarded update,
// read, compact), applies them to an entanglement and to a plain map, and
// compares state, snapshot and history after every step.
func FuzzLedger(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{0x10, 0x11, 0x20, 0x10, 0x31, 0x40, 0x12, 0x21, 0x50, 0x10})
	f.Add([]byte("set delete set get compact set delete set"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		e := qpool.NewEntanglement("fuzz", nil, 0)
		defer e.Close()
		model := map[string]any{}
		var history []qpool.StateChange
		for i, op := range ops {
			key := fmt.Sprintf("k%d", op&7)
			switch op >> 4 % 5 {
			case 0, 1:
				if err := e.UpdateState(key, i); err != nil {
					t.Fatal(err)
				}
				model[key] = i
				history = append(history, qpool.StateChange{Key: key, Value: i})
			case 2:
				if err := e.DeleteState(key); err != nil {
					t.Fatal(err)
				}
				delete(model, key)
				history = append(history, qpool.StateChange{Key: key, Deleted: true})
			case 3:
				err := e.Update(key, func(old any, ok bool) (any, error) {
					n, _ := old.(int)
					return n + 1, nil
				})
				if err != nil {
					t.Fatal(err)
				}
				n, _ := model[key].(int)
				model[key] = n + 1
				history = append(history, qpool.StateChange{Key: key, Value: n + 1})
			case 4:
				for k := range 8 { // reads drive the state map's promotions
					e.GetState(fmt.Sprintf("k%d", k))
				}
			}
			for k := range 8 {
				key := fmt.Sprintf("k%d", k)
				got, ok := e.GetState(key)
				want, wantOK := model[key]
				if ok != wantOK || got != want {
					t.Fatalf("op %d: GetState(%q) = %v, %v; want %v, %v", i, key, got, ok, want, wantOK)
				}
			}
		}
		snap := e.Snapshot()
		if len(snap) != len(model) {
			t.Fatalf("snapshot has %d keys, model %d", len(snap), len(model))
		}
		for k, v := range model {
			if snap[k] != v {
				t.Fatalf("snapshot[%q] = %v, want %v", k, snap[k], v)
			}
		}
		got := e.GetStateHistory(0)
		if len(got) != len(history) {
			t.Fatalf("history has %d changes, want %d", len(got), len(history))
		}
		for i, c := range got {
			w := history[i]
			if c.Sequence != uint64(i) || c.Key != w.Key || c.Value != w.Value || c.Deleted != w.Deleted {
				t.Fatalf("change %d = %+v, want %+v", i, c, w)
			}
		}
	})
}
