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
	// Only a card number or a custom pattern can match a JSON number.
	m.sc.track = k == JSON && (p.builtin&(1<<idCard) != 0 || len(p.customs) > 0)
	if p.builtin != 0 {
		m.sc.finds = append(m.sc.finds, found{n: -1})
	}
	for range p.customs {
		m.sc.finds = append(m.sc.finds, found{n: -1})
	}
	m.sc.pem.found = -1
	m.sc.at.found = -1
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
	track  bool // JSON and a detector that can match outside a string
	buf    []byte
	own    []byte // storage of buf between writes
	base   int
	cur    int
	eof    bool
	inStr  bool // JSON: cur is inside a string
	esc    bool // JSON: the byte at cur is escaped
	finds  []found
	w      window // what the built-in detectors see
	counts []int  // by detector id
	// blocked is 1 + the id of the first blocking detector that matched.
	blocked int
	// at caches the search for '@': none in [from, found), or none in
	// [from, to) when found is -1.
	at struct{ from, to, found int }
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
	if len(sc.buf) == 0 {
		sc.buf = p // read in place; what is held is copied below
	} else {
		sc.buf = append(sc.buf, p...)
	}
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
	// Keep lookbehind bytes before cur and what is undecided, in the
	// scanner's own buffer.
	keep := max(sc.cur-lookbehind-sc.base, 0)
	sc.own = append(sc.own[:0], sc.buf[keep:]...)
	sc.buf = sc.own
	sc.base += keep
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
	w := &sc.w
	*w = window{b: b, eof: sc.eof, sc: sc}
	st := &sc.p.starts
	i := from - sc.base
	word := i > 0 && is(b[i-1], cAlnum)
	lastBS := -16 // the last backslash before i
	for k := max(i-6, 0); k < i; k++ {
		if b[k] == '\\' {
			lastBS = k
		}
	}
	for ; i < len(b); i++ {
		c := b[i]
		m := st[c]
		prevWord := word
		word = class[c]&cAlnum != 0
		if c == '\\' {
			lastBS = i
		}
		// Inside a word no detector starts, except at a PEM line's dashes
		// or right after an escape sequence (\n, \u003c).
		if m == 0 || prevWord && c != '-' && i-lastBS != 2 && i-lastBS != 6 {
			continue
		}
		// Cheap tests first, saving calls at most word starts: a key or a
		// signature after "=" (or a bare key with "==" at its end), an
		// address with an "@" close by.
		if i == 0 || b[i-1] != '=' {
			m &^= 1 << idSAS
			if i+88 <= len(b) && (b[i+86] != '=' || b[i+87] != '=') {
				m &^= 1 << idAzureKey
			}
		}
		if m&(1<<idEmail) != 0 {
			if at := sc.nextAt(i); at > i+64 || at < 0 && len(b) > i+64 {
				m &^= 1 << idEmail
			}
		}
		for m != 0 {
			id := bits.TrailingZeros16(m)
			m &= m - 1
			e, more := detectors[id](w, i)
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
	sc.follow(p)
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
	sc.follow(m)
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

// follow tracks JSON strings over input bytes, so that a match is known to
// be inside a string or not.
func (sc *scanner) follow(p []byte) {
	if !sc.track {
		return
	}
	i := 0
	for i < len(p) {
		if sc.esc {
			sc.esc = false
			i++
			continue
		}
		if !sc.inStr {
			k := bytes.IndexByte(p[i:], '"')
			if k < 0 {
				return
			}
			sc.inStr = true
			i += k + 1
			continue
		}
		for i < len(p) && p[i] != '"' && p[i] != '\\' {
			i++
		}
		if i == len(p) {
			return
		}
		if p[i] == '\\' {
			sc.esc = true
		} else {
			sc.inStr = false
		}
		i++
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

// nextAt returns the index in buf of the first '@' at or after i, or -1.
// Like nextPEMEnd it remembers what it found, so each byte is searched once.
func (sc *scanner) nextAt(i int) int {
	ai := sc.base + i
	c := &sc.at
	start := ai
	switch {
	case c.from <= ai && c.found >= ai:
		return c.found - sc.base
	case c.from <= ai && c.found < 0 && ai <= c.to:
		start = c.to // none in [c.from, c.to)
	default:
		c.from = ai
	}
	c.to, c.found = sc.base+len(sc.buf), -1
	k := bytes.IndexByte(sc.buf[start-sc.base:], '@')
	if k < 0 {
		return -1
	}
	c.found = start + k
	return c.found - sc.base
}
