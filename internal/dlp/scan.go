package dlp

import (
	"bytes"
	"math/bits"
)

// Masker masks one body fed to it in pieces. The output for a body does not
// depend on how it was cut: bytes are written out as soon as no match can
// start in them, and the rest waits for more input or the end.
type Masker struct {
	p   *Policy
	jp  *jsonMasker // nil: no JSON paths, or a text body
	sc  scanner
	tmp []byte
}

// NewMasker returns a Masker for one body of kind k.
func (p *Policy) NewMasker(k Kind) *Masker {
	m := &Masker{p: p}
	if k == JSON && len(p.paths) > 0 {
		m.jp = newJSONMasker(p.paths)
	}
	m.sc = scanner{p: p, json: k == JSON, counts: make([]int, len(p.names))}
	if p.builtin != 0 {
		m.sc.finds = append(m.sc.finds, found{n: -1})
	}
	for range p.customs {
		m.sc.finds = append(m.sc.finds, found{n: -1})
	}
	m.sc.pem.found = -1
	return m
}

// Append masks the next piece of the body, appending to dst what can be
// written so far.
func (m *Masker) Append(dst, p []byte) []byte {
	if m.jp != nil {
		m.tmp = m.jp.append(m.tmp[:0], p)
		p = m.tmp
	}
	return m.sc.write(dst, p, false)
}

// Finish ends the body, appending the rest of the masked output to dst.
func (m *Masker) Finish(dst []byte) []byte {
	return m.sc.write(dst, nil, true)
}

// Held is the number of input bytes read but not yet written out.
func (m *Masker) Held() int { return m.sc.base + len(m.sc.buf) - m.sc.cur }

// Result reports the matches so far.
func (m *Masker) Result() Result {
	var r Result
	add := func(name string, n int) {
		if n == 0 {
			return
		}
		if r.Counts == nil {
			r.Counts = map[string]int{}
		}
		r.Counts[name] += n
	}
	for id, n := range m.sc.counts {
		add(m.p.names[id], n)
	}
	if m.jp != nil {
		add(JSONPath, m.jp.count)
	}
	if m.sc.blocked > 0 {
		r.Blocked = m.p.names[m.sc.blocked-1]
	}
	return r
}

// scanner finds matches in a stream. Positions are absolute offsets in the
// body; buf holds the bytes from base on: lookbehind bytes of context before
// cur, and the bytes from cur on that are not decided yet.
type scanner struct {
	p      *Policy
	json   bool
	buf    []byte
	base   int
	cur    int
	eof    bool
	inStr  bool // JSON: cur is inside a string
	esc    bool // JSON: the byte at cur is escaped
	finds  []found
	counts []int // by detector id
	// blocked is 1 + the id of the first blocking detector that matched.
	blocked int
	// spans, when not nil, collects each match (tests).
	spans *[][2]int
	// pem caches the search for PEM END lines: none starts in [from, to)
	// before found (-1: none in the range).
	pem struct{ from, to, found int }
}

// found is what one finder (the built-ins together, or one custom pattern)
// knows: its leftmost match at or after from, or that none starts in
// [from, hold) and the bytes from hold on are undecided. It was computed
// with n bytes of input (eof: all of it).
type found struct {
	from, n int
	eof     bool
	s, e    int // the match; s < 0: none
	det     int
	hold    int
}

func (sc *scanner) write(dst, p []byte, eof bool) []byte {
	if len(sc.finds) == 0 {
		sc.eof = eof
		return append(dst, p...)
	}
	sc.buf = append(sc.buf, p...)
	sc.eof = eof
	end := sc.base + len(sc.buf)
	for {
		best := -1
		hold := end
		for k := range sc.finds {
			f := &sc.finds[k]
			if !f.valid(sc.cur, end, eof) {
				from := sc.cur
				if f.n >= 0 && f.s < 0 && f.hold > from {
					from = f.hold // nothing starts in [f.from, f.hold)
				}
				sc.find(k, from, f)
			}
			if f.s >= 0 {
				if best < 0 || f.s < sc.finds[best].s {
					best = k
				}
			} else if f.hold < hold {
				hold = f.hold
			}
		}
		if best >= 0 && sc.finds[best].s < hold {
			f := &sc.finds[best]
			dst = sc.replace(dst, f.s, f.e, f.det)
			continue
		}
		dst = sc.pass(dst, hold)
		break
	}
	if keep := sc.cur - lookbehind - sc.base; keep > 0 {
		n := copy(sc.buf, sc.buf[keep:])
		sc.buf = sc.buf[:n]
		sc.base += keep
	}
	return dst
}

func (f *found) valid(cur, n int, eof bool) bool {
	if f.n < 0 {
		return false
	}
	if f.s >= 0 {
		return f.s >= cur
	}
	return f.n == n && f.eof == eof && f.hold >= cur
}

func (sc *scanner) find(k, from int, f *found) {
	end := sc.base + len(sc.buf)
	*f = found{from: from, n: end, eof: sc.eof, s: -1}
	if sc.p.builtin != 0 {
		if k == 0 {
			sc.findBuiltin(from, f)
			return
		}
		k--
	}
	sc.p.customs[k].find(sc, from, f)
}

// findBuiltin tries the enabled built-in detectors at each position from
// from on, in the order of builtinNames.
func (sc *scanner) findBuiltin(from int, f *found) {
	b := sc.buf
	w := window{b: b, eof: sc.eof, sc: sc}
	enabled := sc.p.builtin
	for i := from - sc.base; i < len(b); i++ {
		c := b[i]
		m := starts[c] & enabled
		if m == 0 {
			continue
		}
		// Inside a word no detector starts, except at a PEM line's dashes or
		// right after an escape sequence.
		if i > 0 && is(b[i-1], cAlnum) && c != '-' && !(i >= 2 && b[i-2] == '\\') && !(i >= 6 && b[i-6] == '\\') {
			continue
		}
		for m != 0 {
			id := bits.TrailingZeros16(m)
			m &= m - 1
			e, more := detectors[id](&w, i)
			if more {
				f.hold = sc.base + i
				return
			}
			if e > i {
				f.s, f.e, f.det = sc.base+i, sc.base+e, id
				return
			}
		}
	}
	f.hold = sc.base + len(b)
}

// pass writes the input up to the absolute position to as it is.
func (sc *scanner) pass(dst []byte, to int) []byte {
	if to <= sc.cur {
		return dst
	}
	p := sc.buf[sc.cur-sc.base : to-sc.base]
	dst = append(dst, p...)
	sc.track(p)
	sc.cur = to
	return dst
}

// replace writes the token of detector det in place of the match [s, e).
func (sc *scanner) replace(dst []byte, s, e, det int) []byte {
	dst = sc.pass(dst, s)
	quote := sc.json && !sc.inStr // a JSON number: the token becomes a string
	if quote {
		dst = append(dst, '"')
	}
	m := sc.buf[s-sc.base : e-sc.base]
	if det == idCard && sc.p.last4 && sc.p.builtin&(1<<idCard) != 0 {
		var last [4]byte
		n := 0
		for k := len(m) - 1; k >= 0 && n < 4; k-- {
			if is(m[k], cDigit) {
				n++
				last[4-n] = m[k]
			}
		}
		dst = append(dst, "[REDACTED:credit_card:****"...)
		dst = append(dst, last[:]...)
		dst = append(dst, ']')
	} else {
		dst = append(dst, sc.p.tokens[det]...)
	}
	if quote {
		dst = append(dst, '"')
	}
	sc.track(m)
	sc.cur = e
	sc.counts[det]++
	if sc.spans != nil {
		*sc.spans = append(*sc.spans, [2]int{s, e})
	}
	if sc.blocked == 0 && sc.p.actions[det] == Block {
		sc.blocked = det + 1
	}
	return dst
}

// track follows JSON strings over input bytes, so that a match is known to
// be inside a string or not.
func (sc *scanner) track(p []byte) {
	if !sc.json {
		return
	}
	for len(p) > 0 {
		if sc.esc {
			sc.esc = false
			p = p[1:]
			continue
		}
		if !sc.inStr {
			k := bytes.IndexByte(p, '"')
			if k < 0 {
				return
			}
			sc.inStr = true
			p = p[k+1:]
			continue
		}
		k := bytes.IndexAny(p, `"\`)
		if k < 0 {
			return
		}
		if p[k] == '\\' {
			sc.esc = true
		} else {
			sc.inStr = false
		}
		p = p[k+1:]
	}
}

// nextPEMEnd returns the index in buf of the first "-----END " that starts at
// or after from and ends by to, or -1. Repeated searches from the BEGIN lines
// of one body share what earlier ones found, so each byte is searched once.
func (sc *scanner) nextPEMEnd(from, to int) int {
	af, at := sc.base+from, sc.base+to
	c := &sc.pem
	start := af
	switch {
	case c.from <= af && c.found >= af:
		// The first END at or after c.from, hence at or after af.
		if c.found+len(pemEnd) <= at {
			return c.found - sc.base
		}
		return -1
	case c.from <= af && c.found < 0 && af <= c.to:
		// None ends in [c.from, c.to): go on from there.
		if at <= c.to {
			return -1
		}
		start = max(af, c.to-len(pemEnd)+1)
	default:
		c.from = af
	}
	c.to, c.found = at, -1
	if start >= at {
		return -1
	}
	k := bytes.Index(sc.buf[start-sc.base:to], pemEnd)
	if k < 0 {
		return -1
	}
	c.found = start + k
	return c.found - sc.base
}
