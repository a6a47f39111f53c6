package route

import (
	"fmt"
	"slices"
	"strings"
)

// inlineParams is how many parameters Params holds without allocating.
const inlineParams = 8

// Params are the named path parameters of a match, in pattern order. The
// first eight are held in place; more spill to the heap.
type Params struct {
	n     int
	fixed [inlineParams]param
	more  []param
}

type param struct{ name, value string }

// Get returns the value of the named parameter.
func (p *Params) Get(name string) (string, bool) {
	for i := range p.n {
		if n, v := p.At(i); n == name {
			return v, true
		}
	}
	return "", false
}

// Len returns the number of parameters.
func (p *Params) Len() int { return p.n }

// At returns the i-th parameter, 0 <= i < Len().
func (p *Params) At(i int) (name, value string) {
	if i < inlineParams {
		return p.fixed[i].name, p.fixed[i].value
	}
	q := p.more[i-inlineParams]
	return q.name, q.value
}

// Reset empties p, keeping its storage.
func (p *Params) Reset() {
	clear(p.fixed[:min(p.n, inlineParams)])
	clear(p.more)
	p.more = p.more[:0]
	p.n = 0
}

func (p *Params) add(name, value string) {
	if p.n < inlineParams {
		p.fixed[p.n] = param{name, value}
	} else {
		p.more = append(p.more, param{name, value})
	}
	p.n++
}

// OverlapError reports two routes that match the same requests: the same
// host, the same path shape (parameter names aside, "*" being "{name}") and
// at least one method in common. Route B can never match Method requests
// because route A takes them.
type OverlapError struct {
	A, B   int    // indexes of the Specs, A < B
	Method string // a method both accept; "ANY" when neither lists methods
}

func (e *OverlapError) Error() string {
	return fmt.Sprintf("route %d can never match %s requests: route %d has the same host, path shape and method", e.B, e.Method, e.A)
}

// Table is a compiled set of routes. It is immutable and safe for
// concurrent use.
type Table struct {
	routes []compiled       // by Spec index
	exact  map[string]*node // by host
	wild   map[string]*node // by suffix: ".example.com" for "*.example.com"
	any    *node
}

type compiled struct {
	host    string // canonical: "", "*.domain" or a name
	methods []string
	segs    []segment
}

// node is a segment trie node: the routes whose pattern starts with the
// segments that lead to it.
type node struct {
	literal map[string]*node
	param   *node
	end     []leaf // patterns that end here
	rest    []leaf // patterns whose "**" starts here
}

type leaf struct {
	index   int
	methods []string // nil: any
	params  []paramAt
}

type paramAt struct {
	seg  int // position in the path, from 0
	name string
}

func (l *leaf) allows(method string) bool {
	return l.methods == nil || slices.Contains(l.methods, method)
}

// pick returns the leaf that allows method; there is at most one.
func pick(ls []leaf, method string) *leaf {
	for i := range ls {
		if ls[i].allows(method) {
			return &ls[i]
		}
	}
	return nil
}

// Compile builds a table from specs; Match reports matches by index into
// specs. It refuses a malformed Spec with a *PatternError, and two specs
// that match the same requests with an *OverlapError (see OverlapError):
// one of them could never match. Two specs that differ only in disjoint
// method lists are fine.
func Compile(specs []Spec) (*Table, error) {
	t := &Table{
		routes: make([]compiled, len(specs)),
		exact:  map[string]*node{},
		wild:   map[string]*node{},
		any:    &node{},
	}
	type key struct{ host, shape string }
	seen := map[key][]int{}
	for i, sp := range specs {
		host, err := parseHost(sp.Host)
		if err != nil {
			return nil, &PatternError{Index: i, Field: "host", Value: sp.Host, Msg: err.Error()}
		}
		methods, err := parseMethods(sp.Methods)
		if err != nil {
			return nil, &PatternError{Index: i, Field: "methods", Value: strings.Join(sp.Methods, ","), Msg: err.Error()}
		}
		segs, err := parsePattern(sp.Path)
		if err != nil {
			return nil, &PatternError{Index: i, Field: "path", Value: sp.Path, Msg: err.Error()}
		}
		k := key{host, shape(segs)}
		for _, j := range seen[k] {
			if m, ok := overlap(t.routes[j].methods, methods); ok {
				return nil, &OverlapError{A: j, B: i, Method: m}
			}
		}
		seen[k] = append(seen[k], i)
		t.routes[i] = compiled{host: host, methods: methods, segs: segs}
		t.insert(i)
	}
	return t, nil
}

func (t *Table) insert(i int) {
	r := &t.routes[i]
	var n *node
	switch {
	case r.host == "":
		n = t.any
	case strings.HasPrefix(r.host, "*."):
		n = rootFor(t.wild, r.host[1:])
	default:
		n = rootFor(t.exact, r.host)
	}
	l := leaf{index: i, methods: r.methods}
	for k, s := range r.segs {
		switch s.kind {
		case segRest:
			n.rest = addLeaf(n.rest, l)
			return
		case segParam:
			if s.text != "" {
				l.params = append(l.params, paramAt{seg: k, name: s.text})
			}
			if n.param == nil {
				n.param = &node{}
			}
			n = n.param
		case segLiteral:
			if n.literal == nil {
				n.literal = map[string]*node{}
			}
			c := n.literal[s.text]
			if c == nil {
				c = &node{}
				n.literal[s.text] = c
			}
			n = c
		}
	}
	n.end = addLeaf(n.end, l)
}

func rootFor(m map[string]*node, key string) *node {
	n := m[key]
	if n == nil {
		n = &node{}
		m[key] = n
	}
	return n
}

// addLeaf adds a leaf in Spec order. Compile has made sure at most one
// leaf of a node accepts any given method.
func addLeaf(ls []leaf, l leaf) []leaf { return append(ls, l) }

// overlap returns a method both lists accept (nil accepts any).
func overlap(a, b []string) (string, bool) {
	switch {
	case a == nil && b == nil:
		return "ANY", true
	case a == nil:
		return b[0], true
	case b == nil:
		return a[0], true
	}
	for _, m := range b {
		if slices.Contains(a, m) {
			return m, true
		}
	}
	return "", false
}

// Match returns the index of the Spec that serves a request, or -1 and
// false. host is the request's Host, matched without regard to case, port,
// IPv6 brackets or a trailing dot; method is matched exactly; path must
// already be normalised by NormalizePath. When params is not nil it is
// reset and receives the named parameters of the match. Match does not
// allocate unless more than eight parameters are captured.
//
// The most specific route wins. In order:
//
//  1. Host. Routes of the exact host are tried first, then those of the
//     wildcard hosts that match, the longest domain first ("*.eu.example.com"
//     before "*.example.com"), then the any-host routes. The first of these
//     groups with a route accepting both path and method wins; a later group
//     is consulted only when no route of an earlier one accepts the request.
//  2. Path, compared segment by segment from the left: a literal segment
//     beats "{name}" and "*" (equals), which beat "**". Where one pattern
//     ends with the path and another's "**" matches no segment, the one that
//     ends wins: "/orders" beats "/orders/**" for "/orders".
//  3. Method: a route whose path matches but whose methods do not is
//     passed over, and the request goes to the next most specific route
//     that accepts its method. There are no ties to break by method:
//     Compile refuses two routes with the same host and path shape whose
//     methods overlap (an any-method route overlaps all others), so at
//     most one route of a shape accepts a given method.
func (t *Table) Match(host, method, path string, params *Params) (int, bool) {
	if params != nil {
		params.Reset()
	}
	l := t.lookup(host, method, path)
	if l == nil {
		return -1, false
	}
	if params != nil && len(l.params) > 0 {
		fill(params, l.params, path)
	}
	return l.index, true
}

func (t *Table) lookup(host, method, path string) *leaf {
	if path == "" || path[0] != '/' {
		return nil
	}
	h := hostOnly(host)
	if len(h) <= maxHostLen && (len(t.exact) > 0 || len(t.wild) > 0) {
		var buf [maxHostLen]byte
		n := copy(buf[:], h)
		for i := range n {
			if c := buf[i]; c >= 'A' && c <= 'Z' {
				buf[i] = c + 'a' - 'A'
			}
		}
		if r := t.exact[string(buf[:n])]; r != nil {
			if l := r.match(path, 1, method); l != nil {
				return l
			}
		}
		if len(t.wild) > 0 {
			// Longest domain first; the dot at i > 0 leaves a label in front.
			for i := 1; i < n; i++ {
				if buf[i] != '.' {
					continue
				}
				if r := t.wild[string(buf[i:n])]; r != nil {
					if l := r.match(path, 1, method); l != nil {
						return l
					}
				}
			}
		}
	}
	return t.any.match(path, 1, method)
}

// hostOnly strips a port, IPv6 brackets and a trailing dot.
func hostOnly(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.IndexByte(h, ':'); i >= 0 && strings.IndexByte(h[i+1:], ':') < 0 {
		h = h[:i] // one colon: a port; more: an IPv6 address
	}
	return strings.TrimSuffix(h, ".")
}

// match walks the trie depth first, most specific child first, so the
// first leaf found is the most specific. i is the start of the next path
// segment, or -1 when the path is consumed. Each node is visited at most
// once per call, so the work is bounded by the size of the trie.
func (n *node) match(path string, i int, method string) *leaf {
	if i < 0 {
		if l := pick(n.end, method); l != nil {
			return l
		}
		return pick(n.rest, method)
	}
	seg, next := path[i:], -1
	if j := strings.IndexByte(seg, '/'); j >= 0 {
		seg, next = seg[:j], i+j+1
	}
	if n.literal != nil {
		if c := n.literal[seg]; c != nil {
			if l := c.match(path, next, method); l != nil {
				return l
			}
		}
	}
	if n.param != nil && seg != "" {
		if l := n.param.match(path, next, method); l != nil {
			return l
		}
	}
	return pick(n.rest, method)
}

// fill captures the named parameters of a match.
func fill(p *Params, at []paramAt, path string) {
	k, start := 0, 1
	for _, a := range at {
		for ; k < a.seg; k++ {
			start += strings.IndexByte(path[start:], '/') + 1
		}
		seg := path[start:]
		if j := strings.IndexByte(seg, '/'); j >= 0 {
			seg = seg[:j]
		}
		p.add(a.name, seg)
	}
}
