package route

import (
	"bytes"
	"strconv"
)

// PathError is a request path the gateway refuses. Reason is a stable code
// (one of the Reason constants) that may be shown to the client; Detail says
// what was found and where, for the log. Neither repeats the client's bytes.
type PathError struct {
	Reason string
	Detail string
}

func (e *PathError) Error() string { return "bad request path: " + e.Detail }

// Reasons of PathError.
const (
	ReasonNotAbsolute    = "not_absolute"          // does not start with "/"
	ReasonBadEncoding    = "bad_path_encoding"     // "%zz", "%4"
	ReasonEncodedSlash   = "encoded_slash"         // "%2F"
	ReasonDoubleEncoding = "double_encoding"       // "%252e": "%25" followed by an escape
	ReasonInvalidUTF8    = "invalid_utf8"          // "%c0%ae" and other bytes that are not UTF-8
	ReasonControl        = "control_character"     // NUL, CR, LF, DEL..., raw or escaped
	ReasonBackslash      = "backslash"             // "\" or "%5C"
	ReasonDotParameter   = "dot_segment_parameter" // "..;" (Tomcat), ".;x", "..%3B"
)

func pathError(reason, what string, at int) error {
	return &PathError{Reason: reason, Detail: what + " at byte " + strconv.Itoa(at)}
}

// Byte classes.
const (
	clsPchar      = 1 << iota // may appear unescaped in a canonical segment
	clsUnreserved             // RFC 3986 unreserved: decoded when escaped
	clsHex                    // a hexadecimal digit
)

var byteClass = func() (t [256]uint8) {
	for c := range 256 {
		b := byte(c)
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '-', b == '.', b == '_', b == '~':
			t[c] |= clsPchar | clsUnreserved
		case bytes.IndexByte([]byte("!$&'()*+,;=:@"), b) >= 0: // sub-delims, ':' and '@'
			t[c] |= clsPchar
		}
		if b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F' {
			t[c] |= clsHex
		}
	}
	return t
}()

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool { return byteClass[c]&clsHex != 0 }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// controlByte reports C0 controls and DEL, which have no place in a path.
func controlByte(c byte) bool { return c < 0x20 || c == 0x7f }

// utf8Check validates bytes as UTF-8 one at a time, so that raw and escaped
// bytes are checked together without decoding into a buffer. It refuses
// what utf8.Valid refuses: overlong forms, surrogates, values above U+10FFFF.
type utf8Check struct {
	need   uint8 // continuation bytes still expected
	lo, hi byte  // range of the next continuation byte
}

func (u *utf8Check) next(b byte) bool {
	if u.need > 0 {
		if b < u.lo || b > u.hi {
			return false
		}
		u.need--
		u.lo, u.hi = 0x80, 0xbf
		return true
	}
	switch {
	case b < 0x80:
		return true
	case b < 0xc2: // a continuation byte, or the lead of an overlong pair
		return false
	case b < 0xe0:
		u.need, u.lo, u.hi = 1, 0x80, 0xbf
	case b == 0xe0: // overlong below 0xa0
		u.need, u.lo, u.hi = 2, 0xa0, 0xbf
	case b == 0xed: // surrogates from 0xa0
		u.need, u.lo, u.hi = 2, 0x80, 0x9f
	case b < 0xf0:
		u.need, u.lo, u.hi = 2, 0x80, 0xbf
	case b == 0xf0: // overlong below 0x90
		u.need, u.lo, u.hi = 3, 0x90, 0xbf
	case b < 0xf4:
		u.need, u.lo, u.hi = 3, 0x80, 0xbf
	case b == 0xf4: // above U+10FFFF from 0x90
		u.need, u.lo, u.hi = 3, 0x80, 0x8f
	default:
		return false
	}
	return true
}

// dotSegment reports whether the canonical segment s is "." or "..", and
// whether it is one of them followed by parameters (";x" or "%3Bx"), which
// some servers (Tomcat among them) treat as the dot segment itself.
func dotSegment[S string | []byte](s S) (dot, withParams bool) {
	n := 0
	for n < len(s) && n < 3 && s[n] == '.' {
		n++
	}
	switch {
	case n == 0 || n == 3:
		return false, false
	case n == len(s):
		return true, false
	case s[n] == ';', len(s) >= n+3 && s[n] == '%' && s[n+1] == '3' && s[n+2] == 'B':
		return false, true
	}
	return false, false
}

// doubleEncoded reports whether the canonical segment s holds "%25" followed
// by two hexadecimal digits, or by "u" and four (the %uXXXX form some
// servers decode): something a second decoding would turn into an escape.
// It looks at the output, not the input, so "%25%34%31" is caught too.
func doubleEncoded[S string | []byte](s S) bool {
	for i := 0; i+4 < len(s); i++ {
		if s[i] != '%' || s[i+1] != '2' || s[i+2] != '5' {
			continue
		}
		if isHex(s[i+3]) && isHex(s[i+4]) {
			return true
		}
		if (s[i+3] == 'u' || s[i+3] == 'U') && i+7 < len(s) && isHex(s[i+4]) && isHex(s[i+5]) && isHex(s[i+6]) && isHex(s[i+7]) {
			return true
		}
	}
	return false
}

// NormalizePath returns the canonical form of an escaped request path (the
// path of the request target, without the query). The result is the one
// path used both to match routes and as the path the upstream receives, so
// no encoding can make the two disagree.
//
// In order:
//   - the path must start with "/";
//   - percent-escapes of unreserved characters (ALPHA DIGIT - . _ ~) are
//     decoded (RFC 3986 section 6.2.2.2); other escapes are kept, with
//     upper-case hex; raw bytes that may not appear in a path (space,
//     quotes, non-ASCII...) are escaped;
//   - duplicate slashes are merged;
//   - "." and ".." segments are removed as in RFC 3986 section 5.2.4, after
//     decoding, so "%2e%2e" is ".."; ".." never climbs above the root; a
//     trailing slash is kept ("/a/b/.." is "/a/").
//
// Refused with a *PathError: a bad escape; an encoded slash or backslash;
// a raw backslash; NUL and other control characters, raw or escaped; double
// encoding ("%252e"); bytes that are not valid UTF-8 once decoded (overlong
// forms such as "%c0%ae"); and a "." or ".." segment with parameters
// ("/..;/", "/.;x/", "/..%3B/").
//
// A path already in canonical form is returned as is, without allocating.
func NormalizePath(escaped string) (string, error) {
	if canonical(escaped) {
		return escaped, nil
	}
	return normalize(escaped)
}

// canonical reports whether p is its own normal form. It must agree with
// normalize: canonical(p) implies normalize(p) == p, and every result of
// normalize is canonical (FuzzNormalizePath checks both).
func canonical(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	var u utf8Check
	seg := 1 // start of the current segment
	for i := 1; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			if i == seg || u.need > 0 || !plainSegment(p[seg:i]) {
				return false
			}
			seg = i + 1
		case c == '%':
			if i+2 >= len(p) {
				return false
			}
			h, l := p[i+1], p[i+2]
			if !isHex(h) || !isHex(l) || h >= 'a' || l >= 'a' {
				return false // bad or lower-case escape
			}
			v := unhex(h)<<4 | unhex(l)
			if byteClass[v]&clsUnreserved != 0 || v == '/' || v == '\\' || controlByte(v) || !u.next(v) {
				return false
			}
			i += 2
		case byteClass[c]&clsPchar != 0:
			if u.need > 0 {
				return false
			}
		default:
			return false
		}
	}
	return u.need == 0 && plainSegment(p[seg:])
}

// plainSegment reports whether a canonical segment stays as it is: not a dot
// segment, with or without parameters, and not double-encoded.
func plainSegment(s string) bool {
	dot, param := dotSegment(s)
	return !dot && !param && !doubleEncoded(s)
}

// normalize is NormalizePath for a path that is not canonical. It writes the
// result once, resolving each segment as it ends.
func normalize(p string) (string, error) {
	if p == "" || p[0] != '/' {
		return "", &PathError{Reason: ReasonNotAbsolute, Detail: "the path does not start with /"}
	}
	var stack [256]byte
	b := append(stack[:0], '/')
	var u utf8Check
	seg := 1 // start of the current segment in b
	for i := 1; ; i++ {
		if i == len(p) || p[i] == '/' {
			if u.need > 0 {
				return "", pathError(ReasonInvalidUTF8, "a truncated UTF-8 sequence", i)
			}
			last := i == len(p)
			s := b[seg:]
			dot, param := dotSegment(s)
			switch {
			case param:
				return "", pathError(ReasonDotParameter, "a dot segment with parameters", i-1)
			case doubleEncoded(s):
				return "", pathError(ReasonDoubleEncoding, "a double percent-encoding (%25 followed by an escape)", i-1)
			case len(s) == 0:
				// Merged with the previous slash, or the trailing slash.
			case dot && len(s) == 1:
				b = b[:seg]
			case dot:
				b = b[:seg]
				if seg > 1 {
					b = b[:bytes.LastIndexByte(b[:seg-1], '/')+1]
				}
			case !last:
				b = append(b, '/')
			}
			if last {
				return string(b), nil
			}
			seg = len(b)
			continue
		}
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) {
				return "", pathError(ReasonBadEncoding, "a truncated percent-escape", i)
			}
			if !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", pathError(ReasonBadEncoding, "an invalid percent-escape", i)
			}
			v := unhex(p[i+1])<<4 | unhex(p[i+2])
			switch {
			case v == '/':
				return "", pathError(ReasonEncodedSlash, "an encoded slash (%2F)", i)
			case v == '\\':
				return "", pathError(ReasonBackslash, "an encoded backslash (%5C)", i)
			case controlByte(v):
				return "", pathError(ReasonControl, "an encoded control character", i)
			case !u.next(v):
				return "", pathError(ReasonInvalidUTF8, "an escape that is not valid UTF-8", i)
			case byteClass[v]&clsUnreserved != 0:
				b = append(b, v)
			default:
				b = append(b, '%', upperHex[v>>4], upperHex[v&15])
			}
			i += 2
		case c == '\\':
			return "", pathError(ReasonBackslash, "a backslash", i)
		case controlByte(c):
			return "", pathError(ReasonControl, "a control character", i)
		case !u.next(c):
			return "", pathError(ReasonInvalidUTF8, "a byte that is not valid UTF-8", i)
		case byteClass[c]&clsPchar != 0:
			b = append(b, c)
		default:
			// Space, quotes, brackets, non-ASCII...: escaped.
			b = append(b, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
}
