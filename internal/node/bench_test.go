package node_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ztgate/ztgate/internal/demo"
	"github.com/ztgate/ztgate/internal/node"
)

// BenchmarkServe is the whole request path in one process: a client, the
// gateway (token from the verified-token cache, a role rule with a CEL
// condition, a rate limit, the event durable in SQLite before the
// response) and an upstream answering 200 with a small JSON body. Its
// allocations per request and its profiles (-cpuprofile, -memprofile) are
// the gateway's plus the client's and the upstream's; bench/run measures
// the gateway alone, beside a bare proxy. allowed_asserted is
// allowed_unaudited with a signed identity assertion on every upstream
// request: the difference is what the assertion costs on the request path.
func BenchmarkServe(b *testing.B) {
	for _, tc := range []struct {
		name   string
		audit  bool
		token  bool
		assert bool
	}{
		{"allowed_audited", true, true, false},
		{"allowed_unaudited", false, true, false},
		{"allowed_asserted", false, true, true},
		{"denied_audited", true, false, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			url, tok := startBenchNode(b, tc.audit, tc.assert)
			if !tc.token {
				tok = ""
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest("GET", url+"/orders/42", nil)
				if tok != "" {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				for pb.Next() {
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if want := map[bool]int{true: 200, false: 401}[tc.token]; resp.StatusCode != want {
						b.Errorf("status %d, want %d", resp.StatusCode, want)
						return
					}
				}
			})
		})
	}
}

func startBenchNode(b *testing.B, audited, asserted bool) (url, token string) {
	b.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if asserted && r.Header.Get("X-Ztgate-Identity") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":42,"status":"shipped","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"customer":"c-1001","total":{"amount":"129.90","currency":"EUR"},"updated":"2026-11-22T10:00:00Z","note":"benchmark body"}`)
	}))
	b.Cleanup(up.Close)
	is, err := demo.NewIssuer("orders-api")
	if err != nil {
		b.Fatal(err)
	}
	iss := httptest.NewServer(is.Handler())
	b.Cleanup(iss.Close)
	is.URL = iss.URL
	token, err = is.Token(demo.TokenRequest{Subject: "bench", Roles: []string{"Orders.Read"}})
	if err != nil {
		b.Fatal(err)
	}
	store := ""
	if audited {
		store = "store: { driver: sqlite, dsn: audit.db }\naudit: { node: bench }\n"
	}
	inject := ""
	if asserted {
		store += "assertion: { issuer: https://gw.bench }\n"
		inject = "    inject: { identity_assertion: true }\n"
	}
	cfg := fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
%sidentity:
  providers:
    - { name: idp, type: oidc, issuer: %q, audiences: [orders-api] }
services:
  - name: orders
    upstream: %q
%s    routes:
      - name: read-orders
        match: { methods: [GET], path: "/orders/**" }
        allow:
          any_of: [ { roles: [Orders.Read] }, { scopes: [orders.read] } ]
        when: 'request.ip in cidr("127.0.0.0/8") || request.ip in cidr("10.0.0.0/8")'
        rate_limit: { key: identity, limit: 1000000, per: 1s }
`, store, iss.URL, up.URL, inject)
	path := filepath.Join(b.TempDir(), "ztgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	go func() {
		done <- node.Run(ctx, path, node.Options{Logger: logger, Ready: func(data, _ net.Addr) { ready <- "http://" + data.String() }})
	}()
	b.Cleanup(func() { cancel(); <-done })
	select {
	case url = <-ready:
	case err := <-done:
		b.Fatalf("gateway: %v", err)
	case <-time.After(30 * time.Second):
		b.Fatal("gateway did not start")
	}
	// The first request waits for the provider's keys.
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("GET", url+"/orders/1", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url, token
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("gateway not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
