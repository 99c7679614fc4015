package natsjobs_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qpool/qpool/natsjobs"
)

// A review (2026-12-06) of natsjobs' nonce protocol, for a
// rolling upgrade. docs/jobs.md, "A submission accepted after its ID's
// claim expired resolves": "The outcome is then written twice in the
// bucket's stream, with the same bytes; nothing else writes an outcome a
// second time"; store.reannounce: "a redelivery or a duplicate submission
// writes nothing, and an ID's outcome is written once unless its claim
// expired before it".

// TestReview5OutcomeWithoutNonceNotRewritten: an outcome recorded for the
// submission that holds the claim, but without a nonce, as a worker of the
// previous version records every outcome (and a Client.Cancel of the
// previous version its cancel), must not be written again by a worker of
// this version that gets a redelivery of the job's message: the claim
// did not expire. Each job's message is delivered once the outcome is
// there (the worker starts afterwards), as a redelivery is after its
// recorder died before it acknowledged.
func TestReview5OutcomeWithoutNonceNotRewritten(t *testing.T) {
	ts := startServer(t)
	nsName := namespace()
	ns := natsjobs.WithNamespace(nsName)
	var runs atomic.Int64
	reg := natsjobs.NewRegistry()
	h := natsjobs.Register(reg, "echo", func(_ context.Context, n int) (int, error) {
		runs.Add(1)
		return n, nil
	})
	c := newClient(t, ts.connect(t), ns, quiet)
	js := ts.connect(t)
	ctx := wctx(t, 20*time.Second)
	results, err := js.KeyValue(ctx, nsName+"_results")
	if err != nil {
		t.Fatal(err)
	}

	const jobs = 8
	revs := map[string]uint64{}
	for i := range jobs {
		id := fmt.Sprintf("old-outcome-%d", i)
		f := h.Submit(ctx, c, id, i)
		// The outcome as the previous version's worker records it: the
		// same fields, no nonce.
		b, err := json.Marshal(map[string]any{
			"id": id, "ok": true, "value": []byte(fmt.Sprint(i)), "attempts": 1,
			"worker": "previous-version", "finished": time.Now(),
		})
		if err != nil {
			t.Fatal(err)
		}
		rev, err := results.Create(ctx, base64.RawURLEncoding.EncodeToString([]byte(id)), b)
		if err != nil {
			t.Fatal(err)
		}
		revs[id] = rev
		if v, err := f.Wait(ctx); err != nil || v != i {
			t.Fatalf("%s: %v, %v", id, v, err)
		}
	}

	newWorker(t, ts.connect(t), reg, ns, quiet)
	st, err := js.Stream(ctx, nsName+"_q_"+natsjobs.DefaultQueue)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the worker to acknowledge every message", func() bool {
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	if n := runs.Load(); n != 0 {
		t.Fatalf("the handler ran %d times for jobs with outcomes", n)
	}
	rewritten := 0
	for id, rev := range revs {
		e, err := results.Get(ctx, base64.RawURLEncoding.EncodeToString([]byte(id)))
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if e.Revision() != rev {
			rewritten++
		}
	}
	if rewritten > 0 {
		t.Fatalf("%d of %d outcomes without a nonce written again by a redelivery (the claim had not expired)", rewritten, jobs)
	}
}
