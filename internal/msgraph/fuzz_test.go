package msgraph

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// answers is a transport that answers the token endpoint with a token and
// every Graph request with one fixed answer, without a network.
type answers struct {
	status int
	body   string
}

func (a answers) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	resp := &http.Response{StatusCode: a.status, Header: http.Header{"Retry-After": {"0"}}, Body: io.NopCloser(strings.NewReader(a.body)), Request: r}
	if strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
		resp.StatusCode = 200
		resp.Body = io.NopCloser(strings.NewReader(`{"token_type":"Bearer","expires_in":3599,"access_token":"t"}`))
	}
	return resp, nil
}

// FuzzGraphAnswer feeds arbitrary Graph answers to both lookup methods:
// never a panic, never a hang, and groups only with a 200.
func FuzzGraphAnswer(f *testing.F) {
	f.Add(200, `{"value":["a0b1c2d3-0000-4000-8000-000000000001"]}`)
	f.Add(200, `{"value":[{"id":"a","securityEnabled":true}],"@odata.nextLink":"https://graph.local/v1.0/next"}`)
	f.Add(200, `{"value":null}`)
	f.Add(400, `{"error":{"code":"Directory_ResultSizeLimitExceeded"}}`)
	f.Add(429, `{"error":{"code":"TooManyRequests"}}`)
	f.Add(401, ``)
	f.Fuzz(func(t *testing.T, status int, body string) {
		if status < 100 || status > 599 {
			return
		}
		for _, m := range []Method{GetMemberObjects, TransitiveMemberOf} {
			r := New(Config{
				GraphURL: "https://graph.local", AuthorityHost: "https://login.local", ClientID: "c", ClientSecret: "s",
				Method: m, Timeout: time.Second, Client: &http.Client{Transport: answers{status, body}},
			})
			groups, err := r.Groups(context.Background(), "72f988bf-86f1-41af-91ab-2d7cd011db47", "3f2504e0-4f89-41d3-9a0c-0305e82c3301", false)
			if err == nil && status != 200 {
				t.Fatalf("status %d: got groups %v, want an error", status, groups)
			}
		}
	})
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "7", "-1", "Mon, 04 May 2026 09:00:30 GMT", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := retryAfter(v, now); d < 0 || d > 24*time.Hour {
			t.Fatalf("retryAfter(%q) = %s", v, d)
		}
	})
}
