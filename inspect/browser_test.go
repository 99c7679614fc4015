package inspect_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/qpool/qpool"
	"github.com/qpool/qpool/inspect"
	"github.com/stretchr/testify/require"
)

// screenshotPath is where TestBrowserLivePage also saves its screenshot:
//
//	go test ./inspect -run TestBrowserLivePage -screenshot=$PWD/docs/inspector.png
var screenshotPath = flag.String("screenshot", "", "also save the browser test's screenshot here")

// xssID is a job ID, a key and a value that set window.__xss if any of
// them were ever parsed as HTML by the page.
const xssID = `<img src=x onerror="window.__xss=1">`

// TestBrowserLivePage loads the page in a real headless Chromium against a
// running pool and entanglement, and sees, without a reload, a job appear
// and finish and a ledger change arrive; then it checks the screenshot is
// a real picture. Without Chromium it skips, except under CI (CI set), where
// a browser that cannot start is a failure.
func TestBrowserLivePage(t *testing.T) {
	t.Parallel() // Chromium's start is most of its time: overlap it with the other tests
	const width, height = 1280, 860
	start := time.Now()
	b, err := startBrowser(width, height)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and Chromium cannot start: %v", err)
		}
		t.Skipf("Chromium cannot start (set CI to make this a failure): %v", err)
	}
	defer b.close()

	// Two workers, so a job queues; an observer, so the pool records times.
	p := newPool(t, qpool.WithWorkers(2), qpool.WithResultTTL(time.Minute), qpool.WithObserver(qpool.Observer{}))
	orders := newEnt(t, "order-1042")
	require.NoError(t, orders.UpdateState("customer", map[string]any{"name": "Ada", "tier": "gold"}))
	require.NoError(t, orders.UpdateState("stage", "paid"))
	require.NoError(t, orders.UpdateState(xssID, xssID))
	in := newInspector(t, inspect.WithPool("emails", p), inspect.WithEntanglement(orders),
		inspect.WithPollInterval(100*time.Millisecond), inspect.WithCancel())
	srv := mount(t, in)

	// Jobs that run until the test lets them go.
	release := map[string]chan struct{}{}
	var futures []*qpool.Future[any]
	submit := func(id string, err error, opts ...qpool.JobOption) {
		ch := make(chan struct{})
		release[id] = ch
		futures = append(futures, p.Schedule(id, func() (any, error) { <-ch; return "sent", err }, opts...))
	}
	defer func() {
		for _, ch := range release {
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, f := range futures {
			if _, err := f.Wait(ctx); errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("job %q did not end within 10s of its release", f.ID())
			}
		}
	}()

	require.NoError(t, b.call("Emulation.setDeviceMetricsOverride", map[string]any{
		"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil))
	// The prefix without its slash: the page must land under it.
	require.NoError(t, b.call("Page.navigate", map[string]any{"url": srv.URL + "/qpool"}, nil))
	polls := func() int {
		var s string
		require.NoError(t, b.eval(`(document.getElementById('qpool')||{dataset:{}}).dataset.polls || '0'`, &s))
		n, _ := strconv.Atoi(s)
		return n
	}
	waitFor(t, b, "the first poll", `Number((document.getElementById('qpool')||{dataset:{}}).dataset.polls||0) > 0`)
	var where string
	require.NoError(t, b.eval(`location.pathname`, &where))
	require.Equal(t, "/qpool/", where)
	// A mark that a reload would wipe out.
	require.NoError(t, b.eval(`window.__noReload = 'kept'`, nil))

	t.Logf("Chromium started and the page polled in %v", time.Since(start))

	// Jobs appear: two running, one queued, one waiting for it.
	submit(xssID, nil)
	submit("sms/ada", errors.New("sms gateway: 503 <b>busy</b>"))
	submit("welcome-mail/ada", nil)
	submit("receipt/1042", nil, qpool.WithDependencies("welcome-mail/ada"))
	waitFor(t, b, "the jobs on the page", fmt.Sprintf(`(() => {
		const state = {};
		for (const tr of document.querySelectorAll('#jobs tbody tr')) {
			const td = tr.querySelector('td.id');
			if (td) state[td.textContent] = tr.dataset.state;
		}
		return state[%q] === 'running' && state['sms/ada'] === 'running' &&
			state['welcome-mail/ada'] === 'queued' && state['receipt/1042'] === 'waiting';
	})()`, xssID))

	// A ledger change arrives.
	require.NoError(t, orders.UpdateState("stage", "shipped"))
	waitFor(t, b, "the ledger change on the page",
		`[...document.querySelectorAll('.ent .ledger li')].some(li => li.textContent.includes('stage') && li.textContent.includes('"shipped"'))`)

	// Jobs finish: they leave the live list for the finished one, with
	// their outcome; the queued job starts.
	close(release[xssID])
	close(release["sms/ada"])
	waitFor(t, b, "the jobs finished on the page", fmt.Sprintf(`(() => {
		const outcome = {};
		for (const tr of document.querySelectorAll('#finished tbody tr')) {
			const td = tr.querySelector('td.id');
			if (td) outcome[td.textContent] = tr.dataset.outcome + ' ' + tr.querySelector('td.value').textContent;
		}
		const live = [...document.querySelectorAll('#jobs tbody tr')].map(tr => (tr.querySelector('td.id')||{}).textContent + ' ' + tr.dataset.state);
		return outcome[%q] === 'done ' && outcome['sms/ada'] === 'failed sms gateway: 503 <b>busy</b>' &&
			live.includes('welcome-mail/ada running') && !live.some(j => j.startsWith(%q));
	})()`, xssID, xssID))

	// No reload happened, and no user data ran as HTML.
	var mark string
	require.NoError(t, b.eval(`String(window.__noReload)`, &mark))
	require.Equal(t, "kept", mark)
	var xss string
	require.NoError(t, b.eval(`String(window.__xss)`, &xss))
	require.Equal(t, "undefined", xss)
	var imgs int
	require.NoError(t, b.eval(`document.querySelectorAll('img').length`, &imgs))
	require.Zero(t, imgs)
	require.Greater(t, polls(), 1)

	shot, err := b.screenshot()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "inspector.png")
	require.NoError(t, os.WriteFile(path, shot, 0o644))
	checkScreenshot(t, path, width, height)
	if *screenshotPath != "" {
		require.NoError(t, os.WriteFile(*screenshotPath, shot, 0o644))
	}
}

// waitFor polls a JavaScript condition until it holds; a watchdog turns a
// page that never gets there into a failure naming what was awaited.
func waitFor(t *testing.T, b *browser, what, cond string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ok bool
		require.NoError(t, b.eval(`Boolean(`+cond+`)`, &ok))
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var status string
			_ = b.eval(`document.getElementById('status').textContent`, &status)
			t.Fatalf("waited 20s for %s; page status: %q", what, status)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// checkScreenshot decodes the PNG at path and checks it is the size asked
// for and not blank: the grey levels vary (a blank page is one colour).
func checkScreenshot(t *testing.T, path string, width, height int) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	img, err := png.Decode(bytes.NewReader(data))
	require.NoError(t, err)
	require.Equal(t, image.Rect(0, 0, width, height), img.Bounds())
	// Sample a grid of pixels (image.At is slow under -race).
	var n, sum, sumSq float64
	distinct := map[[3]uint8]bool{}
	for y := 0; y < height; y += 4 {
		for x := 0; x < width; x += 4 {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			v := (float64(c.R) + float64(c.G) + float64(c.B)) / 3
			n, sum, sumSq = n+1, sum+v, sumSq+v*v
			distinct[[3]uint8{c.R, c.G, c.B}] = true
		}
	}
	mean := sum / n
	variance := sumSq/n - mean*mean
	require.Greater(t, variance, 50.0, "the screenshot is nearly one colour (mean %.1f)", mean)
	require.Greater(t, len(distinct), 20, "the screenshot has too few colours to hold text")
}
