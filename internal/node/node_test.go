package node

import (
	"strings"
	"testing"

	"github.com/ztgate/ztgate/internal/config"
)

// TestProviderKey: a reload of an unchanged provider keeps its verifier
// (and its token and group caches); any change, the group_overage secret
// included, builds a new one.
func TestProviderKey(t *testing.T) {
	const yaml = `listen: { address: ":8443" }
identity:
  providers:
    - name: corp
      type: entra
      tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47
      client_id: 6f1d4c9e-0000-0000-0000-000000000000
      group_overage: { client_id: 11111111-2222-4333-8444-555555555555, client_secret: SECRET }
services:
  - name: orders
    upstream: http://127.0.0.1:8080
    routes: [ { name: r, match: { path: "/**" }, allow: { groups: [g] } } ]
`
	key := func(y string) string {
		t.Helper()
		cfg, err := config.Parse("x.yaml", []byte(y), config.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return providerKey(cfg.Identity.Providers[0])
	}
	a, b := key(yaml), key(yaml)
	if a != b {
		t.Fatalf("the same configuration loaded twice: got keys\n%s\n%s\nwant equal", a, b)
	}
	if key(strings.Replace(yaml, "SECRET", "ROTATED", 1)) == a {
		t.Error("a rotated client secret kept the old verifier")
	}
	if key(strings.Replace(yaml, "client_secret: SECRET", "client_secret: SECRET, ttl: 1m", 1)) == a {
		t.Error("a changed ttl kept the old verifier")
	}
}
