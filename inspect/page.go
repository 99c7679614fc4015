package inspect

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
	"path"
)

// cancelHeader must be on a cancel request: a cross-site HTML form cannot
// set it, and a cross-site script cannot without a CORS preflight, which the
// Inspector never grants.
const cancelHeader = "X-Qpool-Inspect"

//go:embed assets
var assets embed.FS

var pageTemplate = template.Must(template.ParseFS(assets, "assets/page.html"))

// contentSecurityPolicy allows the page's own script and style and nothing
// else: no inline script, no other origin, so even a value that escaped
// its escaping could not run.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// pageData is what the template renders before the script takes over, so
// the page shows the state at load even with scripts off.
type pageData struct {
	Pools         []poolJSON
	Jobs          []jobJSON
	Entanglements []entanglementJSON
	Cancel        bool
	PollMillis    int64
	ValueLimit    int
}

func (in *Inspector) page(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "only GET and HEAD")
		return
	}
	es := in.entanglementList()
	d := pageData{
		Pools:         in.poolList(),
		Jobs:          in.jobList(in.cfg.pools, 0, DefaultJobLimit),
		Entanglements: make([]entanglementJSON, 0, len(es)),
		Cancel:        in.cfg.cancel,
		PollMillis:    in.cfg.pollInterval.Milliseconds(),
		ValueLimit:    in.cfg.valueLimit,
	}
	for _, e := range es {
		d.Entanglements = append(d.Entanglements, in.describe(r.Context(), e))
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "same-origin")
	// Rendered in full first: html/template escapes, but passes invalid
	// UTF-8 in user data (an ID of raw bytes) through, which the page
	// must not carry; and a template error then gives a 500, not half a
	// page.
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, d); err != nil {
		h.Del("Content-Type")
		writeError(w, http.StatusInternalServerError, "the page could not be rendered")
		return
	}
	_, _ = w.Write(bytes.ToValidUTF8(b.Bytes(), []byte("\uFFFD")))
}

// static serves the embedded script and style sheet.
func (in *Inspector) static(w http.ResponseWriter, r *http.Request, name string) {
	var ctype string
	switch path.Ext(name) {
	case ".js":
		ctype = "text/javascript; charset=utf-8"
	case ".css":
		ctype = "text/css; charset=utf-8"
	}
	b, err := assets.ReadFile("assets/" + name)
	if ctype == "" || err != nil || path.Base(name) != name {
		writeError(w, http.StatusNotFound, "no such asset")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "only GET and HEAD")
		return
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}
