package inject

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ztgate/ztgate/internal/config"
)

func writeKey(t *testing.T, dir, name string) *Key {
	t.Helper()
	k := mustKey(t)
	data, err := k.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

func parse(t *testing.T, dir, yaml string) *config.Config {
	t.Helper()
	path := filepath.Join(dir, "ztgate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, config.Options{LookupEnv: func(k string) (string, bool) {
		v, ok := map[string]string{"ZT_SECRET": "s3cret"}[k]
		return v, ok
	}})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const services = `services:
  - name: orders
    upstream: http://127.0.0.1:8080
    inject: { identity_assertion: true, client_credentials: { token_url: "http://127.0.0.1:1/token", client_id: gw, client_secret: "${env:ZT_SECRET}" } }
    routes: [ { name: r, match: { path: "/orders/**" }, allow: { authenticated: true } } ]
  - name: billing
    upstream: http://127.0.0.1:8081
    inject: { identity_assertion: true, assertion_audience: "api://billing" }
    routes: [ { name: r, match: { path: "/billing/**" }, allow: { authenticated: true } } ]
  - name: plain
    upstream: http://127.0.0.1:8082
    routes: [ { name: r, match: { path: "/plain/**" }, allow: { authenticated: true } } ]
`

// TestManagerReload: a reload to a new signing key keeps the old one
// published (the overlap) and keeps an unchanged token source's cache.
func TestManagerReload(t *testing.T) {
	dir := t.TempDir()
	a, b := writeKey(t, dir, "a.pem"), writeKey(t, dir, "b.pem")
	m := NewManager(slog.New(slog.DiscardHandler))
	cfg1 := parse(t, dir, "assertion: { issuer: https://gw.example, keys: [ { file: a.pem } ] }\n"+services)
	s1, err := m.Build(cfg1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Keys().JWKS() != nil {
		t.Fatal("keys published before Activate")
	}
	s1.Activate()
	if s1.Service("plain") != nil {
		t.Error("a service without inject got an injection")
	}
	if got := s1.Service("billing").audience; got != "api://billing" {
		t.Errorf("billing audience: got %q, want api://billing", got)
	}
	if got := s1.Service("orders").audience; got != "orders" {
		t.Errorf("orders audience: got %q, want the service name", got)
	}
	if got := s1.Service("orders").signer.KeyID(); got != a.KeyID() {
		t.Errorf("signing key: got %s, want a", got)
	}

	cfg2 := parse(t, dir, "assertion: { issuer: https://gw.example, keys: [ { file: b.pem } ] }\n"+services)
	s2, err := m.Build(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	s2.Activate()
	if s2.Service("orders").token != s1.Service("orders").token {
		t.Error("an unchanged token source got a new cache on reload")
	}
	if got := s2.Service("orders").signer.KeyID(); got != b.KeyID() {
		t.Errorf("after reload, signing key: got %s, want b", got)
	}
	set := keySet(t, m.Keys().JWKS())
	for _, k := range []*Key{a, b} {
		if _, ok := set.LookupKeyID(k.KeyID()); !ok {
			t.Errorf("key %s not published right after the reload", k.KeyID())
		}
	}
}

// TestGeneratedKey: without keys, one is generated beside the
// configuration and the same key is used after a restart.
func TestGeneratedKey(t *testing.T) {
	dir := t.TempDir()
	cfg := parse(t, dir, "assertion: { issuer: https://gw.example }\n"+services)
	s1, err := NewManager(slog.New(slog.DiscardHandler)).Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := NewManager(slog.New(slog.DiscardHandler)).Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s1.keys[0].KeyID() != s2.keys[0].KeyID() {
		t.Fatal("a restart generated another key")
	}
	if _, err := os.Stat(filepath.Join(dir, GeneratedKeyFile)); err != nil {
		t.Fatal(err)
	}
}

func TestValidateConfig(t *testing.T) {
	dir := t.TempDir()
	writeKey(t, dir, "a.pem")
	if err := os.WriteFile(filepath.Join(dir, "bad.pem"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, dir, "assertion:\n  issuer: https://gw.example\n  keys:\n    - { file: a.pem }\n    - { file: missing.pem }\n    - { file: bad.pem }\n    - { file: ./a.pem }\n"+services)
	err := ValidateConfig(cfg)
	var errs config.Errors
	if !errors.As(err, &errs) || len(errs) != 3 {
		t.Fatalf("got %v, want 3 errors", err)
	}
	for i, want := range []string{
		"ztgate.yaml:5:15: assertion.keys[1].file: unusable assertion key: open ",
		"ztgate.yaml:6:15: assertion.keys[2].file: unusable assertion key: ",
		"ztgate.yaml:7:7: assertion.keys[3]: the same key as assertion.keys[0]",
	} {
		if got := errs[i].Error(); !strings.Contains(got, want) {
			t.Errorf("error %d: got %q, want it to contain %q", i, got, want)
		}
	}
}

// TestCredentialsTokenFailure: a service whose token cannot be had gets a
// *TokenError and no credentials.
func TestCredentialsTokenFailure(t *testing.T) {
	dir := t.TempDir()
	cfg := parse(t, dir, "assertion: { issuer: https://gw.example }\n"+services)
	s, err := NewManager(slog.New(slog.DiscardHandler)).Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Service("orders").Credentials(context.Background(), Call{Identity: alice, Route: "r", RequestID: "id", Now: time.Now()})
	var te *TokenError
	if !errors.As(err, &te) || c.Assertion != "" || c.Bearer != "" {
		t.Fatalf("got %+v, %v; want no credentials and a *TokenError", c, err)
	}
	c, err = s.Service("billing").Credentials(context.Background(), Call{Identity: alice, Route: "r", RequestID: "id", Now: time.Now()})
	if err != nil || c.Assertion == "" || c.Bearer != "" || c.Header != DefaultHeader {
		t.Fatalf("billing: got %+v, %v; want an assertion in %s only", c, err, DefaultHeader)
	}
}
