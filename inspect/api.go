package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/qpool/qpool"
)

// MaxStateKeys is the number of keys /entanglements lists per
// entanglement (the first ones in key order); "keys" gives the total.
const MaxStateKeys = 200

// poolJSON is one pool in /pools.
type poolJSON struct {
	Name                string  `json:"name"`
	Workers             int     `json:"workers"`
	MaxWorkers          int     `json:"max_workers"`
	Running             int     `json:"running"`
	Queued              int     `json:"queued"`
	Waiting             int     `json:"waiting"`
	OldestQueuedSeconds float64 `json:"oldest_queued_seconds"`
	Submitted           uint64  `json:"submitted"`
	Succeeded           uint64  `json:"succeeded"`
	Failed              uint64  `json:"failed"`
	Panicked            uint64  `json:"panicked"`
	Retried             uint64  `json:"retried"`
}

// valueJSON is a user value rendered as capped text.
type valueJSON struct {
	Value     string `json:"value"`
	Truncated bool   `json:"truncated,omitempty"`
}

// entryJSON is one key of an entanglement's state.
type entryJSON struct {
	Key string `json:"key"`
	valueJSON
}

// entanglementJSON is one entanglement in /entanglements.
type entanglementJSON struct {
	ID string `json:"id"`
	// Ended is "closed" or "expired" once the entanglement has ended, ""
	// while it lives.
	Ended string `json:"ended,omitempty"`
	// Keys is the number of keys in the state; State lists the first
	// MaxStateKeys of them in key order.
	Keys  int         `json:"keys"`
	State []entryJSON `json:"state"`
}

// changeJSON is one ledger entry in /history.
type changeJSON struct {
	Sequence  uint64    `json:"sequence"`
	Timestamp time.Time `json:"timestamp"`
	Key       string    `json:"key"`
	Deleted   bool      `json:"deleted,omitempty"`
	Value     *string   `json:"value"` // null for a deletion
	Truncated bool      `json:"truncated,omitempty"`
}

// historyJSON is the answer of /entanglements/{id}/history.
type historyJSON struct {
	ID    string `json:"id"`
	Since uint64 `json:"since"`
	// Next is the since to ask with for the changes after these.
	Next uint64 `json:"next"`
	// Skipped counts the changes at or after since left out because
	// more than limit matched: the answer is the newest limit of them,
	// a tail, so that a page that fell behind catches up at once.
	Skipped int          `json:"skipped"`
	Changes []changeJSON `json:"changes"`
}

type errorJSON struct {
	Error string `json:"error"`
}

func (in *Inspector) pools(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Pools []poolJSON `json:"pools"`
	}{in.poolList()})
}

func (in *Inspector) poolList() []poolJSON {
	out := make([]poolJSON, 0, len(in.cfg.pools))
	for _, np := range in.cfg.pools {
		s := np.pool.Stats()
		out = append(out, poolJSON{
			Name: np.name, Workers: s.Workers, MaxWorkers: s.MaxWorkers,
			Running: s.Running, Queued: s.Queued, Waiting: s.Waiting,
			OldestQueuedSeconds: oldestQueued(s),
			Submitted:           s.Submitted, Succeeded: s.Succeeded, Failed: s.Failed,
			Panicked: s.Panicked, Retried: s.Retried,
		})
	}
	return out
}

// lookupPool returns the pools a request's ?pool= names: all of them when
// it is absent. ok is false (and the 404 written) for an unknown name.
func (in *Inspector) lookupPool(w http.ResponseWriter, r *http.Request) ([]namedPool, bool) {
	if !r.URL.Query().Has("pool") {
		return in.cfg.pools, true
	}
	name := r.URL.Query().Get("pool")
	for _, np := range in.cfg.pools {
		if np.name == name {
			return []namedPool{np}, true
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no pool %q", name))
	return nil, false
}

// entanglementList returns the entanglements to show, each ID once: those
// given with options, in option order, those the sources return, then the
// open ones that the pools' live jobs name (Pool.Entanglements). The
// sources are user functions: they run here, on the request's goroutine,
// under no lock.
func (in *Inspector) entanglementList() []*qpool.Entanglement {
	out := slices.Clone(in.cfg.ents)
	seen := make(map[string]bool, len(out))
	for _, e := range out {
		seen[e.ID()] = true
	}
	add := func(list []*qpool.Entanglement) {
		for _, e := range list {
			if e != nil && !seen[e.ID()] {
				seen[e.ID()] = true
				out = append(out, e)
			}
		}
	}
	for _, src := range in.cfg.sources {
		add(src())
	}
	for _, np := range in.cfg.pools {
		add(np.pool.Entanglements(0))
	}
	return out
}

func (in *Inspector) findEntanglement(w http.ResponseWriter, escaped string) (*qpool.Entanglement, bool) {
	id, ok := unescape(escaped)
	if !ok {
		writeError(w, http.StatusBadRequest, "malformed escape in entanglement ID")
		return nil, false
	}
	for _, e := range in.entanglementList() {
		if e.ID() == id {
			return e, true
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no entanglement %q", id))
	return nil, false
}

func (in *Inspector) entanglements(w http.ResponseWriter, r *http.Request) {
	es := in.entanglementList()
	out := make([]entanglementJSON, 0, len(es))
	for _, e := range es {
		out = append(out, in.describe(r.Context(), e))
	}
	writeJSON(w, http.StatusOK, struct {
		Entanglements []entanglementJSON `json:"entanglements"`
	}{out})
}

func (in *Inspector) entanglement(w http.ResponseWriter, r *http.Request, escaped string) {
	e, ok := in.findEntanglement(w, escaped)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, in.describe(r.Context(), e))
}

func (in *Inspector) describe(ctx context.Context, e *qpool.Entanglement) entanglementJSON {
	d := entanglementJSON{ID: e.ID(), Ended: ended(ctx, e)}
	snap := e.Snapshot()
	d.Keys = len(snap)
	keys := make([]string, 0, len(snap))
	for k := range snap {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	keys = keys[:min(len(keys), MaxStateKeys)]
	d.State = make([]entryJSON, 0, len(keys))
	for _, k := range keys {
		d.State = append(d.State, entryJSON{Key: k, valueJSON: in.render(snap[k])})
	}
	return d
}

// ended reports how e ended, from the error History gives for a sequence
// past any change (which reads nothing from the ledger).
func ended(ctx context.Context, e *qpool.Entanglement) string {
	if e.IsExpired() {
		return "expired"
	}
	if _, err := e.History(ctx, math.MaxUint64); errors.Is(err, qpool.ErrClosed) {
		return "closed"
	} else if errors.Is(err, qpool.ErrExpired) {
		return "expired"
	}
	return ""
}

func (in *Inspector) history(w http.ResponseWriter, r *http.Request, escaped string) {
	q := r.URL.Query()
	since, err := uintParam(q.Get("since"), 0)
	if err != nil {
		writeError(w, http.StatusBadRequest, "since: "+err.Error())
		return
	}
	limit, err := limitParam(q.Get("limit"), DefaultHistoryLimit, MaxHistoryLimit)
	if err != nil {
		writeError(w, http.StatusBadRequest, "limit: "+err.Error())
		return
	}
	e, ok := in.findEntanglement(w, escaped)
	if !ok {
		return
	}
	h, err := e.History(r.Context(), since)
	switch {
	case errors.Is(err, qpool.ErrClosed) || errors.Is(err, qpool.ErrExpired):
		writeError(w, http.StatusGone, errorText(err))
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, errorText(err))
		return
	}
	out := historyJSON{ID: e.ID(), Since: since, Next: since, Changes: []changeJSON{}}
	if len(h) > limit {
		out.Skipped = len(h) - limit
		h = h[len(h)-limit:]
	}
	for _, c := range h {
		cj := changeJSON{Sequence: c.Sequence, Timestamp: c.Timestamp, Key: c.Key, Deleted: c.Deleted}
		if !c.Deleted {
			v := in.render(c.Value)
			cj.Value, cj.Truncated = &v.Value, v.Truncated
		}
		out.Changes = append(out.Changes, cj)
		out.Next = c.Sequence + 1
	}
	writeJSON(w, http.StatusOK, out)
}

// render turns a user value into text of at most valueLimit bytes: its
// JSON encoding (without HTML escaping: the text is escaped where it is
// shown), or its %v form when it has none. A MarshalJSON or String method
// that panics gives a placeholder instead of taking the request down.
func (in *Inspector) render(v any) valueJSON {
	return capText(renderValue(v), in.cfg.valueLimit)
}

func renderValue(v any) (s string) {
	defer func() {
		if p := recover(); p != nil {
			s = fmt.Sprintf("(value cannot be shown: %T panicked: %v)", v, p)
		}
	}()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	if err == nil {
		return strings.TrimSuffix(b.String(), "\n")
	}
	// %v only where it cannot recurse: a value that may hold itself (a map
	// that contains itself, say) would overflow the stack, which no
	// recover catches.
	switch reflect.ValueOf(v).Kind() {
	case reflect.Map, reflect.Slice, reflect.Array, reflect.Struct, reflect.Pointer, reflect.Interface:
		return fmt.Sprintf("(a %T with no JSON form: %v)", v, err)
	}
	return fmt.Sprintf("%v", v)
}

// errorText returns err's message; an Error method that panics (a typed
// nil pointer's, say) gives a placeholder instead of taking the request
// down.
func errorText(err error) (s string) {
	defer func() {
		if p := recover(); p != nil {
			s = fmt.Sprintf("(error message cannot be shown: %T panicked: %v)", err, p)
		}
	}()
	return err.Error()
}

// capText cuts s to at most limit bytes at a UTF-8 boundary.
func capText(s string, limit int) valueJSON {
	if len(s) <= limit {
		return valueJSON{Value: s}
	}
	i := limit
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return valueJSON{Value: s[:i], Truncated: true}
}

func uintParam(s string, def uint64) (uint64, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want a non-negative integer, got %q", s)
	}
	return n, nil
}

func limitParam(s string, def, max int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("want an integer from 1 to %d, got %q", max, s)
	}
	return n, nil
}

// writeJSON writes v with encoding/json, whose HTML escaping of <, > and &
// keeps user data inert even if a browser were to sniff the answer as HTML
// (nosniff tells it not to).
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // a write error means the client left
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorJSON{Error: msg})
}
