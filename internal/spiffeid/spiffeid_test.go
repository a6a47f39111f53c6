package spiffeid

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		td      string
		path    string
		wantErr string // substring; "" for a valid ID
	}{
		{"workload", "spiffe://prod.example/ns/orders/sa/api", "prod.example", "/ns/orders/sa/api", ""},
		{"trust domain only", "spiffe://prod.example", "prod.example", "", ""},
		{"all trust domain chars", "spiffe://a-b_c.9z", "a-b_c.9z", "", ""},
		{"all path chars", "spiffe://td/AZaz09.-_/x.y", "td", "/AZaz09.-_/x.y", ""},
		{"dots inside a segment are fine", "spiffe://td/...a/a..", "td", "/...a/a..", ""},
		{"opaque path", "spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453", "example.com", "/9eebccd2-12bf-40a6-b262-65fe0487d453", ""},

		{"empty", "", "", "", "want spiffe://"},
		{"other scheme", "https://prod.example/x", "", "", "want spiffe://"},
		{"upper-case scheme", "SPIFFE://prod.example/x", "", "", "scheme must be spiffe in lower case"},
		{"mixed-case scheme", "Spiffe://prod.example/x", "", "", "lower case"},
		{"no slashes", "spiffe:prod.example/x", "", "", "want spiffe://"},
		{"one slash", "spiffe:/prod.example/x", "", "", "want spiffe://"},
		{"empty trust domain", "spiffe:///x", "", "", "trust domain is empty"},
		{"scheme only", "spiffe://", "", "", "trust domain is empty"},
		{"upper-case trust domain", "spiffe://Prod.example/x", "", "", "lower case"},
		{"port", "spiffe://prod.example:8443/x", "", "", "port"},
		{"empty port", "spiffe://prod.example:/x", "", "", "port"},
		{"userinfo", "spiffe://user@prod.example/x", "", "", "userinfo"},
		{"userinfo with password", "spiffe://u:p@prod.example/x", "", "", "port"},
		{"query", "spiffe://prod.example/x?a=b", "", "", "no query"},
		{"query on trust domain", "spiffe://prod.example?a=b", "", "", "no query"},
		{"fragment", "spiffe://prod.example/x#frag", "", "", "no fragment"},
		{"fragment on trust domain", "spiffe://prod.example#x", "", "", "no fragment"},
		{"percent-encoded path", "spiffe://prod.example/a%2Fb", "", "", "percent-encoding"},
		{"percent-encoded trust domain", "spiffe://prod%2eexample/x", "", "", "percent-encoding"},
		{"trailing slash", "spiffe://prod.example/x/", "", "", "empty segment"},
		{"root slash", "spiffe://prod.example/", "", "", "empty segment"},
		{"double slash", "spiffe://prod.example//x", "", "", "empty segment"},
		{"dot segment", "spiffe://prod.example/./x", "", "", "dot segment"},
		{"dot-dot segment", "spiffe://prod.example/ns/../admin", "", "", "dot segment"},
		{"last dot-dot", "spiffe://prod.example/ns/..", "", "", "dot segment"},
		{"space", "spiffe://prod.example/a b", "", "", "not allowed"},
		{"backslash", "spiffe://prod.example/a\\b", "", "", "not allowed"},
		{"non-ASCII path", "spiffe://prod.example/caf\u00e9", "", "", "not allowed"},
		{"non-ASCII trust domain (IDN)", "spiffe://b\u00fccher.example/x", "", "", "not allowed"},
		{"punycode is fine", "spiffe://xn--bcher-kva.example/x", "xn--bcher-kva.example", "/x", ""},
		{"NUL", "spiffe://prod.example/a\x00", "", "", "not allowed"},
		{"IPv6 literal", "spiffe://[::1]/x", "", "", "not allowed"},
		{"wildcard", "spiffe://prod.example/*", "", "", "not allowed"},
		{"leading space", " spiffe://prod.example/x", "", "", "want spiffe://"},
		{"trust domain at the limit", "spiffe://" + strings.Repeat("a", 255) + "/x", strings.Repeat("a", 255), "/x", ""},
		{"trust domain over the limit", "spiffe://" + strings.Repeat("a", 256) + "/x", "", "", "longer than 255"},
		{"ID at the limit", "spiffe://td/" + strings.Repeat("a", 2048-len("spiffe://td/")), "td", "/" + strings.Repeat("a", 2048-len("spiffe://td/")), ""},
		{"ID over the limit", "spiffe://td/" + strings.Repeat("a", 2049-len("spiffe://td/")), "", "", "longer than 2048"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("got %+v, want an error containing %q", id, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %s", err, tt.in)
			}
			if id.TrustDomain != tt.td || id.Path != tt.path {
				t.Errorf("got trust domain %q path %q, want %q %q", id.TrustDomain, id.Path, tt.td, tt.path)
			}
			if id.String() != tt.in {
				t.Errorf("String: got %q, want %q (the input, unchanged)", id.String(), tt.in)
			}
		})
	}
}

func TestParseWorkload(t *testing.T) {
	if _, err := ParseWorkload("spiffe://prod.example"); err == nil || !strings.Contains(err.Error(), "needs a path") {
		t.Errorf("trust domain ID: got %v, want a needs-a-path error", err)
	}
	if id, err := ParseWorkload("spiffe://prod.example/ns/a"); err != nil || id.Path != "/ns/a" {
		t.Errorf("workload ID: got %+v, %v; want path /ns/a", id, err)
	}
}

func TestPattern(t *testing.T) {
	tests := []struct {
		pattern string
		id      string
		want    bool
	}{
		{"spiffe://prod.example/ns/orders/sa/api", "spiffe://prod.example/ns/orders/sa/api", true},
		{"spiffe://prod.example/ns/orders/sa/api", "spiffe://prod.example/ns/orders/sa/api2", false},
		{"spiffe://prod.example/ns/orders/sa/api", "spiffe://prod.example/ns/orders/sa", false},
		{"spiffe://prod.example/ns/orders/sa/api", "spiffe://prod.example/ns/orders/sa/api/x", false},
		{"spiffe://prod.example/ns/orders/*", "spiffe://prod.example/ns/orders/sa", true},
		{"spiffe://prod.example/ns/orders/*", "spiffe://prod.example/ns/orders/sa/api", false},
		{"spiffe://prod.example/ns/orders/*", "spiffe://prod.example/ns/orders", false},
		{"spiffe://prod.example/ns/*/sa/api", "spiffe://prod.example/ns/billing/sa/api", true},
		{"spiffe://prod.example/ns/orders/**", "spiffe://prod.example/ns/orders/sa/api", true},
		{"spiffe://prod.example/ns/orders/**", "spiffe://prod.example/ns/orders/sa", true},
		{"spiffe://prod.example/ns/orders/**", "spiffe://prod.example/ns/orders", false},
		{"spiffe://prod.example/ns/orders/**", "spiffe://prod.example/ns/ordersx/a", false},
		{"spiffe://prod.example/**", "spiffe://prod.example/anything/at/all", true},
		{"spiffe://prod.example/**", "spiffe://prod.example", false},
		// Regression: the trust domain is compared whole, never as a prefix or suffix.
		{"spiffe://prod.example/**", "spiffe://prod.example.evil/x", false},
		{"spiffe://prod.example/**", "spiffe://evil-prod.example/x", false},
		{"spiffe://prod.example/ns/orders/*", "spiffe://staging.example/ns/orders/sa", false},
		// Path segments are case-sensitive; trust domains are lower case.
		{"spiffe://prod.example/ns/Orders", "spiffe://prod.example/ns/orders", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.id, func(t *testing.T) {
			p, err := ParsePattern(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			id, err := Parse(tt.id)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Match(id); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParsePatternErrors(t *testing.T) {
	for _, s := range []string{
		"prod.example/ns/*",
		"spiffe://*.example/ns/a",
		"spiffe://prod.example",
		"spiffe://prod.example/",
		"spiffe://prod.example/**/sa",
		"spiffe://prod.example/ns/orders-*",
		"spiffe://prod.example/ns//a",
		"spiffe://prod.example/ns/../a",
		"spiffe://Prod.example/ns/a",
		"spiffe://prod.example:443/ns/a",
	} {
		if _, err := ParsePattern(s); err == nil {
			t.Errorf("ParsePattern(%q): got no error, want one", s)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"spiffe://prod.example/ns/orders/sa/api", "spiffe://td", "spiffe://td/", "spiffe://td/a/../b",
		"SPIFFE://td/a", "spiffe://u@td:1/a?q#f", "spiffe://td/%2e", "spiffe:///", "spiffe://td//a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			if id != (ID{}) {
				t.Fatalf("Parse(%q) returned %+v with error %v", s, id, err)
			}
			return
		}
		// A valid ID is printable ASCII, round-trips unchanged, and has
		// none of what the specification refuses.
		if id.String() != s {
			t.Fatalf("Parse(%q).String() = %q, want the input", s, id.String())
		}
		if !utf8.ValidString(s) || len(s) > MaxIDBytes || len(id.TrustDomain) > MaxTrustDomainBytes || id.TrustDomain == "" {
			t.Fatalf("Parse(%q) accepted an ID out of bounds", s)
		}
		if strings.ContainsAny(s[len(scheme):], ":@?#%\\ \x00") || strings.ToLower(id.TrustDomain) != id.TrustDomain {
			t.Fatalf("Parse(%q) accepted a forbidden character", s)
		}
		if strings.Contains(id.Path, "//") || strings.HasSuffix(id.Path, "/") || strings.Contains(id.Path+"/", "/./") || strings.Contains(id.Path+"/", "/../") {
			t.Fatalf("Parse(%q) accepted an empty or dot segment", s)
		}
		// Every valid workload ID matches the catch-all pattern of its
		// trust domain, and no other trust domain's.
		if id.Path != "" {
			all, err := ParsePattern(scheme + id.TrustDomain + "/**")
			if err != nil {
				t.Fatalf("pattern for %q: %v", s, err)
			}
			if !all.Match(id) {
				t.Fatalf("spiffe://%s/** does not match %q", id.TrustDomain, s)
			}
			other, _ := ParsePattern(scheme + "x" + id.TrustDomain + "/**")
			if other.Match(id) {
				t.Fatalf("another trust domain's pattern matches %q", s)
			}
			exact, err := ParsePattern(s)
			if err != nil || !exact.Match(id) {
				t.Fatalf("the ID %q as a pattern: %v, or it does not match itself", s, err)
			}
		}
	})
}
