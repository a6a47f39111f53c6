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
