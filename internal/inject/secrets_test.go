package inject

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/secrets"
)

// mapProvider serves fixed values; a missing name is an error.
type mapProvider map[string]string

func (m mapProvider) Fetch(_ context.Context, name, _ string) (secrets.Secret, error) {
	v, ok := m[name]
	if !ok {
		return secrets.Secret{}, secrets.ErrNotFound
	}
	return secrets.Secret{Value: secrets.NewValue(v)}, nil
}

func tmpl(t testing.TB, s string) config.Template {
	t.Helper()
	tp, err := config.ParseTemplate(s, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// compile builds an injection over a cache holding values and waits for
// its first reads.
func compile(t testing.TB, values map[string]string, svc, route *config.Inject) *Secrets {
	t.Helper()
	cache := secrets.NewCache(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go cache.Run(ctx)
	src := &secrets.Source{Name: "kv", Provider: mapProvider(values), TTL: time.Minute, MaxStale: time.Hour}
	s, err := Compile(svc, route, func(ref config.SecretRef) (*secrets.Entry, error) { return cache.Track(src, ref), nil }, cache.Release)
	if err != nil {
		t.Fatal(err)
	}
	_ = cache.Wait(ctx, s.Entries())
	return s
}

func TestApplyReplacesClientValues(t *testing.T) {
	svc := &config.Inject{
		Headers:   map[string]config.Template{"x-functions-key": tmpl(t, "${secret:kv/fn-key}"), "x-api-version": tmpl(t, "v2")},
		Query:     map[string]config.Template{"code": tmpl(t, "${secret:kv/fn-key}")},
		BasicAuth: &config.BasicAuth{Username: tmpl(t, "gw"), Password: tmpl(t, "${secret:kv/password}")},
	}
	route := &config.Inject{Headers: map[string]config.Template{"X-Tenant-Key": tmpl(t, "t-${secret:kv/tenant}")}}
	s := compile(t, map[string]string{"fn-key": "K&=+ /?", "password": "pw:1", "tenant": "T"}, svc, route)

	tests := []struct {
		name       string
		header     http.Header
		query      string
		wantHeader http.Header
		wantQuery  string
	}{
		{
			name:       "nothing from the client",
			header:     http.Header{},
			wantHeader: http.Header{"X-Functions-Key": {"K&=+ /?"}, "X-Api-Version": {"v2"}, "X-Tenant-Key": {"t-T"}},
			wantQuery:  "code=K%26%3D%2B+%2F%3F",
		},
		{
			name:       "client copies replaced, never merged",
			header:     http.Header{"X-Functions-Key": {"client", "client2"}, "Authorization": {"Bearer client-token"}, "X-Other": {"kept"}},
			query:      "a=1&code=client&b=2&code=again",
			wantHeader: http.Header{"X-Functions-Key": {"K&=+ /?"}, "X-Api-Version": {"v2"}, "X-Tenant-Key": {"t-T"}, "X-Other": {"kept"}},
			wantQuery:  "a=1&b=2&code=K%26%3D%2B+%2F%3F",
		},
		{
			// Regression: CGI-style upstreams read x_functions_key as
			// x-functions-key, so the client's spelling must go too.
			name:       "underscore spelling of an injected header",
			header:     http.Header{"X_functions_key": {"client"}, "x-functions-key": {"raw-key"}},
			wantHeader: http.Header{"X-Functions-Key": {"K&=+ /?"}, "X-Api-Version": {"v2"}, "X-Tenant-Key": {"t-T"}},
			wantQuery:  "code=K%26%3D%2B+%2F%3F",
		},
		{
			// Regression: ASP.NET (Azure Functions) reads query names
			// without regard to case, and decodes %xx in names.
			name:       "case and escapes in a client's query name",
			query:      "CODE=1&%63ode=2&Co%64e=3&x=code",
			header:     http.Header{},
			wantHeader: http.Header{"X-Functions-Key": {"K&=+ /?"}, "X-Api-Version": {"v2"}, "X-Tenant-Key": {"t-T"}},
			wantQuery:  "x=code&code=K%26%3D%2B+%2F%3F",
		},
		{
			name:       "semicolon-separated parameter",
			query:      "a=1;code=evil&b=2",
			header:     http.Header{},
			wantHeader: http.Header{"X-Functions-Key": {"K&=+ /?"}, "X-Api-Version": {"v2"}, "X-Tenant-Key": {"t-T"}},
			wantQuery:  "b=2&code=K%26%3D%2B+%2F%3F",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals, f := s.Resolve()
			if f != nil {
				t.Fatalf("Resolve: %v", f.Err)
			}
			u := &url.URL{Path: "/x", RawQuery: tt.query}
			vals.Apply(tt.header, u)
			auth := tt.header.Get("Authorization")
			tt.header.Del("Authorization")
			if d := cmp.Diff(tt.wantHeader, tt.header); d != "" {
				t.Errorf("headers (-want +got):\n%s", d)
			}
			if got, want := auth, "Basic "+base64.StdEncoding.EncodeToString([]byte("gw:pw:1")); got != want {
				t.Errorf("Authorization: got %q, want %q", got, want)
			}
			if u.RawQuery != tt.wantQuery {
				t.Errorf("query: got %q, want %q", u.RawQuery, tt.wantQuery)
			}
			if got := u.Query()["code"]; len(got) != 1 || got[0] != "K&=+ /?" {
				t.Errorf("code as the upstream parses it: got %q, want exactly the injected value", got)
			}
		})
	}
}

func TestRouteOverridesService(t *testing.T) {
	svc := &config.Inject{
		Headers:   map[string]config.Template{"x-key": tmpl(t, "${secret:kv/a}")},
		Query:     map[string]config.Template{"code": tmpl(t, "${secret:kv/a}")},
		BasicAuth: &config.BasicAuth{Username: tmpl(t, "svc"), Password: tmpl(t, "${secret:kv/a}")},
	}
	route := &config.Inject{
		Headers:   map[string]config.Template{"X_KEY": tmpl(t, "${secret:kv/b}")},
		Query:     map[string]config.Template{"Code": tmpl(t, "${secret:kv/b}")},
		BasicAuth: &config.BasicAuth{Username: tmpl(t, "route"), Password: tmpl(t, "${secret:kv/b}")},
	}
	s := compile(t, map[string]string{"a": "A", "b": "B"}, svc, route)
	vals, f := s.Resolve()
	if f != nil {
		t.Fatal(f.Err)
	}
	h, u := http.Header{}, &url.URL{}
	vals.Apply(h, u)
	if got := h.Get("X-Key"); got != "B" || len(h["X-Key"]) != 1 {
		t.Errorf("header: got %q, want the route's B alone", h["X-Key"])
	}
	if u.RawQuery != "Code=B" {
		t.Errorf("query: got %q, want the route's Code=B alone", u.RawQuery)
	}
	if user, pass, _ := (&http.Request{Header: h}).BasicAuth(); user != "route" || pass != "B" {
		t.Errorf("basic auth: got %q/%q, want route/B", user, pass)
	}
}

func TestResolveFailsClosed(t *testing.T) {
	tests := []struct {
		name   string
		in     *config.Inject
		values map[string]string
		want   string
	}{
		{"missing secret", &config.Inject{Headers: map[string]config.Template{"x-key": tmpl(t, "${secret:kv/nope}")}}, nil, "kv/nope unavailable"},
		{"line break in a header value", &config.Inject{Headers: map[string]config.Template{"x-key": tmpl(t, "${secret:kv/k}")}}, map[string]string{"k": "a\r\nX-Evil: 1"}, "not allowed in a header"},
		{"colon in a basic user name", &config.Inject{BasicAuth: &config.BasicAuth{Username: tmpl(t, "${secret:kv/u}"), Password: tmpl(t, "${secret:kv/p}")}}, map[string]string{"u": "a:b", "p": "p"}, "holds ':'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := compile(t, tt.values, tt.in, nil)
			vals, f := s.Resolve()
			if f == nil || vals != nil {
				t.Fatalf("got %v, nil failure; want 503 secret_unavailable", vals)
			}
			if f.Status != http.StatusServiceUnavailable || f.Reason != ReasonSecretUnavailable || !strings.Contains(f.Err.Error(), tt.want) {
				t.Errorf("got %d %s %v, want 503 %s with %q", f.Status, f.Reason, f.Err, ReasonSecretUnavailable, tt.want)
			}
			for _, v := range tt.values {
				if strings.Contains(f.Err.Error(), v) || strings.Contains(f.Public, v) {
					t.Errorf("failure %q / %q holds a secret value", f.Err, f.Public)
				}
			}
		})
	}
}

func TestNothingToInject(t *testing.T) {
	s, err := Compile(nil, &config.Inject{}, nil, nil)
	if err != nil || s != nil {
		t.Fatalf("got %v, %v; want nil, nil", s, err)
	}
	vals, f := s.Resolve()
	if vals != nil || f != nil {
		t.Fatalf("nil injection: got %v, %v; want nothing", vals, f)
	}
	h := http.Header{"X-A": {"1"}}
	vals.Apply(h, &url.URL{RawQuery: "a=1"}) // a nil *Values applies nothing
	if len(h) != 1 {
		t.Errorf("got %v, want the headers untouched", h)
	}
}

func TestValuesNeverPrint(t *testing.T) {
	s := compile(t, map[string]string{"k": "very-secret"}, &config.Inject{Headers: map[string]config.Template{"x-key": tmpl(t, "${secret:kv/k}")}}, nil)
	vals, _ := s.Resolve()
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(f, vals); strings.Contains(got, "very-secret") {
			t.Errorf("Sprintf(%q) = %s, want no secret", f, got)
		}
	}
}

// FuzzReplaceQuery: whatever query a client sends, the upstream parses
// exactly one value of an injected name, the injected one.
func FuzzReplaceQuery(f *testing.F) {
	for _, q := range []string{"", "code=1", "a=1&CODE=2", "%63ode=x", "a;code=1", "code", "=&&=", "co%ZZde=1", "c%6Fde=1&code=2"} {
		f.Add(q)
	}
	drop := map[string]bool{"code": true}
	fields := []field{{name: "code"}}
	f.Fuzz(func(t *testing.T, q string) {
		out := replaceQuery(q, drop, fields, []string{"injected"})
		vals, _ := url.ParseQuery(out)
		n := 0
		for k, vs := range vals {
			if strings.EqualFold(k, "code") {
				n += len(vs)
				if k != "code" || vs[0] != "injected" {
					t.Fatalf("query %q became %q: the client's %s=%q survived", q, out, k, vs)
				}
			}
		}
		if n != 1 {
			t.Fatalf("query %q became %q: %d values of code, want 1", q, out, n)
		}
	})
}

func BenchmarkResolveApply(b *testing.B) {
	s := compile(b, map[string]string{"fn-key": "0123456789abcdef", "password": "pw"}, &config.Inject{
		Headers:   map[string]config.Template{"x-functions-key": tmpl(b, "${secret:kv/fn-key}")},
		BasicAuth: &config.BasicAuth{Username: tmpl(b, "gw"), Password: tmpl(b, "${secret:kv/password}")},
	}, nil)
	b.ReportAllocs()
	for b.Loop() {
		h := http.Header{"Accept": {"*/*"}, "X-Functions-Key": {"client"}}
		vals, f := s.Resolve()
		if f != nil {
			b.Fatal(f.Err)
		}
		vals.Apply(h, &url.URL{})
	}
}
