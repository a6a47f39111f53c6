package export

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztgate/ztgate/internal/audit"
	"github.com/ztgate/ztgate/internal/config"
)

func TestJSONLRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	recs := records(40)
	line, _ := marshalEnvelope(&recs[len(recs)-1])
	// Room for about 5 lines per file; 3 files kept beside the current one.
	r := &rotator{path: path, max: int64(len(line)+1)*5 + 3, keep: 3}
	s := &jsonlSender{rot: r}
	for i := 0; i < len(recs); i += 7 {
		if err := s.Send(context.Background(), recs[i:min(i+7, len(recs))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(path + "*")
	if want := []string{path, path + ".1", path + ".2", path + ".3"}; !cmp.Equal(files, want) {
		t.Fatalf("files: got %v, want %v (older ones removed)", files, want)
	}
	var seqs []int64
	for _, f := range []string{path + ".3", path + ".2", path + ".1", path} {
		fi, _ := os.Stat(f)
		if fi.Size() > r.max {
			t.Errorf("%s has %d bytes, over max %d", f, fi.Size(), r.max)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
		data, _ := os.ReadFile(f)
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			var env struct {
				Seq   int64       `json:"seq"`
				Hash  string      `json:"hash"`
				Event audit.Event `json:"event"`
			}
			if err := json.Unmarshal(sc.Bytes(), &env); err != nil {
				t.Fatalf("%s: line %q is not JSON: %v", f, sc.Text(), err)
			}
			if env.Event.RequestID != fmt.Sprintf("req-%d", env.Seq) || env.Hash != fmt.Sprintf("h%d", env.Seq) {
				t.Fatalf("line %q does not carry its record", sc.Text())
			}
			seqs = append(seqs, env.Seq)
		}
	}
	// The newest 20 records survive, in order, each once.
	for i, s := range seqs {
		if s != int64(len(recs)-len(seqs)+i+1) {
			t.Fatalf("sequence numbers in the kept files: %v, want the last %d in order", seqs, len(seqs))
		}
	}
	if len(seqs) != 20 {
		t.Errorf("kept %d records in 4 files of 5 lines, want 20", len(seqs))
	}
}

func TestJSONLStdoutAndReopen(t *testing.T) {
	var out bytes.Buffer
	s := &jsonlSender{w: &out}
	if err := s.Send(context.Background(), records(3)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "\n"); got != 3 {
		t.Errorf("got %d lines, want 3", got)
	}
	// A restart appends to the existing file and counts its size.
	path := filepath.Join(t.TempDir(), "a.jsonl")
	os.WriteFile(path, bytes.Repeat([]byte("x"), 100), 0o600)
	r := &rotator{path: path, max: 120, keep: 1}
	if err := (&jsonlSender{rot: r}).Send(context.Background(), records(1)); err != nil {
		t.Fatal(err)
	}
	if old, _ := os.ReadFile(path + ".1"); len(old) != 100 {
		t.Errorf("the earlier file was not rotated aside: %d bytes in .1", len(old))
	}
}

// TestOTLPPayloadShape posts to a local OTLP/HTTP receiver and checks the
// ExportLogsServiceRequest JSON: resource, scope, one log record per event
// with its time as a string of nanoseconds, severity, and attributes.
func TestOTLPPayloadShape(t *testing.T) {
	var got []byte
	var hdr http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/logs" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		got, _ = io.ReadAll(r.Body)
		hdr = r.Header.Clone()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{}")
	}))
	defer srv.Close()
	set, err := FromConfig([]config.Exporter{{Type: "otlp", URL: srv.URL + "/v1/logs", Headers: map[string]config.Secret{"X-Api-Key": "k1"}, Buffer: 10, BatchSize: 10}}, Options{Node: "gw-1", Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	s := set[0].sender
	recs := records(2)
	recs[1].Event.Decision, recs[1].Event.Reasons, recs[1].Event.Status = "deny", []string{"role_missing"}, 403
	if err := s.Send(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if hdr.Get("Content-Type") != "application/json" || hdr.Get("X-Api-Key") != "k1" {
		t.Errorf("headers: got %v, want JSON content type and the configured X-Api-Key", hdr)
	}
	var req struct {
		ResourceLogs []struct {
			Resource struct {
				Attributes []map[string]any `json:"attributes"`
			} `json:"resource"`
			ScopeLogs []struct {
				Scope      map[string]any `json:"scope"`
				LogRecords []struct {
					TimeUnixNano   string           `json:"timeUnixNano"`
					ObservedTime   string           `json:"observedTimeUnixNano"`
					SeverityNumber int              `json:"severityNumber"`
					SeverityText   string           `json:"severityText"`
					EventName      string           `json:"eventName"`
					Body           map[string]any   `json:"body"`
					Attributes     []map[string]any `json:"attributes"`
				} `json:"logRecords"`
			} `json:"scopeLogs"`
		} `json:"resourceLogs"`
	}
	dec := json.NewDecoder(bytes.NewReader(got))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		t.Fatalf("payload %s: %v", got, err)
	}
	if len(req.ResourceLogs) != 1 || len(req.ResourceLogs[0].ScopeLogs) != 1 {
		t.Fatalf("got %s, want one resource with one scope", got)
	}
	if a := attrs(req.ResourceLogs[0].Resource.Attributes); a["service.name"] != `{"stringValue":"ztgate"}` || a["host.name"] != `{"stringValue":"gw-1"}` {
		t.Errorf("resource attributes: got %v", a)
	}
	sl := req.ResourceLogs[0].ScopeLogs[0]
	if sl.Scope["name"] != "ztgate.audit" || len(sl.LogRecords) != 2 {
		t.Fatalf("scope: got %v with %d records, want ztgate.audit with 2", sl.Scope, len(sl.LogRecords))
	}
	for i, lr := range sl.LogRecords {
		if lr.TimeUnixNano != strconv.FormatInt(recs[i].Event.Time.UnixNano(), 10) {
			t.Errorf("record %d timeUnixNano: got %q, want the event time as a decimal string", i, lr.TimeUnixNano)
		}
		if lr.EventName != "ztgate.api_request" || lr.Body["stringValue"] != string(recs[i].Body) {
			t.Errorf("record %d: event name %q, body %v; want ztgate.api_request and the hashed event", i, lr.EventName, lr.Body)
		}
		a := attrs(lr.Attributes)
		for k, want := range map[string]string{
			"http.request.method":       `{"stringValue":"GET"}`,
			"http.response.status_code": fmt.Sprintf(`{"intValue":"%d"}`, recs[i].Event.Status),
			"ztgate.request_id":         fmt.Sprintf(`{"stringValue":"req-%d"}`, i+1),
			"ztgate.audit.seq":          fmt.Sprintf(`{"intValue":"%d"}`, i+1),
			"client.address":            `{"stringValue":"10.1.2.3"}`,
			"url.path":                  fmt.Sprintf(`{"stringValue":"/orders/%d"}`, i+1),
			"url.query":                 `{"stringValue":"x=REDACTED"}`,
		} {
			if a[k] != want {
				t.Errorf("record %d attribute %s: got %s, want %s", i, k, a[k], want)
			}
		}
	}
	if r := sl.LogRecords[1]; r.SeverityNumber != 13 || r.SeverityText != "WARN" || attrs(r.Attributes)["ztgate.reasons"] != `{"arrayValue":{"values":[{"stringValue":"role_missing"}]}}` {
		t.Errorf("deny record: severity %d %s, reasons %s; want 13 WARN and the reasons", r.SeverityNumber, r.SeverityText, attrs(r.Attributes)["ztgate.reasons"])
	}
	if sl.LogRecords[0].SeverityNumber != 9 {
		t.Errorf("allow record severity: got %d, want 9 (INFO)", sl.LogRecords[0].SeverityNumber)
	}
}

func attrs(kvs []map[string]any) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		v, _ := json.Marshal(kv["value"])
		out[kv["key"].(string)] = string(v)
	}
	return out
}

// verifyWebhook is what a receiver does, written from the documented
// scheme rather than with Sign: HMAC-SHA256 over "timestamp.body".
func verifyWebhook(key []byte, r *http.Request, body []byte, now time.Time) error {
	ts := r.Header.Get("X-Ztgate-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("bad timestamp %q", ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %s too far from now", ts)
	}
	m := hmac.New(sha256.New, key)
	io.WriteString(m, ts+".")
	m.Write(body)
	want := "sha256=" + hex.EncodeToString(m.Sum(nil))
	if !hmac.Equal([]byte(r.Header.Get("X-Ztgate-Signature")), []byte(want)) {
		return fmt.Errorf("signature mismatch")
	}
	return nil
}

func TestWebhookHMAC(t *testing.T) {
	key := []byte("0123456789abcdef-webhook-key")
	type got struct {
		err  error
		seqs []int64
	}
	results := make(chan got, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := verifyWebhook(key, r, body, time.Now())
		var envs []struct {
			Seq   int64           `json:"seq"`
			Event json.RawMessage `json:"event"`
		}
		if err == nil {
			err = json.Unmarshal(body, &envs)
		}
		var seqs []int64
		for _, e := range envs {
			seqs = append(seqs, e.Seq)
		}
		results <- got{err, seqs}
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
		}
	}))
	defer srv.Close()

	s := &webhookSender{client: srv.Client(), url: srv.URL, header: http.Header{}, key: key, now: time.Now}
	if err := s.Send(context.Background(), records(3)); err != nil {
		t.Fatalf("send: %v", err)
	}
	if r := <-results; r.err != nil || fmt.Sprint(r.seqs) != "[1 2 3]" {
		t.Fatalf("receiver: %v, seqs %v; want a verified batch of 1..3", r.err, r.seqs)
	}

	// The wrong key, and an old timestamp (a replay), are refused, and a
	// refusal is permanent.
	for name, s := range map[string]*webhookSender{
		"wrong key": {client: srv.Client(), url: srv.URL, header: http.Header{}, key: []byte("another-key-of-16+"), now: time.Now},
		"replayed":  {client: srv.Client(), url: srv.URL, header: http.Header{}, key: key, now: func() time.Time { return time.Now().Add(-time.Hour) }},
	} {
		err := s.Send(context.Background(), records(1))
		if r := <-results; r.err == nil {
			t.Errorf("%s: the receiver verified it, want a refusal", name)
		}
		if !IsPermanent(err) {
			t.Errorf("%s: got %v, want a permanent error (401)", name, err)
		}
	}
	// The signature covers the body: Sign agrees with the receiver.
	body := []byte(`[{"seq":1}]`)
	req := httptest.NewRequest("POST", "/", nil)
	req.Header.Set("X-Ztgate-Timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	req.Header.Set("X-Ztgate-Signature", Sign(key, time.Now().Unix(), body))
	if err := verifyWebhook(key, req, body, time.Now()); err != nil {
		t.Errorf("Sign: %v", err)
	}
	if err := verifyWebhook(key, req, []byte(`[{"seq":2}]`), time.Now()); err == nil {
		t.Error("a changed body verified")
	}
}
