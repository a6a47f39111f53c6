package dlp

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Bounds of JSON path masking.
const (
	maxPathSegments = 32
	maxJSONDepth    = 512 // deeper values are passed through, not path-masked
	maxKeyBytes     = 256 // longer member names match only wildcards
)

// A jsonPath is a parsed path: $.customer.ssn, $.items[*].card,
// $['odd key'][0], $..password (at any depth).
type jsonPath struct {
	src  string
	segs []pathSeg
}

type segKind uint8

const (
	segName    segKind = iota // .name or ['name']: an object member
	segIndex                  // [n]: an array element
	segAny                    // .* or [*]: any member or element
	segDescend                // ..: any number of levels, then the next segment
)

type pathSeg struct {
	kind  segKind
	name  string
	index int
}

// ParsePath parses a JSON path of the subset supported: $ followed by
// .name, ['name'], [n], .*, [*] and ..name segments.
func ParsePath(s string) (jsonPath, error) {
	p := jsonPath{src: s}
	bad := func(why string) (jsonPath, error) {
		return jsonPath{}, fmt.Errorf("bad JSON path %q: %s (want $.a.b, $.items[*].card, $['a b'][0] or $..name)", s, why)
	}
	if !strings.HasPrefix(s, "$") {
		return bad("it must start with $")
	}
	rest := s[1:]
	for rest != "" {
		switch {
		case strings.HasPrefix(rest, "."):
			if strings.HasPrefix(rest, "..") {
				p.segs = append(p.segs, pathSeg{kind: segDescend})
				rest = rest[1:]
				if strings.HasPrefix(rest, ".[") {
					rest = rest[1:]
					continue
				}
			}
			rest = rest[1:]
			if strings.HasPrefix(rest, "*") {
				p.segs = append(p.segs, pathSeg{kind: segAny})
				rest = rest[1:]
				continue
			}
			n := 0
			for n < len(rest) && (rest[n] >= 'a' && rest[n] <= 'z' || rest[n] >= 'A' && rest[n] <= 'Z' || rest[n] >= '0' && rest[n] <= '9' || rest[n] == '_' || rest[n] == '-' || rest[n] == '$' || rest[n] == '@') {
				n++
			}
			if n == 0 {
				return bad("a name must follow the dot (quote other names: ['a b'])")
			}
			p.segs = append(p.segs, pathSeg{kind: segName, name: rest[:n]})
			rest = rest[n:]
		case strings.HasPrefix(rest, "["):
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return bad("unclosed [")
			}
			in := rest[1:end]
			rest = rest[end+1:]
			switch {
			case in == "*":
				p.segs = append(p.segs, pathSeg{kind: segAny})
			case len(in) >= 2 && (in[0] == '\'' || in[0] == '"') && in[len(in)-1] == in[0]:
				name := in[1 : len(in)-1]
				if strings.ContainsAny(name, `'"\`) {
					return bad("quotes and backslashes cannot be part of a quoted name")
				}
				p.segs = append(p.segs, pathSeg{kind: segName, name: name})
			default:
				i, err := strconv.Atoi(in)
				if err != nil || i < 0 || strings.HasPrefix(in, "+") {
					return bad(fmt.Sprintf("[%s] is not an index, * or a quoted name", in))
				}
				p.segs = append(p.segs, pathSeg{kind: segIndex, index: i})
			}
		default:
			return bad(fmt.Sprintf("unexpected %q", rest[:1]))
		}
	}
	switch {
	case len(p.segs) == 0:
		return bad("$ alone is the whole body: use block instead")
	case len(p.segs) > maxPathSegments:
		return bad(fmt.Sprintf("more than %d segments", maxPathSegments))
	case p.segs[len(p.segs)-1].kind == segDescend:
		return bad("it ends in ..")
	}
	return p, nil
}

func (p jsonPath) String() string { return p.src }

// elem is one step of a value's location: a member name or an index.
type elem struct {
	key   []byte // nil for an array element
	long  bool   // a member name longer than maxKeyBytes
	index int
}

func (sg pathSeg) matches(e elem) bool {
	switch sg.kind {
	case segAny:
		return true
	case segName:
		return e.key != nil && !e.long && string(e.key) == sg.name
	case segIndex:
		return e.key == nil && e.index == sg.index
	}
	return false
}

// The paths are matched as automata: a state set (bit i: the first i
// segments matched) per path, stepped once per level.

func closure(segs []pathSeg, st uint64) uint64 {
	for i, sg := range segs {
		if st&(1<<i) != 0 && sg.kind == segDescend {
			st |= 1 << (i + 1)
		}
	}
	return st
}

func step(segs []pathSeg, st uint64, e elem) uint64 {
	var next uint64
	for i, sg := range segs {
		if st&(1<<i) == 0 {
			continue
		}
		if sg.kind == segDescend {
			next |= 1 << i
		} else if sg.matches(e) {
			next |= 1 << (i + 1)
		}
	}
	return closure(segs, next)
}

// jsonMasker replaces the values at its paths, streaming. A body that is
// not JSON (or JSON nested deeper than maxJSONDepth) is passed through from
// where it stops being readable; the detectors still see it.
type jsonMasker struct {
	paths []jsonPath
	count int
	state jstate
	stack []frame
	arena []uint64 // the state sets of each frame, len(paths) each
	root  []uint64
	next  []uint64 // scratch: the state sets of the value starting

	key    []byte // the member name being read
	keyEsc bool   // the name has escapes
	esc    bool   // in a string: the next byte is escaped
	// skip is the depth of the masked value being dropped (0: a scalar).
	skipDepth int
	skipStr   bool
	// deep counts nesting past maxJSONDepth, passed through.
	deep int
}

type frame struct {
	obj   bool
	index int
	live  bool // some path can still match below
}

type jstate uint8

const (
	jValue        jstate = iota // a value is next
	jValueOrClose               // after [: a value or ]
	jAfter                      // after a value: , or a closing bracket
	jKey                        // after { or ,: a member name or }
	jKeyStr                     // in a member name
	jColon                      // after a member name
	jString                     // in a string value
	jScalar                     // in a number or literal
	jSkip                       // in a masked value, dropped
	jDeep                       // too deep: passed through
	jBroken                     // not JSON: passed through
)

func newJSONMasker(paths []jsonPath) *jsonMasker {
	m := &jsonMasker{paths: paths, root: make([]uint64, len(paths)), next: make([]uint64, len(paths))}
	for i, p := range paths {
		m.root[i] = closure(p.segs, 1)
	}
	return m
}

var jsonMaskToken = []byte(`"[REDACTED:json_path]"`)

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isScalar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.'
}

// states returns the state sets of the value about to start in the
// current container (or at the top level).
func (m *jsonMasker) states(d int) []uint64 {
	if d == 0 {
		return m.root
	}
	n := len(m.paths)
	return m.arena[(d-1)*n : d*n]
}

// startValue decides, at the first byte of a value, whether it is masked:
// it returns whether to drop the value.
func (m *jsonMasker) startValue(next []uint64) bool {
	d := len(m.stack)
	if d > 0 && !m.stack[d-1].live {
		clear(next)
		return false
	}
	var e elem
	if d > 0 {
		f := &m.stack[d-1]
		if f.obj {
			e.key = m.key
			if m.keyEsc {
				var s string
				if json.Unmarshal(append(append([]byte{'"'}, m.key...), '"'), &s) == nil {
					e.key = []byte(s)
				}
			}
			e.long = len(m.key) > maxKeyBytes
			if e.key == nil {
				e.key = []byte{}
			}
		} else {
			e.index = f.index
		}
	}
	parent := m.states(d)
	for i, p := range m.paths {
		st := parent[i]
		if d > 0 {
			st = step(p.segs, st, e)
		}
		if st&(1<<len(p.segs)) != 0 {
			return true
		}
		next[i] = st
	}
	return false
}

func (m *jsonMasker) push(obj bool, next []uint64) bool {
	if len(m.stack) >= maxJSONDepth {
		return false
	}
	live := false
	for _, s := range next {
		live = live || s != 0
	}
	m.stack = append(m.stack, frame{obj: obj, live: live})
	m.arena = append(m.arena, next...)
	return true
}

func (m *jsonMasker) pop(close byte) bool {
	d := len(m.stack)
	if d == 0 || m.stack[d-1].obj != (close == '}') {
		return false
	}
	m.stack = m.stack[:d-1]
	m.arena = m.arena[:(d-1)*len(m.paths)]
	return true
}

// append masks p, appending the output to dst.
func (m *jsonMasker) append(dst, p []byte) []byte {
	nx := m.next
	i := 0
	for i < len(p) {
		c := p[i]
		switch m.state {
		case jBroken:
			return append(dst, p[i:]...)
		case jString, jKeyStr:
			// Copy up to the next quote or backslash.
			j := i
			for j < len(p) && !m.esc && p[j] != '"' && p[j] != '\\' {
				j++
			}
			if m.state == jKeyStr && len(m.key) <= maxKeyBytes {
				m.key = append(m.key, p[i:min(j, i+maxKeyBytes+1-len(m.key))]...)
			}
			dst = append(dst, p[i:j]...)
			if j == len(p) {
				return dst
			}
			c = p[j]
			dst = append(dst, c)
			if m.state == jKeyStr && len(m.key) <= maxKeyBytes && (m.esc || c != '"') {
				m.key = append(m.key, c)
			}
			switch {
			case m.esc:
				m.esc = false
			case c == '\\':
				m.esc = true
				if m.state == jKeyStr {
					m.keyEsc = true
				}
			case m.state == jKeyStr:
				m.state = jColon
			default:
				m.state = jAfter
			}
			i = j + 1
			continue
		case jSkip:
			i = m.skip(p, i)
			continue
		case jDeep:
			dst, i = m.passDeep(dst, p, i)
			continue
		}
		i++
		if isSpace(c) && m.state != jScalar {
			dst = append(dst, c)
			continue
		}
		switch m.state {
		case jValue, jValueOrClose:
			if c == ']' && m.state == jValueOrClose {
				m.pop(c)
				m.state = jAfter
				dst = append(dst, c)
				continue
			}
			if c != '"' && c != '{' && c != '[' && c != '-' && !(c >= '0' && c <= '9') && c != 't' && c != 'f' && c != 'n' {
				m.state = jBroken
				dst = append(dst, c)
				continue
			}
			if m.startValue(nx) {
				m.count++
				dst = append(dst, jsonMaskToken...)
				m.state, m.skipDepth, m.skipStr, m.esc = jSkip, 0, c == '"', false
				if c == '{' || c == '[' {
					m.skipDepth = 1
				}
				continue
			}
			dst = append(dst, c)
			switch {
			case c == '{':
				if !m.push(true, nx) {
					m.state, m.deep, m.skipStr, m.esc = jDeep, 1, false, false
					continue
				}
				m.state = jKey
			case c == '[':
				if !m.push(false, nx) {
					m.state, m.deep, m.skipStr, m.esc = jDeep, 1, false, false
					continue
				}
				m.state = jValueOrClose
			case c == '"':
				m.state = jString
			case isScalar(c):
				m.state = jScalar
			default:
				m.state = jBroken
			}
		case jScalar:
			if isScalar(c) {
				dst = append(dst, c)
				continue
			}
			m.state = jAfter
			i-- // the byte ends the scalar and is read again
		case jAfter:
			dst = append(dst, c)
			d := len(m.stack)
			switch {
			case c == ',' && d > 0:
				if m.stack[d-1].obj {
					m.state = jKey
				} else {
					m.stack[d-1].index++
					m.state = jValue
				}
			case (c == '}' || c == ']') && d > 0:
				if !m.pop(c) {
					m.state = jBroken
				}
			case d == 0:
				// Another top-level value (JSON lines).
				dst = dst[:len(dst)-1]
				m.state = jValue
				i--
			default:
				m.state = jBroken
			}
		case jKey:
			dst = append(dst, c)
			switch c {
			case '"':
				m.state, m.key, m.keyEsc = jKeyStr, m.key[:0], false
			case '}':
				if !m.pop(c) {
					m.state = jBroken
				}
				if m.state != jBroken {
					m.state = jAfter
				}
			default:
				m.state = jBroken
			}
		case jColon:
			dst = append(dst, c)
			if c == ':' {
				m.state = jValue
			} else {
				m.state = jBroken
			}
		}
	}
	return dst
}

// skip drops the masked value's bytes from p[i:], returning where it
// stopped: at the end of p or after the value.
func (m *jsonMasker) skip(p []byte, i int) int {
	for ; i < len(p); i++ {
		c := p[i]
		switch {
		case m.esc:
			m.esc = false
		case m.skipStr:
			if c == '\\' {
				m.esc = true
			} else if c == '"' {
				m.skipStr = false
				if m.skipDepth == 0 {
					m.state = jAfter
					return i + 1
				}
			}
		case m.skipDepth == 0: // a scalar
			if !isScalar(c) {
				m.state = jAfter
				return i // the byte after the scalar is read as usual
			}
		case c == '"':
			m.skipStr = true
		case c == '{' || c == '[':
			m.skipDepth++
		case c == '}' || c == ']':
			m.skipDepth--
			if m.skipDepth == 0 {
				m.state = jAfter
				return i + 1
			}
		}
	}
	return i
}

// passDeep passes a value nested too deep through, up to where it closes.
func (m *jsonMasker) passDeep(dst, p []byte, i int) ([]byte, int) {
	start := i
	for ; i < len(p); i++ {
		c := p[i]
		switch {
		case m.esc:
			m.esc = false
		case m.skipStr:
			if c == '\\' {
				m.esc = true
			} else if c == '"' {
				m.skipStr = false
			}
		case c == '"':
			m.skipStr = true
		case c == '{' || c == '[':
			m.deep++
		case c == '}' || c == ']':
			m.deep--
			if m.deep == 0 {
				m.state = jAfter
				return append(dst, p[start:i+1]...), i + 1
			}
		}
	}
	return append(dst, p[start:i]...), i
}
