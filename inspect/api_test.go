package inspect_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/inspect"
	"github.com/stretchr/testify/require"
)

// evil is user data that would run as script if it reached a page
// unescaped.
const evil = `<script>alert("x")</script><img src=x onerror=alert(1)>&amp;`

// mount serves in the way the package doc shows, under /qpool/.
func mount(t *testing.T, in http.Handler) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/qpool/", http.StripPrefix("/qpool", in))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func newPool(t *testing.T, opts ...qpool.Option) *qpool.Pool {
	t.Helper()
	p := qpool.NewPool(opts...)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func newEnt(t *testing.T, id string) *qpool.Entanglement {
	t.Helper()
	e := qpool.NewEntanglement(id, nil, time.Hour)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func newInspector(t *testing.T, opts ...inspect.Option) *inspect.Inspector {
	t.Helper()
	in, err := inspect.New(opts...)
	require.NoError(t, err)
	return in
}

// get fetches url and decodes a JSON answer into v (when v is not nil),
// checking the status and the JSON content type.
func get(t *testing.T, url string, status int, v any) string {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, status, resp.StatusCode, "GET %s: %s", url, body)
	require.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"), "GET %s", url)
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	if v != nil {
		require.NoError(t, json.Unmarshal(body, v), "GET %s: %s", url, body)
	}
	return string(body)
}

type errorBody struct {
	Error string `json:"error"`
}

type pools struct {
	Pools []struct {
		Name       string `json:"name"`
		MaxWorkers int    `json:"max_workers"`
		Submitted  uint64 `json:"submitted"`
		Succeeded  uint64 `json:"succeeded"`
		Failed     uint64 `json:"failed"`
	} `json:"pools"`
}

type entanglements struct {
	Entanglements []entanglement `json:"entanglements"`
}

type entanglement struct {
	ID    string `json:"id"`
	Ended string `json:"ended"`
	Keys  int    `json:"keys"`
	State []struct {
		Key       string `json:"key"`
		Value     string `json:"value"`
		Truncated bool   `json:"truncated"`
	} `json:"state"`
}

type history struct {
	ID      string `json:"id"`
	Since   uint64 `json:"since"`
	Next    uint64 `json:"next"`
	Skipped int    `json:"skipped"`
	Changes []struct {
		Sequence  uint64    `json:"sequence"`
		Timestamp time.Time `json:"timestamp"`
		Key       string    `json:"key"`
		Value     *string   `json:"value"`
		Deleted   bool      `json:"deleted"`
		Truncated bool      `json:"truncated"`
	} `json:"changes"`
}

func TestNewRefusesBadOptions(t *testing.T) {
	p := newPool(t)
	e := newEnt(t, "e")
	for name, opts := range map[string][]inspect.Option{
		"nil pool":          {inspect.WithPool("a", nil)},
		"empty name":        {inspect.WithPool("", p)},
		"repeated name":     {inspect.WithPool("a", p), inspect.WithPool("a", p)},
		"nil entanglement":  {inspect.WithEntanglement(nil)},
		"repeated ID":       {inspect.WithEntanglement(e, e)},
		"nil source":        {inspect.WithEntanglementSource(nil)},
		"zero value limit":  {inspect.WithValueLimit(0)},
		"negative interval": {inspect.WithPollInterval(-time.Second)},
		"nil option":        {nil},
	} {
		in, err := inspect.New(opts...)
		require.Nil(t, in, name)
		require.True(t, errors.Is(err, inspect.ErrInvalidOption), "%s: %v", name, err)
	}
}

func TestPools(t *testing.T) {
	a := newPool(t, qpool.WithWorkers(3))
	b := newPool(t)
	srv := mount(t, newInspector(t, inspect.WithPool("a", a), inspect.WithPool(evil, b)))

	_, err := a.Schedule("ok", func() (any, error) { return nil, nil }).Wait(t.Context())
	require.NoError(t, err)
	_, err = a.Schedule("bad", func() (any, error) { return nil, errors.New("no") }).Wait(t.Context())
	require.Error(t, err)

	var got pools
	body := get(t, srv.URL+"/qpool/pools", http.StatusOK, &got)
	require.Len(t, got.Pools, 2)
	require.Equal(t, "a", got.Pools[0].Name)
	require.Equal(t, 3, got.Pools[0].MaxWorkers)
	require.Equal(t, uint64(2), got.Pools[0].Submitted)
	require.Equal(t, uint64(1), got.Pools[0].Succeeded)
	require.Equal(t, uint64(1), got.Pools[0].Failed)
	require.Equal(t, evil, got.Pools[1].Name, "the name survives the round trip")
	require.NotContains(t, body, "<", "JSON escapes < for HTML")
}

func TestEntanglementsAndEscaping(t *testing.T) {
	e := newEnt(t, evil)
	require.NoError(t, e.UpdateState(evil, evil))
	require.NoError(t, e.UpdateState("n", 42))
	require.NoError(t, e.UpdateState("big", strings.Repeat("é", 1000)))
	require.NoError(t, e.UpdateState("func", func() {})) // no JSON form
	srv := mount(t, newInspector(t, inspect.WithEntanglement(e), inspect.WithValueLimit(64)))

	var got entanglements
	body := get(t, srv.URL+"/qpool/entanglements", http.StatusOK, &got)
	require.NotContains(t, body, "<")
	require.Len(t, got.Entanglements, 1)
	ent := got.Entanglements[0]
	require.Equal(t, evil, ent.ID)
	require.Equal(t, "", ent.Ended)
	require.Equal(t, 4, ent.Keys)
	require.Len(t, ent.State, 4)
	// Key order: "<script>..." < "big" < "func" < "n".
	require.Equal(t, evil, ent.State[0].Key)
	require.Equal(t, `"`+strings.ReplaceAll(evil, `"`, `\"`)+`"`, ent.State[0].Value, "the value as JSON text, not HTML-escaped twice")
	require.False(t, ent.State[0].Truncated)
	require.Equal(t, "big", ent.State[1].Key)
	require.True(t, ent.State[1].Truncated)
	require.LessOrEqual(t, len(ent.State[1].Value), 64)
	require.Equal(t, `"`+strings.Repeat("é", 31), ent.State[1].Value, "cut at a rune boundary")
	require.Equal(t, "func", ent.State[2].Key)
	require.True(t, strings.HasPrefix(ent.State[2].Value, "0x"), "no JSON form: %%v: %q", ent.State[2].Value)
	require.Equal(t, "42", ent.State[3].Value)

	// One entanglement by its ID, escaped in the path.
	var one entanglement
	get(t, srv.URL+"/qpool/entanglements/"+pathEscape(evil), http.StatusOK, &one)
	require.Equal(t, evil, one.ID)
}

func TestHistory(t *testing.T) {
	e := newEnt(t, "orders/7") // a slash in the ID
	for i := range 10 {
		require.NoError(t, e.UpdateState("k", i))
	}
	require.NoError(t, e.DeleteState("k"))
	srv := mount(t, newInspector(t, inspect.WithEntanglement(e)))
	base := srv.URL + "/qpool/entanglements/" + pathEscape("orders/7") + "/history"

	var h history
	get(t, base, http.StatusOK, &h)
	require.Equal(t, "orders/7", h.ID)
	require.Len(t, h.Changes, 11)
	require.Equal(t, uint64(11), h.Next)
	require.Equal(t, 0, h.Skipped)
	require.Equal(t, "0", *h.Changes[0].Value)
	last := h.Changes[10]
	require.True(t, last.Deleted)
	require.Nil(t, last.Value)

	// The tail: the newest limit changes at or after since.
	h = history{}
	get(t, base+"?since=2&limit=3", http.StatusOK, &h)
	require.Equal(t, uint64(2), h.Since)
	require.Equal(t, 6, h.Skipped)
	require.Equal(t, []uint64{8, 9, 10}, seqs(h))
	require.Equal(t, uint64(11), h.Next)

	// Nothing new: next stays where it was asked.
	h = history{}
	get(t, base+"?since=11", http.StatusOK, &h)
	require.Empty(t, h.Changes)
	require.NotNil(t, h.Changes, "an empty list, not null")
	require.Equal(t, uint64(11), h.Next)

	// A change arrives: since=next gives exactly it.
	require.NoError(t, e.UpdateState("k2", "v"))
	h = history{}
	get(t, base+"?since=11", http.StatusOK, &h)
	require.Equal(t, []uint64{11}, seqs(h))

	// Closed: 410 Gone, and the listing says so.
	require.NoError(t, e.Close())
	var eb errorBody
	get(t, base, http.StatusGone, &eb)
	require.Contains(t, eb.Error, "closed")
	var ents entanglements
	get(t, srv.URL+"/qpool/entanglements", http.StatusOK, &ents)
	require.Equal(t, "closed", ents.Entanglements[0].Ended)
}

func seqs(h history) []uint64 {
	var out []uint64
	for _, c := range h.Changes {
		out = append(out, c.Sequence)
	}
	return out
}

func TestBadInput(t *testing.T) {
	srv := mount(t, newInspector(t, inspect.WithPool("p", newPool(t)), inspect.WithEntanglement(newEnt(t, "e"))))
	u := srv.URL + "/qpool/"
	for _, c := range []struct {
		path   string
		status int
	}{
		{"nope", http.StatusNotFound},
		{"entanglements/" + pathEscape(evil), http.StatusNotFound},
		{"entanglements/nope/history", http.StatusNotFound},
		{"entanglements/e/history?since=-1", http.StatusBadRequest},
		{"entanglements/e/history?since=x", http.StatusBadRequest},
		{"entanglements/e/history?since=1.5", http.StatusBadRequest},
		{"entanglements/e/history?since=99999999999999999999999", http.StatusBadRequest},
		{"entanglements/e/history?limit=0", http.StatusBadRequest},
		{"entanglements/e/history?limit=1001", http.StatusBadRequest},
		{"entanglements/e/history?limit=ten", http.StatusBadRequest},
		{"static/nope.js", http.StatusNotFound},
		{"static/page.html", http.StatusNotFound},
	} {
		var eb errorBody
		body := get(t, u+c.path, c.status, &eb)
		require.NotEmpty(t, eb.Error, "%s: %s", c.path, body)
		require.NotContains(t, body, "<", c.path)
	}
	// A 404 names the unknown entanglement, escaped.
	var eb errorBody
	get(t, u+"entanglements/"+pathEscape(evil), http.StatusNotFound, &eb)
	require.Contains(t, eb.Error, "no entanglement")

	// Writes are refused.
	resp, err := http.Post(u+"pools", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
}

func TestEntanglementSource(t *testing.T) {
	static := newEnt(t, "a")
	dup := newEnt(t, "a")
	var current []*qpool.Entanglement
	srv := mount(t, newInspector(t, inspect.WithEntanglement(static),
		inspect.WithEntanglementSource(func() []*qpool.Entanglement { return current })))

	var got entanglements
	get(t, srv.URL+"/qpool/entanglements", http.StatusOK, &got)
	require.Len(t, got.Entanglements, 1)

	b := newEnt(t, "b")
	require.NoError(t, b.UpdateState("x", 1))
	current = []*qpool.Entanglement{nil, dup, b} // nil skipped, "a" shown once
	got = entanglements{}
	get(t, srv.URL+"/qpool/entanglements", http.StatusOK, &got)
	require.Len(t, got.Entanglements, 2)
	require.Equal(t, "b", got.Entanglements[1].ID)
	var h history
	get(t, srv.URL+"/qpool/entanglements/b/history", http.StatusOK, &h)
	require.Len(t, h.Changes, 1)
}

// pathEscape escapes s as one path segment.
func pathEscape(s string) string {
	return strings.NewReplacer("%", "%25", "/", "%2F", "?", "%3F", "#", "%23", " ", "%20", `"`, "%22", "<", "%3C", ">", "%3E").Replace(s)
}

// TestPoolsEntanglementsAreListed: an entanglement that a live job of an
// inspected pool names is listed and can be looked up without being given
// to the inspector; once its jobs have finished it is not.
func TestPoolsEntanglementsAreListed(t *testing.T) {
	p := qpool.NewPool(qpool.WithWorkers(1))
	t.Cleanup(func() { _ = p.Close() })
	e := newEnt(t, "orders")
	gate := make(chan struct{})
	p.Schedule("job", func() (any, error) { <-gate; return nil, nil }, qpool.WithEntanglement(e))
	srv := mount(t, newInspector(t, inspect.WithPool("main", p)))

	var got entanglements
	get(t, srv.URL+"/qpool/entanglements", http.StatusOK, &got)
	require.Len(t, got.Entanglements, 1)
	require.Equal(t, "orders", got.Entanglements[0].ID)
	get(t, srv.URL+"/qpool/entanglements/orders", http.StatusOK, nil)

	close(gate)
	p.Wait()
	got = entanglements{}
	get(t, srv.URL+"/qpool/entanglements", http.StatusOK, &got)
	require.Empty(t, got.Entanglements)
}
