package route

import (
	"fmt"
	"slices"
	"strings"
)

// Spec is one route's match as configured.
type Spec struct {
	// Host is "" for any host, an exact name ("api.example.com") or a
	// wildcard ("*.example.com", one or more labels). Lower case; the port
	// is not part of it.
	Host string
	// Methods are upper-case; empty means any method.
	Methods []string
	// Path is a pattern: literal segments, "{name}" for exactly one
	// non-empty segment, "*" for one unnamed segment, and "**" as the last
	// segment for zero or more segments. Literal segments are written in
	// canonical form (see NormalizePath). A trailing slash is significant:
	// "/a/{id}" does not match "/a/1/".
	Path string
}

// MaxParams is the most path parameters a pattern may name.
const MaxParams = 8

// Params are the path parameters of a match, held without allocation.
type Params struct {
	n      int
	names  [MaxParams]string
	values [MaxParams]string
}

// Get returns the value of the named parameter.
func (p *Params) Get(name string) (string, bool) {
	for i := range p.n {
		if p.names[i] == name {
			return p.values[i], true
		}
	}
	return "", false
}

// Len returns the number of parameters.
func (p *Params) Len() int { return p.n }

// At returns the i-th parameter.
func (p *Params) At(i int) (name, value string) { return p.names[i], p.values[i] }

// Reset empties p.
func (p *Params) Reset() { p.n = 0 }

// OverlapError reports two routes that match the same requests: B can never
// match Method because A, as specific, takes them.
type OverlapError struct {
	A, B   int
	Method string // an overlapping method, or "ANY"
}

func (e *OverlapError) Error() string {
	return fmt.Sprintf("routes %d and %d match the same %s requests", e.A, e.B, e.Method)
}

// PatternError is a malformed path pattern.
type PatternError struct {
	Index   int
	Pattern string
	Msg     string
}

func (e *PatternError) Error() string { return fmt.Sprintf("pattern %q: %s", e.Pattern, e.Msg) }

type segKind uint8

const (
	segLiteral segKind = iota
	segParam           // {name} or *
	segRest            // **
)

type segment struct {
	kind segKind
	text string // literal text, or parameter name ("" for *)
}

type leaf struct {
	index   int
	methods []string // nil: any
	names   []string // parameter names in order of capture ("" for *)
}

func (l *leaf) allows(method string) bool {
	return l.methods == nil || slices.Contains(l.methods, method)
}

type node struct {
	literal map[string]*node
	param   *node
	leaves  []leaf // routes ending here
	rest    []leaf // routes ending here with "**"
}

func (n *node) child(s segment) *node {
	switch s.kind {
	case segLiteral:
		if n.literal == nil {
			n.literal = map[string]*node{}
		}
		c := n.literal[s.text]
		if c == nil {
			c = &node{}
			n.literal[s.text] = c
		}
		return c
	default:
		if n.param == nil {
			n.param = &node{}
		}
		return n.param
	}
}

// Table is a compiled set of routes. It is immutable and safe for
// concurrent use.
type Table struct {
	specs     []Spec
	exact     map[string]*node
	wildcards []wildcard // longest suffix first
	any       *node
}

type wildcard struct {
	suffix string // ".example.com"
	root   *node
}

// parsePattern splits a pattern into segments.
func parsePattern(p string) ([]segment, error) {
	if p == "" || p[0] != '/' {
		return nil, fmt.Errorf("must start with /")
	}
	if p == "/" {
		return nil, nil
	}
	parts := strings.Split(p[1:], "/")
	segs := make([]segment, 0, len(parts))
	names := map[string]bool{}
	for i, s := range parts {
		switch {
		case s == "**":
			if i != len(parts)-1 {
				return nil, fmt.Errorf("** may only be the last segment")
			}
			segs = append(segs, segment{kind: segRest})
		case s == "*":
			segs = append(segs, segment{kind: segParam})
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			name := s[1 : len(s)-1]
			if !validParamName(name) {
				return nil, fmt.Errorf("bad parameter name %q: letters, digits and _", name)
			}
			if names[name] {
				return nil, fmt.Errorf("parameter {%s} named twice", name)
			}
			names[name] = true
			segs = append(segs, segment{kind: segParam, text: name})
		case strings.ContainsAny(s, "{}*"):
			return nil, fmt.Errorf("segment %q: a segment is either literal, a whole {param}, * or **", s)
		case s == "" && i != len(parts)-1:
			return nil, fmt.Errorf("empty segment (//)")
		default:
			if s != "" {
				if n, err := NormalizePath("/" + s); err != nil || n != "/"+s {
					return nil, fmt.Errorf("segment %q is not in canonical form (write it as the normalised request path would be)", s)
				}
			}
			segs = append(segs, segment{kind: segLiteral, text: s})
		}
	}
	if len(names) > MaxParams {
		return nil, fmt.Errorf("more than %d parameters", MaxParams)
	}
	return segs, nil
}

func validParamName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func validHost(h string) bool {
	if h == "" {
		return true
	}
	h = strings.TrimPrefix(h, "*.")
	if h == "" || strings.ContainsAny(h, "*/:") || h != strings.ToLower(h) {
		return false
	}
	return true
}

// shape is the key under which two specs match exactly the same paths.
func shape(segs []segment) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		switch s.kind {
		case segLiteral:
			b.WriteString(s.text)
		case segParam:
			b.WriteString("{}")
		case segRest:
			b.WriteString("**")
		}
	}
	return b.String()
}

// Compile builds a table. It refuses malformed patterns and two routes that
// match the same requests (same host, same path shape, overlapping methods):
// one of them could never match.
func Compile(specs []Spec) (*Table, error) {
	t := &Table{specs: specs, exact: map[string]*node{}, any: &node{}}
	wild := map[string]*node{}
	type seenKey struct{ host, shape string }
	seen := map[seenKey][]int{}
	for i, sp := range specs {
		segs, err := parsePattern(sp.Path)
		if err != nil {
			return nil, &PatternError{Index: i, Pattern: sp.Path, Msg: err.Error()}
		}
		if !validHost(sp.Host) {
			return nil, &PatternError{Index: i, Pattern: sp.Host, Msg: "bad host: want a lower-case name or *.domain"}
		}
		k := seenKey{sp.Host, shape(segs)}
		for _, j := range seen[k] {
			if m, ok := overlap(specs[j].Methods, sp.Methods); ok {
				return nil, &OverlapError{A: j, B: i, Method: m}
			}
		}
		seen[k] = append(seen[k], i)

		var root *node
		switch {
		case sp.Host == "":
			root = t.any
		case strings.HasPrefix(sp.Host, "*."):
			suffix := sp.Host[1:]
			if wild[suffix] == nil {
				wild[suffix] = &node{}
				t.wildcards = append(t.wildcards, wildcard{suffix: suffix, root: wild[suffix]})
			}
			root = wild[suffix]
		default:
			if t.exact[sp.Host] == nil {
				t.exact[sp.Host] = &node{}
			}
			root = t.exact[sp.Host]
		}
		n := root
		l := leaf{index: i}
		if len(sp.Methods) > 0 {
			l.methods = sp.Methods
		}
		rest := false
		for _, s := range segs {
			if s.kind == segRest {
				rest = true
				break
			}
			if s.kind == segParam {
				l.names = append(l.names, s.text)
			}
			n = n.child(s)
		}
		if rest {
			n.rest = insertLeaf(n.rest, l)
		} else {
			n.leaves = insertLeaf(n.leaves, l)
		}
	}
	slices.SortFunc(t.wildcards, func(a, b wildcard) int { return len(b.suffix) - len(a.suffix) })
	return t, nil
}

// insertLeaf keeps routes with a method list before any-method routes.
func insertLeaf(ls []leaf, l leaf) []leaf {
	ls = append(ls, l)
	slices.SortStableFunc(ls, func(a, b leaf) int {
		switch {
		case a.methods != nil && b.methods == nil:
			return -1
		case a.methods == nil && b.methods != nil:
			return 1
		}
		return 0
	})
	return ls
}

func overlap(a, b []string) (string, bool) {
	switch {
	case len(a) == 0 && len(b) == 0:
		return "ANY", true
	case len(a) == 0:
		return b[0], true
	case len(b) == 0:
		return a[0], true
	}
	for _, m := range a {
		if slices.Contains(b, m) {
			return m, true
		}
	}
	return "", false
}

// Match finds the route for a request. host is lower case without port,
// path is normalised (NormalizePath). The most specific route wins:
//
//  1. host: an exact host's routes, then wildcard hosts (longest suffix
//     first), then routes for any host; the first of these with a route
//     matching path and method wins;
//  2. path, segment by segment from the left: a literal segment beats
//     {param} or *, which beat **;
//  3. method: a route listing the method beats an any-method route.
//
// A route whose path matches but whose methods do not is passed over for a
// less specific route that accepts the method.
func (t *Table) Match(host, method, path string, params *Params) (int, bool) {
	if params != nil {
		params.Reset()
	}
	if root := t.exact[host]; root != nil {
		if i, ok := matchRoot(root, method, path, params); ok {
			return i, true
		}
	}
	for _, w := range t.wildcards {
		if len(host) > len(w.suffix) && strings.HasSuffix(host, w.suffix) {
			if i, ok := matchRoot(w.root, method, path, params); ok {
				return i, true
			}
		}
	}
	return matchRoot(t.any, method, path, params)
}

func matchRoot(root *node, method, path string, params *Params) (int, bool) {
	if path == "" || path[0] != '/' {
		return 0, false
	}
	var caps [MaxParams]string
	l := root.match(path[1:], path == "/", method, &caps, 0)
	if l == nil {
		return 0, false
	}
	if params != nil {
		for i, name := range l.names {
			if name != "" {
				params.names[params.n] = name
				params.values[params.n] = caps[i]
				params.n++
			}
		}
	}
	return l.index, true
}

// match walks the trie; rest is the path after the last consumed '/', and
// done is set when no segment is left.
func (n *node) match(rest string, done bool, method string, caps *[MaxParams]string, nc int) *leaf {
	if done {
		for i := range n.leaves {
			if n.leaves[i].allows(method) {
				return &n.leaves[i]
			}
		}
		for i := range n.rest {
			if n.rest[i].allows(method) {
				return &n.rest[i]
			}
		}
		return nil
	}
	seg, next, more := strings.Cut(rest, "/")
	if c := n.literal[seg]; c != nil {
		if l := c.match(next, !more, method, caps, nc); l != nil {
			return l
		}
	}
	if n.param != nil && seg != "" && nc < MaxParams {
		caps[nc] = seg
		if l := n.param.match(next, !more, method, caps, nc+1); l != nil {
			return l
		}
	}
	for i := range n.rest {
		if n.rest[i].allows(method) {
			return &n.rest[i]
		}
	}
	return nil
}

// Candidate is one route's verdict for a request, for explaining a match.
type Candidate struct {
	Index   int
	Matched bool   // the route that serves the request
	Reason  string // why it does not, when it does not
}

// Explain says, for every route, whether it serves the request and why not.
// It is for operators troubleshooting; it allocates freely.
func (t *Table) Explain(host, method, path string) []Candidate {
	winner, ok := t.Match(host, method, path, nil)
	out := make([]Candidate, len(t.specs))
	for i, sp := range t.specs {
		c := Candidate{Index: i}
		switch {
		case ok && i == winner:
			c.Matched = true
		case !hostMatches(sp.Host, host):
			c.Reason = "host mismatch"
		default:
			single, _ := Compile([]Spec{{Path: sp.Path}})
			if _, pm := single.Match("", "", path, nil); !pm {
				c.Reason = "path mismatch"
				break
			}
			if len(sp.Methods) > 0 && !slices.Contains(sp.Methods, method) {
				c.Reason = "method not allowed"
			} else if ok {
				c.Reason = fmt.Sprintf("less specific than route %d", winner)
			} else {
				c.Reason = "not selected"
			}
		}
		out[i] = c
	}
	return out
}

func hostMatches(pattern, host string) bool {
	switch {
	case pattern == "":
		return true
	case strings.HasPrefix(pattern, "*."):
		return len(host) > len(pattern)-1 && strings.HasSuffix(host, pattern[1:])
	}
	return pattern == host
}
