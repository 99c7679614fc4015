package inspect_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/qpool/qpool/inspect"
	"github.com/stretchr/testify/require"
)

// fetchPage GETs url (following redirects) and returns the final URL and
// the body, which must be the page.
func fetchPage(t *testing.T, url string) (string, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", url, body)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")
	require.Contains(t, string(body), "<title>qpool inspector</title>")
	return resp.Request.URL.String(), string(body)
}

// getStatus GETs url and returns the status and the body's first bytes.
func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func TestMountedUnderAPrefix(t *testing.T) {
	newIn := func() http.Handler {
		return newInspector(t, inspect.WithPool("p", newPool(t)), inspect.WithEntanglement(newEnt(t, "e")))
	}
	cases := map[string]struct {
		handle func(mux *http.ServeMux, in http.Handler)
		page   string // where the page is asked for
		want   string // the page's final URL path (after redirects)
		api    string // the prefix of the JSON endpoints
	}{
		"StripPrefix without the slash": {
			func(mux *http.ServeMux, in http.Handler) { mux.Handle("/qpool/", http.StripPrefix("/qpool", in)) },
			"/qpool", "/qpool/", "/qpool/",
		},
		"StripPrefix with the slash": {
			func(mux *http.ServeMux, in http.Handler) { mux.Handle("/qpool/", http.StripPrefix("/qpool/", in)) },
			"/qpool/", "/qpool/", "/qpool/",
		},
		"exact pattern without the slash, deeper prefix": {
			func(mux *http.ServeMux, in http.Handler) {
				h := http.StripPrefix("/admin/qpool", in)
				mux.Handle("/admin/qpool", h)
				mux.Handle("/admin/qpool/", h)
			},
			"/admin/qpool", "/admin/qpool/", "/admin/qpool/",
		},
		"no prefix": {
			func(mux *http.ServeMux, in http.Handler) { mux.Handle("/", in) },
			"/", "/", "/",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			mux := http.NewServeMux()
			c.handle(mux, newIn())
			srv := httptest.NewServer(mux)
			defer srv.Close()
			final, body := fetchPage(t, srv.URL+c.page)
			require.Equal(t, srv.URL+c.want, final)
			// The page's links are relative, so they resolve under the prefix.
			require.Contains(t, body, `src="static/app.js"`)
			require.Equal(t, http.StatusOK, getStatus(t, srv.URL+c.api+"static/app.js"))
			require.Equal(t, http.StatusOK, getStatus(t, srv.URL+c.api+"static/style.css"))
			var p pools
			get(t, srv.URL+c.api+"pools", http.StatusOK, &p)
			require.Len(t, p.Pools, 1)
			var h history
			get(t, srv.URL+c.api+"entanglements/e/history", http.StatusOK, &h)
		})
	}
}

func TestRedirectStaysOnTheSite(t *testing.T) {
	// A handler reached with an empty stripped path redirects with a
	// relative Location, whatever the request path held.
	in := newInspector(t)
	h := http.StripPrefix("/x", in)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x?a=1", nil))
	require.Equal(t, http.StatusMovedPermanently, rec.Code)
	require.Equal(t, "./x/?a=1", rec.Header().Get("Location"))
}

func TestPageEscapesUserData(t *testing.T) {
	e := newEnt(t, evil)
	require.NoError(t, e.UpdateState(evil, evil))
	srv := mount(t, newInspector(t, inspect.WithPool(evil, newPool(t)), inspect.WithEntanglement(e)))
	_, body := fetchPage(t, srv.URL+"/qpool/")
	require.NotContains(t, body, "<script>alert")
	require.NotContains(t, body, "<img")
	// Each piece is there, escaped: the pool's name, the entanglement's ID
	// and key as text, the value as its JSON text.
	esc := `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&amp;amp;`
	require.GreaterOrEqual(t, strings.Count(body, esc), 3, body)
	require.Contains(t, body, `&#34;&lt;script&gt;alert(\&#34;x\&#34;)`)
	// The only scripts are the page's own file.
	require.Equal(t, 1, strings.Count(body, "<script"))
}
