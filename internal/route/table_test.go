package route

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func get() []string { return []string{"GET"} }

func TestMatch(t *testing.T) {
	specs := []Spec{
		0:  {Path: "/orders/**"},
		1:  {Path: "/orders/{id}", Methods: get()},
		2:  {Path: "/orders/{id}/items/{item}", Methods: get()},
		3:  {Path: "/orders/special", Methods: get()},
		4:  {Path: "/orders/*/notes"},
		5:  {Path: "/"},
		6:  {Path: "/orders/{id}", Methods: []string{"DELETE", "PATCH"}},
		7:  {Host: "api.example.com", Path: "/orders/{id}"},
		8:  {Host: "*.example.com", Path: "/orders/**"},
		9:  {Path: "/files/"},
		10: {Path: "/files/**", Methods: []string{"PUT"}},
		11: {Path: "/orders"},
		12: {Path: "/a/{x}/**"},
		13: {Path: "/a/**"},
		14: {Path: "/a/b/{y}"},
		15: {Path: "/a/{x}/c"},
		16: {Host: "*.eu.example.com", Path: "/orders/{id}"},
		17: {Host: "[::1]", Path: "/orders/{id}"},
		18: {Path: "/caf%C3%A9/{item}"},
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
		{"second listed method", "", "PATCH", "/orders/42", 6, map[string]string{"id": "42"}},
		{"method not listed falls back to rest", "", "POST", "/orders/42", 0, nil},
		{"methods are case-sensitive", "", "get", "/orders/42", 0, nil},
		{"exact end beats rest matching nothing", "", "GET", "/orders", 11, nil},
		{"rest matches trailing slash", "", "GET", "/orders/", 0, nil},
		{"param does not match trailing slash", "", "GET", "/orders/42/", 0, nil},
		{"param does not match an empty segment", "", "GET", "/orders//items/7", 0, nil},
		{"star segment", "", "GET", "/orders/42/notes", 4, nil},
		{"deep rest", "", "GET", "/orders/42/items/7/x", 0, nil},
		{"root", "", "GET", "/", 5, nil},
		{"root only", "", "GET", "/nope", -1, nil},
		{"trailing slash literal", "", "GET", "/files/", 9, nil},
		{"trailing slash literal needs the slash", "", "GET", "/files", -1, nil},
		{"rest with its method", "", "PUT", "/files/a/b", 10, nil},
		{"rest with its method matches the prefix", "", "PUT", "/files", 10, nil},
		{"rest with another method", "", "GET", "/files/a/b", -1, nil},
		{"paths are case-sensitive", "", "GET", "/ORDERS/1", -1, nil},
		{"leftmost segment decides: param then rest beats rest", "", "GET", "/a/q/z/z", 12, map[string]string{"x": "q"}},
		{"leftmost segment decides: literal b beats param", "", "GET", "/a/b/c", 14, map[string]string{"y": "c"}},
		{"backtracks from literal to param", "", "GET", "/a/b/c/d", 12, map[string]string{"x": "b"}},
		{"param route for other values", "", "GET", "/a/q/c", 15, map[string]string{"x": "q"}},
		{"rest zero segments after param", "", "GET", "/a/q", 12, map[string]string{"x": "q"}},
		{"rest alone", "", "GET", "/a", 13, nil},
		{"escaped literal", "", "GET", "/caf%C3%A9/x%20y", 18, map[string]string{"item": "x%20y"}},
		{"unnormalised path is not matched", "", "GET", "orders/42", -1, nil},

		{"exact host beats wildcard and any", "api.example.com", "GET", "/orders/42", 7, map[string]string{"id": "42"}},
		{"exact host, any port", "api.example.com:8443", "GET", "/orders/42", 7, map[string]string{"id": "42"}},
		{"exact host, any case", "API.Example.COM", "GET", "/orders/42", 7, map[string]string{"id": "42"}},
		{"exact host, trailing dot", "api.example.com.", "GET", "/orders/42", 7, map[string]string{"id": "42"}},
		{"exact host falls back to wildcard on path", "api.example.com", "GET", "/orders/42/x", 8, nil},
		{"wildcard host beats any host", "eu1.example.com", "GET", "/orders/42", 8, nil},
		{"longer wildcard first", "fr.eu.example.com", "GET", "/orders/42", 16, map[string]string{"id": "42"}},
		{"longer wildcard falls back to shorter", "fr.eu.example.com", "GET", "/orders/42/x", 8, nil},
		{"wildcard needs a label", "example.com", "GET", "/orders/42", 1, map[string]string{"id": "42"}},
		{"wildcard takes several labels", "a.b.example.com", "GET", "/orders/42", 8, nil},
		{"wildcard with port and case", "EU1.example.com:80", "GET", "/orders/", 8, nil},
		{"other host gets any-host routes", "other.test", "GET", "/orders/42", 1, map[string]string{"id": "42"}},
		{"suffix without dot is another host", "evilexample.com", "GET", "/orders/42", 1, map[string]string{"id": "42"}},
		{"IPv6 with brackets and port", "[::1]:8080", "POST", "/orders/9", 17, map[string]string{"id": "9"}},
		{"IPv6 without brackets", "::1", "POST", "/orders/9", 17, map[string]string{"id": "9"}},
		{"empty host gets any-host routes", "", "POST", "/orders/9", 0, nil},
		{"overlong host gets any-host routes", strings.Repeat("a", 300) + ".example.com", "GET", "/orders/42", 1, map[string]string{"id": "42"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Params
			p.add("stale", "x") // Match resets
			got, ok := tab.Match(tt.host, tt.method, tt.path, &p)
			if ok != (got >= 0) {
				t.Fatalf("got %d, %v; want -1 exactly when false", got, ok)
			}
			if got != tt.want {
				t.Fatalf("got route %d, want %d", got, tt.want)
			}
			if tt.params == nil {
				tt.params = map[string]string{}
			}
			if d := cmp.Diff(tt.params, paramMap(&p)); d != "" {
				t.Errorf("params (-want +got):\n%s", d)
			}
		})
	}
}

func paramMap(p *Params) map[string]string {
	m := map[string]string{}
	for i := range p.Len() {
		k, v := p.At(i)
		m[k] = v
	}
	return m
}

func TestParams(t *testing.T) {
	tab, err := Compile([]Spec{{Path: "/{a}/{b}/{c}/{d}/*/{e}/{f}/{g}/{h}/{i}/{j}"}})
	if err != nil {
		t.Fatal(err)
	}
	var p Params
	if _, ok := tab.Match("", "GET", "/1/2/3/4/skip/5/6/7/8/9/10", &p); !ok {
		t.Fatal("got no match, want route 0")
	}
	var got []string
	for i := range p.Len() {
		k, v := p.At(i)
		got = append(got, k+"="+v)
	}
	want := []string{"a=1", "b=2", "c=3", "d=4", "e=5", "f=6", "g=7", "h=8", "i=9", "j=10"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("params beyond the inline eight (-want +got):\n%s", d)
	}
	if v, ok := p.Get("j"); !ok || v != "10" {
		t.Errorf("Get(j): got %q, %v; want 10, true", v, ok)
	}
	if v, ok := p.Get("nope"); ok {
		t.Errorf("Get(nope): got %q, true; want false", v)
	}
	p.Reset()
	if p.Len() != 0 {
		t.Errorf("after Reset: got Len %d, want 0", p.Len())
	}
	if _, ok := p.Get("a"); ok {
		t.Error("after Reset: got a, want nothing")
	}
	// A nil Params is allowed.
	if i, ok := tab.Match("", "GET", "/1/2/3/4/skip/5/6/7/8/9/10", nil); !ok || i != 0 {
		t.Errorf("got %d, %v; want 0, true", i, ok)
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	tab, err := Compile([]Spec{
		{Path: "/orders/{id}/items/{item}"},
		{Host: "*.example.com", Path: "/x/**"},
		{Host: "api.example.com", Path: "/y/{id}"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var p Params
	for _, r := range []struct{ host, path string }{
		{"", "/orders/1/items/2"},
		{"API.EXAMPLE.COM:443", "/y/3"},
		{"a.b.Example.com", "/x/1/2"},
		{"other.test", "/nope"},
	} {
		allocs := testing.AllocsPerRun(100, func() { tab.Match(r.host, "GET", r.path, &p) })
		if allocs != 0 {
			t.Errorf("%s%s: got %v allocations, want 0", r.host, r.path, allocs)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name    string
		specs   []Spec
		field   string // of the *PatternError; "" for an overlap
		overlap *OverlapError
	}{
		{"relative", []Spec{{Path: "orders"}}, "path", nil},
		{"empty path", []Spec{{Path: ""}}, "path", nil},
		{"rest not last", []Spec{{Path: "/a/**/b"}}, "path", nil},
		{"rest then trailing slash", []Spec{{Path: "/a/**/"}}, "path", nil},
		{"partial brace", []Spec{{Path: "/a/x{id}"}}, "path", nil},
		{"unclosed brace", []Spec{{Path: "/a/{id"}}, "path", nil},
		{"empty braces", []Spec{{Path: "/a/{}"}}, "path", nil},
		{"two params in a segment", []Spec{{Path: "/a/{x}{y}"}}, "path", nil},
		{"star in a literal", []Spec{{Path: "/a/x*"}}, "path", nil},
		{"bad param name", []Spec{{Path: "/a/{1x}"}}, "path", nil},
		{"param name with a dash", []Spec{{Path: "/a/{x-y}"}}, "path", nil},
		{"duplicate param", []Spec{{Path: "/a/{id}/{id}"}}, "path", nil},
		{"empty segment", []Spec{{Path: "/a//b"}}, "path", nil},
		{"non-canonical literal", []Spec{{Path: "/a/%7euser"}}, "path", nil},
		{"lower-case escape", []Spec{{Path: "/caf%c3%a9"}}, "path", nil},
		{"dot segment literal", []Spec{{Path: "/a/../b"}}, "path", nil},
		{"encoded slash literal", []Spec{{Path: "/a%2Fb"}}, "path", nil},
		{"host with port", []Spec{{Host: "api.example.com:443", Path: "/"}}, "host", nil},
		{"host wildcard in the middle", []Spec{{Host: "a.*.example.com", Path: "/"}}, "host", nil},
		{"host star alone", []Spec{{Host: "*", Path: "/"}}, "host", nil},
		{"host empty label", []Spec{{Host: "a..example.com", Path: "/"}}, "host", nil},
		{"host with a path", []Spec{{Host: "example.com/x", Path: "/"}}, "host", nil},
		{"host with Kelvin sign", []Spec{{Host: "\u212Aapi.example.com", Path: "/"}}, "host", nil},
		{"lower-case method", []Spec{{Methods: []string{"get"}, Path: "/"}}, "methods", nil},
		{"empty method", []Spec{{Methods: []string{""}, Path: "/"}}, "methods", nil},

		{"same path any method", []Spec{{Path: "/a"}, {Path: "/a"}}, "", &OverlapError{A: 0, B: 1, Method: "ANY"}},
		{"same shape other names", []Spec{{Path: "/a/{x}", Methods: get()}, {Path: "/a/{y}", Methods: []string{"POST", "GET"}}}, "", &OverlapError{A: 0, B: 1, Method: "GET"}},
		{"param and star", []Spec{{Path: "/a/*"}, {Path: "/a/{y}", Methods: []string{"PUT"}}}, "", &OverlapError{A: 0, B: 1, Method: "PUT"}},
		{"any method after a list", []Spec{{Path: "/a/**", Methods: []string{"PUT"}}, {Path: "/a/**"}}, "", &OverlapError{A: 0, B: 1, Method: "PUT"}},
		{"same host in other case", []Spec{{Host: "api.example.com", Path: "/"}, {Host: "API.example.com.", Path: "/"}}, "", &OverlapError{A: 0, B: 1, Method: "ANY"}},
		{"same wildcard", []Spec{{Path: "/x", Host: "*.example.com"}, {Path: "/y"}, {Path: "/x", Host: "*.example.com", Methods: get()}}, "", &OverlapError{A: 0, B: 2, Method: "GET"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := Compile(tt.specs)
			if err == nil {
				t.Fatalf("got table %v, want an error", tab)
			}
			if tt.overlap != nil {
				var oe *OverlapError
				if !errors.As(err, &oe) {
					t.Fatalf("got %T %v, want *OverlapError", err, err)
				}
				if d := cmp.Diff(tt.overlap, oe); d != "" {
					t.Fatalf("overlap (-want +got):\n%s", d)
				}
				return
			}
			var pe *PatternError
			if !errors.As(err, &pe) {
				t.Fatalf("got %T %v, want *PatternError", err, err)
			}
			if pe.Field != tt.field || pe.Index != len(tt.specs)-1 {
				t.Errorf("got field %q index %d, want %q index %d", pe.Field, pe.Index, tt.field, len(tt.specs)-1)
			}
		})
	}
}

func TestCompileAccepts(t *testing.T) {
	specs := []Spec{
		{Path: "/a/{x}", Methods: get()},
		{Path: "/a/{y}", Methods: []string{"POST"}}, // same shape, disjoint methods
		{Host: "h.example", Path: "/a/{z}"},         // same shape, other host
		{Host: "*.h.example", Path: "/a/{z}"},       // same shape, wildcard host
		{Path: "/a/{x}/"},                           // trailing slash: another shape
		{Path: "/a/**"},
		{Path: "/"},
		{Path: "/**"},
		{Host: "[2001:db8::1]", Path: "/"},
		{Host: "Mixed.Example.COM.", Path: "/"},
		{Path: "/caf%C3%A9;v=1/x:y@z"},
	}
	if _, err := Compile(specs); err != nil {
		t.Fatalf("got %v, want no error", err)
	}
}

func TestOverlapErrorMessage(t *testing.T) {
	got := (&OverlapError{A: 3, B: 7, Method: "GET"}).Error()
	want := "route 7 can never match GET requests: route 3 has the same host, path shape and method"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	got = (&PatternError{Index: 1, Field: "path", Value: "/a/**/b", Msg: "** may only be the last segment"}).Error()
	want = `path "/a/**/b": ** may only be the last segment`
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestExplain(t *testing.T) {
	tab, err := Compile([]Spec{
		0: {Path: "/orders/**"},
		1: {Path: "/orders/{id}", Methods: get()},
		2: {Host: "other.example", Path: "/orders/{id}"},
		3: {Path: "/admin/**"},
		4: {Path: "/orders/{id}", Methods: []string{"DELETE"}},
		5: {Path: "/orders/{id}/items"},
		6: {Path: "/orders"},
		7: {Host: "*.example", Path: "/orders/{id}"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, host, method, path string
		want                     []Candidate
	}{
		{"wildcard host wins", "API.example:443", "GET", "/orders/1", []Candidate{
			{Index: 0, Reason: "less specific than route 7"},
			{Index: 1, Reason: "less specific than route 7"},
			{Index: 2, Reason: "host mismatch"},
			{Index: 3, Reason: "path mismatch at segment 1", Segment: 1},
			{Index: 4, Reason: "method not allowed"},
			{Index: 5, Reason: "path mismatch at segment 3", Segment: 3},
			{Index: 6, Reason: "path mismatch at segment 2", Segment: 2},
			{Index: 7, Matched: true},
		}},
		{"param beats rest", "api.test", "GET", "/orders/1", []Candidate{
			{Index: 0, Reason: "less specific than route 1"},
			{Index: 1, Matched: true},
			{Index: 2, Reason: "host mismatch"},
			{Index: 3, Reason: "path mismatch at segment 1", Segment: 1},
			{Index: 4, Reason: "method not allowed"},
			{Index: 5, Reason: "path mismatch at segment 3", Segment: 3},
			{Index: 6, Reason: "path mismatch at segment 2", Segment: 2},
			{Index: 7, Reason: "host mismatch"},
		}},
		{"no route", "api.test", "GET", "/nope/", []Candidate{
			{Index: 0, Reason: "path mismatch at segment 1", Segment: 1},
			{Index: 1, Reason: "path mismatch at segment 1", Segment: 1},
			{Index: 2, Reason: "host mismatch"},
			{Index: 3, Reason: "path mismatch at segment 1", Segment: 1},
			{Index: 4, Reason: "path mismatch at segment 1", Segment: 1},
			{Index: 5, Reason: "path mismatch at segment 1", Segment: 1},
			{Index: 6, Reason: "path mismatch at segment 1", Segment: 1},
			{Index: 7, Reason: "host mismatch"},
		}},
		{"empty segment is no param", "api.test", "DELETE", "/orders/", []Candidate{
			{Index: 0, Matched: true},
			{Index: 1, Reason: "path mismatch at segment 2", Segment: 2},
			{Index: 2, Reason: "host mismatch"},
			{Index: 3, Reason: "path mismatch at segment 1", Segment: 1},
			{Index: 4, Reason: "path mismatch at segment 2", Segment: 2},
			{Index: 5, Reason: "path mismatch at segment 2", Segment: 2},
			{Index: 6, Reason: "path mismatch at segment 2", Segment: 2},
			{Index: 7, Reason: "host mismatch"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, tab.Explain(tt.host, tt.method, tt.path)); d != "" {
				t.Errorf("explain (-want +got):\n%s", d)
			}
		})
	}
}

// fuzzSpecs is the pool FuzzMatch draws tables from; some pairs overlap, so
// some draws do not compile.
var fuzzSpecs = []Spec{
	{Path: "/orders/**"},
	{Path: "/orders/{id}", Methods: []string{"GET"}},
	{Path: "/orders/{id}/items/{item}", Methods: []string{"GET"}},
	{Path: "/orders/special", Methods: []string{"GET"}},
	{Path: "/orders/*/notes"},
	{Path: "/"},
	{Path: "/orders/{id}", Methods: []string{"DELETE"}},
	{Host: "api.example.com", Path: "/orders/{id}"},
	{Host: "*.example.com", Path: "/orders/**"},
	{Path: "/files/"},
	{Path: "/files/**", Methods: []string{"PUT"}},
	{Path: "/**"},
	{Host: "*.eu.example.com", Methods: []string{"GET", "POST"}, Path: "/**"},
	{Host: "api.example.com", Methods: []string{"POST"}, Path: "/a/{x}/b"},
	{Path: "/a/{x}/b"},
	{Path: "/a/b/{y}", Methods: []string{"GET"}},
	{Path: "/a/*/**"},
	{Path: "/a/**", Methods: []string{"GET"}},
	{Path: "/a/b/c"},
	{Path: "/a/b/c", Methods: []string{"POST"}}, // overlaps the one before
	{Host: "API.Example.com", Methods: []string{"GET"}, Path: "/orders/**"},
	{Path: "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}/{j}"},
	{Path: "/orders"},
	{Host: "[::1]", Path: "/x/**"},
	{Host: "*.example.com", Methods: []string{"GET"}, Path: "/a/{x}/b"},
	{Path: "/a/{x}/b/"},
	{Path: "/{a}/**", Methods: []string{"GET"}},
	{Host: "*.com", Path: "/a/b/c"},
}

// refMatch is Match written the slow, obvious way from its documented order:
// each route that accepts the request gets a score, compared left to right.
func refMatch(specs []Spec, host, method, path string) int {
	h := refHost(host)
	best, bestScore := -1, []int(nil)
	for i, sp := range specs {
		score := []int{refHostScore(refHost(sp.Host), h)}
		if score[0] < 0 {
			continue
		}
		ranks, ok := refPath(sp.Path, path)
		if !ok || len(sp.Methods) > 0 && !slices.Contains(sp.Methods, method) {
			continue
		}
		score = append(score, ranks...)
		score = append(score, min(len(sp.Methods), 1))
		if best < 0 || slices.Compare(score, bestScore) > 0 {
			best, bestScore = i, score
		}
	}
	return best
}

func refHost(h string) string {
	if strings.HasPrefix(h, "[") && strings.Contains(h, "]") {
		h = h[1:strings.Index(h, "]")]
	} else if strings.Count(h, ":") == 1 {
		h = h[:strings.Index(h, ":")]
	}
	var b strings.Builder
	for _, c := range []byte(strings.TrimSuffix(h, ".")) {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// refHostScore: 1000 exact, the length of the domain for a wildcard, 0 any
// host, -1 no match.
func refHostScore(pattern, host string) int {
	switch {
	case pattern == "":
		return 0
	case len(host) > 253:
		return -1
	case pattern == host:
		return 1000
	case strings.HasPrefix(pattern, "*.") && len(host) > len(pattern)-1 && strings.HasSuffix(host, pattern[1:]):
		return len(pattern)
	}
	return -1
}

// refPath ranks each position of the path, the end included: 4 literal,
// 3 parameter, 2 the pattern ends, 1 "**".
func refPath(pattern, path string) ([]int, bool) {
	if !strings.HasPrefix(path, "/") {
		return nil, false
	}
	ps, segs := strings.Split(pattern[1:], "/"), strings.Split(path[1:], "/")
	var ranks []int
	for k := 0; k <= len(segs); k++ {
		switch {
		case k < len(ps) && ps[k] == "**":
			ranks = append(ranks, 1)
		case k == len(segs) && k == len(ps):
			ranks = append(ranks, 2)
		case k == len(segs) || k == len(ps):
			return nil, false
		case ps[k] == "*" || strings.HasPrefix(ps[k], "{"):
			if segs[k] == "" {
				return nil, false
			}
			ranks = append(ranks, 3)
		case ps[k] == segs[k]:
			ranks = append(ranks, 4)
		default:
			return nil, false
		}
		if ranks[len(ranks)-1] == 1 {
			for ; k < len(segs); k++ {
				ranks = append(ranks, 1)
			}
			break
		}
	}
	return ranks, true
}

func FuzzMatch(f *testing.F) {
	all := uint32(1)<<len(fuzzSpecs) - 1
	noOverlap := all &^ (1 << 19)
	if _, err := Compile(slices.Delete(slices.Clone(fuzzSpecs), 19, 20)); err != nil {
		f.Fatalf("got %v, want the pool without route 19 to compile", err)
	}
	for _, s := range []struct {
		mask               uint32
		host, method, path string
	}{
		{noOverlap, "api.example.com", "GET", "/orders/1"},
		{noOverlap, "", "POST", "/a/1/b"},
		{noOverlap, "x.api.example.com:80", "GET", "/a/1/b/"},
		{noOverlap, "fr.eu.example.com", "PUT", "/orders/special"},
		{noOverlap, "fr.eu.example.com", "GET", "/orders/1"},
		{noOverlap, "x.example.com", "GET", "/a/q/b"},
		{noOverlap, "", "GET", "/a/b/c/d"},
		{noOverlap, "", "GET", "/orders/1/items/"},
		{noOverlap, "", "GET", "/orders/../x"},
		{noOverlap, "[::1]:1", "GET", "/x"},
		{noOverlap, "", "GET", "/1/2/3/4/5/6/7/8/9/10"},
		{noOverlap, "a.com", "GET", "/a/b/c"},
		{all, "", "GET", "/"},
		{0x5555, "API.EXAMPLE.COM.", "DELETE", "/orders/9"},
		{0, "", "GET", "/"},
	} {
		f.Add(s.mask, s.host, s.method, s.path)
	}
	f.Fuzz(func(t *testing.T, mask uint32, host, method, path string) {
		var specs []Spec
		for i, sp := range fuzzSpecs {
			if mask&(1<<i) != 0 {
				specs = append(specs, sp)
			}
		}
		tab, err := Compile(specs)
		if err != nil {
			if _, ok := errors.AsType[*OverlapError](err); !ok {
				t.Fatalf("got %v, want a table or an overlap", err)
			}
			return
		}
		var p Params
		got, ok := tab.Match(host, method, path, &p)
		if want := refMatch(specs, host, method, path); got != want || ok != (got >= 0) {
			t.Fatalf("%s %s%s: got route %d, %v; want %d", method, host, path, got, ok, want)
		}
		if ok {
			checkParams(t, specs[got].Path, path, &p)
		}
		checkExplain(t, tab.Explain(host, method, path), got)

		// A matched path matches the same route once normalised again.
		if norm, err := NormalizePath(path); err == nil {
			i, ok := tab.Match(host, method, norm, nil)
			again, _ := NormalizePath(norm)
			j, ok2 := tab.Match(host, method, again, nil)
			if i != j || ok != ok2 && norm == path {
				t.Fatalf("%s: got %d then %d after normalising again", path, i, j)
			}
		}
	})
}

// checkParams checks each named parameter against its segment.
func checkParams(t *testing.T, pattern, path string, p *Params) {
	t.Helper()
	ps, segs := strings.Split(pattern[1:], "/"), strings.Split(path[1:], "/")
	want := map[string]string{}
	for k, s := range ps {
		if strings.HasPrefix(s, "{") {
			want[s[1:len(s)-1]] = segs[k]
		}
	}
	if d := cmp.Diff(want, paramMap(p)); d != "" {
		t.Fatalf("%s on %s: params (-want +got):\n%s", path, pattern, d)
	}
}

// checkExplain checks Explain agrees with Match.
func checkExplain(t *testing.T, cs []Candidate, winner int) {
	t.Helper()
	for i, c := range cs {
		switch {
		case c.Index != i:
			t.Fatalf("candidate %d has index %d", i, c.Index)
		case c.Matched != (i == winner):
			t.Fatalf("candidate %d: got matched %v, want %v (winner %d)", i, c.Matched, i == winner, winner)
		case c.Matched && c.Reason != "":
			t.Fatalf("candidate %d matched with reason %q", i, c.Reason)
		case !c.Matched && c.Reason == "":
			t.Fatalf("candidate %d: got no reason", i)
		case winner < 0 && strings.HasPrefix(c.Reason, "less specific"):
			t.Fatalf("candidate %d: %q, yet no route matched", i, c.Reason)
		}
	}
}

func BenchmarkMatch10000Routes(b *testing.B) {
	specs := make([]Spec, 0, 10000)
	for i := range 2000 {
		specs = append(specs,
			Spec{Path: fmt.Sprintf("/svc%d/orders/{id}", i), Methods: []string{"GET"}},
			Spec{Path: fmt.Sprintf("/svc%d/orders/{id}/items/{item}", i)},
			Spec{Path: fmt.Sprintf("/svc%d/admin/**", i)},
			Spec{Host: fmt.Sprintf("h%d.example.com", i), Path: "/x/{a}/**"},
			Spec{Host: fmt.Sprintf("*.t%d.example.com", i), Path: "/y/{a}/{b}", Methods: []string{"GET", "POST"}},
		)
	}
	specs = append(specs[:len(specs)-2], Spec{Path: "/{tenant}/orders/{id}/items/{item}/**"}, Spec{Path: "/**"})
	tab, err := Compile(specs)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name, host, path string
		want             int
	}{
		{"params", "api.example.com", "/svc1234/orders/42/items/7", 1234*5 + 1},
		{"exact-host", "h77.example.com", "/x/1/2/3", 77*5 + 3},
		{"wildcard-host-upper-case-port", "A.B.T1998.EXAMPLE.COM:8443", "/y/1/2", 1998*5 + 4},
		{"backtrack", "api.example.com", "/svc7/orders/42/items/7/8", len(specs) - 2},
		{"fallback", "api.example.com", "/nothing/here", len(specs) - 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var p Params
			if got, _ := tab.Match(bc.host, "GET", bc.path, &p); got != bc.want {
				b.Fatalf("got route %d, want %d", got, bc.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				tab.Match(bc.host, "GET", bc.path, &p)
			}
		})
	}
}
