package inspect

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/qpool/qpool"
)

// ErrInvalidOption is returned by [New] for an option it cannot use: a nil
// pool or entanglement, an empty or repeated pool name, a repeated
// entanglement ID, a non-positive limit or interval. The error names the
// option.
var ErrInvalidOption = errors.New("inspect: invalid option")

// Defaults of the options.
const (
	// DefaultValueLimit is the byte cap on a rendered value or error message.
	DefaultValueLimit = 256
	// DefaultJobLimit is the number of jobs /jobs returns without ?limit=.
	DefaultJobLimit = 100
	// MaxJobLimit is the largest ?limit= /jobs accepts.
	MaxJobLimit = 1000
	// DefaultHistoryLimit is the number of changes /history returns
	// without ?limit=.
	DefaultHistoryLimit = 50
	// MaxHistoryLimit is the largest ?limit= /history accepts.
	MaxHistoryLimit = 1000
	// DefaultPollInterval is how often the page asks for news.
	DefaultPollInterval = time.Second
)

// An Option configures an [Inspector]; see [New].
type Option func(*config) error

// config is what the options build: set once by New, read-only afterwards,
// so requests read it without a lock.
type config struct {
	pools        []namedPool
	ents         []*qpool.Entanglement
	sources      []func() []*qpool.Entanglement
	cancel       bool
	valueLimit   int
	pollInterval time.Duration
}

type namedPool struct {
	name string
	pool *qpool.Pool
}

// WithPool shows p under name, which must be unique and non-empty. Pools
// appear in the order of their options. The open entanglements that p's
// live jobs name ([qpool.Pool.Entanglements]) are listed with the others.
func WithPool(name string, p *qpool.Pool) Option {
	return func(c *config) error {
		if p == nil {
			return fmt.Errorf("%w: WithPool(%q, nil)", ErrInvalidOption, name)
		}
		if name == "" {
			return fmt.Errorf("%w: WithPool with an empty name", ErrInvalidOption)
		}
		for _, np := range c.pools {
			if np.name == name {
				return fmt.Errorf("%w: WithPool(%q) given twice", ErrInvalidOption, name)
			}
		}
		c.pools = append(c.pools, namedPool{name, p})
		return nil
	}
}

// WithEntanglement shows each of es, by its ID, which must be unique among
// the entanglements given with WithEntanglement. An entanglement that has
// ended (Close, expiry) stays listed, marked ended, until the Inspector is
// dropped: use [WithEntanglementSource] for a changing set.
func WithEntanglement(es ...*qpool.Entanglement) Option {
	return func(c *config) error {
		for _, e := range es {
			if e == nil {
				return fmt.Errorf("%w: WithEntanglement(nil)", ErrInvalidOption)
			}
			for _, old := range c.ents {
				if old.ID() == e.ID() {
					return fmt.Errorf("%w: WithEntanglement(%q) given twice", ErrInvalidOption, e.ID())
				}
			}
			c.ents = append(c.ents, e)
		}
		return nil
	}
}

// WithEntanglementSource shows the entanglements fn returns, asking it
// again on every request that lists or looks up entanglements: for
// entanglements made and closed while the program runs. fn is called from
// the request's goroutine, under no lock of the Inspector's, and must be
// safe for concurrent use. Nil entries are skipped; an ID that an earlier
// option or entry already showed is shown once, the earlier one.
func WithEntanglementSource(fn func() []*qpool.Entanglement) Option {
	return func(c *config) error {
		if fn == nil {
			return fmt.Errorf("%w: WithEntanglementSource(nil)", ErrInvalidOption)
		}
		c.sources = append(c.sources, fn)
		return nil
	}
}

// WithCancel enables POST /jobs/{id}/cancel and the page's cancel buttons,
// which call Pool.Cancel. It is off by default: the Inspector is read-only
// unless this option is given. The endpoint refuses cross-origin requests
// (http.CrossOriginProtection) and requests without the header
// "X-Qpool-Inspect: cancel", which a plain HTML form cannot send, so another
// site cannot make a signed-in browser cancel jobs. Mount the Inspector
// behind your own authorization all the same.
func WithCancel() Option {
	return func(c *config) error {
		c.cancel = true
		return nil
	}
}

// WithValueLimit caps each rendered value and error message at n bytes
// (cut at a UTF-8 boundary, and marked truncated). The default is
// [DefaultValueLimit].
func WithValueLimit(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%w: WithValueLimit(%d)", ErrInvalidOption, n)
		}
		c.valueLimit = n
		return nil
	}
}

// WithPollInterval sets how often the page asks for news. The default is
// [DefaultPollInterval].
func WithPollInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithPollInterval(%v)", ErrInvalidOption, d)
		}
		c.pollInterval = d
		return nil
	}
}

// Inspector is an http.Handler serving the JSON endpoints and the page
// described in the package documentation. Make it with [New]; it is safe
// for concurrent use and holds no goroutine.
type Inspector struct {
	cfg       config
	cancelCOP *http.CrossOriginProtection
}

var _ http.Handler = (*Inspector)(nil)

// New returns an Inspector showing the pools and entanglements its options
// name. It returns an error wrapping [ErrInvalidOption] for an option it
// cannot use.
func New(opts ...Option) (*Inspector, error) {
	c := config{valueLimit: DefaultValueLimit, pollInterval: DefaultPollInterval}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil Option", ErrInvalidOption)
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	return &Inspector{cfg: c, cancelCOP: http.NewCrossOriginProtection()}, nil
}

// ServeHTTP routes a request whose path has had the mount prefix stripped
// (http.StripPrefix with or without the trailing slash).
func (in *Inspector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	if rp := requestPath(r); p == "" && rp != "" && !strings.HasSuffix(rp, "/") {
		// Mounted by http.StripPrefix("/qpool", ...) and asked for
		// "/qpool": the page's relative links need the slash. (Under
		// http.StripPrefix("/qpool/", ...), "/qpool/" arrives as "" too,
		// and is the page.)
		redirectToSlash(w, r)
		return
	}
	p = strings.TrimPrefix(p, "/")
	switch {
	case p == "":
		in.page(w, r)
	case strings.HasPrefix(p, "static/"):
		in.static(w, r, strings.TrimPrefix(p, "static/"))
	case p == "pools":
		in.get(w, r, in.pools)
	case p == "jobs":
		in.get(w, r, in.jobs)
	case strings.HasPrefix(p, "jobs/"):
		rest := strings.TrimPrefix(p, "jobs/")
		if r.Method == http.MethodPost {
			id, ok := strings.CutSuffix(rest, "/cancel")
			if !ok {
				writeError(w, http.StatusMethodNotAllowed, "only GET and HEAD")
				return
			}
			in.cancelJob(w, r, id)
			return
		}
		in.get(w, r, func(w http.ResponseWriter, r *http.Request) { in.job(w, r, rest) })
	case p == "entanglements":
		in.get(w, r, in.entanglements)
	case strings.HasPrefix(p, "entanglements/"):
		rest := strings.TrimPrefix(p, "entanglements/")
		if id, ok := strings.CutSuffix(rest, "/history"); ok {
			in.get(w, r, func(w http.ResponseWriter, r *http.Request) { in.history(w, r, id) })
			return
		}
		in.get(w, r, func(w http.ResponseWriter, r *http.Request) { in.entanglement(w, r, rest) })
	default:
		writeError(w, http.StatusNotFound, "no such endpoint")
	}
}

// get runs h for GET and HEAD, and answers 405 otherwise.
func (in *Inspector) get(w http.ResponseWriter, r *http.Request, h http.HandlerFunc) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "only GET and HEAD")
		return
	}
	h(w, r)
}

// redirectToSlash answers a request for the mount point without its
// trailing slash. The Location is relative ("./last-segment/"), so it
// cannot leave the site whatever the request's path holds, and it needs no
// knowledge of the prefix.
func redirectToSlash(w http.ResponseWriter, r *http.Request) {
	orig := requestPath(r)
	last := orig[strings.LastIndex(orig, "/")+1:]
	if last == "" || last == "." || last == ".." {
		// Nothing to append the slash to (a handler not under StripPrefix):
		// serve the root's answer rather than loop.
		writeError(w, http.StatusNotFound, "no such endpoint")
		return
	}
	loc := "./" + last + "/"
	if r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	// Not http.Redirect: it would resolve loc against r.URL.Path, which
	// StripPrefix has emptied.
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusMovedPermanently)
}

// unescape decodes one path element of an ID. A malformed escape is the
// caller's 400.
func unescape(s string) (string, bool) {
	v, err := url.PathUnescape(s)
	return v, err == nil
}

// requestPath is the escaped path the client asked for, before any
// StripPrefix. It is empty for a request made in-process without a
// RequestURI.
func requestPath(r *http.Request) string {
	orig := r.RequestURI
	if i := strings.IndexAny(orig, "?#"); i >= 0 {
		orig = orig[:i]
	}
	if u, err := url.Parse(orig); err == nil && u.Path != "" {
		orig = u.EscapedPath() // an absolute-form request URI carries a scheme and host
	}
	return orig
}
