// Package inject adds upstream credentials to proxied requests: headers,
// query parameters and HTTP Basic credentials whose ${secret:...}
// references are read per request from the secret cache.
package inject

import (
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/secrets"
)

// ReasonSecretUnavailable is the stable reason of a request refused because a
// credential it must carry cannot be served (503).
const ReasonSecretUnavailable = "secret_unavailable"

// Failure is a request that cannot get its credentials. Public is safe to
// show a client; Err (logged only) names the reference, never a value.
type Failure struct {
	Status int
	Reason string
	Public string
	Err    error
}

// Tracker hands out cache entries for references (a secrets.Cache with the
// configuration's providers).
type Tracker func(ref config.SecretRef) (*secrets.Entry, error)

// Secrets injects one route's credentials.
type Secrets struct {
	headers []field
	query   []field
	user    *template
	pass    *template
	drop    map[string]bool // canonical header names a client may not send
	dropQ   map[string]bool // lower-case query names a client may not send
	entries []*secrets.Entry
}

type field struct {
	name string
	t    *template
}

type template struct {
	parts []part
	raw   string
}

type part struct {
	lit string
	e   *secrets.Entry // nil: literal
}

// Compile merges a service's and a route's inject blocks (the route's keys
// replace the service's) and tracks their references. It returns nil when
// nothing is injected. On error every entry tracked so far is given back
// with release.
func Compile(svc, route *config.Inject, track Tracker, release func(*secrets.Entry)) (*Secrets, error) {
	headers := map[string]config.Template{}
	query := map[string]config.Template{}
	var basic *config.BasicAuth
	for _, in := range []*config.Inject{svc, route} {
		if in == nil {
			continue
		}
		for k, v := range in.Headers {
			headers[canonical(k)] = v
		}
		for k, v := range in.Query {
			for old := range query {
				if strings.EqualFold(old, k) {
					delete(query, old)
				}
			}
			query[k] = v
		}
		if in.BasicAuth != nil {
			basic = in.BasicAuth
		}
	}
	if len(headers) == 0 && len(query) == 0 && basic == nil {
		return nil, nil
	}
	s := &Secrets{drop: map[string]bool{}, dropQ: map[string]bool{}}
	compile := func(t config.Template) (*template, error) {
		ct := &template{raw: t.Raw()}
		for _, p := range t.Parts() {
			if p.Ref == nil {
				ct.parts = append(ct.parts, part{lit: p.Literal})
				continue
			}
			e, err := track(*p.Ref)
			if err != nil {
				return nil, err
			}
			s.entries = append(s.entries, e)
			ct.parts = append(ct.parts, part{e: e})
		}
		return ct, nil
	}
	fail := func(err error) (*Secrets, error) {
		if release != nil {
			for _, e := range s.entries {
				release(e)
			}
		}
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(headers)) {
		t, err := compile(headers[name])
		if err != nil {
			return fail(fmt.Errorf("inject header %s: %w", name, err))
		}
		s.headers = append(s.headers, field{name: name, t: t})
		s.drop[name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(query)) {
		t, err := compile(query[name])
		if err != nil {
			return fail(fmt.Errorf("inject query %s: %w", name, err))
		}
		s.query = append(s.query, field{name: name, t: t})
		s.dropQ[strings.ToLower(name)] = true
	}
	if basic != nil {
		u, err := compile(basic.Username)
		if err != nil {
			return fail(fmt.Errorf("inject basic_auth username: %w", err))
		}
		p, err := compile(basic.Password)
		if err != nil {
			return fail(fmt.Errorf("inject basic_auth password: %w", err))
		}
		s.user, s.pass = u, p
		s.drop["Authorization"] = true
	}
	return s, nil
}

// Entries are the cache entries the injection reads.
func (s *Secrets) Entries() []*secrets.Entry {
	if s == nil {
		return nil
	}
	return s.entries
}

// canonical is the header name as an upstream may read it: CGI-style
// servers take '_' for '-'.
func canonical(name string) string {
	return http.CanonicalHeaderKey(strings.ReplaceAll(name, "_", "-"))
}

// Values are one request's resolved credentials. They never print.
type Values struct {
	s       *Secrets
	headers []string // by s.headers
	query   []string // by s.query
	basic   string   // the Authorization value, "" without basic_auth
}

// Format prints nothing of the values.
func (*Values) Format(f fmt.State, _ rune) {
	_, _ = f.Write([]byte("inject.Values" + secrets.Redacted))
}

// Resolve reads the current values from the cache: no I/O. A secret that
// cannot be served fails the request (503 secret_unavailable) before
// anything reaches the upstream.
func (s *Secrets) Resolve() (*Values, *Failure) {
	if s == nil {
		return nil, nil
	}
	v := &Values{s: s, headers: make([]string, len(s.headers)), query: make([]string, len(s.query))}
	for i, h := range s.headers {
		val, err := h.t.resolve()
		if err != nil {
			return nil, unavailable(err)
		}
		if !httpguts.ValidHeaderFieldValue(val) {
			return nil, unavailable(fmt.Errorf("inject header %s (%s): the secret holds characters not allowed in a header", h.name, h.t.raw))
		}
		v.headers[i] = val
	}
	for i, q := range s.query {
		val, err := q.t.resolve()
		if err != nil {
			return nil, unavailable(err)
		}
		v.query[i] = val
	}
	if s.user != nil {
		user, err := s.user.resolve()
		if err != nil {
			return nil, unavailable(err)
		}
		pass, err := s.pass.resolve()
		if err != nil {
			return nil, unavailable(err)
		}
		if strings.Contains(user, ":") {
			return nil, unavailable(fmt.Errorf("inject basic_auth: the user name (%s) holds ':'", s.user.raw))
		}
		v.basic = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	return v, nil
}

func unavailable(err error) *Failure {
	return &Failure{Status: http.StatusServiceUnavailable, Reason: ReasonSecretUnavailable, Public: "a credential this service needs is unavailable", Err: err}
}

func (t *template) resolve() (string, error) {
	if len(t.parts) == 1 && t.parts[0].e != nil {
		v, err := t.parts[0].e.Get()
		return v.Reveal(), err
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.e == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := p.e.Get()
		if err != nil {
			return "", err
		}
		b.WriteString(v.Reveal())
	}
	return b.String(), nil
}

// Apply sets the credentials on an upstream request, first deleting every
// client-supplied header and query parameter they replace: injected values
// are never merged with a client's.
func (v *Values) Apply(h http.Header, u *url.URL) {
	if v == nil {
		return
	}
	s := v.s
	if len(s.drop) > 0 {
		for k := range h {
			if s.drop[canonical(k)] {
				delete(h, k)
			}
		}
	}
	for i, f := range s.headers {
		h[f.name] = []string{v.headers[i]}
	}
	if v.basic != "" {
		h["Authorization"] = []string{v.basic}
	}
	if len(s.query) > 0 {
		u.RawQuery = replaceQuery(u.RawQuery, s.dropQ, s.query, v.query)
		u.ForceQuery = false
	}
}

// replaceQuery drops every parameter of raw whose name (unescaped, in any
// case) is injected, keeps the rest as sent, and appends the injected ones.
// A pair holding ';' is dropped when any ';'-separated part names an
// injected parameter, for servers that split on ';' too.
func replaceQuery(raw string, drop map[string]bool, fields []field, vals []string) string {
	var b strings.Builder
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || namesInjected(pair, drop) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(pair)
	}
	for i, f := range fields {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(f.name))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(vals[i]))
	}
	return b.String()
}

func namesInjected(pair string, drop map[string]bool) bool {
	for seg := range strings.SplitSeq(pair, ";") {
		key, _, _ := strings.Cut(seg, "=")
		if k, err := url.QueryUnescape(key); err == nil {
			key = k
		}
		if drop[strings.ToLower(strings.TrimSpace(key))] {
			return true
		}
	}
	return false
}
