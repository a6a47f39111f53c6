package route

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMatch(t *testing.T) {
	specs := []Spec{
		0:  {Path: "/orders/**"},
		1:  {Path: "/orders/{id}", Methods: []string{"GET"}},
		2:  {Path: "/orders/{id}/items/{item}", Methods: []string{"GET"}},
		3:  {Path: "/orders/special", Methods: []string{"GET"}},
		4:  {Path: "/orders/*/notes"},
		5:  {Path: "/"},
		6:  {Path: "/orders/{id}", Methods: []string{"DELETE"}},
		7:  {Host: "api.example.com", Path: "/orders/{id}"},
		8:  {Host: "*.example.com", Path: "/orders/**"},
		9:  {Path: "/files/"},
		10: {Path: "/files/**", Methods: []string{"PUT"}},
	}
	tab, err := Compile(specs)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, host, method, path string
		want                     int // -1: no match
		params                   map[string]string
	}{
		{"literal beats param", "", "GET", "/orders/special", 3, nil},
		{"param", "", "GET", "/orders/42", 1, map[string]string{"id": "42"}},
		{"two params", "", "GET", "/orders/42/items/7", 2, map[string]string{"id": "42", "item": "7"}},
		{"method list beats rest", "", "DELETE", "/orders/42", 6, map[string]string{"id": "42"}},
		{"method not listed falls back to rest", "", "POST", "/orders/42", 0, nil},
		{"rest matches the prefix itself", "", "GET", "/orders", 0, nil},
		{"rest matches trailing slash", "", "GET", "/orders/", 0, nil},
		{"param does not match trailing slash", "", "GET", "/orders/42/", 0, nil},
		{"wildcard segment", "", "GET", "/orders/42/notes", 4, nil},
		{"deep rest", "", "GET", "/orders/42/items/7/x", 0, nil},
		{"root", "", "GET", "/", 5, nil},
		{"root only", "", "GET", "/nope", -1, nil},
		{"exact host beats any host", "api.example.com", "GET", "/orders/42", 7, map[string]string{"id": "42"}},
		{"exact host falls back to wildcard", "api.example.com", "GET", "/orders/42/x", 8, nil},
		{"wildcard host", "eu.example.com", "GET", "/orders/42", 8, nil},
		{"wildcard needs a label", "example.com", "GET", "/orders/42", 1, map[string]string{"id": "42"}},
		{"other host gets any-host routes", "other.test", "GET", "/orders/42", 1, map[string]string{"id": "42"}},
		{"trailing slash literal", "", "GET", "/files/", 9, nil},
		{"trailing slash literal differs", "", "GET", "/files", -1, nil},
		{"rest with method", "", "PUT", "/files/a/b", 10, nil},
		{"rest with other method", "", "GET", "/files/a/b", -1, nil},
		{"case sensitive", "", "GET", "/ORDERS/1", -1, nil},
		{"empty segment never a param", "", "GET", "/orders//items/7", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Params
			got, ok := tab.Match(tt.host, tt.method, tt.path, &p)
			if !ok {
				got = -1
			}
			if got != tt.want {
				t.Fatalf("got route %d, want %d", got, tt.want)
			}
			gotParams := map[string]string{}
			for i := range p.Len() {
				k, v := p.At(i)
				gotParams[k] = v
			}
			if tt.params == nil {
				tt.params = map[string]string{}
			}
			if d := cmp.Diff(tt.params, gotParams); d != "" {
				t.Errorf("params (-want +got):\n%s", d)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name    string
		specs   []Spec
		overlap *OverlapError
	}{
		{"relative", []Spec{{Path: "orders"}}, nil},
		{"rest not last", []Spec{{Path: "/a/**/b"}}, nil},
		{"partial brace", []Spec{{Path: "/a/x{id}"}}, nil},
		{"bad param name", []Spec{{Path: "/a/{1x}"}}, nil},
		{"duplicate param", []Spec{{Path: "/a/{id}/{id}"}}, nil},
		{"empty segment", []Spec{{Path: "/a//b"}}, nil},
		{"non-canonical literal", []Spec{{Path: "/a/%7euser"}}, nil},
		{"dot segment literal", []Spec{{Path: "/a/../b"}}, nil},
		{"upper-case host", []Spec{{Host: "API.example.com", Path: "/"}}, nil},
		{"same path any method", []Spec{{Path: "/a"}, {Path: "/a"}}, &OverlapError{A: 0, B: 1, Method: "ANY"}},
		{"same shape other names", []Spec{{Path: "/a/{x}", Methods: []string{"GET"}}, {Path: "/a/{y}", Methods: []string{"POST", "GET"}}}, &OverlapError{A: 0, B: 1, Method: "GET"}},
		{"param and star", []Spec{{Path: "/a/*"}, {Path: "/a/{y}", Methods: []string{"PUT"}}}, &OverlapError{A: 0, B: 1, Method: "PUT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.specs)
			if err == nil {
				t.Fatal("got no error")
			}
			var oe *OverlapError
			if tt.overlap != nil {
				if !errors.As(err, &oe) || *oe != *tt.overlap {
					t.Fatalf("got %v, want %+v", err, tt.overlap)
				}
				return
			}
			var pe *PatternError
			if !errors.As(err, &pe) {
				t.Fatalf("got %T %v, want *PatternError", err, err)
			}
		})
	}
	// Same shape, disjoint methods, or other hosts: fine.
	if _, err := Compile([]Spec{{Path: "/a/{x}", Methods: []string{"GET"}}, {Path: "/a/{y}", Methods: []string{"POST"}}, {Host: "h.example", Path: "/a/{z}"}}); err != nil {
		t.Fatalf("got %v, want no error", err)
	}
}

func TestExplain(t *testing.T) {
	tab, _ := Compile([]Spec{{Path: "/orders/**"}, {Path: "/orders/{id}", Methods: []string{"GET"}}, {Host: "other.example", Path: "/orders/{id}"}, {Path: "/admin/**"}, {Path: "/orders/{id}", Methods: []string{"DELETE"}}})
	got := tab.Explain("api.example", "GET", "/orders/1")
	want := []Candidate{
		{Index: 0, Reason: "less specific than route 1"},
		{Index: 1, Matched: true},
		{Index: 2, Reason: "host mismatch"},
		{Index: 3, Reason: "path mismatch"},
		{Index: 4, Reason: "method not allowed"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("explain (-want +got):\n%s", d)
	}
}

func FuzzMatch(f *testing.F) {
	tab, err := Compile([]Spec{{Path: "/orders/**"}, {Path: "/orders/{id}", Methods: []string{"GET"}}, {Path: "/a/*/b/{c}"}, {Path: "/"}, {Host: "*.example.com", Path: "/x/**"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("api.example.com", "GET", "/orders/1")
	f.Add("", "POST", "/a/1/b/2")
	f.Add("", "GET", "/orders/../x")
	f.Fuzz(func(t *testing.T, host, method, path string) {
		var p Params
		i, ok := tab.Match(host, method, path, &p)
		norm, err := NormalizePath(path)
		if err != nil {
			return
		}
		j, ok2 := tab.Match(host, method, norm, &p)
		if norm == path && (ok != ok2 || i != j) {
			t.Fatalf("match of a canonical path is not stable: %d,%v vs %d,%v", i, ok, j, ok2)
		}
		if ok2 && j == 1 && method != "GET" {
			t.Fatalf("GET-only route matched %s", method)
		}
	})
}

func BenchmarkMatch10000Routes(b *testing.B) {
	specs := make([]Spec, 0, 10000)
	for i := range 2500 {
		specs = append(specs,
			Spec{Path: fmt.Sprintf("/svc%d/orders/{id}", i), Methods: []string{"GET"}},
			Spec{Path: fmt.Sprintf("/svc%d/orders/{id}/items/{item}", i)},
			Spec{Path: fmt.Sprintf("/svc%d/admin/**", i)},
			Spec{Host: fmt.Sprintf("h%d.example.com", i), Path: "/x/**"},
		)
	}
	tab, err := Compile(specs)
	if err != nil {
		b.Fatal(err)
	}
	var p Params
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := tab.Match("api.example.com", "GET", "/svc1234/orders/42/items/7", &p); !ok {
			b.Fatal("no match")
		}
	}
}
