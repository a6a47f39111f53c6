package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ztgate/ztgate/internal/store/pgtest"
)

// apiKeyConfig is a gateway with API keys, two services and its store at
// dsn (shared by every node given the same one): a SQLite file, or a
// postgres:// URL.
func apiKeyConfig(up *upstream, dsn, node string) string {
	driver := "sqlite"
	if strings.HasPrefix(dsn, "postgres://") {
		driver = "postgres"
	}
	return fmt.Sprintf(`listen:
  address: "127.0.0.1:0"
  shutdown_timeout: 5s
admin:
  address: "127.0.0.1:0"
identity:
  api_keys: { enabled: true }
store: { driver: %s, dsn: %q }
audit: { node: %s, hmac_key: e2e-key }
services:
  - name: orders
    upstream: %q
    routes:
      - name: read-orders
        match: { methods: [GET], path: "/orders/**" }
        allow: { roles: [Orders.Read] }
      - name: write-orders
        match: { methods: [POST], path: "/orders/**" }
        allow: { roles: [Orders.Write] }
  - name: billing
    upstream: %q
    routes:
      - name: read-billing
        match: { path: "/billing/**" }
        allow: { authenticated: true }
`, driver, dsn, node, up.URL, up.URL)
}

// createdKey is what ztgate apikey create --json prints.
type createdKey struct {
	Key    string `json:"key"`
	APIKey struct {
		ID string `json:"id"`
	} `json:"api_key"`
}

type listedKey struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	LastUsed  time.Time `json:"last_used"`
	RevokedAt time.Time `json:"revoked_at"`
}

func listKeys(t *testing.T, cfg string) map[string]listedKey {
	t.Helper()
	out, err := runBinary("apikey", "list", "--config", cfg, "--json")
	if err != nil {
		t.Fatalf("apikey list: %v\n%s", err, out)
	}
	keys := map[string]listedKey{}
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var k listedKey
		if err := dec.Decode(&k); err != nil {
			t.Fatalf("apikey list --json: %v\n%s", err, out)
		}
		keys[k.ID] = k
	}
	return keys
}

// TestAPIKeys drives API keys end to end: made with the command line,
// used against two running gateway nodes sharing one store (a SQLite file,
// then a PostgreSQL server), refused where the key does not reach, revoked
// with the command line while both run, and accounted for in apikey list
// and the audit trail. The upstream never sees a key, nor a request that
// was refused.
func TestAPIKeys(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testAPIKeys(t, filepath.Join(t.TempDir(), "ztgate.db")) })
	t.Run("postgres", func(t *testing.T) { testAPIKeys(t, pgtest.DSN(t)) })
}

func testAPIKeys(t *testing.T, dsn string) {
	up := newUpstream(t)
	g1 := startGatewayIn(t, t.TempDir(), apiKeyConfig(up, dsn, "gw1"))
	g2 := startGatewayIn(t, t.TempDir(), apiKeyConfig(up, dsn, "gw2"))

	out, err := runBinary("apikey", "create", "--config", g1.CfgPath, "--name", "partner-a", "--service", "orders", "--roles", "Orders.Read", "--expires", "90d", "--json")
	if err != nil {
		t.Fatalf("apikey create: %v\n%s", err, out)
	}
	var ck createdKey
	if err := json.Unmarshal([]byte(out), &ck); err != nil || !strings.HasPrefix(ck.Key, "ztk_"+ck.APIKey.ID+"_") {
		t.Fatalf("apikey create printed %q, want JSON with the key", out)
	}
	key, id := ck.Key, ck.APIKey.ID
	// The plain output shows the key once too.
	if out, err := runBinary("apikey", "create", "--config", g1.CfgPath, "--name", "partner-b", "--service", "billing", "--expires", "1d"); err != nil || !strings.Contains(out, "\n  ztk_") {
		t.Fatalf("apikey create (text): %v\n%s", err, out)
	}

	authz := map[string]string{"Authorization": "ApiKey " + key}
	header := map[string]string{"X-API-Key": key}
	tests := []struct {
		name   string
		g      string
		method string
		path   string
		hdr    map[string]string
		status int
		reason string
	}{
		{"allowed, Authorization: ApiKey, node 1", g1.URL, "GET", "/orders/1", authz, 200, ""},
		{"allowed, X-API-Key, node 2", g2.URL, "GET", "/orders/2", header, 200, ""},
		{"a role the key lacks", g1.URL, "POST", "/orders/1", authz, 403, "role_missing"},
		{"another service", g1.URL, "GET", "/billing/1", header, 403, "api_key_wrong_service"},
		{"key in the query string", g2.URL, "GET", "/orders/1?api_key=" + key, nil, 401, "api_key_in_query"},
		{"key in the query string beside a good header", g2.URL, "GET", "/orders/1?k=" + key, authz, 401, "api_key_in_query"},
		{"a forged secret", g1.URL, "GET", "/orders/1", map[string]string{"X-API-Key": key[:len(key)-6] + "000000"}, 401, "api_key_invalid"},
		{"not a key", g1.URL, "GET", "/orders/1", map[string]string{"X-API-Key": "hunter2"}, 401, "api_key_invalid"},
		{"two credentials", g1.URL, "GET", "/orders/1", map[string]string{"X-API-Key": key, "Authorization": "Bearer x.y.z"}, 401, "ambiguous_credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.Reset()
			status, body, hdr := do(t, tt.method, tt.g+tt.path, "", tt.hdr)
			if status != tt.status {
				t.Fatalf("got %d %s, want %d", status, body, tt.status)
			}
			seen := up.Requests()
			if tt.status != 200 {
				if e := decodeError(t, body); e.Reason != tt.reason {
					t.Fatalf("got reason %q, want %q", e.Reason, tt.reason)
				}
				if status == 401 && hdr.Get("WWW-Authenticate") == "" {
					t.Error("401 without a challenge")
				}
				if len(seen) != 0 {
					t.Fatalf("the upstream saw a refused request: %+v", seen)
				}
				return
			}
			if len(seen) != 1 {
				t.Fatalf("the upstream saw %d requests, want 1", len(seen))
			}
			for k, vs := range seen[0].Header {
				for _, v := range vs {
					if strings.Contains(v, id) {
						t.Fatalf("the upstream saw the key in %s: %q", k, v)
					}
				}
			}
		})
	}

	// Revoke with the command line while both nodes serve; each refuses
	// the key within a bound (poll_interval 1s; 5s allows for a loaded
	// machine and the race detector).
	const bound = 5 * time.Second
	if out, err := runBinary("apikey", "revoke", "--config", g2.CfgPath, id); err != nil || !strings.Contains(out, "revoked "+id) {
		t.Fatalf("apikey revoke: %v\n%s", err, out)
	}
	revoked := time.Now()
	for _, g := range []struct{ name, url string }{{"gw1", g1.URL}, {"gw2", g2.URL}} {
		var took time.Duration
		for {
			status, body, _ := do(t, "GET", g.url+"/orders/1", "", authz)
			if status == 401 && decodeError(t, body).Reason == "api_key_revoked" {
				took = time.Since(revoked)
				break
			}
			if status != 200 {
				t.Fatalf("%s after revoking: got %d %s, want 200 until the revocation is seen, then 401 api_key_revoked", g.name, status, body)
			}
			if time.Since(revoked) > bound {
				t.Fatalf("%s still accepts the key %v after it was revoked, want at most %v", g.name, time.Since(revoked), bound)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("%s refused the revoked key %v after the revoke command returned", g.name, took.Round(time.Millisecond))
	}
	up.Reset()
	for _, g := range []string{g1.URL, g2.URL} {
		if status, body, _ := do(t, "GET", g+"/orders/1", "", header); status != 401 || decodeError(t, body).Reason != "api_key_revoked" {
			t.Fatalf("revoked key in X-API-Key: got %d %s", status, body)
		}
	}
	if n := len(up.Requests()); n != 0 {
		t.Fatalf("the upstream saw %d requests with the revoked key", n)
	}

	// Use shows in apikey list once a node has written it (in batches,
	// every 5s), and so does the revocation.
	waitFor(t, "last use in apikey list", func() bool { return !listKeys(t, g1.CfgPath)[id].LastUsed.IsZero() })
	k := listKeys(t, g1.CfgPath)[id]
	if k.RevokedAt.IsZero() || k.Name != "partner-a" || time.Since(k.LastUsed) > time.Minute {
		t.Fatalf("apikey list: %+v, want partner-a revoked, used within the minute", k)
	}
	if out, _ := runBinary("apikey", "list", "--config", g1.CfgPath); !strings.Contains(out, "LAST USED") || !strings.Contains(out, "revoked") {
		t.Fatalf("apikey list (text):\n%s", out)
	}

	// The trail has the refusals (with the key's identity where the secret
	// was genuine) and the command line's changes; every chain verifies.
	trail, err := runBinary("audit", "query", "--config", g1.CfgPath, "--json", "--limit", "1000")
	if err != nil {
		t.Fatalf("audit query: %v\n%s", err, trail)
	}
	for _, want := range []string{
		`"result_details":"api_key_revoked","decision":"deny"`,
		`"identity":"api_key/` + id + `"`,
		`"result_details":"api_key_wrong_service"`,
		`"result_details":"api_key_in_query"`,
		`"event_type":"Admin"`,
		`"result_details":"api_key_created"`,
		`"object":"api_key/` + id + `"`,
	} {
		if !strings.Contains(trail, want) {
			t.Errorf("the audit trail lacks %s", want)
		}
	}
	if strings.Contains(trail, key) || strings.Contains(trail, key[len(key)-20:]) {
		t.Error("the audit trail holds the key")
	}
	if out, err := runBinary("audit", "verify", "--config", g1.CfgPath); err != nil || !strings.Contains(out, "node gw1:") || !strings.Contains(out, "/cli:") || strings.Contains(out, "PROBLEM") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	logs := g1.Logs.String() + g2.Logs.String()
	if strings.Contains(logs, key[len(key)-20:]) {
		t.Error("a gateway logged the key")
	}
	if strings.Contains(logs, "DATA RACE") {
		t.Error("the race detector found a race in a gateway")
	}
}

// TestAPIKeysAdminAPI: the running gateway's admin API makes and revokes
// keys (on its loopback listener, without a token), records each change in
// the gateway's own audit chain, and refuses a browser.
func TestAPIKeysAdminAPI(t *testing.T) {
	up := newUpstream(t)
	g := startGatewayIn(t, t.TempDir(), apiKeyConfig(up, "ztgate.db", "gw-admin"))
	post := func(path, ctype, body string, hdr map[string]string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", g.Admin+path, bytes.NewBufferString(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	status, out := post("/v1/apikeys", "application/json", `{"name":"partner-c","service":"orders","roles":["Orders.Read"],"expires":"30d"}`, nil)
	key, _ := out["key"].(string)
	if status != 201 || !strings.HasPrefix(key, "ztk_") {
		t.Fatalf("create: got %d %v", status, out)
	}
	id := out["api_key"].(map[string]any)["id"].(string)
	// The key works at once: a new key is read on its first use.
	if s, b, _ := do(t, "GET", g.URL+"/orders/1", "", map[string]string{"X-API-Key": key}); s != 200 {
		t.Fatalf("new key: got %d %s", s, b)
	}
	if s, out := post("/v1/apikeys/"+id+"/revoke", "", "", map[string]string{"Origin": "http://evil.example"}); s != 403 || out["reason"] != "cross_origin_refused" {
		t.Fatalf("revoke from a browser: got %d %v", s, out)
	}
	if s, out := post("/v1/apikeys/"+id+"/revoke", "", "", nil); s != 200 || out["revoked"] != true || out["audited"] != true {
		t.Fatalf("revoke: got %d %v", s, out)
	}
	waitFor(t, "the revocation", func() bool {
		s, b, _ := do(t, "GET", g.URL+"/orders/1", "", map[string]string{"X-API-Key": key})
		return s == 401 && strings.Contains(string(b), "api_key_revoked")
	})
	trail, err := runBinary("audit", "query", "--config", g.CfgPath, "--json")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"result_details":"api_key_created"`, `"result_details":"api_key_revoked","decision":"allow"`, `"identity":"admin-loopback"`, `"node":"gw-admin"`} {
		if !strings.Contains(trail, want) {
			t.Errorf("the audit trail lacks %s:\n%s", want, trail)
		}
	}
	if strings.Contains(g.Logs.String(), "DATA RACE") {
		t.Error("the race detector found a race in the gateway")
	}
}

// TestAPIKeysReload: a reload that changes how keys are polled builds the
// new verifier (every key read) before it serves, so key requests never
// fail across it; revocation still works after it; a reload that turns API
// keys off refuses them.
func TestAPIKeysReload(t *testing.T) {
	up := newUpstream(t)
	cfg := apiKeyConfig(up, "ztgate.db", "gw-reload")
	g := startGatewayIn(t, t.TempDir(), cfg)
	out, err := runBinary("apikey", "create", "--config", g.CfgPath, "--name", "p", "--service", "orders", "--roles", "Orders.Read", "--expires", "1d", "--json")
	if err != nil {
		t.Fatalf("apikey create: %v\n%s", err, out)
	}
	var ck createdKey
	if err := json.Unmarshal([]byte(out), &ck); err != nil {
		t.Fatal(err)
	}
	hdr := map[string]string{"X-API-Key": ck.Key}
	hash := func() string {
		_, b, _ := do(t, "GET", g.Admin+"/readyz", "", nil)
		var r struct {
			ConfigHash string `json:"config_hash"`
		}
		_ = json.Unmarshal(b, &r)
		return r.ConfigHash
	}
	before := hash()

	// Requests flow while the file changes and is reloaded.
	stop := make(chan struct{})
	bad := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest("GET", g.URL+"/orders/1", nil)
			req.Header.Set("X-API-Key", ck.Key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				select {
				case bad <- fmt.Sprintf("%d %s", resp.StatusCode, b):
				default:
				}
			}
		}
	}()
	changed := strings.Replace(cfg, "api_keys: { enabled: true }", "api_keys: { enabled: true, poll_interval: 500ms, max_stale: 5s }", 1)
	if err := os.WriteFile(g.CfgPath, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	g.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool { return hash() != before })
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
	select {
	case b := <-bad:
		t.Fatalf("a key request failed across the reload: %s", b)
	default:
	}

	if out, err := runBinary("apikey", "revoke", "--config", g.CfgPath, ck.APIKey.ID); err != nil {
		t.Fatalf("apikey revoke: %v\n%s", err, out)
	}
	waitFor(t, "the revocation after the reload", func() bool {
		s, b, _ := do(t, "GET", g.URL+"/orders/1", "", hdr)
		return s == 401 && strings.Contains(string(b), "api_key_revoked")
	})

	before = hash()
	off := strings.Replace(cfg, "api_keys: { enabled: true }", "api_keys: { enabled: false }", 1)
	if err := os.WriteFile(g.CfgPath, []byte(off), 0o600); err != nil {
		t.Fatal(err)
	}
	g.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool { return hash() != before })
	if s, b, _ := do(t, "GET", g.URL+"/orders/1", "", map[string]string{"Authorization": "ApiKey " + ck.Key}); s != 401 || decodeError(t, b).Reason != "missing_credentials" {
		t.Fatalf("API keys off: got %d %s, want 401 missing_credentials", s, b)
	}
	if strings.Contains(g.Logs.String(), "DATA RACE") {
		t.Error("the race detector found a race in the gateway")
	}
}
