// Package explain answers "why was this request allowed or denied?": it runs
// a described request through the same route table, authentication and
// policy the gateway uses, and records every step. It also runs declarative
// policy tests.
package explain

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/ztgate/ztgate/internal/authn"
	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/geo"
	"github.com/ztgate/ztgate/internal/identity"
	"github.com/ztgate/ztgate/internal/policy"
	"github.com/ztgate/ztgate/internal/route"
)

// Request describes the request to explain.
type Request struct {
	Method  string            `json:"method" yaml:"method"`
	URL     string            `json:"url" yaml:"url"`
	IP      string            `json:"ip,omitempty" yaml:"ip"`
	Headers map[string]string `json:"headers,omitempty" yaml:"headers"`
	Time    time.Time         `json:"time,omitzero" yaml:"time"`
	// Token is a bearer token; it is verified against its provider's keys
	// unless Offline is set.
	Token string `json:"token,omitempty" yaml:"token"`
	// Claims stand for a verified token's claims (policy tests, what-ifs).
	Claims map[string]any `json:"claims,omitempty" yaml:"claims"`
	// Provider names the provider Claims are attributed to; default: the
	// first provider.
	Provider string `json:"provider,omitempty" yaml:"provider"`
	// Workload stands for a verified client certificate naming this
	// workload (spiffe://td/path, dns:NAME or cn:NAME; identity.mtls).
	// Alone it is the caller; with a token or claims it rides along.
	Workload string `json:"workload,omitempty" yaml:"workload"`
}

// Options control an explanation.
type Options struct {
	// Offline decodes a token without checking its signature or fetching
	// keys. The result says so.
	Offline bool
	// Authenticator verifies tokens; nil builds verifiers from the
	// configuration (fetching keys). A running gateway passes its own.
	Authenticator *authn.Authenticator
}

// Candidate is one route's verdict.
type Candidate struct {
	Route   string `json:"route"`
	Host    string `json:"host,omitempty"`
	Match   string `json:"match"`
	Matched bool   `json:"matched"`
	Reason  string `json:"reason,omitempty"`
}

// Result is a full explanation.
type Result struct {
	Method     string         `json:"method"`
	URL        string         `json:"url"`
	Path       string         `json:"path,omitempty"`
	Route      string         `json:"route,omitempty"`
	Candidates []Candidate    `json:"candidates"`
	Auth       []string       `json:"authentication,omitempty"`
	Identity   *IdentityView  `json:"identity,omitempty"`
	Mode       string         `json:"mode,omitempty"`
	Version    string         `json:"policy_version"`
	Steps      []policy.Step  `json:"steps,omitempty"`
	Decision   string         `json:"decision"` // allow | would_deny | deny
	Status     int            `json:"status"`
	Reason     string         `json:"reason,omitempty"`
	Reasons    []string       `json:"reasons,omitempty"`
	Params     map[string]any `json:"params,omitempty"`
}

// IdentityView is the part of an identity an explanation shows.
type IdentityView struct {
	Type     string   `json:"type"`
	Provider string   `json:"provider"`
	Subject  string   `json:"subject"`
	Tenant   string   `json:"tenant,omitempty"`
	AppID    string   `json:"app_id,omitempty"`
	Roles    []string `json:"roles,omitempty"`
	Scopes   []string `json:"scopes,omitempty"`
	Groups   []string `json:"groups,omitempty"`
	AMR      []string `json:"amr,omitempty"`
	ACRS     []string `json:"acrs,omitempty"`
	Workload string   `json:"workload,omitempty"` // of the client certificate
	// GroupsUnknown: the token names the groups by reference (group
	// overage) and they were not resolved.
	GroupsUnknown bool `json:"groups_unknown,omitempty"`
}

func view(id *identity.Identity) *IdentityView {
	v := &IdentityView{Type: string(id.Type), Provider: id.Provider, Subject: id.Subject, Tenant: id.Tenant, AppID: id.AppID, Roles: id.Roles, Scopes: id.Scopes, Groups: id.Groups, AMR: id.AMR, ACRS: id.ACRS, GroupsUnknown: id.GroupsUnknown}
	if id.ClientCert != nil {
		v.Workload = id.ClientCert.ID
	}
	return v
}

// Explain runs req through cfg's routes, authentication and policy.
func Explain(ctx context.Context, cfg *config.Config, req Request, opts Options) (*Result, error) {
	u, err := url.Parse(req.URL)
	if err != nil || !strings.HasPrefix(u.EscapedPath(), "/") {
		return nil, fmt.Errorf("bad URL %q: want http(s)://host/path or /path", req.URL)
	}
	method := strings.ToUpper(req.Method)
	if method == "" {
		method = "GET"
	}
	at := req.Time
	if at.IsZero() {
		at = time.Now()
	}
	res := &Result{Method: method, URL: req.URL, Version: cfg.Hash, Candidates: []Candidate{}}

	rawPath := u.EscapedPath()
	if u.RawPath != "" {
		rawPath = u.RawPath
	}
	path, err := route.NormalizePath(rawPath)
	if err != nil {
		res.Decision, res.Status = "deny", 400
		if pe, ok := err.(*route.PathError); ok {
			res.Reason = pe.Reason
		}
		return res, nil
	}
	res.Path = path
	host := strings.ToLower(u.Hostname())

	refs := cfg.RouteTable()
	specs := make([]route.Spec, len(refs))
	for i, ref := range refs {
		m := cfg.Services[ref.Service].Routes[ref.Route].Match
		specs[i] = route.Spec{Host: ref.Host, Methods: m.Methods, Path: m.Path}
	}
	table, err := route.Compile(specs)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	var params route.Params
	idx, matched := table.Match(host, method, path, &params)
	for _, c := range table.Explain(host, method, path) {
		ref := refs[c.Index]
		s, r := cfg.Services[ref.Service], cfg.Services[ref.Service].Routes[ref.Route]
		ms := "any method"
		if len(r.Match.Methods) > 0 {
			ms = strings.Join(r.Match.Methods, ",")
		}
		cand := Candidate{Route: s.Name + "/" + r.Name, Host: ref.Host, Match: ms + " " + r.Match.Path, Matched: c.Matched, Reason: c.Reason}
		if strings.HasPrefix(c.Reason, "less specific than route ") {
			w := refs[idx]
			cand.Reason = "less specific than " + cfg.Services[w.Service].Name + "/" + cfg.Services[w.Service].Routes[w.Route].Name
		}
		res.Candidates = append(res.Candidates, cand)
	}
	if !matched {
		res.Decision, res.Status, res.Reason = "deny", 404, "no_route"
		return res, nil
	}
	ref := refs[idx]
	svc, rt := &cfg.Services[ref.Service], &cfg.Services[ref.Service].Routes[ref.Route]
	res.Route = svc.Name + "/" + rt.Name
	if params.Len() > 0 {
		res.Params = map[string]any{}
	}
	pmap := map[string]string{}
	for i := range params.Len() {
		k, v := params.At(i)
		res.Params[k] = v
		pmap[k] = v
	}

	if (svc.RequireClientCert || rt.RequireClientCert) && req.Workload == "" {
		res.Decision, res.Status, res.Reason = "deny", 401, authn.ReasonCertMissing
		res.Auth = append(res.Auth, "refused: cert_missing (the route needs a client certificate: require_client_cert)")
		return res, nil
	}
	id, a, f := authenticateWithWorkload(ctx, cfg, req, opts, res)
	if f != nil {
		res.Decision, res.Status, res.Reason = "deny", f.Status, f.Reason
		res.Auth = append(res.Auth, fmt.Sprintf("refused: %s (%s)", f.Reason, f.Description))
		return res, nil
	}

	spec := policy.SpecFor(cfg, svc, rt)
	p, err := policy.Compile(spec)
	if err != nil {
		return nil, err
	}
	if id.GroupsUnknown {
		switch {
		case !p.UsesGroups():
			res.Auth = append(res.Auth, "groups named by reference (group overage); the route does not test groups, so they are not looked up")
		case a == nil:
			res.Auth = append(res.Auth, "groups named by reference (group overage); not looked up without a verified token")
		default:
			if id = a.ResolveGroups(ctx, id); id.GroupsUnknown {
				res.Auth = append(res.Auth, "groups named by reference (group overage); the provider could not resolve them (no group_overage, or Microsoft Graph failed: see the log)")
			} else {
				res.Auth = append(res.Auth, fmt.Sprintf("groups named by reference (group overage); %d resolved through Microsoft Graph", len(id.Groups)))
			}
		}
	}
	res.Identity = view(id)
	res.Mode = spec.Mode.String()
	in := &policy.Input{Identity: id, Time: at, Request: policy.Request{Method: method, Host: host, Path: path, Params: pmap, RawQuery: u.RawQuery, Headers: headers(req.Headers)}}
	if req.IP != "" {
		ip, err := netip.ParseAddr(req.IP)
		if err != nil {
			return nil, fmt.Errorf("bad IP %q", req.IP)
		}
		in.IP = ip
		if path := cfg.Policy.GeoIPDatabase; path != "" {
			db, err := geo.Open(path)
			if err != nil {
				return nil, err
			}
			in.Country = db.Country(ip)
			db.Close()
		}
	}
	d, steps := p.Explain(in)
	res.Steps, res.Reasons = steps, d.Reasons
	switch {
	case d.WouldDeny:
		res.Decision, res.Status, res.Reason = "would_deny", 200, d.DenyReason()
	case d.Allow:
		res.Decision, res.Status = "allow", 200
	default:
		res.Decision, res.Status, res.Reason = "deny", 403, d.DenyReason()
	}
	return res, nil
}

func headers(h map[string]string) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, v := range h {
		out[canonical(k)] = []string{v}
	}
	return out
}

func canonical(k string) string {
	parts := strings.Split(strings.ToLower(k), "-")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "-")
}

// authenticateWithWorkload is authenticate with the request's workload, as
// the gateway does it: a token or claims are the caller, the workload rides
// along; a workload alone is the caller.
func authenticateWithWorkload(ctx context.Context, cfg *config.Config, req Request, opts Options, res *Result) (*identity.Identity, *authn.Authenticator, *authn.Failure) {
	if req.Workload == "" {
		return authenticate(ctx, cfg, req, opts, res)
	}
	w, f := authn.WorkloadFromID(cfg.Identity.MTLS, req.Workload)
	if f != nil {
		return nil, nil, f
	}
	res.Auth = append(res.Auth, fmt.Sprintf("client certificate given directly: workload %s (chain, expiry and revocation not checked)", w.Subject))
	if req.Token == "" && req.Claims == nil {
		return w, nil, nil
	}
	id, a, f := authenticate(ctx, cfg, req, opts, res)
	if f != nil {
		return nil, nil, f
	}
	both := *id
	both.ClientCert = w.ClientCert
	return &both, a, nil
}

// authenticate returns the request's identity, and the authenticator that
// verified its token (nil for claims and offline decoding).
func authenticate(ctx context.Context, cfg *config.Config, req Request, opts Options, res *Result) (*identity.Identity, *authn.Authenticator, *authn.Failure) {
	switch {
	case req.Claims != nil:
		name := req.Provider
		if name == "" && len(cfg.Identity.Providers) > 0 {
			name = cfg.Identity.Providers[0].Name
		}
		res.Auth = append(res.Auth, "claims given directly: no token, signature not checked")
		return authn.IdentityFromClaims(name, req.Claims), nil, nil
	case req.Token == "":
		res.Auth = append(res.Auth, "no credentials")
		return nil, nil, &authn.Failure{Status: 401, Reason: authn.ReasonMissingCredentials, Description: "no credentials: send an Authorization: Bearer token"}
	case opts.Offline:
		claims, err := authn.DecodeUnverified(req.Token)
		if err != nil {
			return nil, nil, &authn.Failure{Status: 401, Reason: authn.ReasonMalformedToken, Description: "the token is not a well-formed JWT", Err: err}
		}
		iss, _ := claims["iss"].(string)
		for _, p := range cfg.Identity.Providers {
			if p.Issuer == iss {
				res.Auth = append(res.Auth, fmt.Sprintf("offline: token of provider %s decoded, signature and expiry NOT checked", p.Name))
				return authn.IdentityFromClaims(p.Name, claims), nil, nil
			}
		}
		return nil, nil, &authn.Failure{Status: 401, Reason: authn.ReasonWrongIssuer, Description: fmt.Sprintf("no provider has issuer %q", iss)}
	}
	a := opts.Authenticator
	if a == nil {
		var vs []authn.Verifier
		for _, p := range cfg.Identity.Providers {
			vs = append(vs, authn.FromConfig(p, nil))
		}
		a = authn.NewAuthenticator(16384, vs...)
	}
	id, f := a.AuthenticateToken(ctx, req.Token)
	if f != nil {
		return nil, nil, f
	}
	res.Auth = append(res.Auth, fmt.Sprintf("token verified by provider %s (signature, issuer, audience, expiry)", id.Provider))
	return id, a, nil
}
