package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain fails the tests if any goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestRunServesTheInspector runs the example, sees jobs and ledger changes
// through the inspector's JSON, and checks that it stops with its context.
func TestRunServesTheInspector(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, &out, 10*time.Millisecond) }()
	base := "http://" + ln.Addr().String() + "/qpool/"

	deadline := time.Now().Add(10 * time.Second)
	for {
		var p struct {
			Pools []struct {
				Name      string `json:"name"`
				Submitted uint64 `json:"submitted"`
			} `json:"pools"`
		}
		var h struct {
			Changes []json.RawMessage `json:"changes"`
		}
		getJSON(t, base+"pools", &p)
		getJSON(t, base+"entanglements/orders/history", &h)
		require.Len(t, p.Pools, 1)
		require.Equal(t, "emails", p.Pools[0].Name)
		if p.Pools[0].Submitted >= 3 && len(h.Changes) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %+v, %d changes", p, len(h.Changes))
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Get(base)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of its context's end")
	}
	require.Equal(t, "inspector: open "+base+"\n", out.String())
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, url)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}
