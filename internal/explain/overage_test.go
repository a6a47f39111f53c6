package explain

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/policy"
)

// TestExplainGroupsUnknown: claims in the group overage form explain as
// groups_unknown on a route that tests groups, and as usual on one that
// does not.
func TestExplainGroupsUnknown(t *testing.T) {
	const yaml = `listen: { address: ":8443" }
identity:
  providers:
    - { name: corp, type: oidc, issuer: "https://idp.example", audiences: [api] }
services:
  - name: hr
    upstream: http://127.0.0.1:8080
    routes:
      - { name: payroll, match: { path: "/payroll/**" }, allow: { groups: [a0b1c2d3-0000-4000-8000-000000000001] } }
      - { name: directory, match: { path: "/directory/**" }, allow: { scopes: [directory.read] } }
`
	cfg, err := config.Parse("x.yaml", []byte(yaml), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{
		"sub": "alice", "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "oid": "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "scp": "directory.read",
		"_claim_names":   map[string]any{"groups": "src1"},
		"_claim_sources": map[string]any{"src1": map[string]any{"endpoint": "https://graph.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/users/3f2504e0-4f89-41d3-9a0c-0305e82c3301/getMemberObjects"}},
	}
	res, err := Explain(context.Background(), cfg, Request{Method: "GET", URL: "/payroll/run", Claims: claims}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Decision != "deny" || res.Status != 403 || res.Reason != policy.ReasonGroupsUnknown {
		t.Errorf("got %s %d %s, want deny 403 groups_unknown", res.Decision, res.Status, res.Reason)
	}
	if res.Identity == nil || !res.Identity.GroupsUnknown {
		t.Errorf("identity: got %+v, want groups unknown", res.Identity)
	}
	if !slices.ContainsFunc(res.Auth, func(s string) bool { return strings.Contains(s, "group overage") }) {
		t.Errorf("authentication steps %q: want one on the group overage", res.Auth)
	}
	var b bytes.Buffer
	res.WriteText(&b)
	for _, want := range []string{"groups unknown (group overage, not resolved)", "FAIL groups", "[groups_unknown]", "decision  deny (403 groups_unknown)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}

	res, err = Explain(context.Background(), cfg, Request{Method: "GET", URL: "/directory/people", Claims: claims}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Decision != "allow" {
		t.Errorf("route without groups: got %s %s, want allow", res.Decision, res.Reason)
	}
}
