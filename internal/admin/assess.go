package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/ztgate/ztgate/internal/assess"
	"github.com/ztgate/ztgate/internal/config"
)

// AssessFunc assesses the configuration in force against the audit trail
// of the last since; record keeps the result for the trend.
type AssessFunc func(ctx context.Context, since time.Duration, record bool) (*assess.Report, error)

// reportCSP lets the HTML report do what it needs and nothing else: its
// own inline styles and SVG, no script, nothing from elsewhere.
const reportCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// assessRequest is the query of GET /v1/assess and the body of POST.
type assessRequest struct {
	Since  string `json:"since"`
	Format string `json:"format"`
}

// handleAssess serves the maturity assessment:
//
//	GET  /v1/assess?since=30d&format=json|html|md   assess (nothing is recorded)
//	POST /v1/assess {"since":"30d","format":"json"} assess and record the run for the trend (an empty body: the defaults)
//
// One assessment runs at a time; another meanwhile is refused (429).
// handleAssess serves the assessment: GET (nothing recorded) needs the
// admin token when one is set, POST (the run is recorded) is guarded like
// key management.
func handleAssess(mux *http.ServeMux, d Deps) {
	f := d.Assess
	var running sync.Mutex
	serve := func(w http.ResponseWriter, r *http.Request, req assessRequest, record bool) {
		if f == nil {
			writeJSON(w, http.StatusNotFound, apiError{Error: "assessment not available", Reason: "not_available"})
			return
		}
		since, format, err := req.check()
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Reason: "bad_request"})
			return
		}
		if !running.TryLock() {
			w.Header().Set("Retry-After", "5")
			writeJSON(w, http.StatusTooManyRequests, apiError{Error: "an assessment is already running", Reason: "assessment_running"})
			return
		}
		rep, err := func() (*assess.Report, error) {
			defer running.Unlock()
			return f(r.Context(), since, record)
		}()
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error(), Reason: "assessment_failed"})
			return
		}
		var b bytes.Buffer
		if err := rep.Write(&b, format); err != nil {
			writeJSON(w, http.StatusInternalServerError, apiError{Error: "the report could not be written", Reason: "internal"})
			return
		}
		h := w.Header()
		h.Set("Content-Type", assess.ContentType(format))
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		if format == "html" {
			h.Set("Content-Security-Policy", reportCSP)
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b.Bytes())
	}
	mux.HandleFunc("GET /v1/assess", guard(d, false, func(w http.ResponseWriter, r *http.Request, _ Caller) {
		req, err := assessQuery(r.URL.Query())
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Reason: "bad_request"})
			return
		}
		serve(w, r, req, false)
	}))
	mux.HandleFunc("POST /v1/assess", guard(d, true, func(w http.ResponseWriter, r *http.Request, _ Caller) {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			writeJSON(w, http.StatusUnsupportedMediaType, apiError{Error: "send JSON (Content-Type: application/json)", Reason: "unsupported_media_type"})
			return
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		dec.DisallowUnknownFields()
		var req assessRequest
		if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "bad request body: " + err.Error(), Reason: "bad_request"})
			return
		}
		serve(w, r, req, true)
	}))
}

func assessQuery(v url.Values) (assessRequest, error) {
	for k := range v {
		if k != "since" && k != "format" {
			return assessRequest{}, fmt.Errorf("unknown parameter %q (since, format)", k)
		}
	}
	return assessRequest{Since: v.Get("since"), Format: v.Get("format")}, nil
}

func (q assessRequest) check() (time.Duration, string, error) {
	since := assess.DefaultSince
	if q.Since != "" {
		d, err := config.ParseDuration(q.Since)
		if err != nil || d == 0 {
			return 0, "", errors.New("bad since: want a duration such as 30d or 12h")
		}
		since = d.D()
	}
	format := q.Format
	if format == "" {
		format = "json"
	}
	if !slices.Contains(assess.Formats, format) {
		return 0, "", fmt.Errorf("bad format %q: html, md or json", format)
	}
	return since, format, nil
}
