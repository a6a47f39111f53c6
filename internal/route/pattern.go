package route

import (
	"fmt"
	"strings"
)

// Spec is one route's match as configured.
type Spec struct {
	// Host is "" for any host, an exact name ("api.example.com") or a
	// wildcard ("*.example.com") standing for one or more labels in front of
	// the domain, never the domain itself. It is matched without regard to
	// case, and without the request's port; it must not carry a port itself.
	Host string
	// Methods are the upper-case methods the route serves; empty means any.
	Methods []string
	// Path is a pattern starting with "/", made of segments separated by
	// "/":
	//   - a literal, written in canonical form (as NormalizePath would
	//     return it), e.g. "orders" or "caf%C3%A9";
	//   - "{name}", exactly one non-empty segment, captured as name
	//     (letters, digits and "_", not starting with a digit);
	//   - "*", exactly one non-empty segment, not captured;
	//   - "**", as the last segment only: zero or more segments.
	// A trailing slash is a literal empty segment, so it is significant:
	// "/orders/{id}" matches "/orders/42" but neither "/orders/42/" nor
	// "/orders/"; "/orders/" matches only "/orders/". "/orders/**" matches
	// "/orders", "/orders/" and "/orders/1/2".
	Path string
}

// PatternError is a Spec that cannot be compiled.
type PatternError struct {
	Index int    // of the Spec
	Field string // "host", "methods" or "path"
	Value string // the offending host, method or path pattern
	Msg   string
}

func (e *PatternError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Msg)
}

type segKind uint8

// Ordered from least to most specific.
const (
	segRest    segKind = iota + 1 // "**"
	segParam                      // "{name}" or "*"
	segLiteral                    // anything else, "" included
)

type segment struct {
	kind segKind
	text string // literal text, or parameter name ("" for "*" and "**")
}

// parsePattern splits a path pattern into segments; "/" is one empty
// literal segment, as the path "/" is one empty segment.
func parsePattern(p string) ([]segment, error) {
	if p == "" || p[0] != '/' {
		return nil, fmt.Errorf("must start with /")
	}
	parts := strings.Split(p[1:], "/")
	segs := make([]segment, 0, len(parts))
	names := map[string]bool{}
	for i, s := range parts {
		last := i == len(parts)-1
		switch {
		case s == "**":
			if !last {
				return nil, fmt.Errorf("** may only be the last segment")
			}
			segs = append(segs, segment{kind: segRest})
		case s == "*":
			segs = append(segs, segment{kind: segParam})
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && len(s) >= 2:
			name := s[1 : len(s)-1]
			if !validParamName(name) {
				return nil, fmt.Errorf("bad parameter name %q: want letters, digits and _, not starting with a digit", name)
			}
			if names[name] {
				return nil, fmt.Errorf("parameter {%s} named twice", name)
			}
			names[name] = true
			segs = append(segs, segment{kind: segParam, text: name})
		case strings.ContainsAny(s, "{}*"):
			return nil, fmt.Errorf("segment %q: a segment is a literal, a whole {name}, * or **", s)
		case s == "" && !last:
			return nil, fmt.Errorf("empty segment (//): requests never have one")
		default:
			if err := canonicalLiteral(s); err != nil {
				return nil, err
			}
			segs = append(segs, segment{kind: segLiteral, text: s})
		}
	}
	return segs, nil
}

// canonicalLiteral refuses a literal segment no normalised request path
// could contain, which would make the route silently unreachable.
func canonicalLiteral(s string) error {
	if s == "" {
		return nil
	}
	n, err := NormalizePath("/" + s)
	switch {
	case err != nil:
		return fmt.Errorf("segment %q: %w", s, err)
	case n != "/"+s:
		return fmt.Errorf("segment %q is not in canonical form: write %q", s, strings.TrimPrefix(n, "/"))
	}
	return nil
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

// shape is the key under which two patterns match exactly the same paths:
// parameter names do not count, and "*" is "{name}".
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

// maxHostLen is the longest DNS name; longer request hosts match only
// any-host routes.
const maxHostLen = 253

// parseHost returns the canonical form of a Spec's host: lower case, no
// trailing dot, no IPv6 brackets; "*.domain" for wildcards.
func parseHost(h string) (string, error) {
	if h == "" {
		return "", nil
	}
	h = asciiLower(strings.TrimSuffix(h, "."))
	name, wild := strings.CutPrefix(h, "*.")
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") && !wild {
		name = name[1 : len(name)-1]
		if !strings.Contains(name, ":") {
			return "", fmt.Errorf("brackets are for IPv6 addresses only")
		}
	}
	if name == "" || len(name) > maxHostLen {
		return "", fmt.Errorf("want a host name, *.domain or \"\" for any host")
	}
	ipv6 := strings.Count(name, ":") >= 2
	if !ipv6 && strings.Contains(name, ":") {
		return "", fmt.Errorf("a route host has no port: routes match the host on any port")
	}
	if wild && ipv6 {
		return "", fmt.Errorf("a wildcard needs a domain name")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || ipv6 && c == ':'
		if !ok {
			return "", fmt.Errorf("want a host name (letters, digits, '-', '.'), *.domain or \"\" for any host")
		}
	}
	if !ipv6 && (strings.HasPrefix(name, ".") || strings.Contains(name, "..")) {
		return "", fmt.Errorf("empty label")
	}
	if wild {
		return "*." + name, nil
	}
	return name, nil
}

// parseMethods checks a Spec's methods; nil means any.
func parseMethods(ms []string) ([]string, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	for _, m := range ms {
		if m == "" {
			return nil, fmt.Errorf("empty method")
		}
		for i := 0; i < len(m); i++ {
			if c := m[i]; !(c >= 'A' && c <= 'Z' || c == '-' || c == '_' || i > 0 && c >= '0' && c <= '9') {
				return nil, fmt.Errorf("want an upper-case method such as GET")
			}
		}
	}
	return append([]string(nil), ms...), nil
}

// asciiLower lower-cases ASCII letters only: host names are ASCII, and
// strings.ToLower would fold some non-ASCII runes into ASCII letters (the
// Kelvin sign into "k").
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
