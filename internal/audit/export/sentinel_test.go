package export

import (
	"compress/gzip"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ztgate/ztgate/internal/config"
)

// TestSentinelLogsIngestionContract checks the Sentinel exporter against a
// local HTTPS server that follows the Azure Monitor Logs Ingestion REST
// contract, and a local Entra-like token endpoint. The real endpoint (and a
// real Entra tenant) cannot be reached from the test machines, so this is a
// contract test: it checks what the service documents it requires.
//
//	POST {endpoint}/dataCollectionRules/{dcr id}/streams/{stream}?api-version=2023-01-01
//	Authorization: Bearer {token for https://monitor.azure.com/.default}
//	Content-Type: application/json, Content-Encoding: gzip
//	body: a JSON array of rows, at most 1 MB per call
//	429 / 503 with Retry-After: wait at least that long, then send again.
func TestSentinelLogsIngestionContract(t *testing.T) {
	const (
		tenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
		clientID = "6f1d4c9e-0000-0000-0000-000000000000"
		secret   = "client-secret-value"
		dcr      = "dcr-0123456789abcdef0123456789abcdef"
		stream   = "Custom-ZtgateWebSession"
		token    = "access-token-from-the-local-endpoint"
	)
	var mu sync.Mutex
	var tokenRequests int
	var problems []string
	problem := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}

	// The token endpoint: OpenID discovery and the v2.0 token endpoint of
	// one tenant, as the client credentials flow uses them.
	var idp *httptest.Server
	idp = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := idp.URL + "/" + tenant
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/" + tenant + "/v2.0/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]any{
				"issuer": base + "/v2.0", "token_endpoint": base + "/oauth2/v2.0/token",
				"authorization_endpoint": base + "/oauth2/v2.0/authorize", "jwks_uri": base + "/discovery/v2.0/keys",
			})
		case "/" + tenant + "/oauth2/v2.0/token":
			r.ParseForm()
			mu.Lock()
			tokenRequests++
			mu.Unlock()
			if r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("client_id") != clientID || r.PostForm.Get("client_secret") != secret {
				problem("token request %v: want client_credentials for the configured client and secret", r.PostForm)
				http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
				return
			}
			if got := strings.Fields(r.PostForm.Get("scope")); len(got) == 0 || got[0] != "https://monitor.azure.com/.default" {
				problem("token scope: got %q, want https://monitor.azure.com/.default first", got)
			}
			json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600, "access_token": token})
		default:
			problem("unexpected token endpoint request %s %s", r.Method, r.URL)
			http.NotFound(w, r)
		}
	}))
	defer idp.Close()

	// The ingestion endpoint: the first call is throttled with
	// Retry-After: 1; every row accepted is kept.
	type call struct {
		at   time.Time
		size int // uncompressed bytes
		ok   bool
	}
	var calls []call
	got := map[string]int{} // EventOriginalUid -> times received
	ingest := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		if want := "/dataCollectionRules/" + dcr + "/streams/" + stream; r.Method != http.MethodPost || r.URL.Path != want {
			problem("request %s %s, want POST %s", r.Method, r.URL.Path, want)
		}
		if v := r.URL.Query().Get("api-version"); v != "2023-01-01" {
			problem("api-version %q, want 2023-01-01", v)
		}
		if a := r.Header.Get("Authorization"); a != "Bearer "+token {
			problem("Authorization %q, want the token from the token endpoint", a)
			http.Error(w, "", http.StatusUnauthorized)
			return
		}
		if r.Header.Get("Content-Encoding") != "gzip" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			problem("Content-Encoding %q, Content-Type %q; want gzip and application/json", r.Header.Get("Content-Encoding"), r.Header.Get("Content-Type"))
		}
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			problem("body is not gzip: %v", err)
			http.Error(w, "", http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(zr)
		mu.Lock()
		first := len(calls) == 0
		calls = append(calls, call{at: now, size: len(body), ok: !first})
		mu.Unlock()
		if len(body) >= 1_000_000 {
			problem("a call carried %d bytes, over the 1 MB limit", len(body))
		}
		var rows []map[string]any
		if err := json.Unmarshal(body, &rows); err != nil {
			problem("body is not a JSON array: %v", err)
			http.Error(w, "", http.StatusBadRequest)
			return
		}
		if first {
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":{"code":"TooManyRequests"}}`, http.StatusTooManyRequests)
			return
		}
		for _, row := range rows {
			for _, k := range []string{"TimeGenerated", "EventType", "EventResult", "EventSchema", "EventProduct", "DvcAction", "Url", "HttpRequestMethod", "HttpStatusCode", "SrcIpAddr", "EventOriginalUid", "DvcHostname"} {
				if _, ok := row[k]; !ok {
					problem("row lacks ASIM column %s: %v", k, row)
				}
			}
			if row["EventType"] != "ApiRequest" || row["EventSchema"] != "WebSession" || row["DvcAction"] != "Allow" || row["HttpStatusCode"] != 200.0 {
				problem("row is not an ASIM WebSession ApiRequest: %v", row)
			}
			mu.Lock()
			got[row["EventOriginalUid"].(string)]++
			mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer ingest.Close()

	// Trust the local servers through ca_file, as an operator would.
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ingest.Certificate().Raw})
	pemBytes = append(pemBytes, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: idp.Certificate().Raw})...)
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(nil)
	set, err := FromConfig([]config.Exporter{{
		Type: "sentinel", Name: "sentinel", Endpoint: ingest.URL, DCRID: dcr, Stream: stream,
		Auth: "client_secret", TenantID: tenant, ClientID: clientID, ClientSecret: secret,
		AuthorityHost: idp.URL, Audience: "https://monitor.azure.com", CAFile: caFile,
		Buffer: 1000, BatchSize: 500, FlushInterval: config.Duration(20 * time.Millisecond), Timeout: config.Duration(20 * time.Second),
		Retry: config.Retry{InitialInterval: config.Duration(10 * time.Millisecond), MaxInterval: config.Duration(time.Second), MaxElapsed: config.Duration(time.Minute)},
	}}, Options{Logger: discard, Metrics: m, Node: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	// 100 records of about 30 KB each: 3 MB, more than three calls can
	// carry.
	recs := records(100)
	for i := range recs {
		recs[i].Event.URL = "/orders/" + strings.Repeat("x", 30_000)
	}
	set.Start()
	set.Offer(recs)
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(m.sent.WithLabelValues("sentinel")) < 100 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := set.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	if tokenRequests == 0 {
		t.Error("no token was requested from the token endpoint")
	}
	if len(calls) < 5 {
		t.Fatalf("got %d ingestion calls, want the 429 and then at least 4 calls for 3 MB", len(calls))
	}
	if gap := calls[1].at.Sub(calls[0].at); gap < time.Second {
		t.Errorf("the call after a 429 with Retry-After: 1 came %v later, want at least 1s", gap)
	}
	for i := range recs {
		id := fmt.Sprintf("req-%d", i+1)
		if got[id] != 1 {
			t.Errorf("record %s received %d times, want once (nothing lost, nothing doubled)", id, got[id])
		}
	}
	if s, f := testutil.ToFloat64(m.sent.WithLabelValues("sentinel")), testutil.ToFloat64(m.failed.WithLabelValues("sentinel")); s != 100 || f != 0 {
		t.Errorf("counters: sent %v, failed %v; want 100 and 0", s, f)
	}
	if r := testutil.ToFloat64(m.retries.WithLabelValues("sentinel")); r != 1 {
		t.Errorf("retries: got %v, want 1", r)
	}
}

// TestSentinelASIMShape pins the row a record becomes.
func TestSentinelASIMShape(t *testing.T) {
	r := records(1)[0]
	r.Event.Decision, r.Event.Status, r.Event.Result, r.Event.ResultDetails, r.Event.Reasons = "deny", 403, "Failure", "role_missing", []string{"role_missing"}
	row, _ := json.Marshal(toASIM(&r, "v1.2.3"))
	var got map[string]any
	json.Unmarshal(row, &got)
	for k, want := range map[string]any{
		"EventType": "ApiRequest", "EventSchema": "WebSession", "EventSchemaVersion": "0.2.7", "EventResult": "Failure",
		"EventResultDetails": "403", "EventOriginalResultDetails": "role_missing", "EventSeverity": "Medium", "DvcAction": "Deny",
		"EventOriginalUid": "req-1", "EventUid": "gw-1:1", "EventProduct": "ztgate", "EventProductVersion": "v1.2.3",
		"HttpStatusCode": 403.0, "HttpRequestMethod": "GET", "SrcIpAddr": "10.1.2.3", "SrcUsername": "t1/o1",
		"SrcUserId": "o1", "SrcUserIdType": "AADID", "SrcAppId": "app1", "DstAppName": "orders", "RuleName": "read",
		"DvcHostname": "gw-1", "TimeGenerated": "2026-03-01T12:00:00Z", "NetworkDuration": 3.0,
	} {
		if fmt.Sprint(got[k]) != fmt.Sprint(want) {
			t.Errorf("%s: got %v, want %v", k, got[k], want)
		}
	}
	if af, _ := got["AdditionalFields"].(map[string]any); fmt.Sprint(af["Reasons"]) != "[role_missing]" || af["AuditHash"] != "h1" {
		t.Errorf("AdditionalFields: got %v, want the reasons and the chain hash", af)
	}
}

// TestSentinelDLP: a DlpResult event's counts reach Sentinel as they are.
func TestSentinelDLP(t *testing.T) {
	r := records(1)[0]
	r.Event.EventType, r.Event.DLP, r.Event.DLPOverLimit, r.Event.DLPUnscannedBytes = "DlpResult", map[string]int{"credit_card": 2}, true, 512
	row, _ := json.Marshal(toASIM(&r, "v1"))
	var got struct {
		EventType        string
		AdditionalFields map[string]any
	}
	json.Unmarshal(row, &got)
	af := got.AdditionalFields
	if got.EventType != "DlpResult" || fmt.Sprint(af["Dlp"]) != "map[credit_card:2]" || af["DlpOverLimit"] != true || af["DlpUnscannedBytes"] != 512.0 {
		t.Errorf("got %s, want EventType DlpResult and the DLP fields in AdditionalFields", row)
	}
}
