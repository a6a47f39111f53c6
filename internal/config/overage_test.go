package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// overage is base with an entra provider whose group_overage block (lines
// 9 to 11) the rows modify.
const overage = `listen: { address: ":8443" }
identity:
  providers:
    - name: corp
      type: entra
      tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47
      client_id: 6f1d4c9e-0000-0000-0000-000000000000
      group_overage:
        client_id: 11111111-2222-4333-8444-555555555555
        client_secret: "${env:GRAPH_SECRET}"
        ttl: 10m
services:
  - name: orders
    upstream: http://127.0.0.1:8080
    routes:
      - { name: r1, match: { path: "/orders/**" }, allow: { groups: [a0b1c2d3-0000-4000-8000-000000000001] } }
`

const graphSecret = "graph~secret.value"

func overageOptions() Options {
	o := testOptions()
	o.LookupEnv = func(k string) (string, bool) {
		v, ok := map[string]string{"GRAPH_SECRET": graphSecret, "BLANK": " "}[k]
		return v, ok
	}
	return o
}

func TestGroupOverageConfig(t *testing.T) {
	c, err := Parse("x.yaml", []byte(overage), overageOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := GroupOverage{
		ClientID: "11111111-2222-4333-8444-555555555555", ClientSecret: graphSecret,
		GraphURL: "https://graph.microsoft.com", Method: "get_member_objects", SecurityEnabledOnly: true,
		TTL: Duration(10 * time.Minute), FailureTTL: Duration(10 * time.Second), CacheSize: 10000, Timeout: Duration(5 * time.Second),
	}
	if d := cmp.Diff(want, *c.Identity.Providers[0].GroupOverage); d != "" {
		t.Errorf("group_overage with defaults (-want +got):\n%s", d)
	}
	c, err = Parse("x.yaml", []byte(strings.Replace(overage, "ttl: 10m", "security_enabled_only: false", 1)), overageOptions())
	if err != nil {
		t.Fatal(err)
	}
	if c.Identity.Providers[0].GroupOverage.SecurityEnabledOnly {
		t.Error("security_enabled_only: false: got true, want the default overridden")
	}
	china := strings.Replace(overage, "ttl: 10m", "graph_url: https://microsoftgraph.chinacloudapi.cn", 1)
	china = strings.Replace(china, "      group_overage:", "      authority_host: https://login.chinacloudapi.cn\n      group_overage:", 1)
	if _, err := Parse("x.yaml", []byte(china), overageOptions()); err != nil {
		t.Errorf("a national cloud with its own Graph: got %v, want it accepted", err)
	}
}

func TestGroupOverageErrors(t *testing.T) {
	tests := []struct {
		name, from, to string
		want           []string // substrings of the error, in order
	}{
		{"bad client id", "client_id: 11111111-2222-4333-8444-555555555555", "client_id: gateway", []string{"x.yaml:9:20: identity.providers[0].group_overage.client_id: bad client_id \"gateway\""}},
		{"no client secret", "        client_secret: \"${env:GRAPH_SECRET}\"\n", "", []string{"x.yaml:9:9: identity.providers[0].group_overage: missing required key \"client_secret\""}},
		{"blank client secret", "${env:GRAPH_SECRET}", "${env:BLANK}", []string{"x.yaml:10:24: identity.providers[0].group_overage.client_secret: the client secret is empty"}},
		{"unset secret variable", "${env:GRAPH_SECRET}", "${env:NOPE}", []string{"x.yaml:10:24: identity.providers[0].group_overage.client_secret: environment variable NOPE referenced by ${env:NOPE} is not set"}},
		{"http graph", "ttl: 10m", "graph_url: http://graph.example", []string{"x.yaml:11:20: identity.providers[0].group_overage.graph_url: \"http://graph.example\" must use https"}},
		{"graph with a path", "ttl: 10m", "graph_url: https://graph.microsoft.com/v1.0", []string{"group_overage.graph_url: graph_url \"https://graph.microsoft.com/v1.0\" must have no path"}},
		{"loopback graph for tests", "ttl: 10m", "graph_url: http://127.0.0.1:8081", nil},
		{"unknown method", "ttl: 10m", "method: memberOf", []string{"x.yaml:11:17: identity.providers[0].group_overage.method: \"memberOf\" is not one of: get_member_objects, transitive_member_of"}},
		{"ttl too short", "ttl: 10m", "ttl: 0s", []string{"x.yaml:11:14: identity.providers[0].group_overage.ttl: must be between 1s and 24h"}},
		{"ttl too long", "ttl: 10m", "ttl: 2d", []string{"group_overage.ttl: must be between 1s and 24h"}},
		{"failure ttl too long", "ttl: 10m", "failure_ttl: 1h", []string{"group_overage.failure_ttl: must be at most 10m"}},
		{"timeout too long", "ttl: 10m", "timeout: 5m", []string{"group_overage.timeout: must be between 100ms and 1m"}},
		{"cache size zero", "ttl: 10m", "cache_size: 0", []string{"group_overage.cache_size: must be between 1 and 1000000"}},
		{"national cloud with the global Graph", "      client_id: 6f1d4c9e-0000-0000-0000-000000000000\n", "      client_id: 6f1d4c9e-0000-0000-0000-000000000000\n      authority_host: https://login.microsoftonline.us\n", []string{"x.yaml:10:9: identity.providers[0].group_overage: authority_host https://login.microsoftonline.us is a national cloud: set graph_url to its Microsoft Graph (https://graph.microsoft.us"}},
		{"unknown key", "ttl: 10m", "tll: 10m", []string{"x.yaml:11:9: identity.providers[0].group_overage.tll: unknown key \"tll\""}},
		{"assigned to app without the API's client id", "      client_id: 6f1d4c9e-0000-0000-0000-000000000000\n", "      audiences: [api://orders]\n", nil},
		{"assigned to app without the API's client id, set", "      client_id: 6f1d4c9e-0000-0000-0000-000000000000\n", "      audiences: [api://orders]\n", []string{"group_overage.assigned_to_app_only: assigned_to_app_only needs the provider's client_id"}},
		{"oidc provider", "      type: entra\n      tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47\n      client_id: 6f1d4c9e-0000-0000-0000-000000000000\n", "      type: oidc\n      issuer: https://idp.example\n      audiences: [api]\n", []string{"x.yaml:9:9: identity.providers[0].group_overage: group_overage is only for type entra"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(overage, tt.from) {
				t.Fatalf("%q is not in the configuration", tt.from)
			}
			y := strings.Replace(overage, tt.from, tt.to, 1)
			if strings.HasSuffix(tt.name, ", set") {
				y = strings.Replace(y, "ttl: 10m", "assigned_to_app_only: true", 1)
			}
			_, err := Parse("x.yaml", []byte(y), overageOptions())
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			msg := err.Error()
			if strings.Contains(msg, graphSecret) {
				t.Errorf("error %q quotes the client secret", msg)
			}
			for _, w := range tt.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Fatalf("got error:\n%s\nwant it to contain %q", msg, w)
				}
				msg = msg[i+len(w):]
			}
		})
	}
}
