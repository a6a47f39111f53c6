package secrets_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/inject"
	"github.com/ztgate/ztgate/internal/secrets"
)

const (
	testTenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	testClientID = "6f1d4c9e-0000-0000-0000-000000000000"
	testSPSecret = "sp-secret-from-a-file"
	vaultScope   = "https://vault.azure.net/.default"
)

// fakeVault is a local HTTPS server that follows the documented contracts
// of Azure Key Vault's secrets REST API (GET {vault}/secrets/{name}/{version}
// ?api-version=7.x, challenge-based bearer authentication, 429 with
// Retry-After) and of the Entra ID v2.0 token endpoint for the client
// credentials grant. The real Key Vault and Entra ID cannot be reached from
// the test machines; the official SDK client is what is under test.
type fakeVault struct {
	*httptest.Server
	t *testing.T

	mu       sync.Mutex
	versions map[string][]secretVersion // name -> versions, newest last
	token    string
	down     bool          // every secrets request answers 503
	throttle time.Duration // the next secrets request answers 429 with this Retry-After
	log      []vaultRequest
}

type secretVersion struct{ id, value string }

type vaultRequest struct {
	at         time.Time
	path       string
	apiVersion string
	authorized bool
	status     int
}

func newFakeVault(t *testing.T) *fakeVault {
	v := &fakeVault{t: t, versions: map[string][]secretVersion{}, token: "tok-" + randomHex(8)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /"+testTenant+"/v2.0/.well-known/openid-configuration", v.openIDConfiguration)
	mux.HandleFunc("POST /"+testTenant+"/oauth2/v2.0/token", v.tokenEndpoint)
	mux.HandleFunc("GET /secrets/", v.getSecret)
	v.Server = httptest.NewTLSServer(mux)
	t.Cleanup(v.Close)
	return v
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// put adds a version (32 hex digits, as Key Vault's) and returns its id.
func (v *fakeVault) put(name, value string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	id := randomHex(16)
	v.versions[name] = append(v.versions[name], secretVersion{id: id, value: value})
	return id
}

func (v *fakeVault) openIDConfiguration(w http.ResponseWriter, r *http.Request) {
	base := v.URL + "/" + testTenant
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"token_endpoint":%q,"issuer":%q,"authorization_endpoint":%q}`, base+"/oauth2/v2.0/token", base+"/v2.0", base+"/oauth2/v2.0/authorize")
}

func (v *fakeVault) tokenEndpoint(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	w.Header().Set("Content-Type", "application/json")
	if r.Form.Get("grant_type") != "client_credentials" || r.Form.Get("client_id") != testClientID ||
		r.Form.Get("client_secret") != testSPSecret || !slices.Contains(strings.Fields(r.Form.Get("scope")), vaultScope) {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}`)
		return
	}
	fmt.Fprintf(w, `{"token_type":"Bearer","expires_in":3600,"ext_expires_in":3600,"access_token":%q}`, v.token)
}

var apiVersionRE = regexp.MustCompile(`^7\.[0-9]+$`)

func (v *fakeVault) getSecret(w http.ResponseWriter, r *http.Request) {
	v.mu.Lock()
	defer v.mu.Unlock()
	rec := vaultRequest{at: time.Now(), path: r.URL.Path, apiVersion: r.URL.Query().Get("api-version"), authorized: r.Header.Get("Authorization") == "Bearer "+v.token}
	defer func() { v.log = append(v.log, rec) }()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	fail := func(status int, code, msg string) {
		rec.status = status
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":%q}}`, code, msg)
	}
	if !apiVersionRE.MatchString(rec.apiVersion) {
		fail(http.StatusBadRequest, "BadParameter", "The specified version ("+rec.apiVersion+") is not recognized.")
		return
	}
	if !rec.authorized {
		// The documented challenge: which tenant to sign in to, for which resource.
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="%s/%s", resource="https://vault.azure.net"`, v.URL, testTenant))
		fail(http.StatusUnauthorized, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
		return
	}
	if v.down {
		fail(http.StatusServiceUnavailable, "ServiceUnavailable", "The service is unavailable.")
		return
	}
	if v.throttle > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(v.throttle.Seconds())))
		v.throttle = 0
		fail(http.StatusTooManyRequests, "Throttled", "Request was not processed because too many requests were received.")
		return
	}
	name, version, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/secrets/"), "/")
	vs := v.versions[name]
	var found *secretVersion
	for i := range vs {
		if version == "" || vs[i].id == version {
			found = &vs[i]
		}
	}
	if found == nil {
		fail(http.StatusNotFound, "SecretNotFound", fmt.Sprintf("A secret with (name/id) %s/%s was not found in this key vault.", name, version))
		return
	}
	rec.status = http.StatusOK
	_ = json.NewEncoder(w).Encode(map[string]any{
		"value": found.value,
		"id":    v.URL + "/secrets/" + name + "/" + found.id,
		"attributes": map[string]any{
			"enabled": true, "created": 1_700_000_000, "updated": 1_700_000_000, "recoveryLevel": "Recoverable+Purgeable",
		},
		"tags": map[string]string{},
	})
}

func (v *fakeVault) requests() []vaultRequest {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]vaultRequest(nil), v.log...)
}

func (v *fakeVault) set(f func(v *fakeVault)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	f(v)
}

// syncBuffer is a log sink safe for the cache's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKeyVaultSecretsContract runs the official azsecrets client, through
// the azure_keyvault provider built from configuration, against a local
// server following Key Vault's REST contract, and shows the cache's life
// cycle on it: challenge then bearer token, rotation picked up after ttl,
// 429 Retry-After honoured, an outage served from the cache until
// max_stale, then fail closed with secret_unavailable, then recovery.
func TestKeyVaultSecretsContract(t *testing.T) {
	vault := newFakeVault(t)
	v1 := vault.put("orders-function-key", "fn-key-one")

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sp-secret"), []byte(testSPSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`identity:
  providers:
    - { name: p, type: oidc, issuer: "https://idp.example", audiences: [api] }
secrets:
  ttl: 1s
  max_stale: 2s
  providers:
    - { name: files, type: file, dir: %q }
    - name: kv
      type: azure_keyvault
      vault_url: %q
      credential: client_secret
      tenant: %s
      client_id: %s
      client_secret: "${secret:files/sp-secret}"
      authority_host: %q
services:
  - name: orders
    upstream: http://127.0.0.1:8080
    inject:
      headers: { x-functions-key: "${secret:kv/orders-function-key}" }
    routes:
      - name: r
        match: { path: "/**" }
        allow: { authenticated: true }
`, dir, vault.URL+"/", testTenant, testClientID, vault.URL)
	cfg, err := config.Parse("contract.yaml", []byte(yaml), config.Options{Secrets: secrets.NewResolver})
	if err != nil {
		t.Fatal(err)
	}

	// The local server's certificate is trusted through the SDK's transport.
	pool := x509.NewCertPool()
	pool.AddCert(vault.Certificate())
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, Timeout: 10 * time.Second}
	sources, err := secrets.Open(cfg.Secrets, secrets.Options{
		Transport: client,
		Retry:     policy.RetryOptions{MaxRetries: 1, RetryDelay: 10 * time.Millisecond, MaxRetryDelay: 3 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	src := sources["kv"]
	// Shorter than configuration allows, to keep the test quick.
	src.TTL, src.MaxStale = 300*time.Millisecond, 1500*time.Millisecond

	logs := &syncBuffer{}
	cache := secrets.NewCache(slog.New(slog.NewJSONHandler(logs, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go cache.Run(ctx)

	latest := cache.Track(src, config.SecretRef{Provider: "kv", Name: "orders-function-key"})
	pinned := cache.Track(src, config.SecretRef{Provider: "kv", Name: "orders-function-key", Version: v1})
	injection, err := inject.Compile(cfg.Services[0].Inject, nil, func(ref config.SecretRef) (*secrets.Entry, error) {
		return cache.Track(src, ref), nil
	}, cache.Release)
	if err != nil {
		t.Fatal(err)
	}
	waitCtx, waitCancel := context.WithTimeout(ctx, 20*time.Second)
	defer waitCancel()
	if err := cache.Wait(waitCtx, append([]*secrets.Entry{latest, pinned}, injection.Entries()...)); err != nil {
		t.Fatal(err)
	}
	value := func(e *secrets.Entry) string {
		v, err := e.Get()
		if err != nil {
			return "error: " + err.Error()
		}
		return v.Reveal()
	}
	injected := func() (string, *inject.Failure) {
		vals, f := injection.Resolve()
		if f != nil {
			return "", f
		}
		h := http.Header{"X-Functions-Key": {"from-the-client"}}
		vals.Apply(h, &url.URL{})
		return h.Get("X-Functions-Key"), nil
	}

	t.Run("challenge, token, secret", func(t *testing.T) {
		if got, want := value(latest), "fn-key-one"; got != want {
			t.Fatalf("latest: got %q, want %q", got, want)
		}
		reqs := vault.requests()
		if len(reqs) < 2 || reqs[0].authorized || reqs[0].status != http.StatusUnauthorized {
			t.Fatalf("first request: got %+v, want an unauthenticated one answered 401 with the challenge", reqs)
		}
		for _, r := range reqs {
			if !apiVersionRE.MatchString(r.apiVersion) {
				t.Errorf("request %s: got api-version %q, want 7.x", r.path, r.apiVersion)
			}
			if r.status == http.StatusOK && !r.authorized {
				t.Errorf("request %s served without the bearer token", r.path)
			}
		}
		if got, f := injected(); f != nil || got != "fn-key-one" {
			t.Fatalf("injected header: got %q, %v; want the vault's value replacing the client's", got, f)
		}
	})

	t.Run("rotation after ttl", func(t *testing.T) {
		vault.put("orders-function-key", "fn-key-two")
		eventually(t, "the rotated value", 5*time.Second, func() bool { return value(latest) == "fn-key-two" })
		if got, _ := injected(); got != "fn-key-two" {
			t.Errorf("injected after rotation: got %q, want fn-key-two", got)
		}
		if got := value(pinned); got != "fn-key-one" {
			t.Errorf("pinned version: got %q, want fn-key-one (a reference with a version never moves)", got)
		}
	})

	t.Run("429 Retry-After honoured", func(t *testing.T) {
		start := len(vault.requests())
		vault.set(func(v *fakeVault) { v.throttle = time.Second })
		var throttledAt, retriedAt time.Time
		eventually(t, "a throttled request and its retry", 10*time.Second, func() bool {
			var path string
			for _, r := range vault.requests()[start:] {
				switch {
				case r.status == http.StatusTooManyRequests:
					throttledAt, path = r.at, r.path
				case path != "" && r.path == path && r.status == http.StatusOK:
					retriedAt = r.at
					return true
				}
			}
			return false
		})
		if gap := retriedAt.Sub(throttledAt); gap < 900*time.Millisecond {
			t.Errorf("retry %s after the 429, want at least Retry-After (1s)", gap)
		}
		if got := value(latest); got != "fn-key-two" {
			t.Errorf("during throttling: got %q, want the cached fn-key-two", got)
		}
	})

	t.Run("outage served until max_stale, then fail closed", func(t *testing.T) {
		vault.set(func(v *fakeVault) { v.down = true })
		var lastOK time.Time
		for _, r := range vault.requests() {
			if r.status == http.StatusOK {
				lastOK = r.at
			}
		}
		if got := value(latest); got != "fn-key-two" {
			t.Fatalf("just after the vault went down: got %q, want fn-key-two from the cache", got)
		}
		var failedAt time.Time
		eventually(t, "fail closed", 10*time.Second, func() bool {
			if _, f := injected(); f != nil {
				failedAt = time.Now()
				return true
			}
			return false
		})
		if served := failedAt.Sub(lastOK); served < src.MaxStale-100*time.Millisecond {
			t.Errorf("stopped serving %s after the last good read, want max_stale (%s)", served, src.MaxStale)
		}
		_, f := injected()
		if f == nil || f.Status != http.StatusServiceUnavailable || f.Reason != "secret_unavailable" {
			t.Fatalf("got %+v, want 503 secret_unavailable", f)
		}
		if !errors.Is(f.Err, secrets.ErrUnavailable) || !strings.Contains(f.Err.Error(), "kv/orders-function-key") || !strings.Contains(f.Err.Error(), "HTTP 503") {
			t.Errorf("logged error %q: want the reference and the vault's answer", f.Err)
		}
		eventually(t, "the pinned version failing closed too", 5*time.Second, func() bool { return strings.HasPrefix(value(pinned), "error:") })
	})

	t.Run("back after the outage", func(t *testing.T) {
		vault.set(func(v *fakeVault) { v.down = false })
		eventually(t, "serving again", 10*time.Second, func() bool { got, _ := injected(); return got == "fn-key-two" })
	})

	for _, s := range []string{"fn-key-one", "fn-key-two", testSPSecret, vault.token} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("logs hold a secret (%s...):\n%s", s[:4], logs.String())
		}
	}
}

func TestKeyVaultNotFoundAndBadCredentials(t *testing.T) {
	vault := newFakeVault(t)
	pool := x509.NewCertPool()
	pool.AddCert(vault.Certificate())
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	open := func(secretEnv string) secrets.Provider {
		t.Setenv("ZT_KV_SP", secretEnv)
		y := fmt.Sprintf(`identity: { providers: [ { name: p, type: oidc, issuer: "https://idp.example", audiences: [api] } ] }
secrets:
  providers:
    - { name: kv, type: azure_keyvault, vault_url: %q, credential: client_secret, tenant: %s, client_id: %s, client_secret: "${env:ZT_KV_SP}", authority_host: %q }
services: [ { name: s, upstream: "http://127.0.0.1:1", routes: [ { name: r, match: { path: "/**" }, allow: { authenticated: true } } ] } ]
`, vault.URL, testTenant, testClientID, vault.URL)
		cfg, err := config.Parse("x.yaml", []byte(y), config.Options{})
		if err != nil {
			t.Fatal(err)
		}
		sources, err := secrets.Open(cfg.Secrets, secrets.Options{Transport: client, Retry: policy.RetryOptions{MaxRetries: -1}})
		if err != nil {
			t.Fatal(err)
		}
		return sources["kv"].Provider
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	_, err := open(testSPSecret).Fetch(ctx, "missing", "")
	if !errors.Is(err, secrets.ErrNotFound) || !strings.Contains(err.Error(), "SecretNotFound") {
		t.Errorf("missing secret: got %v, want ErrNotFound with Key Vault's code", err)
	}
	_, err = open("wrong-secret").Fetch(ctx, "orders", "")
	if err == nil || !strings.Contains(err.Error(), "sign-in to Entra ID failed") || strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("bad client secret: got %v, want a sign-in failure that does not repeat the secret", err)
	}
}
