// Package graphtest is a local stand-in for Microsoft Graph and for the
// Microsoft Entra ID token endpoint, for tests: the real services cannot be
// reached from a test. It follows their documented contracts as far as group
// lookups use them: the client credentials grant (form POST, per-tenant
// tokens, AADSTS errors), getMemberObjects ({"securityEnabledOnly": ...}
// in, {"value": [...]} out, 11,000 ids at most), transitiveMemberOf and
// appRoleAssignedTo paged through @odata.nextLink, 401 for a token it did not
// issue, and canned faults such as 429 with Retry-After.
package graphtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Group is a group as Graph describes it.
type Group struct {
	ID              string
	SecurityEnabled bool
}

// Response is a canned answer to the next Graph request.
type Response struct {
	Status int
	Header http.Header
	Body   string
}

// Call is one Graph request as received.
type Call struct {
	Method, Path, Query string
	Tenant              string // of the token it carried
	Body                string
}

// Server is Microsoft Graph (under /v1.0/) and the token endpoint
// (/{tenant}/oauth2/v2.0/token) on one loopback server.
type Server struct {
	URL          string // also the Graph base URL
	ClientID     string // the only client the token endpoint knows
	ClientSecret string
	// TokenLifetime is the expires_in of issued tokens (default 3599 s).
	TokenLifetime time.Duration
	// SizeLimit is getMemberObjects' largest answer (default 11,000).
	SizeLimit int
	// MaxPage caps a page below the $top asked for, as Graph may.
	MaxPage int
	// Delay holds every Graph answer back (set before the first request).
	Delay time.Duration

	srv        *httptest.Server
	tokenCalls atomic.Int64
	graphCalls atomic.Int64

	mu       sync.Mutex
	members  map[string][]Group  // tenant/kind/oid (lower case)
	assigned map[string][]string // tenant/appId -> group ids
	tokens   map[string]issued
	next     []Response
	calls    []Call
}

type issued struct {
	tenant string
	exp    time.Time
}

// New starts a server with a client it knows; it stops when t ends.
func New(t testing.TB, clientID, clientSecret string) *Server {
	s := &Server{ClientID: clientID, ClientSecret: clientSecret, members: map[string][]Group{}, assigned: map[string][]string{}, tokens: map[string]issued{}}
	s.srv = httptest.NewServer(s)
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// Close stops the server: from then on it cannot be reached.
func (s *Server) Close() { s.srv.Close() }

// SetUser makes user oid of tenant tid a member of groups (transitively).
func (s *Server) SetUser(tid, oid string, groups ...Group) { s.set(tid, "users", oid, groups) }

// SetServicePrincipal makes service principal oid of tenant tid a member of
// groups.
func (s *Server) SetServicePrincipal(tid, oid string, groups ...Group) {
	s.set(tid, "servicePrincipals", oid, groups)
}

func (s *Server) set(tid, kind, oid string, groups []Group) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.members[strings.ToLower(tid+"/"+kind+"/"+oid)] = groups
}

// Assign assigns groups to application appID (its service principal in
// tenant tid).
func (s *Server) Assign(tid, appID string, groups ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := strings.ToLower(tid + "/" + appID)
	s.assigned[k] = append(s.assigned[k], groups...)
}

// Next queues canned answers for the next Graph requests (not token
// requests), after their token is checked.
func (s *Server) Next(rs ...Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next = append(s.next, rs...)
}

// RevokeTokens makes every token issued so far invalid, as a rolled-over
// signing key or a revoked consent would.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// TokenCalls is how many token requests arrived.
func (s *Server) TokenCalls() int { return int(s.tokenCalls.Load()) }

// GraphCalls is how many Graph requests arrived.
func (s *Server) GraphCalls() int { return int(s.graphCalls.Load()) }

// Calls returns the Graph requests received.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/v1.0/") {
		s.graph(w, r)
		return
	}
	s.TokenHandler().ServeHTTP(w, r)
}

// TokenHandler is the token endpoint alone, for mounting on a local
// Entra ID issuer at /{tenant}/oauth2/v2.0/token.
func (s *Server) TokenHandler() http.Handler {
	return http.HandlerFunc(s.token)
}

// oauthError writes an error of the token endpoint.
func oauthError(w http.ResponseWriter, status int, code string, aadsts int, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error":             code,
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: 0000 Correlation ID: 0000 Timestamp: %s", aadsts, desc, time.Now().UTC().Format("2006-01-02 15:04:05Z")),
		"error_codes":       []int{aadsts},
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id":          "00000000-0000-0000-0000-000000000000",
		"correlation_id":    "00000000-0000-0000-0000-000000000000",
	})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.tokenCalls.Add(1)
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) != 4 || parts[1] != "oauth2" || parts[2] != "v2.0" || parts[3] != "token" {
		http.NotFound(w, r)
		return
	}
	tenant := parts[0]
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts POST requests.")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		oauthError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", 900144, "Malformed request body.")
		return
	}
	if r.URL.RawQuery != "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", 900144, "Parameters belong in the body.")
		return
	}
	f := r.PostForm
	switch {
	case !guidRE.MatchString(tenant):
		oauthError(w, http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf("Tenant '%s' not found.", tenant))
	case f.Get("grant_type") != "client_credentials":
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
	case f.Get("client_id") != s.ClientID:
		oauthError(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory.", f.Get("client_id")))
	case f.Get("client_secret") != s.ClientSecret:
		oauthError(w, http.StatusUnauthorized, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.")
	case f.Get("scope") != s.URL+"/.default":
		oauthError(w, http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.", f.Get("scope")))
	default:
		var b [24]byte
		_, _ = rand.Read(b[:])
		tok := hex.EncodeToString(b[:])
		life := s.TokenLifetime
		if life == 0 {
			life = 3599 * time.Second
		}
		s.mu.Lock()
		s.tokens[tok] = issued{tenant: strings.ToLower(tenant), exp: time.Now().Add(life)}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store, no-cache")
		secs := int(life / time.Second)
		_ = json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": tok})
	}
}

// graphError writes Graph's error body.
func graphError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": code, "message": msg,
		"innerError": map[string]any{"date": time.Now().UTC().Format(time.RFC3339), "request-id": "00000000-0000-0000-0000-000000000000"},
	}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

var (
	objectPath = regexp.MustCompile(`^/v1\.0/(users|servicePrincipals)/([^/]+)/(getMemberObjects|transitiveMemberOf/microsoft\.graph\.group)$`)
	assignPath = regexp.MustCompile(`^/v1\.0/servicePrincipals\(appId='([^']+)'\)/appRoleAssignedTo$`)
)

func (s *Server) graph(w http.ResponseWriter, r *http.Request) {
	s.graphCalls.Add(1)
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	body := string(raw)
	if d := s.Delay; d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	// The token first, as Graph checks it before anything else.
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || tok == "" {
		graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty.")
		return
	}
	s.mu.Lock()
	is, known := s.tokens[tok]
	s.calls = append(s.calls, Call{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Tenant: is.tenant, Body: body})
	var canned *Response
	if known && time.Now().Before(is.exp) && len(s.next) > 0 {
		canned = &s.next[0]
		s.next = s.next[1:]
	}
	s.mu.Unlock()
	if !known || !time.Now().Before(is.exp) {
		graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
		return
	}
	if canned != nil {
		for k, vs := range canned.Header {
			w.Header()[k] = vs
		}
		if canned.Body == "" && canned.Status == http.StatusTooManyRequests {
			graphError(w, canned.Status, "TooManyRequests", "Too many requests.")
			return
		}
		w.WriteHeader(canned.Status)
		_, _ = w.Write([]byte(canned.Body))
		return
	}
	if m := assignPath.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodGet {
		s.mu.Lock()
		ids := s.assigned[strings.ToLower(is.tenant+"/"+m[1])]
		s.mu.Unlock()
		items := make([]map[string]any, len(ids))
		for i, id := range ids {
			items[i] = map[string]any{"id": fmt.Sprintf("assignment-%d", i), "principalId": id, "principalType": "Group", "appRoleId": "00000000-0000-0000-0000-000000000000"}
		}
		s.page(w, r, items)
		return
	}
	m := objectPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		graphError(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Resource not found for the segment '%s'.", r.URL.Path))
		return
	}
	kind, oid, op := m[1], m[2], m[3]
	s.mu.Lock()
	groups, found := s.members[strings.ToLower(is.tenant+"/"+kind+"/"+oid)]
	s.mu.Unlock()
	if !found {
		graphError(w, http.StatusNotFound, "Request_ResourceNotFound", fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", oid))
		return
	}
	if op == "getMemberObjects" {
		if r.Method != http.MethodPost {
			graphError(w, http.StatusMethodNotAllowed, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
			return
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			graphError(w, http.StatusUnsupportedMediaType, "Request_BadRequest", "A supported MIME type could not be found that matches the content type of the response.")
			return
		}
		var in map[string]json.RawMessage
		var only bool
		if err := json.Unmarshal([]byte(body), &in); err != nil || in["securityEnabledOnly"] == nil || json.Unmarshal(in["securityEnabledOnly"], &only) != nil || len(in) != 1 {
			graphError(w, http.StatusBadRequest, "Request_BadRequest", "The request body must be {\"securityEnabledOnly\": true|false}.")
			return
		}
		ids := []string{}
		for _, g := range groups {
			if !only || g.SecurityEnabled {
				ids = append(ids, g.ID)
			}
		}
		limit := s.SizeLimit
		if limit == 0 {
			limit = 11000
		}
		if len(ids) > limit {
			graphError(w, http.StatusBadRequest, "Directory_ResultSizeLimitExceeded", fmt.Sprintf("Request or response size exceeds the limit of %d objects.", limit))
			return
		}
		writeJSON(w, map[string]any{"@odata.context": s.URL + "/v1.0/$metadata#Collection(Edm.String)", "value": ids})
		return
	}
	if r.Method != http.MethodGet {
		graphError(w, http.StatusMethodNotAllowed, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
		return
	}
	sel := r.URL.Query().Get("$select")
	items := make([]map[string]any, len(groups))
	for i, g := range groups {
		it := map[string]any{"@odata.type": "#microsoft.graph.group", "id": g.ID}
		if sel == "" || strings.Contains(sel, "securityEnabled") {
			it["securityEnabled"] = g.SecurityEnabled
		}
		if sel == "" {
			it["displayName"] = "group " + g.ID
		}
		items[i] = it
	}
	s.page(w, r, items)
}

// page answers one page of a collection, with @odata.nextLink when more
// follow. $top is 1 to 999 (default 100); $skiptoken is opaque to clients.
func (s *Server) page(w http.ResponseWriter, r *http.Request, items []map[string]any) {
	q := r.URL.Query()
	top := 100
	if v := q.Get("$top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 999 {
			graphError(w, http.StatusBadRequest, "Request_BadRequest", fmt.Sprintf("Invalid page size specified: '%s'. Must be between 1 and 999 inclusive.", v))
			return
		}
		top = n
	}
	skip := 0
	if v := q.Get("$skiptoken"); v != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(v, "X'"))
		if err != nil || n < 0 || n > len(items) {
			graphError(w, http.StatusBadRequest, "Request_BadRequest", "Invalid skip token.")
			return
		}
		skip = n
	}
	if s.MaxPage > 0 {
		top = min(top, s.MaxPage)
	}
	end := min(skip+top, len(items))
	out := map[string]any{"@odata.context": s.URL + "/v1.0/$metadata#directoryObjects", "value": items[skip:end]}
	if end < len(items) {
		q.Set("$skiptoken", "X'"+strconv.Itoa(end))
		next := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawQuery: q.Encode()}
		out["@odata.nextLink"] = next.String()
	}
	writeJSON(w, out)
}
