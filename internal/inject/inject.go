// Package inject gives upstream requests their credentials: a signed
// identity assertion about the caller, and access tokens the gateway gets
// for itself (OAuth 2.0 client credentials, Azure managed identity). It
// also publishes the assertion keys as a JSON Web Key Set.
package inject

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/identity"
)

// ReasonTokenUnavailable is the reason of a request refused because its
// upstream token could not be had.
const ReasonTokenUnavailable = "upstream_token_unavailable"

// DefaultHeader carries assertions when assertion.header is not set.
const DefaultHeader = "X-Ztgate-Identity"

// Manager outlives configurations: it keeps the published keys (with the
// overlap of removed ones) and the token caches, so a reload neither
// unpublishes a key too early nor fetches every token again.
type Manager struct {
	logger *slog.Logger
	ring   KeyRing
	// OnFetch, if set before the first Build, learns of every upstream
	// token fetch: the service it was first made for, the kind
	// (client_credentials, managed_identity, token_exchange) and the
	// outcome (nil: a token).
	OnFetch func(service, kind string, err error)

	mu         sync.Mutex
	tokens     map[string]*TokenCache // of the active set, by source fingerprint
	exchangers map[string]*Exchanger  // of the active set, by source fingerprint
	overlap    time.Duration          // of the active set's assertion keys
}

// NewManager returns an empty manager.
func NewManager(logger *slog.Logger) *Manager {
	return &Manager{logger: logger, tokens: map[string]*TokenCache{}, exchangers: map[string]*Exchanger{}}
}

// Keys returns the published key ring (served at JWKSPath).
func (m *Manager) Keys() *KeyRing { return &m.ring }

// Set is the injection of one configuration, built before it serves.
type Set struct {
	m        *Manager
	keys     []*Key // assertion keys, signing key first; nil without assertion
	overlap  time.Duration
	header   string
	services map[string]*Service
	tokens   map[string]*TokenCache
	// exchangers of token_exchange, by source fingerprint
	exchangers map[string]*Exchanger
}

// Build prepares cfg's injection: it reads (or, with no keys listed,
// generates) the assertion keys and makes each service's token source.
// Token caches of unchanged sources are carried over. Nothing is published
// until Activate.
func (m *Manager) Build(cfg *config.Config) (*Set, error) {
	s := &Set{m: m, services: map[string]*Service{}, tokens: map[string]*TokenCache{}, exchangers: map[string]*Exchanger{}}
	var signer *Signer
	if a := cfg.Assertion; a != nil {
		keys, err := loadKeys(cfg, m.logger)
		if err != nil {
			return nil, err
		}
		signer, err = NewSigner(keys[0], a.Issuer, a.TTL.D())
		if err != nil {
			return nil, fmt.Errorf("assertion: %w", err)
		}
		s.keys, s.overlap, s.header = keys, a.RotationOverlap.D(), a.Header
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range cfg.Services {
		svc := &cfg.Services[i]
		in := svc.Inject
		if in == nil {
			continue
		}
		out := &Service{header: s.header}
		if in.IdentityAssertion {
			if signer == nil {
				return nil, fmt.Errorf("service %s: identity_assertion without an assertion section", svc.Name)
			}
			out.signer, out.audience = signer, in.AssertionAudience
			if out.audience == "" {
				out.audience = svc.Name
			}
		}
		var fp, kind string // fp: the source's whole configuration
		var mk func() (Fetcher, error)
		name := svc.Name
		observe := func(err error) {
			if m.OnFetch != nil {
				m.OnFetch(name, kind, err)
			}
		}
		switch {
		case in.ClientCredentials != nil:
			kind = "client_credentials"
			cc := in.ClientCredentials
			fp = fmt.Sprintf("%#v", *cc)
			mk = func() (Fetcher, error) { return NewClientCredentials(cc), nil }
		case in.ManagedIdentity != nil:
			kind = "managed_identity"
			mi := in.ManagedIdentity
			fp = fmt.Sprintf("%#v", *mi)
			mk = func() (Fetcher, error) { return NewManagedIdentity(mi) }
		case in.TokenExchange != nil:
			kind = "token_exchange"
			te := in.TokenExchange
			fp = fmt.Sprintf("%#v", *te)
			ex := s.exchangers[fp]
			if ex == nil {
				ex = m.exchangers[fp]
			}
			if ex == nil {
				ex = NewExchanger("token exchange for service "+svc.Name, te)
				ex.OnFetch = observe
			}
			s.exchangers[fp] = ex
			out.exchange = ex
		}
		if mk != nil {
			tc := s.tokens[fp]
			if tc == nil {
				tc = m.tokens[fp]
			}
			if tc == nil {
				f, err := mk()
				if err != nil {
					return nil, fmt.Errorf("service %s: %w", svc.Name, err)
				}
				tc = NewTokenCache(kind+" for service "+svc.Name, f)
				tc.OnFetch = observe
			}
			s.tokens[fp] = tc
			out.token = tc
		}
		if out.signer != nil || out.token != nil || out.exchange != nil {
			s.services[svc.Name] = out
		}
	}
	return s, nil
}

// loadKeys reads the configured assertion keys, or the generated one.
func loadKeys(cfg *config.Config, logger *slog.Logger) ([]*Key, error) {
	dir := filepath.Dir(cfg.File)
	if len(cfg.Assertion.Keys) == 0 {
		path := filepath.Join(dir, GeneratedKeyFile)
		k, created, err := LoadOrGenerate(path)
		if err != nil {
			return nil, fmt.Errorf("assertion key: %w", err)
		}
		if created {
			logger.Info("assertion signing key generated", "file", path, "kid", k.kid)
		}
		return []*Key{k}, nil
	}
	var keys []*Key
	for i, ak := range cfg.Assertion.Keys {
		k, err := readKey(dir, ak)
		if err != nil {
			return nil, fmt.Errorf("assertion.keys[%d]: %w", i, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// readKey reads one configured key; a relative file is relative to dir.
func readKey(dir string, ak config.AssertionKey) (*Key, error) {
	if ak.PEM != "" {
		return ParseKey([]byte(ak.PEM))
	}
	path := ak.File
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ValidateConfig reads the configured assertion keys, reporting a missing
// or unusable one at its position in the file. It changes nothing: a key
// to be generated is not.
func ValidateConfig(cfg *config.Config) error {
	if cfg.Assertion == nil {
		return nil
	}
	var errs config.Errors
	errorf := func(path, format string, args ...any) {
		p := cfg.PosOf(path)
		errs = append(errs, &config.Error{File: cfg.File, Line: p.Line, Column: p.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	dir := filepath.Dir(cfg.File)
	seen := map[string]int{}
	for i, ak := range cfg.Assertion.Keys {
		path := fmt.Sprintf("assertion.keys[%d]", i)
		k, err := readKey(dir, ak)
		switch {
		case err != nil && ak.PEM != "":
			errorf(path+".pem", "unusable assertion key: %v", err)
		case err != nil:
			errorf(path+".file", "unusable assertion key: %v", err)
		default:
			if j, dup := seen[k.kid]; dup {
				errorf(path, "the same key as assertion.keys[%d]", j)
			}
			seen[k.kid] = i
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// Activate publishes the set's keys (removed keys stay published for the
// overlap) and makes its token caches the ones later sets reuse. Call it
// before the set's configuration serves.
func (s *Set) Activate() {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	overlap := s.overlap
	if s.keys == nil {
		// Assertions turned off: the keys retire with the overlap they
		// were configured with.
		overlap = m.overlap
	}
	m.ring.Install(s.keys, overlap)
	m.tokens, m.exchangers, m.overlap = s.tokens, s.exchangers, overlap
}

// Keys returns the published key ring.
func (s *Set) Keys() *KeyRing { return &s.m.ring }

// Header returns the assertion header ("" without assertions): the gateway
// removes a client's copies of it from every upstream request.
func (s *Set) Header() string { return s.header }

// Service returns the injection of the named service, nil when it has none.
func (s *Set) Service(name string) *Service { return s.services[name] }

// Service is what one service's upstream requests receive.
type Service struct {
	signer   *Signer // nil: no assertion
	audience string
	header   string
	token    *TokenCache // nil: no upstream token of the gateway's own
	exchange *Exchanger  // nil: no token exchanged for the caller's
}

// NeedsCallerToken reports whether the service exchanges the caller's own
// token: Credentials then needs it in Call.Subject.
func (s *Service) NeedsCallerToken() bool { return s.exchange != nil }

// Call is the request credentials are made for.
type Call struct {
	Identity  *identity.Identity
	Route     string
	RequestID string
	Now       time.Time
	// Subject is the caller's access token, for a token exchange.
	Subject string
}

// Credentials are the credentials of one upstream request.
type Credentials struct {
	Header    string // the assertion header
	Assertion string // "" without
	Bearer    string // "" without
}

// Apply sets c on an upstream request's headers.
func (c Credentials) Apply(h http.Header) {
	if c.Assertion != "" {
		h.Set(c.Header, c.Assertion)
	}
	if c.Bearer != "" {
		h.Set("Authorization", "Bearer "+c.Bearer)
	}
}

// Credentials returns the credentials for one call. A token that cannot be
// had is a *TokenError.
func (s *Service) Credentials(ctx context.Context, call Call) (Credentials, error) {
	c := Credentials{Header: s.header}
	var tok string
	var err error
	switch {
	case s.token != nil:
		tok, err = s.token.Token(ctx)
	case s.exchange != nil:
		tok, err = s.exchange.Token(ctx, call.Subject, call.Identity.ExpiresAt)
	}
	if err != nil {
		return Credentials{}, err
	}
	c.Bearer = tok
	if s.signer != nil {
		a, err := s.signer.Sign(Request{Identity: call.Identity, Audience: s.audience, Route: call.Route, RequestID: call.RequestID, Now: call.Now})
		if err != nil {
			return Credentials{}, err
		}
		c.Assertion = a
	}
	return c, nil
}

// StripHeader removes every copy of the header name from h, also when sent
// with '_' for '-' (CGI-style servers treat the two alike).
func StripHeader(h http.Header, name string) {
	if name == "" {
		return
	}
	for k := range h {
		if len(k) == len(name) && strings.EqualFold(strings.ReplaceAll(k, "_", "-"), name) {
			delete(h, k)
		}
	}
}
