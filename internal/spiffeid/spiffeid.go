// Package spiffeid parses SPIFFE IDs (spiffe://trust-domain/path) strictly,
// as the SPIFFE ID and X.509-SVID specifications define them, and matches
// them against the patterns of allow rules. Its input comes from client
// certificates: nothing is normalised, anything unusual is refused.
package spiffeid

import (
	"errors"
	"fmt"
	"strings"
)

// Bounds from the SPIFFE ID specification: a whole ID of at most 2048
// bytes, a trust domain name of at most 255.
const (
	MaxIDBytes          = 2048
	MaxTrustDomainBytes = 255
)

const scheme = "spiffe://"

// ID is a parsed SPIFFE ID.
type ID struct {
	TrustDomain string // e.g. prod.example
	Path        string // "" or "/ns/orders/sa/api"
}

// String returns the ID as a URI.
func (id ID) String() string { return scheme + id.TrustDomain + id.Path }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id.TrustDomain == "" }

// Error is a string that is not a valid SPIFFE ID.
type Error struct {
	Input string // truncated to 128 bytes
	Msg   string
}

func (e *Error) Error() string { return fmt.Sprintf("bad SPIFFE ID %q: %s", e.Input, e.Msg) }

func errorf(s, format string, args ...any) *Error {
	if len(s) > 128 {
		s = s[:128] + "..."
	}
	return &Error{Input: s, Msg: fmt.Sprintf(format, args...)}
}

// Parse parses a SPIFFE ID. The scheme is "spiffe" in lower case; the trust
// domain is lower-case letters, digits, '.', '-' and '_' (no port, no
// userinfo); the path, if any, is segments of letters, digits, '.', '-' and
// '_', none empty, none "." or "..", with no trailing slash. A query, a
// fragment and percent-encoding are refused.
func Parse(s string) (ID, error) {
	if len(s) > MaxIDBytes {
		return ID{}, errorf(s, "longer than %d bytes", MaxIDBytes)
	}
	rest, ok := strings.CutPrefix(s, scheme)
	if !ok {
		if len(s) >= len(scheme) && strings.EqualFold(s[:len(scheme)], scheme) {
			return ID{}, errorf(s, "the scheme must be spiffe in lower case")
		}
		return ID{}, errorf(s, "want spiffe://trust-domain/path")
	}
	td, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		td, path = rest[:i], rest[i:]
	}
	if err := checkTrustDomain(td); err != nil {
		return ID{}, errorf(s, "%s", err)
	}
	if err := checkPath(path); err != nil {
		return ID{}, errorf(s, "%s", err)
	}
	return ID{TrustDomain: td, Path: path}, nil
}

// ParseWorkload parses the SPIFFE ID of a workload: a valid ID whose path is
// not empty (X.509-SVID: a leaf's ID has a non-root path).
func ParseWorkload(s string) (ID, error) {
	id, err := Parse(s)
	if err != nil {
		return ID{}, err
	}
	if id.Path == "" {
		return ID{}, errorf(s, "a workload's ID needs a path; spiffe://%s names the trust domain itself", id.TrustDomain)
	}
	return id, nil
}

// CheckTrustDomain reports whether s is a valid trust domain name.
func CheckTrustDomain(s string) error {
	if err := checkTrustDomain(s); err != nil {
		return fmt.Errorf("bad trust domain %q: %w", s, err)
	}
	return nil
}

func checkTrustDomain(td string) error {
	switch {
	case td == "":
		return errors.New("the trust domain is empty")
	case len(td) > MaxTrustDomainBytes:
		return fmt.Errorf("the trust domain is longer than %d bytes", MaxTrustDomainBytes)
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		case c >= 'A' && c <= 'Z':
			return errors.New("the trust domain must be in lower case")
		case c == ':':
			return errors.New("the trust domain must not carry a port")
		case c == '@':
			return errors.New("the trust domain must not carry userinfo")
		case c == '?':
			return errors.New("a SPIFFE ID has no query")
		case c == '#':
			return errors.New("a SPIFFE ID has no fragment")
		case c == '%':
			return errors.New("percent-encoding is not allowed")
		default:
			return fmt.Errorf("character %q is not allowed in a trust domain (a-z, 0-9, '.', '-', '_')", c)
		}
	}
	return nil
}

func checkPath(p string) error {
	if p == "" {
		return nil
	}
	// p starts with '/'. Each segment follows one '/'.
	for seg := range strings.SplitSeq(p[1:], "/") {
		if err := checkSegment(seg); err != nil {
			return err
		}
	}
	return nil
}

func checkSegment(seg string) error {
	switch seg {
	case "":
		return errors.New("the path has an empty segment (// or a trailing /)")
	case ".", "..":
		return errors.New("the path has a dot segment")
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		case c == '?':
			return errors.New("a SPIFFE ID has no query")
		case c == '#':
			return errors.New("a SPIFFE ID has no fragment")
		case c == '%':
			return errors.New("percent-encoding is not allowed")
		default:
			return fmt.Errorf("character %q is not allowed in a path (a-z, A-Z, 0-9, '.', '-', '_')", c)
		}
	}
	return nil
}

// Pattern matches workload IDs of one trust domain: the trust domain is
// literal, each path segment is literal or * (exactly one segment), and a
// last segment ** matches one or more segments.
type Pattern struct {
	td   string
	segs []string
	text string
}

// ParsePattern parses a pattern such as spiffe://prod.example/ns/orders/*
// or spiffe://prod.example/**.
func ParsePattern(s string) (Pattern, error) {
	rest, ok := strings.CutPrefix(s, scheme)
	if !ok {
		return Pattern{}, fmt.Errorf("bad workload pattern %q: want spiffe://trust-domain/path", s)
	}
	td, path, _ := strings.Cut(rest, "/")
	if err := checkTrustDomain(td); err != nil {
		return Pattern{}, fmt.Errorf("bad workload pattern %q: %w (the trust domain is never a wildcard)", s, err)
	}
	if path == "" {
		return Pattern{}, fmt.Errorf("bad workload pattern %q: a workload's ID has a path; use spiffe://%s/** for every workload of the trust domain", s, td)
	}
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		switch seg {
		case "*":
		case "**":
			if i != len(segs)-1 {
				return Pattern{}, fmt.Errorf("bad workload pattern %q: ** only as the last segment", s)
			}
		default:
			if strings.Contains(seg, "*") {
				return Pattern{}, fmt.Errorf("bad workload pattern %q: * stands for a whole segment", s)
			}
			if err := checkSegment(seg); err != nil {
				return Pattern{}, fmt.Errorf("bad workload pattern %q: %w", s, err)
			}
		}
	}
	return Pattern{td: td, segs: segs, text: s}, nil
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.text }

// Match reports whether id, a parsed workload ID, matches p.
func (p Pattern) Match(id ID) bool {
	if id.TrustDomain != p.td || id.Path == "" {
		return false
	}
	segs := strings.Split(id.Path[1:], "/")
	for i, ps := range p.segs {
		if ps == "**" {
			return len(segs) > i
		}
		if i >= len(segs) || (ps != "*" && ps != segs[i]) {
			return false
		}
	}
	return len(segs) == len(p.segs)
}
