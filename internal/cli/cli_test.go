package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`listen: { address: "127.0.0.1:8443" }
identity:
  providers: [ { name: p, type: oidc, issuer: "https://idp.example", audiences: [api] } ]
services:
  - name: s
    upstream: http://127.0.0.1:1
    routes:
      - { name: open, match: { path: "/**" }, allow: { roles: [R] } }
      - { name: closed, match: { path: "/admin/**" } }
`), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen: { adress: x }\n"), 0o600)

	code, out, _ := run("check", "--config", good)
	if code != 0 || !strings.Contains(out, "ok (1 services, 2 routes, 1 identity providers") || !strings.Contains(out, "route s/closed has no allow rule") {
		t.Errorf("check good: got %d %q", code, out)
	}
	code, _, errOut := run("check", "--config", bad)
	if code != 1 || !strings.Contains(errOut, bad+":1:11: listen.adress: unknown key") {
		t.Errorf("check bad: got %d %q", code, errOut)
	}
	code, _, errOut = run("check")
	if code != 1 || !strings.Contains(errOut, `required flag(s) "config" not set`) {
		t.Errorf("check without --config: got %d %q", code, errOut)
	}
	code, out, _ = run("schema")
	if code != 0 || !json.Valid([]byte(out)) || !strings.Contains(out, `"additionalProperties": false`) {
		t.Errorf("schema: got %d, valid JSON %v", code, json.Valid([]byte(out)))
	}
	code, out, _ = run("schema", "--markdown")
	if code != 0 || !strings.HasPrefix(out, "| key |") {
		t.Errorf("schema --markdown: got %d %q", code, out[:min(len(out), 40)])
	}
	code, out, _ = run("version")
	if code != 0 || !strings.HasPrefix(out, "ztgate ") {
		t.Errorf("version: got %d %q", code, out)
	}
	code, out, _ = run("completion", "bash")
	if code != 0 || !strings.Contains(out, "bash completion") {
		t.Errorf("completion bash: got %d", code)
	}
	code, _, errOut = run("nonsense")
	if code != 1 || !strings.Contains(errOut, "unknown command") {
		t.Errorf("unknown command: got %d %q", code, errOut)
	}
}

func TestAssessCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gw.yaml")
	os.WriteFile(cfg, []byte(`listen: { address: "127.0.0.1:8443" }
identity:
  providers: [ { name: p, type: oidc, issuer: "https://idp.example", audiences: [api] } ]
store: { driver: sqlite, dsn: audit.db }
services:
  - name: s
    upstream: http://127.0.0.1:1
    routes:
      - { name: read, match: { methods: [GET], path: "/r/**" }, allow: { roles: [R] } }
      - { name: write, match: { methods: [POST], path: "/w/**" }, allow: { roles: [W], mfa: true } }
`), 0o600)
	os.WriteFile(filepath.Join(dir, "gw_test.yaml"), []byte(`tests:
  - name: a reader reads
    request: { method: GET, url: "http://x/r/1", claims: { sub: a, roles: [R] } }
    expect: { decision: allow, route: s/read }
`), 0o600)

	html := filepath.Join(dir, "report.html")
	code, _, errOut := run("assess", "--config", cfg, "--out", html)
	if code != 0 || !strings.Contains(errOut, "report.html: overall ") {
		t.Fatalf("assess --out report.html: got %d %q", code, errOut)
	}
	page, err := os.ReadFile(html)
	if err != nil || !strings.Contains(string(page), "<!DOCTYPE html>") || !strings.Contains(string(page), `id="pillar-identity"`) {
		t.Fatalf("report.html: %v, want an HTML report", err)
	}

	// The first run was recorded: the second shows it as the previous one.
	code, out, errOut := run("assess", "--config", cfg, "--format", "json", "--since", "7d")
	if code != 0 {
		t.Fatalf("assess --format json: got %d %q", code, errOut)
	}
	var rep struct {
		Window   struct{ Since string }
		Previous *struct{ ConfigHash string } `json:"previous"`
		Pillars  []struct {
			ID       string
			Findings []struct{ ID, Outcome string }
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("assess --format json: %v\n%s", err, out)
	}
	if rep.Window.Since != "7d" || rep.Previous == nil || len(rep.Pillars) != 8 {
		t.Errorf("got window %q, previous %v, %d pillars; want 7d, the first run, 8", rep.Window.Since, rep.Previous, len(rep.Pillars))
	}
	outcome := map[string]string{}
	for _, p := range rep.Pillars {
		for _, f := range p.Findings {
			outcome[f.ID] = f.Outcome
		}
	}
	if outcome["GV-02"] != "pass" || outcome["VA-01"] != "pass" || outcome["ID-03"] != "pass" {
		t.Errorf("got GV-02 %s (policy tests beside the file), VA-01 %s (store), ID-03 %s (MFA on writes); want pass each", outcome["GV-02"], outcome["VA-01"], outcome["ID-03"])
	}

	code, out, _ = run("assess", "--config", cfg, "--no-record", "--tests", "")
	if code != 0 || !strings.HasPrefix(out, "# Zero Trust maturity assessment") || !strings.Contains(out, "GV-02 Policy tests exist and pass: fail") {
		t.Errorf("assess (markdown, --tests none): got %d\n%s", code, out[:min(len(out), 400)])
	}
	code, _, errOut = run("assess", "--config", cfg, "--format", "pdf")
	if code != 1 || !strings.Contains(errOut, "bad --format") {
		t.Errorf("--format pdf: got %d %q", code, errOut)
	}
	code, _, errOut = run("assess", "--config", cfg, "--since", "soon")
	if code != 1 || !strings.Contains(errOut, "bad --since") {
		t.Errorf("--since soon: got %d %q", code, errOut)
	}
}
