package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztgate/ztgate/internal/assess"
)

// fakeAssess returns a fixed report and remembers how it was asked.
type fakeAssess struct {
	since   time.Duration
	record  bool
	calls   int
	err     error
	entered chan struct{} // closed when the assessment starts
	block   chan struct{} // the assessment waits for it
}

func (f *fakeAssess) assess(ctx context.Context, since time.Duration, record bool) (*assess.Report, error) {
	f.calls++
	f.since, f.record = since, record
	if f.block != nil {
		close(f.entered)
		<-f.block
	}
	if f.err != nil {
		return nil, f.err
	}
	rep := &assess.Report{Format: assess.ReportFormat, Config: "gw.yaml", Overall: assess.Overall{Stage: assess.Initial, Microsoft: "Initial", Counts: map[string]int{}}}
	for _, p := range assess.Pillars {
		rep.Pillars = append(rep.Pillars, assess.PillarResult{PillarInfo: p, Stage: assess.Initial, Counts: map[string]int{}})
	}
	return rep, nil
}

func adminServer(t *testing.T, f AssessFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(Handler(Deps{Gatherer: prometheus.NewRegistry(), Status: func() Readiness { return Readiness{Ready: true} }, Assess: f, Loopback: true}))
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, method, url, contentType, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestAssess(t *testing.T) {
	fa := &fakeAssess{}
	srv := adminServer(t, fa.assess)
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		wantType, wantBody              string
		since                           time.Duration
		record                          bool
	}{
		{"defaults: JSON over 30 days", "GET", "/v1/assess", "", "", 200, "application/json", `"overall"`, 30 * 24 * time.Hour, false},
		{"html", "GET", "/v1/assess?since=7d&format=html", "", "", 200, "text/html; charset=utf-8", "<!DOCTYPE html>", 7 * 24 * time.Hour, false},
		{"markdown", "GET", "/v1/assess?since=12h&format=md", "", "", 200, "text/markdown; charset=utf-8", "# Zero Trust maturity assessment", 12 * time.Hour, false},
		{"POST records the run", "POST", "/v1/assess", "application/json", `{"since":"90d"}`, 200, "application/json", `"pillars"`, 90 * 24 * time.Hour, true},
		{"POST with no body takes the defaults", "POST", "/v1/assess", "application/json", "", 200, "application/json", `"pillars"`, 30 * 24 * time.Hour, true},
		{"bad since", "GET", "/v1/assess?since=soon", "", "", 400, "application/json", "bad since", 0, false},
		{"bad format", "GET", "/v1/assess?format=pdf", "", "", 400, "application/json", "bad format", 0, false},
		{"unknown parameter is refused, not ignored", "GET", "/v1/assess?sinse=7d", "", "", 400, "application/json", `unknown parameter \"sinse\"`, 0, false},
		{"POST takes JSON only", "POST", "/v1/assess", "application/x-www-form-urlencoded", "since=7d", 415, "application/json", "unsupported_media_type", 0, false},
		{"POST refuses unknown fields", "POST", "/v1/assess", "application/json", `{"sinse":"7d"}`, 400, "application/json", "bad_request", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			*fa = fakeAssess{}
			resp, body := call(t, tt.method, srv.URL+tt.path, tt.ctype, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status: got %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("Content-Type"); got != tt.wantType {
				t.Errorf("content type: got %q, want %q", got, tt.wantType)
			}
			if !strings.Contains(body, tt.wantBody) {
				t.Errorf("body: got %.200q, want it to contain %q", body, tt.wantBody)
			}
			if tt.status != 200 {
				if fa.calls != 0 {
					t.Errorf("a refused request ran the assessment")
				}
				return
			}
			if fa.since != tt.since || fa.record != tt.record {
				t.Errorf("assessed since %v, record %v; want %v, %v", fa.since, fa.record, tt.since, tt.record)
			}
			if strings.HasPrefix(tt.wantType, "text/html") {
				if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
					t.Errorf("HTML report CSP: got %q, want default-src 'none'", csp)
				}
			}
		})
	}
}

func TestAssessFailures(t *testing.T) {
	fa := &fakeAssess{err: errors.New("store down")}
	resp, body := call(t, "GET", adminServer(t, fa.assess).URL+"/v1/assess", "", "")
	var e apiError
	_ = json.Unmarshal([]byte(body), &e)
	if resp.StatusCode != 503 || e.Reason != "assessment_failed" || e.RequestID == "" {
		t.Errorf("failing assessment: got %d %+v, want 503 assessment_failed with a request id", resp.StatusCode, e)
	}

	resp, _ = call(t, "GET", adminServer(t, nil).URL+"/v1/assess", "", "")
	if resp.StatusCode != 404 {
		t.Errorf("no assessment wired: got %d, want 404", resp.StatusCode)
	}

	// One at a time: a second request while one runs is refused.
	block := &fakeAssess{entered: make(chan struct{}), block: make(chan struct{})}
	srv := adminServer(t, block.assess)
	done := make(chan int)
	go func() {
		resp, err := http.Get(srv.URL + "/v1/assess")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-block.entered
	resp, _ = call(t, "GET", srv.URL+"/v1/assess", "", "")
	close(block.block)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("concurrent assessment: got %d, want 429 with Retry-After", resp.StatusCode)
	}
	if first := <-done; first != 200 {
		t.Errorf("the running assessment: got %d, want 200", first)
	}
}
