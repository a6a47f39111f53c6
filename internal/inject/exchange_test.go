package inject

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ztgate/ztgate/internal/config"
)

// sts is a fake security token service: it answers every exchange with
// "for:" + the subject token, valid for an hour, and records the forms.
type sts struct {
	mu    sync.Mutex
	forms []url.Values
	users []string // basic auth user of each request
}

func (s *sts) handle(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	user, _, _ := r.BasicAuth()
	s.mu.Lock()
	s.forms = append(s.forms, r.PostForm)
	s.users = append(s.users, user)
	s.mu.Unlock()
	subject := r.PostForm.Get("subject_token") + r.PostForm.Get("assertion")
	if subject == "refused" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		fmt.Fprint(w, `{"error":"invalid_grant","error_description":"the subject token is not acceptable"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": "for:" + subject, "token_type": "Bearer", "expires_in": 3600,
		"issued_token_type": tokenTypeAccess,
	})
}

func (s *sts) requests() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]url.Values(nil), s.forms...)
}

func TestTokenExchange(t *testing.T) {
	fake := &sts{}
	srv := tokenEndpoint(t, fake.handle)
	ex := NewExchanger("test", &config.TokenExchange{
		Grant: "token_exchange", TokenURL: srv.URL, ClientID: "gw", ClientSecret: "s3cret",
		Audience: "orders-backend", Resource: "https://orders.internal", Scopes: []string{"orders.read"}, AuthMethod: "basic", CacheSize: 100,
	})
	ctx := context.Background()
	hour := time.Now().Add(time.Hour)
	for _, tc := range []struct{ subject, want string }{
		{"alice-token", "for:alice-token"},
		{"bob-token", "for:bob-token"},
		{"alice-token", "for:alice-token"}, // reused, not exchanged again
	} {
		got, err := ex.Token(ctx, tc.subject, hour)
		if err != nil || got != tc.want {
			t.Fatalf("%s: got %q, %v; want %q", tc.subject, got, err, tc.want)
		}
	}
	forms := fake.requests()
	if len(forms) != 2 {
		t.Fatalf("got %d exchanges for 2 callers, want 2", len(forms))
	}
	for k, want := range map[string]string{
		"grant_type": grantTokenExchange, "subject_token": "alice-token", "subject_token_type": tokenTypeAccess,
		"requested_token_type": tokenTypeAccess, "audience": "orders-backend", "resource": "https://orders.internal", "scope": "orders.read",
	} {
		if got := forms[0].Get(k); got != want {
			t.Errorf("form %s: got %q, want %q", k, got, want)
		}
	}
	if fake.users[0] != "gw" {
		t.Errorf("client authentication: got user %q, want gw", fake.users[0])
	}

	// Regression: an exchanged token never outlives the caller's.
	soon := time.Now().Add(time.Minute)
	if _, err := ex.Token(ctx, "carol-token", soon); err != nil {
		t.Fatal(err)
	}
	ex.mu.Lock()
	c := ex.caches[sha256.Sum256([]byte("carol-token"))]
	ex.mu.Unlock()
	c.mu.Lock()
	exp := c.tok.Expires
	c.mu.Unlock()
	if !exp.Equal(soon) {
		t.Fatalf("exchanged token expires %v, want the caller's expiry %v", exp, soon)
	}

	_, err := ex.Token(ctx, "refused", hour)
	var te *TokenError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "answered 400 (invalid_grant)") {
		t.Fatalf("refused exchange: got %v, want a *TokenError with invalid_grant", err)
	}
	if _, err := ex.Token(ctx, "", hour); !errors.As(err, &te) {
		t.Fatalf("no caller token: got %v, want a *TokenError", err)
	}
}

func TestOnBehalfOf(t *testing.T) {
	fake := &sts{}
	srv := tokenEndpoint(t, fake.handle)
	ex := NewExchanger("test", &config.TokenExchange{
		Grant: "on_behalf_of", TokenURL: srv.URL, ClientID: "gw", ClientSecret: "s3cret",
		Scopes: []string{"api://orders/.default"}, AuthMethod: "post", CacheSize: 100,
	})
	got, err := ex.Token(context.Background(), "alice-token", time.Now().Add(time.Hour))
	if err != nil || got != "for:alice-token" {
		t.Fatalf("got %q, %v", got, err)
	}
	f := fake.requests()[0]
	for k, want := range map[string]string{
		"grant_type": grantJWTBearer, "assertion": "alice-token", "requested_token_use": "on_behalf_of",
		"scope": "api://orders/.default", "client_id": "gw", "client_secret": "s3cret",
	} {
		if got := f.Get(k); got != want {
			t.Errorf("form %s: got %q, want %q", k, got, want)
		}
	}
}

// TestExchangeCacheBound: no more caller tokens are kept than cache_size.
func TestExchangeCacheBound(t *testing.T) {
	fake := &sts{}
	srv := tokenEndpoint(t, fake.handle)
	ex := NewExchanger("test", &config.TokenExchange{Grant: "token_exchange", TokenURL: srv.URL, ClientID: "gw", ClientSecret: "s", Audience: "a", AuthMethod: "basic", CacheSize: 3})
	for i := range 10 {
		if _, err := ex.Token(context.Background(), fmt.Sprintf("caller-%d", i), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if n := ex.Len(); n > 3 {
		t.Fatalf("got %d cached caller tokens, want at most 3", n)
	}
}
