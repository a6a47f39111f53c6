// Package route normalises request paths and matches them against the
// gateway's route table.
package route

import (
	"strings"
	"unicode/utf8"
)

// PathError is a request path the gateway refuses. Reason is a stable code
// for the client; Detail says what was found.
type PathError struct {
	Reason string
	Detail string
}

func (e *PathError) Error() string { return "bad request path: " + e.Detail }

// Reasons of PathError.
const (
	ReasonNotAbsolute    = "not_absolute"
	ReasonBadEncoding    = "bad_path_encoding"
	ReasonEncodedSlash   = "encoded_slash"
	ReasonDoubleEncoding = "double_encoding"
	ReasonInvalidUTF8    = "invalid_utf8"
	ReasonControl        = "control_character"
	ReasonBackslash      = "backslash"
	ReasonDotParameter   = "dot_segment_parameter"
)

const upperHex = "0123456789ABCDEF"

// pchar reports whether c may appear unescaped in a canonical path segment:
// RFC 3986 unreserved, sub-delims, ':' and '@'.
func pchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@':
		return true
	}
	return false
}

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// isDotSegment reports whether seg is "." or "..", or one of them followed by
// ";parameters" (which some servers, Tomcat among them, treat as the same).
func isDotSegment(seg string) (dot bool, withParam bool) {
	base, _, hasParam := strings.Cut(seg, ";")
	if base == "." || base == ".." {
		return !hasParam, hasParam
	}
	return false, false
}

// canonical reports whether p is already in normal form, so NormalizePath can
// return it without allocating.
func canonical(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			if !pchar(p[i]) {
				return false
			}
			continue
		}
		seg := p[segStart:i]
		if seg == "" && i < len(p) {
			return false // "//"
		}
		if dot, param := isDotSegment(seg); dot || param {
			return false
		}
		segStart = i + 1
	}
	return true
}

// NormalizePath returns the canonical form of an escaped request path: the
// one path used both to match routes and as the path the upstream receives,
// so no encoding can make the two disagree.
//
// Percent-encoded unreserved characters are decoded and other escapes are
// upper-cased; duplicate slashes are merged; "." and ".." segments are
// resolved after decoding ("%2e%2e" is ".."), never above the root; a
// trailing slash is kept. Refused outright: encoded slash or backslash,
// a literal backslash, double encoding ("%252e"), NUL and other control
// characters, bytes that do not decode to valid UTF-8 (overlong forms such
// as "%c0%ae"), and dot segments with parameters ("..;").
func NormalizePath(p string) (string, error) {
	if canonical(p) {
		return p, nil
	}
	if p == "" || p[0] != '/' {
		return "", &PathError{ReasonNotAbsolute, "the path must start with /"}
	}
	segs := make([]string, 0, 8)
	var seg, raw strings.Builder // canonical escaped segment; decoded bytes
	trailing := false
	flush := func(last bool) error {
		s := seg.String()
		// Double encoding is judged on the output: "%25" followed by two
		// hex digits, however they were written ("%250%61" becomes "%250a").
		for i := strings.Index(s, "%25"); i >= 0; {
			if i+4 < len(s) {
				if _, ok1 := unhex(s[i+3]); ok1 {
					if _, ok2 := unhex(s[i+4]); ok2 {
						return &PathError{ReasonDoubleEncoding, "a double percent-encoding (%25XX)"}
					}
				}
			}
			j := strings.Index(s[i+3:], "%25")
			if j < 0 {
				break
			}
			i += 3 + j
		}
		if !utf8.ValidString(raw.String()) {
			return &PathError{ReasonInvalidUTF8, "the path does not decode to valid UTF-8"}
		}
		seg.Reset()
		raw.Reset()
		dot, param := isDotSegment(s)
		switch {
		case param:
			return &PathError{ReasonDotParameter, "a dot segment with parameters (..;)"}
		case s == "":
			trailing = last && len(segs) > 0
		case dot && s == ".":
			trailing = last
		case dot:
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
			trailing = last
		default:
			segs = append(segs, s)
			trailing = false
		}
		return nil
	}
	for i := 1; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			if err := flush(false); err != nil {
				return "", err
			}
			continue
		case c == '%':
			if i+2 >= len(p) {
				return "", &PathError{ReasonBadEncoding, "a truncated percent-escape"}
			}
			h, ok1 := unhex(p[i+1])
			l, ok2 := unhex(p[i+2])
			if !ok1 || !ok2 {
				return "", &PathError{ReasonBadEncoding, "an invalid percent-escape"}
			}
			v := h<<4 | l
			i += 2
			switch {
			case v == '/':
				return "", &PathError{ReasonEncodedSlash, "an encoded slash (%2F)"}
			case v == '\\':
				return "", &PathError{ReasonBackslash, "an encoded backslash (%5C)"}
			case v < 0x20 || v == 0x7f:
				return "", &PathError{ReasonControl, "an encoded control character"}
			case v == '%':
				if i+2 < len(p) {
					if _, ok := unhex(p[i+1]); ok {
						if _, ok := unhex(p[i+2]); ok {
							return "", &PathError{ReasonDoubleEncoding, "a double percent-encoding (%25XX)"}
						}
					}
				}
			case unreserved(v):
				seg.WriteByte(v)
				raw.WriteByte(v)
				continue
			}
			seg.WriteByte('%')
			seg.WriteByte(upperHex[v>>4])
			seg.WriteByte(upperHex[v&15])
			raw.WriteByte(v)
			continue
		case c == '\\':
			return "", &PathError{ReasonBackslash, "a backslash"}
		case c < 0x20 || c == 0x7f:
			return "", &PathError{ReasonControl, "a control character"}
		case pchar(c):
			seg.WriteByte(c)
			raw.WriteByte(c)
		default:
			// Anything else (non-ASCII, space, quotes...) is escaped.
			seg.WriteByte('%')
			seg.WriteByte(upperHex[c>>4])
			seg.WriteByte(upperHex[c&15])
			raw.WriteByte(c)
		}
	}
	if err := flush(true); err != nil {
		return "", err
	}
	n := 1
	for _, s := range segs {
		n += len(s) + 1
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(s)
	}
	if trailing || len(segs) == 0 {
		b.WriteByte('/')
	}
	return b.String(), nil
}
