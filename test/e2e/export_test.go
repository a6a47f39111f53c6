package e2e

import (
	"bufio"
	"bytes"
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
	"sync"
	"syscall"
	"testing"
	"time"
)

// hookReceiver is a webhook endpoint that verifies each batch's
// HMAC-SHA256 signature (over "timestamp.body") before it keeps the events.
type hookReceiver struct {
	*httptest.Server
	key []byte

	mu      sync.Mutex
	ids     map[string]int // request id -> times received
	refused int
}

func newHookReceiver(t *testing.T, key []byte) *hookReceiver {
	h := &hookReceiver{key: key, ids: map[string]int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts := r.Header.Get("X-Ztgate-Timestamp")
		sec, err := strconv.ParseInt(ts, 10, 64)
		m := hmac.New(sha256.New, key)
		io.WriteString(m, ts+".")
		m.Write(body)
		want := "sha256=" + hex.EncodeToString(m.Sum(nil))
		if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute || !hmac.Equal([]byte(r.Header.Get("X-Ztgate-Signature")), []byte(want)) {
			h.mu.Lock()
			h.refused++
			h.mu.Unlock()
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var batch []struct {
			Event struct {
				RequestID string `json:"request_id"`
			} `json:"event"`
		}
		if err := json.Unmarshal(body, &batch); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		for _, e := range batch {
			h.ids[e.Event.RequestID]++
		}
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) count(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ids[id]
}

// jsonlIDs reads the request ids of the exporter's JSON lines file.
func jsonlIDs(t *testing.T, path string) map[string]int {
	ids := map[string]int{}
	data, err := os.ReadFile(path)
	if err != nil {
		return ids
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Seq   int64 `json:"seq"`
			Event struct {
				RequestID string `json:"request_id"`
			} `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("%s: line %q is not JSON: %v", path, sc.Text(), err)
		}
		ids[line.Event.RequestID]++
	}
	return ids
}

// TestAuditExporters runs the real gateway with a JSON lines exporter and
// a signed webhook exporter, and checks every audited request reaches both,
// once, after it is in the store.
func TestAuditExporters(t *testing.T) {
	is, up := newIssuer(t), newUpstream(t)
	key := []byte("e2e-webhook-key-0123456789")
	t.Setenv("ZT_E2E_HOOK_KEY", string(key))
	hook := newHookReceiver(t, key)
	dir := t.TempDir()
	cfg := baseConfig(is, up) + fmt.Sprintf(`store: { driver: sqlite, dsn: audit.db }
audit:
  node: gw-e2e
  exporters:
    - { type: jsonl, path: export/audit.jsonl, flush_interval: 50ms }
    - { type: webhook, name: hook, url: %q, hmac_key: "${env:ZT_E2E_HOOK_KEY}", flush_interval: 50ms, batch_size: 7 }
`, hook.URL)
	if err := os.Mkdir(filepath.Join(dir, "export"), 0o700); err != nil {
		t.Fatal(err)
	}
	g := startGatewayIn(t, dir, cfg)
	reader := is.TokenFor(t, "alice", "Orders.Read")

	// Allowed, denied (role missing) and unauthenticated requests.
	var sent []string
	for i := range 30 {
		var hdr http.Header
		switch i % 3 {
		case 0:
			_, _, hdr = do(t, "GET", fmt.Sprintf("%s/orders/%d", g.URL, i), reader, nil)
		case 1:
			_, _, hdr = do(t, "GET", g.URL+"/admin/x", reader, nil)
		case 2:
			_, _, hdr = do(t, "GET", g.URL+"/orders/x", "", nil)
		}
		sent = append(sent, hdr.Get("X-Request-Id"))
	}

	// What the store holds is what was audited.
	out, err := runBinary("audit", "query", "--config", g.CfgPath, "--json", "--since", "1h", "--limit", "1000")
	if err != nil {
		t.Fatalf("audit query: %v\n%s", err, out)
	}
	var audited []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct {
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit query line %q: %v", line, err)
		}
		audited = append(audited, e.RequestID)
	}
	if len(audited) < 20 {
		t.Fatalf("the store holds %d events, want at least the 20 routed requests", len(audited))
	}
	inStore := map[string]bool{}
	for _, id := range audited {
		inStore[id] = true
	}
	for i, id := range sent {
		if i%3 != 2 && !inStore[id] {
			t.Errorf("request %s (%d) was answered but is not in the store", id, i)
		}
	}

	jsonl := filepath.Join(dir, "export", "audit.jsonl")
	waitFor(t, "every audited event in both exporters", func() bool {
		ids := jsonlIDs(t, jsonl)
		for _, id := range audited {
			if ids[id] == 0 || hook.count(id) == 0 {
				return false
			}
		}
		return true
	})
	ids := jsonlIDs(t, jsonl)
	for _, id := range audited {
		if ids[id] != 1 || hook.count(id) != 1 {
			t.Errorf("event %s exported %d times to jsonl and %d to the webhook, want once each", id, ids[id], hook.count(id))
		}
	}
	if len(ids) != len(audited) {
		t.Errorf("jsonl holds %d events, the store %d", len(ids), len(audited))
	}
	hook.mu.Lock()
	if hook.refused != 0 {
		t.Errorf("the webhook receiver refused %d batches", hook.refused)
	}
	hook.mu.Unlock()

	// The counters say the same, and the key never reached the logs.
	resp, err := http.Get(g.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf(`ztgate_audit_export_sent_total{exporter="hook"} %d`, len(audited)),
		fmt.Sprintf(`ztgate_audit_export_sent_total{exporter="jsonl"} %d`, len(audited)),
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(string(metrics), `ztgate_audit_export_dropped_total{exporter="hook"} 1`) {
		t.Error("events were dropped")
	}

	// A graceful stop delivers what the exporters still hold.
	do(t, "GET", g.URL+"/orders/last", reader, nil)
	g.Signal(syscall.SIGTERM)
	select {
	case <-g.Done:
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway did not stop")
	}
	g.Done <- nil // the harness's cleanup waits on it
	if got := len(jsonlIDs(t, jsonl)); got != len(audited)+1 {
		t.Errorf("after SIGTERM jsonl holds %d events, want %d (the last one flushed on stop)", got, len(audited)+1)
	}
	if strings.Contains(g.Logs.String(), string(key)) {
		t.Error("the webhook key appears in the gateway's logs")
	}
}
