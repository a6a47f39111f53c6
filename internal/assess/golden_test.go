package assess

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztgate/ztgate/internal/audit"
	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/store"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// goldenNow is the time every golden report is taken at.
var goldenNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func days(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }

// fakeSecrets resolves every ${secret:...} to a placeholder.
type fakeSecrets struct{}

func (fakeSecrets) Resolve(provider, name string) (string, error) {
	return "resolved-" + provider + "-" + name, nil
}

// loadConfig parses a configuration as the gateway would, without network:
// secret references resolve to placeholders, environment references to
// fixed values.
func loadConfig(t testing.TB, path string) *config.Config {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(path, data, config.Options{
		Secrets:   func([]config.SecretProvider) (config.SecretResolver, error) { return fakeSecrets{}, nil },
		LookupEnv: func(name string) (string, bool) { return "env-" + name, true },
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// traffic describes n audit events.
type traffic struct {
	route    string // service/route; "" for a request that matched no route
	decision string
	n        int
	ago      time.Duration // the first event's age; the others follow an hour apart
	kind     string        // user | app | ""
	who      string
	amr      []string
	acrs     []string
	lifetime time.Duration
	reasons  []string
	node     string
	version  string
}

// seed writes the events into a new SQLite store, hash-chained per node.
func seed(t testing.TB, now time.Time, ts []traffic) *store.DB {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	chain := audit.NewChain([]byte("k"))
	seq, prev := map[string]int64{}, map[string]string{}
	var recs []audit.Record
	i := 0
	for _, tr := range ts {
		for j := range tr.n {
			i++
			e := audit.Event{
				Time: now.Add(-tr.ago + time.Duration(j)*time.Hour), EventType: "ApiRequest", RequestID: fmt.Sprintf("req-%05d", i),
				Decision: tr.decision, Reasons: tr.reasons, PolicyVersion: tr.version, IdentityType: tr.kind, Method: "GET", URL: "/x",
				AuthMethods: tr.amr, AuthContext: tr.acrs, TokenLifetime: int64(tr.lifetime / time.Second), Node: tr.node, Status: 200,
			}
			if e.Node == "" {
				e.Node = "gw-1"
			}
			if e.PolicyVersion == "" {
				e.PolicyVersion = "v1"
			}
			if tr.who != "" {
				e.Identity = tr.who
			} else if tr.kind != "" {
				e.Identity = "tenant/" + tr.kind + "-1"
			}
			if svc, rt, ok := strings.Cut(tr.route, "/"); ok {
				e.Service, e.Route = svc, rt
			} else {
				e.ResultDetails, e.Status = "no_route", 404
			}
			if tr.decision == "deny" && e.Status == 200 {
				e.Status = 403
			}
			body, err := audit.Canonical(&e)
			if err != nil {
				t.Fatal(err)
			}
			seq[e.Node]++
			h := chain.Link(e.Node, seq[e.Node], prev[e.Node], body)
			recs = append(recs, audit.Record{Node: e.Node, Seq: seq[e.Node], Event: e, Body: string(body), PrevHash: prev[e.Node], Hash: h})
			prev[e.Node] = h
		}
	}
	if err := st.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	return st
}

// writeCert writes a self-signed certificate (and its key) expiring at
// notAfter.
func writeCert(t testing.TB, certFile, keyFile, cn string, notAfter time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: notAfter.Add(-365 * 24 * time.Hour), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if keyFile != "" {
		kb, _ := x509.MarshalECPrivateKey(key)
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// copyDir copies a testdata directory (files only, one level deep).
func copyDir(t testing.TB, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// scenario is one golden configuration, its files and its traffic.
type scenario struct {
	name    string
	setup   func(t testing.TB, dir string) // certificates, a git directory
	traffic []traffic
	stages  map[Pillar]Stage // asserted beside the golden files, so a regenerated golden cannot hide a change of stage
	overall Stage
}

var scenarios = []scenario{
	{
		name: "weak",
		traffic: []traffic{
			{route: "legacy/everything", decision: "allow", n: 40, ago: days(20), kind: "user", amr: []string{"pwd"}, lifetime: 90 * 24 * time.Hour, reasons: []string{"authenticated_ok"}},
			{route: "legacy/everything", decision: "allow", n: 20, ago: days(10), kind: "app", who: "partner/app", lifetime: 365 * 24 * time.Hour, reasons: []string{"authenticated_ok"}},
			{route: "billing/invoices", decision: "would_deny", n: 12, ago: days(25), kind: "user", amr: []string{"pwd"}, lifetime: time.Hour, reasons: []string{"role_missing"}},
			{route: "", decision: "deny", n: 3, ago: days(2)},
		},
		// Visibility stops at Initial: no SIEM export, no detection rules.
		stages:  map[Pillar]Stage{Identity: Traditional, Devices: Traditional, Networks: Traditional, Applications: Traditional, Data: Traditional, Visibility: Initial, Automation: Initial, Governance: Traditional},
		overall: Traditional,
	},
	{
		name: "typical",
		setup: func(t testing.TB, dir string) {
			writeCert(t, filepath.Join(dir, "certs/gw.pem"), filepath.Join(dir, "certs/gw.key"), "api.example.com", goldenNow.Add(days(200)))
			writeCert(t, filepath.Join(dir, "certs/internal-ca.pem"), "", "Internal CA", goldenNow.Add(days(20)))
		},
		traffic: []traffic{
			{route: "orders/read-orders", decision: "allow", n: 50, ago: days(28), kind: "user", amr: []string{"pwd"}, lifetime: time.Hour, reasons: []string{"role_ok"}},
			{route: "orders/write-orders", decision: "allow", n: 8, ago: days(20), kind: "user", amr: []string{"pwd", "mfa"}, lifetime: time.Hour, reasons: []string{"role_ok", "mfa_ok"}},
			{route: "orders/write-orders", decision: "deny", n: 4, ago: days(15), kind: "user", amr: []string{"pwd"}, lifetime: time.Hour, reasons: []string{"role_ok", "mfa_missing"}},
			{route: "orders/reports", decision: "would_deny", n: 5, ago: days(6), kind: "user", amr: []string{"pwd"}, lifetime: time.Hour, reasons: []string{"authenticated_ok"}},
			{route: "inventory/stock", decision: "allow", n: 10, ago: days(12), kind: "app", who: "tenant/stock-sync", lifetime: time.Hour, reasons: []string{"role_ok"}},
			{route: "orders/admin", decision: "deny", n: 2, ago: days(3), kind: "user", amr: []string{"pwd"}, lifetime: time.Hour, reasons: []string{"no_allow_rule"}},
		},
		stages:  map[Pillar]Stage{Identity: Initial, Devices: Traditional, Networks: Initial, Applications: Initial, Data: Traditional, Visibility: Initial, Automation: Initial, Governance: Traditional},
		overall: Traditional,
	},
	{
		name: "strong",
		setup: func(t testing.TB, dir string) {
			writeCert(t, filepath.Join(dir, "certs/gw.pem"), filepath.Join(dir, "certs/gw.key"), "api.example.com", goldenNow.Add(days(300)))
			writeCert(t, filepath.Join(dir, "certs/clients-ca.pem"), "", "Workload CA", goldenNow.Add(days(900)))
			writeCert(t, filepath.Join(dir, "certs/internal-ca.pem"), "", "Internal CA", goldenNow.Add(days(900)))
			writeCert(t, filepath.Join(dir, "certs/gw-client.pem"), filepath.Join(dir, "certs/gw-client.key"), "ztgate", goldenNow.Add(days(60)))
			if err := os.Mkdir(filepath.Join(dir, ".git"), 0o755); err != nil {
				t.Fatal(err)
			}
		},
		traffic: []traffic{
			{route: "orders/read-orders", decision: "allow", n: 60, ago: days(29), kind: "user", amr: []string{"pwd", "mfa"}, lifetime: time.Hour, reasons: []string{"role_ok", "device_ok"}, node: "gw-1"},
			{route: "orders/read-orders", decision: "allow", n: 60, ago: days(29), kind: "user", amr: []string{"fido", "mfa"}, lifetime: time.Hour, reasons: []string{"role_ok", "device_ok"}, node: "gw-2"},
			{route: "orders/write-orders", decision: "allow", n: 15, ago: days(14), kind: "user", amr: []string{"fido", "mfa"}, acrs: []string{"c1"}, lifetime: time.Hour, reasons: []string{"role_ok", "auth_context_ok", "device_ok", "when_ok"}, node: "gw-2"},
			{route: "orders/write-orders", decision: "deny", n: 3, ago: days(7), kind: "user", amr: []string{"pwd"}, lifetime: time.Hour, reasons: []string{"role_ok", "auth_context_missing"}},
			{route: "orders/admin", decision: "deny", n: 1, ago: days(1), kind: "user", amr: []string{"mfa"}, lifetime: time.Hour, reasons: []string{"no_allow_rule"}},
		},
		stages:  map[Pillar]Stage{Identity: Optimal, Devices: Optimal, Networks: Optimal, Applications: Optimal, Data: Advanced, Visibility: Advanced, Automation: Advanced, Governance: Advanced},
		overall: Advanced,
	},
}

// runScenario assesses a golden configuration copied to a temporary
// directory (so certificates and a git directory can be made for it).
func runScenario(t *testing.T, sc scenario, o Options) *Report {
	t.Helper()
	dir := t.TempDir()
	copyDir(t, filepath.Join("testdata", sc.name), dir)
	if sc.setup != nil {
		sc.setup(t, dir)
	}
	cfg := loadConfig(t, filepath.Join(dir, "ztgate.yaml"))
	st := seed(t, goldenNow, sc.traffic)
	o.Now, o.Name, o.Audit = goldenNow, "testdata/"+sc.name+"/ztgate.yaml", st
	if o.History == nil {
		o.History = st
	}
	rep, err := Run(context.Background(), cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestGolden(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			rep := runScenario(t, sc, Options{})
			got := map[Pillar]Stage{}
			for _, p := range rep.Pillars {
				got[p.ID] = p.Stage
			}
			if d := cmp.Diff(sc.stages, got); d != "" {
				t.Errorf("stage per pillar (-want +got):\n%s", d)
			}
			if rep.Overall.Stage != sc.overall {
				t.Errorf("overall: got %s, want %s", rep.Overall.Stage, sc.overall)
			}
			for _, format := range []string{"json", "md"} {
				var buf bytes.Buffer
				if err := rep.Write(&buf, format); err != nil {
					t.Fatal(err)
				}
				compareGolden(t, filepath.Join("testdata", "golden", sc.name+"."+format), buf.Bytes())
			}
		})
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/assess -update writes it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got); if the change is meant, go test ./internal/assess -update:\n%s", path, d)
	}
}
