package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestMetricsEndpoint runs the example as a user would and scrapes
// /metrics: the qpool metrics are there under their Prometheus names, with
// the pool's name as a label and no job ID anywhere.
func TestMetricsEndpoint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out strings.Builder
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, &out) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
			// Read after run returned: its writes happened before.
			if !strings.Contains(out.String(), "/metrics") {
				t.Errorf("the URL was not printed: %q", out.String())
			}
		case <-time.After(10 * time.Second):
			t.Error("run did not return 10s after its context ended")
		}
	}()

	want := []string{
		`qpool_jobs_submitted_total{`,
		`qpool_jobs_completed_total{`,
		`qpool_job_outcome="ok"`,
		`qpool_job_duration_seconds_bucket{`,
		`messaging_process_duration_seconds_bucket{`,
		`qpool_queue_depth{`,
		`qpool_queue_oldest_age_seconds{`,
		`qpool_jobs_running{`,
		`qpool_workers_live{`,
		`qpool_workers_limit{`,
		`messaging_destination_name="demo"`,
		`messaging_system="qpool"`,
		`# TYPE qpool_job_duration_seconds histogram`,
		`# TYPE qpool_jobs_completed_total counter`,
		`# TYPE qpool_queue_depth gauge`,
	}
	url := "http://" + ln.Addr().String() + "/metrics"
	client := &http.Client{Timeout: 5 * time.Second}
	var body string
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
		}
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15s /metrics still lacks %q:\n%s", missing, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if regexp.MustCompile(`"job-\d+"|message_id`).MatchString(body) {
		t.Errorf("a job ID is on a metric:\n%s", body)
	}
}
