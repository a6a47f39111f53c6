package inject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ztgate/ztgate/internal/config"
)

// fakeSource is a hand-written token source: each fetch returns the next
// token, valid for life, or err when set. A fetch blocks while gate is
// non-nil and open.
type fakeSource struct {
	mu    sync.Mutex
	n     int
	life  time.Duration
	err   error
	gate  chan struct{}
	calls atomic.Int32
}

func (f *fakeSource) Fetch(ctx context.Context) (Token, error) {
	f.calls.Add(1)
	f.mu.Lock()
	gate, err := f.gate, f.err
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return Token{}, ctx.Err()
		}
	}
	if err != nil {
		return Token{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return Token{Value: fmt.Sprintf("tok-%d", f.n), Expires: time.Now().Add(f.life)}, nil
}

func (f *fakeSource) set(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// TestTokenSingleFlight: many requests arriving with no token cause one
// fetch, and all of them get its token.
func TestTokenSingleFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{life: time.Hour, gate: make(chan struct{})}
		c := NewTokenCache("test", src)
		const n = 50
		got := make(chan string, n)
		for range n {
			go func() {
				tok, err := c.Token(context.Background())
				if err != nil {
					t.Error(err)
				}
				got <- tok
			}()
		}
		synctest.Wait() // every request is waiting on the one fetch
		close(src.gate)
		for range n {
			if tok := <-got; tok != "tok-1" {
				t.Fatalf("got %q, want tok-1", tok)
			}
		}
		if calls := src.calls.Load(); calls != 1 {
			t.Fatalf("%d concurrent requests: got %d fetches, want 1", n, calls)
		}
	})
}

// TestTokenReuseAndRefresh: a token is reused; shortly before expiry it is
// refreshed in the background while it still serves; an expired token is
// never sent.
func TestTokenReuseAndRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{life: time.Hour}
		c := NewTokenCache("test", src)
		get := func() string {
			t.Helper()
			tok, err := c.Token(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		if got := get(); got != "tok-1" {
			t.Fatalf("first: got %q, want tok-1", got)
		}
		time.Sleep(54 * time.Minute)
		if got := get(); got != "tok-1" || src.calls.Load() != 1 {
			t.Fatalf("at 54m: got %q after %d fetches, want tok-1 after 1", got, src.calls.Load())
		}
		time.Sleep(2 * time.Minute) // inside the last 5 minutes
		if got := get(); got != "tok-1" {
			t.Fatalf("at 56m: got %q, want tok-1 while the refresh runs", got)
		}
		synctest.Wait()
		if got := get(); got != "tok-2" || src.calls.Load() != 2 {
			t.Fatalf("after the refresh: got %q after %d fetches, want tok-2 after 2", got, src.calls.Load())
		}

		// A token that cannot be refreshed serves until 10s before its
		// expiry, then requests fail rather than send it.
		src.set(errors.New("endpoint down"))
		time.Sleep(56*time.Minute + time.Second) // tok-2 expires at 1h56m
		if got := get(); got != "tok-2" {
			t.Fatalf("refresh failing, token still valid: got %q, want tok-2", got)
		}
		time.Sleep(4 * time.Minute)
		if _, err := c.Token(context.Background()); err == nil {
			t.Fatal("token 5s from expiry and no refresh: got a token, want an error")
		}
	})
}

// TestTokenRefreshSameToken: a source that hands back the same token (its
// own cache) is asked again after half the time left, not on every request.
func TestTokenRefreshSameToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exp := time.Now().Add(time.Hour)
		var calls atomic.Int32
		c := NewTokenCache("test", FetcherFunc(func(context.Context) (Token, error) {
			calls.Add(1)
			return Token{Value: "same", Expires: exp}, nil
		}))
		if _, err := c.Token(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(56 * time.Minute)
		for range 100 {
			if _, err := c.Token(context.Background()); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		if got := calls.Load(); got != 2 {
			t.Fatalf("100 requests in the refresh window: got %d fetches, want 2", got)
		}
		// The same token came back with 4m left: the next refresh is at
		// half of that.
		time.Sleep(2*time.Minute - time.Second)
		c.Token(context.Background())
		synctest.Wait()
		if got := calls.Load(); got != 2 {
			t.Fatalf("at 57m59s: got %d fetches, want 2", got)
		}
		time.Sleep(time.Second)
		for range 10 {
			c.Token(context.Background())
			synctest.Wait()
			time.Sleep(time.Second)
		}
		if got := calls.Load(); got != 3 {
			t.Fatalf("58m to 58m10s: got %d fetches, want 3", got)
		}
	})
}

// TestTokenFailure: a failed fetch is a *TokenError naming the source; for
// a while after it, requests fail at once instead of each fetching again.
func TestTokenFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{life: time.Hour, err: errors.New("token endpoint answered 401 (invalid_client)")}
		c := NewTokenCache("service orders", src)
		_, err := c.Token(context.Background())
		var te *TokenError
		if !errors.As(err, &te) {
			t.Fatalf("got %v, want a *TokenError", err)
		}
		if got, want := err.Error(), "upstream token (service orders): token endpoint answered 401 (invalid_client)"; got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
		for range 10 {
			if _, err := c.Token(context.Background()); !errors.As(err, &te) {
				t.Fatalf("during back-off: got %v, want the *TokenError", err)
			}
		}
		if calls := src.calls.Load(); calls != 1 {
			t.Fatalf("during back-off: got %d fetches, want 1", calls)
		}
		time.Sleep(time.Second)
		src.set(nil)
		if tok, err := c.Token(context.Background()); err != nil || tok != "tok-1" {
			t.Fatalf("after back-off: got %q, %v; want tok-1", tok, err)
		}
	})
}

// TestTokenWaitEndsWithRequest: a request that gives up waiting gets an
// error, while the fetch goes on for the others.
func TestTokenWaitEndsWithRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{life: time.Hour, gate: make(chan struct{})}
		c := NewTokenCache("test", src)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := c.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the request's deadline", err)
		}
		close(src.gate)
		if tok, err := c.Token(context.Background()); err != nil || tok != "tok-1" {
			t.Fatalf("got %q, %v; want tok-1 from the same fetch", tok, err)
		}
		if calls := src.calls.Load(); calls != 1 {
			t.Fatalf("got %d fetches, want 1", calls)
		}
	})
}

// TestTokenBadResponses: an empty or already expiring token is a failure.
func TestTokenBadResponses(t *testing.T) {
	for _, tt := range []struct {
		name string
		tok  Token
		err  string
	}{
		{"empty", Token{}, "empty token"},
		{"expiring", Token{Value: "x", Expires: time.Now().Add(time.Second)}, "returned a token that expires at"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := NewTokenCache("test", FetcherFunc(func(context.Context) (Token, error) { return tt.tok, nil }))
			if _, err := c.Token(context.Background()); err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("got %v, want an error containing %q", err, tt.err)
			}
		})
	}
}

// tokenEndpoint is a fake OAuth 2.0 token endpoint recording the forms it
// receives.
func tokenEndpoint(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(handle))
	t.Cleanup(srv.Close)
	return srv
}

func TestClientCredentials(t *testing.T) {
	var got http.Request
	srv := tokenEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		got = *r
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "minted", "token_type": "bearer", "expires_in": 3600})
	})
	cc := NewClientCredentials(&config.ClientCredentials{
		TokenURL: srv.URL + "/token", ClientID: "gw", ClientSecret: "s3cret", Scopes: []string{"a", "b"},
		Audience: "orders-api", Resource: "urn:orders", AuthMethod: "basic",
	})
	tok, err := cc.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tok.Value != "minted" || time.Until(tok.Expires) < 59*time.Minute {
		t.Fatalf("got %+v, want minted valid for an hour", tok)
	}
	user, pass, ok := got.BasicAuth()
	if !ok || user != "gw" || pass != "s3cret" {
		t.Errorf("basic auth: got %q %q %v, want gw s3cret", user, pass, ok)
	}
	for k, want := range map[string]string{"grant_type": "client_credentials", "scope": "a b", "audience": "orders-api", "resource": "urn:orders", "client_secret": ""} {
		if v := got.PostForm.Get(k); v != want {
			t.Errorf("form %s: got %q, want %q", k, v, want)
		}
	}

	post := NewClientCredentials(&config.ClientCredentials{TokenURL: srv.URL + "/token", ClientID: "gw", ClientSecret: "s3cret", AuthMethod: "post"})
	if _, err := post.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := got.BasicAuth(); ok || got.PostForm.Get("client_secret") != "s3cret" || got.PostForm.Get("client_id") != "gw" {
		t.Errorf("auth_method post: got basic=%v form=%v, want the secret in the form", ok, got.PostForm)
	}
}

// TestClientCredentialsFailures: each way a token endpoint fails is an
// error that says how, without the client secret.
func TestClientCredentialsFailures(t *testing.T) {
	tests := []struct {
		name   string
		handle func(w http.ResponseWriter, r *http.Request)
		want   string
	}{
		{"refused", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":"invalid_client","error_description":"client secret s3cret is wrong"}`)
		}, "answered 401 (invalid_client)"},
		{"server error", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }, "answered 503 (no error code)"},
		{"not bearer", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"access_token":"x","token_type":"DPoP","expires_in":60}`)
		}, `returned a "DPoP" token, want Bearer`},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example/token", http.StatusTemporaryRedirect)
		}, "redirected"},
		{"no token", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"token_type":"Bearer"}`)
		}, "access_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tokenEndpoint(t, tt.handle)
			cc := NewClientCredentials(&config.ClientCredentials{TokenURL: srv.URL, ClientID: "gw", ClientSecret: "s3cret", AuthMethod: "basic"})
			_, err := cc.Fetch(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error shows the client secret: %v", err)
			}
		})
	}
	cc := NewClientCredentials(&config.ClientCredentials{TokenURL: "http://127.0.0.1:1/token", ClientID: "gw", ClientSecret: "s3cret", AuthMethod: "basic"})
	if _, err := cc.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Fatalf("unreachable: got %v, want a connection error", err)
	}
}

// TestManagedIdentity gets a token through azidentity from a fake of the
// App Service / Functions managed identity endpoint (IDENTITY_ENDPOINT and
// IDENTITY_HEADER, as the platform sets them).
func TestManagedIdentity(t *testing.T) {
	var resource, clientID, secretHeader string
	srv := tokenEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		resource, clientID = r.URL.Query().Get("resource"), r.URL.Query().Get("client_id")
		secretHeader = r.Header.Get("X-Identity-Header")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"mi-token","expires_on":"%d","resource":%q,"token_type":"Bearer"}`, time.Now().Add(time.Hour).Unix(), resource)
	})
	t.Setenv("IDENTITY_ENDPOINT", srv.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", "platform-secret")
	mi, err := NewManagedIdentity(&config.ManagedIdentity{ClientID: "6f1d4c9e-0000-0000-0000-000000000000", Scope: "api://orders/.default"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := mi.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tok.Value != "mi-token" || time.Until(tok.Expires) < 59*time.Minute {
		t.Fatalf("got %+v, want mi-token valid for an hour", tok)
	}
	if resource != "api://orders" || clientID != "6f1d4c9e-0000-0000-0000-000000000000" || secretHeader != "platform-secret" {
		t.Fatalf("request: resource %q client_id %q header %q", resource, clientID, secretHeader)
	}
}
