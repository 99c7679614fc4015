package inspect_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/inspect"
	"github.com/stretchr/testify/require"
)

type job struct {
	Pool           string     `json:"pool"`
	ID             string     `json:"id"`
	State          string     `json:"state"`
	Attempt        int        `json:"attempt"`
	Submitted      *time.Time `json:"submitted"`
	AgeSeconds     *float64   `json:"age_seconds"`
	Started        *time.Time `json:"started"`
	Error          string     `json:"error"`
	ErrorTruncated bool       `json:"error_truncated"`
}

type jobs struct {
	Jobs []job `json:"jobs"`
}

// blocker runs jobs that wait until released.
type blocker struct {
	t       *testing.T
	p       *qpool.Pool
	release chan struct{}
	futures []*qpool.Future[any]
}

func newBlocker(t *testing.T, p *qpool.Pool) *blocker {
	b := &blocker{t: t, p: p, release: make(chan struct{})}
	t.Cleanup(b.done)
	return b
}

func (b *blocker) submit(id string, opts ...qpool.JobOption) *qpool.Future[any] {
	f := b.p.Schedule(id, func() (any, error) { <-b.release; return nil, nil }, opts...)
	b.futures = append(b.futures, f)
	return f
}

func (b *blocker) done() {
	select {
	case <-b.release:
	default:
		close(b.release)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, f := range b.futures {
		if _, err := f.Wait(ctx); errors.Is(err, context.DeadlineExceeded) {
			b.t.Errorf("job %q did not end within 10s of its release", f.ID())
		}
	}
}

// waitRunning waits until n jobs of p run.
func waitRunning(t *testing.T, p *qpool.Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Running < n {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %d running jobs: %+v", n, p.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestJobs(t *testing.T) {
	// p records times (it has an observer), q does not.
	p := newPool(t, qpool.WithWorkers(2), qpool.WithResultTTL(time.Minute), qpool.WithObserver(qpool.Observer{}))
	q := newPool(t, qpool.WithWorkers(1))
	srv := mount(t, newInspector(t, inspect.WithPool("p", p), inspect.WithPool("q", q), inspect.WithValueLimit(32)))
	u := srv.URL + "/qpool/"
	bp, bq := newBlocker(t, p), newBlocker(t, q)

	f := p.Schedule("fails", func() (any, error) { return nil, errors.New(strings.Repeat("<x>", 40)) })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := f.Wait(ctx)
	require.NotErrorIs(t, err, context.DeadlineExceeded, "the job did not end within 10s")
	require.Error(t, err)

	bp.submit(evil)
	bp.submit("a/b") // a slash in the ID
	waitRunning(t, p, 2)
	bp.submit("queued-1")
	bp.submit("waits", qpool.WithDependencies("queued-1"))
	bq.submit("q-1")
	waitRunning(t, q, 1)

	var all jobs
	body := get(t, u+"jobs", http.StatusOK, &all)
	require.NotContains(t, body, "<")
	byID := map[string]job{}
	for _, j := range all.Jobs {
		byID[j.Pool+"/"+j.ID] = j
	}
	require.Len(t, byID, 5, body)
	require.Equal(t, "running", byID["p/"+evil].State)
	require.Equal(t, 1, byID["p/"+evil].Attempt)
	require.NotNil(t, byID["p/"+evil].Started)
	require.Equal(t, "running", byID["p/a/b"].State)
	require.Equal(t, "queued", byID["p/queued-1"].State)
	require.Nil(t, byID["p/queued-1"].Started)
	require.Equal(t, "waiting", byID["p/waits"].State)
	require.NotNil(t, byID["p/queued-1"].Submitted)
	require.NotNil(t, byID["p/queued-1"].AgeSeconds)
	require.GreaterOrEqual(t, *byID["p/queued-1"].AgeSeconds, 0.0)
	require.Equal(t, "running", byID["q/q-1"].State)
	require.Equal(t, 1, byID["q/q-1"].Attempt)
	require.Nil(t, byID["q/q-1"].Submitted, "no observer, no times")
	require.Nil(t, byID["q/q-1"].AgeSeconds)
	require.Nil(t, byID["q/q-1"].Started)
	// Pool by pool in option order, each oldest first.
	require.Equal(t, "q", all.Jobs[4].Pool)
	for i := 1; i < 4; i++ {
		require.False(t, all.Jobs[i].Submitted.Before(*all.Jobs[i-1].Submitted), "oldest first")
	}

	// Filters.
	var some jobs
	get(t, u+"jobs?state=running&pool=p", http.StatusOK, &some)
	require.Len(t, some.Jobs, 2)
	some = jobs{}
	get(t, u+"jobs?limit=1", http.StatusOK, &some)
	require.Len(t, some.Jobs, 1)
	some = jobs{}
	get(t, u+"jobs?state=waiting", http.StatusOK, &some)
	require.Len(t, some.Jobs, 1)
	require.Equal(t, "waits", some.Jobs[0].ID)

	// One job, by its escaped ID.
	var one job
	get(t, u+"jobs/"+pathEscape(evil), http.StatusOK, &one)
	require.Equal(t, evil, one.ID)
	require.Equal(t, "p", one.Pool)
	one = job{}
	get(t, u+"jobs/a/b", http.StatusOK, &one) // unescaped slash: the rest of the path
	require.Equal(t, "a/b", one.ID)
	one = job{}
	get(t, u+"jobs/a%2Fb?pool=p", http.StatusOK, &one)
	require.Equal(t, "a/b", one.ID)
	var eb errorBody
	get(t, u+"jobs/a%2Fb?pool=q", http.StatusNotFound, &eb)

	// Finished and remembered (result TTL): done, with its error capped.
	one = job{}
	body = get(t, u+"jobs/fails", http.StatusOK, &one)
	require.NotContains(t, body, "<")
	require.Equal(t, "done", one.State)
	require.NotNil(t, one.Submitted, "remembered whole (result TTL)")
	require.Nil(t, one.AgeSeconds, "no age for a finished job")
	require.True(t, one.ErrorTruncated)
	require.LessOrEqual(t, len(one.Error), 32)
	require.True(t, strings.HasPrefix(one.Error, "<x>"), one.Error)
}

func TestJobsBadInput(t *testing.T) {
	srv := mount(t, newInspector(t, inspect.WithPool("p", newPool(t))))
	u := srv.URL + "/qpool/"
	for _, c := range []struct {
		path   string
		status int
	}{
		{"jobs?state=sleeping", http.StatusBadRequest},
		{"jobs?state=" + pathEscape(evil), http.StatusBadRequest},
		{"jobs?limit=0", http.StatusBadRequest},
		{"jobs?limit=-3", http.StatusBadRequest},
		{"jobs?limit=1001", http.StatusBadRequest},
		{"jobs?limit=many", http.StatusBadRequest},
		{"jobs?pool=nope", http.StatusNotFound},
		{"jobs?pool=" + pathEscape(evil), http.StatusNotFound},
		{"jobs/nope", http.StatusNotFound},
		{"jobs/" + pathEscape(evil), http.StatusNotFound},
		{"jobs/x?pool=nope", http.StatusNotFound},
	} {
		var eb errorBody
		body := get(t, u+c.path, c.status, &eb)
		require.NotEmpty(t, eb.Error, c.path)
		require.NotContains(t, body, "<", c.path)
	}
}

func post(t *testing.T, url string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestCancel(t *testing.T) {
	p := newPool(t, qpool.WithWorkers(1))
	b := newBlocker(t, p)
	b.submit("running")
	waitRunning(t, p, 1)
	queued := b.submit(evil)
	ok := map[string]string{"X-Qpool-Inspect": "cancel"}

	// Off by default.
	off := mount(t, newInspector(t, inspect.WithPool("p", p)))
	status, _ := post(t, off.URL+"/qpool/jobs/"+pathEscape(evil)+"/cancel", ok)
	require.Equal(t, http.StatusForbidden, status)

	on := mount(t, newInspector(t, inspect.WithPool("p", p), inspect.WithCancel()))
	u := on.URL + "/qpool/jobs/" + pathEscape(evil) + "/cancel"
	// Without the header (a plain form), or from another site: refused.
	status, _ = post(t, u, nil)
	require.Equal(t, http.StatusForbidden, status)
	status, _ = post(t, u, map[string]string{"X-Qpool-Inspect": "cancel", "Sec-Fetch-Site": "cross-site"})
	require.Equal(t, http.StatusForbidden, status)
	select {
	case <-queued.Done():
		t.Fatal("a refused cancel cancelled the job")
	default:
	}

	status, body := post(t, u, ok)
	require.Equal(t, http.StatusOK, status, body)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := queued.Wait(ctx)
	require.ErrorIs(t, err, context.Canceled)

	status, _ = post(t, u, ok) // no longer live
	require.Equal(t, http.StatusNotFound, status)
	status, _ = post(t, on.URL+"/qpool/jobs/running/cancel?pool=nope", ok)
	require.Equal(t, http.StatusNotFound, status)
}
