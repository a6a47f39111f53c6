// Package demo runs ztgate with everything it needs on one machine: the
// gateway, a demo upstream and a local development token issuer, with a
// generated configuration, and prints what to try.
package demo

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ztgate/ztgate/internal/node"
)

// Options configure the demo.
type Options struct {
	Listen string // gateway address
	Admin  string // admin address
	Dir    string // where the config is written; "" = new temp dir
	// Ready, if set, is called once the gateway serves (tests use it).
	Ready func(Info)
}

// Info is what a running demo exposes.
type Info struct {
	GatewayURL  string
	AdminURL    string
	IssuerURL   string
	UpstreamURL string
	ConfigFile  string
	ReaderToken string
	WriterToken string
}

// Audience is the demo API's audience.
const Audience = "orders-api"

// configTemplate is the demo configuration; %[n]s are filled at start. The
// same file, rendered with fixed addresses, is examples/demo/ztgate.yaml,
// which examples/demo/policy_test.yaml tests.
//
//go:embed ztgate.yaml.tmpl
var configTemplate string

// Render fills the demo configuration template.
func Render(listen, admin, issuer, upstream, path string) string {
	return fmt.Sprintf(configTemplate, listen, admin, issuer, upstream, path, Audience)
}

// freeAddr returns addr if it can be bound, else a free port on its host.
func freeAddr(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		host, _, splitErr := net.SplitHostPort(addr)
		if splitErr != nil {
			return "", err
		}
		ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return "", err
		}
	}
	a := ln.Addr().String()
	ln.Close()
	return a, nil
}

func serve(h http.Handler) (string, *http.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), srv, nil
}

// Run starts the demo and blocks until ctx ends or the gateway stops (Ctrl-C).
func Run(ctx context.Context, out, logOut io.Writer, o Options) error {
	is, err := NewIssuer(Audience)
	if err != nil {
		return err
	}
	issURL, issSrv, err := serve(is.Handler())
	if err != nil {
		return err
	}
	defer issSrv.Close()
	is.URL = issURL
	upURL, upSrv, err := serve(http.HandlerFunc(upstream))
	if err != nil {
		return err
	}
	defer upSrv.Close()

	listen, err := freeAddr(o.Listen)
	if err != nil {
		return fmt.Errorf("demo listen: %w", err)
	}
	adminAddr, err := freeAddr(o.Admin)
	if err != nil {
		return fmt.Errorf("demo admin: %w", err)
	}
	dir := o.Dir
	if dir == "" {
		dir, err = os.MkdirTemp("", "ztgate-demo-")
		if err != nil {
			return err
		}
	}
	cfgPath := filepath.Join(dir, "ztgate.yaml")
	cfg := Render(listen, adminAddr, issURL, upURL, cfgPath)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	reader, err := is.Token(TokenRequest{Subject: "alice", Name: "Alice (reader)", Roles: []string{"Orders.Read"}, AMR: []string{"pwd"}})
	if err != nil {
		return err
	}
	writer, err := is.Token(TokenRequest{Subject: "bob", Name: "Bob (writer)", Roles: []string{"Orders.Read", "Orders.Write"}, AMR: []string{"pwd", "mfa"}})
	if err != nil {
		return err
	}
	info := Info{
		GatewayURL: "http://" + listen, AdminURL: "http://" + adminAddr, IssuerURL: issURL,
		UpstreamURL: upURL, ConfigFile: cfgPath, ReaderToken: reader, WriterToken: writer,
	}
	logger := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return node.Run(ctx, cfgPath, node.Options{
		Logger: logger,
		Ready: func(_, _ net.Addr) {
			printGuide(out, info)
			if o.Ready != nil {
				o.Ready(info)
			}
		},
	})
}

func printGuide(w io.Writer, in Info) {
	g := in.GatewayURL
	fmt.Fprintf(w, `
ztgate demo is running (Ctrl-C to stop)

  gateway         %[1]s
  admin           %[2]s   (/healthz, /readyz, /metrics)
  token issuer    %[3]s   (local development issuer, DEMO ONLY)
  demo upstream   %[4]s   (echoes what it receives)
  configuration   %[5]s

Tokens (valid 8 hours):
  export READER='%[6]s'
  export WRITER='%[7]s'

Try:
  # 1. allowed: alice has the Orders.Read role
  curl -s %[1]s/orders/42 -H "Authorization: Bearer $READER"

  # 2. denied 403 role_missing: writing needs Orders.Write (and MFA)
  curl -s -X POST %[1]s/orders/42 -H "Authorization: Bearer $READER"

  # 3. allowed: bob has Orders.Write and signed in with MFA
  curl -s -X POST %[1]s/orders/42 -H "Authorization: Bearer $WRITER" -d '{"qty":1}'

  # 4. denied 401 missing_credentials: no token, no entry
  curl -s %[1]s/orders/42

  # 5. denied 403 no_allow_rule: a disguised path is cleaned first, so it meets the admin route's default deny
  curl -s --path-as-is %[1]s/orders/../admin/keys -H "Authorization: Bearer $WRITER"

  # 6. spoofed identity headers are stripped: see what the upstream received
  curl -s %[1]s/orders/1 -H "Authorization: Bearer $READER" -H "X-Forwarded-For: 6.6.6.6" -H "X-MS-CLIENT-PRINCIPAL-NAME: admin"

  # 7. report-only: alice lacks Reports.Read, but the route only reports; the log says would_deny
  curl -s %[1]s/reports/daily -H "Authorization: Bearer $READER"

  # a fresh token: %[3]s/token?sub=carol&roles=Orders.Read,Orders.Write&mfa=1

Why was it denied? Every step, route by route and criterion by criterion:
  go run ./cmd/ztgate explain --config %[5]s --token "$READER" "POST %[1]s/orders/42"
Policy tests, offline:
  go run ./cmd/ztgate policy test --config examples/demo/ztgate.yaml examples/demo/policy_test.yaml

Where do we stand? A Zero Trust maturity report (CISA ZTMM v2.0) from this configuration and its traffic:
  go run ./cmd/ztgate assess --config %[5]s --out assessment.html   (or --format md, json)
  curl -s '%[2]s/v1/assess?format=md'                               (admin API; POST records the run)
  an example report: docs/assessment-demo.html

Where to see the decisions:
  the audit trail (hash-chained, in SQLite): go run ./cmd/ztgate audit query --config %[5]s
                                             go run ./cmd/ztgate audit verify --config %[5]s
  every request is also logged below as a "request" line: decision, reason(s), identity, request_id
  counters by route, decision and status: curl -s %[2]s/metrics | grep ztgate_
  readiness and the config in force:      curl -s %[2]s/readyz
  check the config:                       go run ./cmd/ztgate check --config %[5]s

`, g, in.AdminURL, in.IssuerURL, in.UpstreamURL, in.ConfigFile, in.ReaderToken, in.WriterToken)
}

// upstream echoes what it received so the demo shows what the gateway forwards.
func upstream(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
	hdr := map[string]string{}
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		hdr[k] = strings.Join(r.Header.Values(k), ", ")
	}
	resp := map[string]any{
		"upstream": "orders (demo)",
		"method":   r.Method,
		"path":     r.URL.RawPath,
		"query":    r.URL.RawQuery,
		"headers":  hdr,
		"body":     string(body),
	}
	if resp["path"] == "" {
		resp["path"] = r.URL.Path
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(resp); err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		return
	}
}
