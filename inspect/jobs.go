package inspect

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/qpool/qpool"
)

// jobJSON is one job in /jobs and /jobs/{id}.
type jobJSON struct {
	Pool    string `json:"pool"`
	ID      string `json:"id"`
	State   string `json:"state"`
	Attempt int    `json:"attempt"`
	// Submitted, AgeSeconds (since Submitted, by the server's clock; live
	// jobs only) and Started (the current or last attempt's start) are
	// known only for a pool with an observer (qpool.WithObserver; an empty
	// Observer{} will do), and left out otherwise.
	Submitted  *time.Time `json:"submitted,omitempty"`
	AgeSeconds *float64   `json:"age_seconds,omitempty"`
	Started    *time.Time `json:"started,omitempty"`
	// Error is set for a finished job that failed: its error message,
	// capped like a value.
	Error          string `json:"error,omitempty"`
	ErrorTruncated bool   `json:"error_truncated,omitempty"`
}

func oldestQueued(s qpool.Stats) float64 { return s.OldestQueued.Seconds() }

func (in *Inspector) jobJSON(pool string, j qpool.JobInfo, now time.Time) jobJSON {
	out := jobJSON{Pool: pool, ID: j.ID, State: j.State.String(), Attempt: j.Attempt}
	if !j.Submitted.IsZero() {
		out.Submitted = &j.Submitted
		if j.State != qpool.JobDone {
			age := now.Sub(j.Submitted).Seconds()
			out.AgeSeconds = &age
		}
	}
	if !j.Started.IsZero() {
		out.Started = &j.Started
	}
	if j.Err != nil {
		v := capText(errorText(j.Err), in.cfg.valueLimit)
		out.Error, out.ErrorTruncated = v.Value, v.Truncated
	}
	return out
}

// parseState reads ?state=: empty for every state, else one of the
// JobState names.
func parseState(s string) (qpool.JobState, bool) {
	if s == "" {
		return 0, true
	}
	for st := qpool.JobWaiting; st <= qpool.JobDone; st++ {
		if st.String() == s {
			return st, true
		}
	}
	return 0, false
}

func (in *Inspector) jobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state, ok := parseState(q.Get("state"))
	if !ok {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("state: want waiting, queued, running or done, got %q", q.Get("state")))
		return
	}
	limit, err := limitParam(q.Get("limit"), DefaultJobLimit, MaxJobLimit)
	if err != nil {
		writeError(w, http.StatusBadRequest, "limit: "+err.Error())
		return
	}
	pools, ok := in.lookupPool(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Jobs []jobJSON `json:"jobs"`
	}{in.jobList(pools, state, limit)})
}

// jobList gathers up to limit jobs of the pools: pool by pool, in option
// order, and in each pool the oldest submission first (by ID where the
// pool records no times).
func (in *Inspector) jobList(pools []namedPool, state qpool.JobState, limit int) []jobJSON {
	now := time.Now()
	out := []jobJSON{}
	for _, np := range pools {
		infos := np.pool.Jobs(state, limit-len(out))
		slices.SortFunc(infos, func(a, b qpool.JobInfo) int {
			return cmp.Or(a.Submitted.Compare(b.Submitted), cmp.Compare(a.ID, b.ID))
		})
		for _, j := range infos {
			out = append(out, in.jobJSON(np.name, j, now))
		}
		if len(out) >= limit {
			break
		}
	}
	return out[:min(len(out), limit)]
}

func (in *Inspector) job(w http.ResponseWriter, r *http.Request, escaped string) {
	id, ok := unescape(escaped)
	if !ok {
		writeError(w, http.StatusBadRequest, "malformed escape in job ID")
		return
	}
	pools, ok := in.lookupPool(w, r)
	if !ok {
		return
	}
	for _, np := range pools {
		if j, ok := np.pool.Job(id); ok {
			writeJSON(w, http.StatusOK, in.jobJSON(np.name, j, time.Now()))
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no job %q", id))
}

// cancelJob serves POST /jobs/{id}/cancel, only with WithCancel.
func (in *Inspector) cancelJob(w http.ResponseWriter, r *http.Request, escaped string) {
	if !in.cfg.cancel {
		writeError(w, http.StatusForbidden, "cancel is disabled (see inspect.WithCancel)")
		return
	}
	if err := in.cancelCOP.Check(r); err != nil || r.Header.Get(cancelHeader) != "cancel" {
		writeError(w, http.StatusForbidden, "cross-origin request refused: cancel needs the header "+cancelHeader+": cancel from the same origin")
		return
	}
	id, ok := unescape(escaped)
	if !ok {
		writeError(w, http.StatusBadRequest, "malformed escape in job ID")
		return
	}
	pools, ok := in.lookupPool(w, r)
	if !ok {
		return
	}
	for _, np := range pools {
		if np.pool.Cancel(id) {
			writeJSON(w, http.StatusOK, struct {
				Pool     string `json:"pool"`
				ID       string `json:"id"`
				Canceled bool   `json:"canceled"`
			}{np.name, id, true})
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no live job %q", id))
}

// Age is the job's age for the page: "" when the pool records no times.
func (j jobJSON) Age() string {
	if j.AgeSeconds == nil {
		return ""
	}
	return strconv.FormatFloat(*j.AgeSeconds, 'f', 1, 64) + " s"
}
