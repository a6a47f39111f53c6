package dlp

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"unicode/utf8"
)

// MaxCustomMatch bounds the length of a custom pattern's matches: a stream
// holds back that many bytes while it waits to see whether one completes.
const MaxCustomMatch = 4096

// customRE is a custom detector. A pattern's matches must have a bounded
// length, which is what lets a stream be masked with bounded memory and
// give the same answer however it is cut.
type customRE struct {
	id     int
	re     *regexp.Regexp // the pattern alone
	ctx    *regexp.Regexp // one byte of context, then the pattern as group 1
	assert bool           // uses \b, ^, $ ...: needs the byte before its start
	maxLen int
}

// CheckRegex reports whether expr can be a custom detector's pattern.
func CheckRegex(expr string) error {
	_, err := compileCustom(expr)
	return err
}

func compileCustom(expr string) (*customRE, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		var se *syntax.Error
		if errors.As(err, &se) {
			return nil, fmt.Errorf("bad regex: %s: %q", se.Code, se.Expr)
		}
		return nil, fmt.Errorf("bad regex: %w", err)
	}
	tree, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("bad regex: %w", err)
	}
	tree = tree.Simplify()
	lo, hi, assert := lengths(tree)
	if hi < 0 {
		return nil, fmt.Errorf("regex %q has unbounded repetition (*, + or {n,}); a stream can only be matched by patterns of bounded length: write {1,64} and the like", expr)
	}
	if hi > MaxCustomMatch {
		return nil, fmt.Errorf("regex %q can match up to %d bytes; at most %d are allowed", expr, hi, MaxCustomMatch)
	}
	if lo == 0 {
		return nil, fmt.Errorf("regex %q can match the empty string", expr)
	}
	c := &customRE{re: re, assert: assert, maxLen: hi}
	if assert {
		c.ctx = regexp.MustCompile(`(?s:.)(` + expr + `)`)
	}
	return c, nil
}

// lengths returns the shortest and longest match of re in bytes (hi < 0:
// unbounded; past MaxCustomMatch, MaxCustomMatch+1) and whether it has
// empty-width assertions.
func lengths(re *syntax.Regexp) (lo, hi int, assert bool) {
	lo, hi, assert = lengths1(re)
	if hi > MaxCustomMatch {
		hi = MaxCustomMatch + 1
	}
	lo = min(lo, MaxCustomMatch+1)
	return lo, hi, assert
}

func lengths1(re *syntax.Regexp) (lo, hi int, assert bool) {
	runeMax := func(r rune) int {
		switch {
		case r < 0x80:
			return 1
		case r < 0x800:
			return 2
		case r < 0x10000:
			return 3
		}
		return 4
	}
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpNoMatch:
		return 0, 0, false
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return 0, 0, true
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			n := runeMax(r)
			if re.Flags&syntax.FoldCase != 0 {
				n = 4 // a case variant may be longer (k and the Kelvin sign)
			}
			lo++
			hi += n
		}
		return lo, hi, false
	case syntax.OpCharClass:
		top := rune(0)
		for k := 1; k < len(re.Rune); k += 2 {
			top = max(top, re.Rune[k])
		}
		return 1, runeMax(top), false
	case syntax.OpAnyCharNotNL, syntax.OpAnyChar:
		return 1, 4, false
	case syntax.OpCapture:
		return lengths(re.Sub[0])
	case syntax.OpConcat:
		for _, s := range re.Sub {
			l, h, a := lengths(s)
			lo += l
			assert = assert || a
			if hi >= 0 && h >= 0 {
				hi += h
			} else {
				hi = -1
			}
		}
		return lo, hi, assert
	case syntax.OpAlternate:
		lo = -1
		for _, s := range re.Sub {
			l, h, a := lengths(s)
			if lo < 0 || l < lo {
				lo = l
			}
			assert = assert || a
			if hi >= 0 && h >= 0 {
				hi = max(hi, h)
			} else {
				hi = -1
			}
		}
		return max(lo, 0), hi, assert
	case syntax.OpQuest:
		_, h, a := lengths(re.Sub[0])
		return 0, h, a
	case syntax.OpStar:
		_, _, a := lengths(re.Sub[0])
		return 0, -1, a
	case syntax.OpPlus:
		l, _, a := lengths(re.Sub[0])
		return l, -1, a
	case syntax.OpRepeat:
		l, h, a := lengths(re.Sub[0])
		if re.Max < 0 || h < 0 {
			return l * re.Min, -1, a
		}
		return l * re.Min, h * re.Max, a
	}
	return 0, -1, true
}

// find looks for the pattern's leftmost match at or after from. A match
// that starts less than maxLen bytes before the end of what has been read
// might still come out differently with more input, so it waits.
func (c *customRE) find(sc *scanner, from int, f *found) {
	b := sc.buf
	end := sc.base + len(b)
	undecided := end - c.maxLen // positions from here on may need more input
	if sc.eof {
		undecided = end
	}
	f.hold = max(from, runeStart(b, sc.base, max(from, undecided), sc.eof))
	i := from - sc.base
	var s, e int
	switch {
	case !c.assert:
		loc := c.re.FindIndex(b[i:])
		if loc == nil {
			return
		}
		s, e = from+loc[0], from+loc[1]
	case i == 0 && sc.base == 0:
		loc := c.re.FindIndex(b) // at the body's start: no byte before it
		if loc == nil {
			return
		}
		s, e = loc[0], loc[1]
	default:
		loc := c.ctx.FindSubmatchIndex(b[i-1:])
		if loc == nil {
			return
		}
		s, e = from-1+loc[2], from-1+loc[3]
	}
	if s < undecided && e > s {
		f.s, f.e, f.det = s, e, c.id
	}
}

// runeStart returns p, or the start of the UTF-8 sequence p is inside. The
// regexp package reads runes: a search must start where a reading of the
// whole body from its start would be, or a cut stream could be read
// differently from the whole. A sequence not yet complete counts as one.
func runeStart(b []byte, base, p int, eof bool) int {
	i := p - base
	if i >= len(b) || utf8.RuneStart(b[i]) {
		return p
	}
	for k := 1; k <= utf8.UTFMax-1 && i-k >= 0; k++ {
		c := b[i-k]
		if !utf8.RuneStart(c) {
			continue
		}
		if c < utf8.RuneSelf {
			return p
		}
		if !eof && !utf8.FullRune(b[i-k:]) {
			return p - k
		}
		if _, w := utf8.DecodeRune(b[i-k:]); w > k {
			return p - k
		}
		return p
	}
	return p
}
