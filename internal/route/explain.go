package route

import (
	"fmt"
	"slices"
	"strings"
)

// Candidate is one route's verdict on a request, for explaining a match.
// Reason is the first of these that applies:
//
//	"host mismatch"
//	"path mismatch at segment N"   a literal differs, a parameter meets an
//	                               empty segment, or a segment is missing
//	                               or left over; N counts from 1, the first
//	                               segment after the leading slash
//	"method not allowed"           host and path match
//	"less specific than route N"   host, path and method match; route N wins
type Candidate struct {
	Index   int    // of the Spec
	Matched bool   // the route serves the request
	Reason  string // why not, when it does not
	Segment int    // where the path fails to match, from 1; 0 if it matches
}

// Explain says, for every route in Spec order, whether it serves the
// request and if not, why. Its arguments are those of Match. It is for
// operators troubleshooting and allocates freely.
func (t *Table) Explain(host, method, path string) []Candidate {
	winner, ok := t.Match(host, method, path, nil)
	h := asciiLower(hostOnly(host))
	out := make([]Candidate, len(t.routes))
	for i := range t.routes {
		r := &t.routes[i]
		c := Candidate{Index: i}
		if ok && i == winner {
			c.Matched = true
		} else if !hostMatches(r.host, h) {
			c.Reason = "host mismatch"
		} else if c.Segment = pathMismatch(r.segs, path); c.Segment > 0 {
			c.Reason = fmt.Sprintf("path mismatch at segment %d", c.Segment)
		} else if r.methods != nil && !slices.Contains(r.methods, method) {
			c.Reason = "method not allowed"
		} else {
			// Match found a route, or this one would have been it.
			c.Reason = fmt.Sprintf("less specific than route %d", winner)
		}
		out[i] = c
	}
	return out
}

// hostMatches reports whether a canonical host pattern matches a lower-case
// host without port.
func hostMatches(pattern, host string) bool {
	if pattern == "" {
		return true
	}
	if len(host) > maxHostLen {
		return false
	}
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return len(host) > len(suffix) && strings.HasSuffix(host, suffix)
	}
	return pattern == host
}

// pathMismatch matches path against a pattern on its own; it returns 0 if
// it matches, else the segment (from 1) where it fails.
func pathMismatch(segs []segment, path string) int {
	if path == "" || path[0] != '/' {
		return 1
	}
	rest := path[1:]
	more := true // a segment is left: rest holds it and those after it
	for k, s := range segs {
		if s.kind == segRest {
			return 0
		}
		if !more {
			return k + 1
		}
		var seg string
		seg, rest, more = strings.Cut(rest, "/")
		if s.kind == segLiteral && seg != s.text || s.kind == segParam && seg == "" {
			return k + 1
		}
	}
	if more {
		return len(segs) + 1
	}
	return 0
}
