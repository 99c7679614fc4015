package inspect_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/inspect"
	"github.com/stretchr/testify/require"
)

// Found by an adversarial review: hostile user data took requests, or the
// whole process, down.

type nilErr struct{ msg string }

func (e *nilErr) Error() string { return e.msg } // panics on a nil receiver

type panicErr struct{}

func (panicErr) Error() string { panic("error boom") }

// TestHostileValuesAndErrors: a value that contains itself (its %v form
// recursed until the stack overflowed: a fatal error no recover catches),
// a job error whose Error panics (a typed nil pointer's, say), and IDs and
// keys of invalid UTF-8 (passed raw into the page) are all shown, as
// placeholders where they cannot be, and the page is valid UTF-8.
func TestHostileValuesAndErrors(t *testing.T) {
	p := qpool.NewPool(qpool.WithResultTTL(60e9))
	t.Cleanup(func() { _ = p.Close() })
	qpool.Submit(p, "nilptr", func(context.Context) (int, error) { var e *nilErr; return 0, e }).Wait(context.Background())
	qpool.Submit(p, "panicky", func(context.Context) (int, error) { return 0, panicErr{} }).Wait(context.Background())
	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) })
	qpool.Submit(p, "bad-\xff\xfe", func(context.Context) (int, error) { <-gate; return 0, nil })

	e := newEnt(t, "ent-\xff")
	m := map[string]any{}
	m["self"] = m
	require.NoError(t, e.UpdateState("m", m))
	s := []any{nil}
	s[0] = s
	require.NoError(t, e.UpdateState("s", s))
	require.NoError(t, e.UpdateState("key-\xfe", "v"))
	in := newInspector(t, inspect.WithPool("p", p), inspect.WithEntanglement(e))

	for _, path := range []string{"/", "/pools", "/jobs", "/jobs/nilptr", "/jobs/panicky", "/entanglements", "/entanglements/ent-%FF", "/entanglements/ent-%FF/history"} {
		w := httptest.NewRecorder()
		in.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		require.Less(t, w.Code, 500, "%s: %s", path, w.Body.String())
		require.True(t, utf8.Valid(w.Body.Bytes()), "%s: invalid UTF-8", path)
	}
	w := httptest.NewRecorder()
	in.ServeHTTP(w, httptest.NewRequest("GET", "/jobs/panicky", nil))
	require.Contains(t, w.Body.String(), "error message cannot be shown")
	w = httptest.NewRecorder()
	in.ServeHTTP(w, httptest.NewRequest("GET", "/entanglements", nil))
	require.True(t, strings.Contains(w.Body.String(), "with no JSON form"), w.Body.String())
}
