package guard

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ztgate/ztgate/internal/config"
)

func TestGuard(t *testing.T) {
	g, err := Compile(&config.Guard{
		MaxBodyBytes: 256, ContentTypes: []string{"application/json"}, JSONSchema: "order.schema.json", MaxJSONDepth: 8,
		RequiredHeaders: []string{"X-Tenant"}, ForbiddenHeaders: []string{"X-Debug"}, AllowedQuery: []string{"dry_run"},
	}, "testdata", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	good := `{"sku":"AB-1","qty":2}`
	tests := []struct {
		name, body, ctype, query string
		hdr                      map[string]string
		status                   int
		reason                   string
	}{
		{"valid", good, "application/json", "", nil, 0, ""},
		{"valid with charset and allowed query", good, "application/json; charset=utf-8", "dry_run=1", nil, 0, ""},
		{"missing required header", good, "application/json", "", map[string]string{"X-Tenant": ""}, 400, "missing_required_header"},
		{"forbidden header", good, "application/json", "", map[string]string{"X-Debug": "1"}, 400, "forbidden_header"},
		{"query not allowed", good, "application/json", "debug=1", nil, 400, "query_parameter_not_allowed"},
		{"wrong content type", good, "text/plain", "", nil, 415, "unsupported_content_type"},
		{"no content type", good, "", "", nil, 415, "unsupported_content_type"},
		{"oversized body", `{"sku":"AB-1","qty":2,"note":"` + strings.Repeat("x", 300) + `"}`, "application/json", "", nil, 413, "body_too_large"},
		{"not JSON", `{"sku":`, "application/json", "", nil, 400, "invalid_json"},
		{"trailing data", good + `{"x":1}`, "application/json", "", nil, 400, "invalid_json"},
		{"deep nesting bomb", strings.Repeat("[", 50) + strings.Repeat("]", 50), "application/json", "", nil, 400, "json_too_deep"},
		{"huge number", `{"sku":"AB-1","qty":1` + strings.Repeat("0", 100) + `}`, "application/json", "", nil, 400, "json_number_too_large"},
		{"missing property", `{"sku":"AB-1"}`, "application/json", "", nil, 400, "schema_violation"},
		{"wrong type", `{"sku":"AB-1","qty":"two"}`, "application/json", "", nil, 400, "schema_violation"},
		{"below minimum", `{"sku":"AB-1","qty":0}`, "application/json", "", nil, 400, "schema_violation"},
		{"extra property", `{"sku":"AB-1","qty":1,"admin":true}`, "application/json", "", nil, 400, "schema_violation"},
		{"pattern", `{"sku":"ab","qty":1}`, "application/json", "", nil, 400, "schema_violation"},
		{"empty body", ``, "application/json", "", nil, 400, "invalid_json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := "/orders"
			if tt.query != "" {
				url += "?" + tt.query
			}
			r := httptest.NewRequest("POST", url, strings.NewReader(tt.body))
			if tt.ctype != "" {
				r.Header.Set("Content-Type", tt.ctype)
			}
			r.Header.Set("X-Tenant", "t1")
			for k, v := range tt.hdr {
				if v == "" {
					r.Header.Del(k)
				} else {
					r.Header.Set(k, v)
				}
			}
			f := g.CheckHead(r)
			if f == nil && g.NeedsBody() {
				_, f = g.CheckBody(r.Body)
			}
			switch {
			case tt.status == 0 && f != nil:
				t.Fatalf("got %v, want pass", f)
			case tt.status != 0 && f == nil:
				t.Fatalf("got pass, want %d %s", tt.status, tt.reason)
			case f != nil && (f.Status != tt.status || f.Reason != tt.reason):
				t.Fatalf("got %d %s (%s), want %d %s", f.Status, f.Reason, f.Public, tt.status, tt.reason)
			}
		})
	}
	// The schema failure names where.
	_, f := g.CheckBody(strings.NewReader(`{"sku":"AB-1","qty":0}`))
	if f == nil || !strings.Contains(f.Public, "at /qty") {
		t.Errorf("got %v, want the failing location /qty", f)
	}
}

func TestCompileBadSchema(t *testing.T) {
	if _, err := Compile(&config.Guard{JSONSchema: "missing.json", MaxJSONDepth: 8}, t.TempDir(), 1); err == nil {
		t.Fatal("got no error for a missing schema")
	}
}

func FuzzCheckBody(f *testing.F) {
	g, err := Compile(&config.Guard{JSONSchema: "order.schema.json", MaxJSONDepth: 16}, "testdata", 4096)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(`{"sku":"AB-1","qty":2}`)
	f.Add(`[[[[[[]]]]]]`)
	f.Add(`{"qty":1e999}`)
	f.Fuzz(func(t *testing.T, body string) {
		out, fl := g.CheckBody(strings.NewReader(body))
		if (out == nil) == (fl == nil) {
			t.Fatalf("got body %v and failure %v; want exactly one", out, fl)
		}
		if fl == nil && string(out) != body {
			t.Fatal("a passing body was altered")
		}
	})
}
