package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/ztgate/ztgate/internal/apikey"
	"github.com/ztgate/ztgate/internal/audit"
	"github.com/ztgate/ztgate/internal/config"
)

// Caller is who made an admin API request, for the audit trail.
type Caller struct {
	Name      string // admin-token or admin-loopback
	SrcIP     string
	RequestID string
	Method    string
	URL       string
}

// APIKeys manages API keys for the admin API.
type APIKeys interface {
	List(ctx context.Context) ([]apikey.Key, error)
	// Create makes a key and returns it (to be shown once) with its record.
	Create(ctx context.Context, r apikey.Request, by Caller) (string, apikey.Key, error)
	// Revoke revokes a key; changed is false when it already was.
	Revoke(ctx context.Context, id string, by Caller) (k apikey.Key, changed bool, err error)
}

// The admin API's access reasons.
const (
	ReasonAdminTokenRequired = "admin_token_required" // no or a wrong token where one is configured
	ReasonAdminNotLoopback   = "admin_not_loopback"   // a state-changing endpoint without a token, off loopback
	ReasonCrossOrigin        = "cross_origin_refused" // a browser request (Origin header) to a state-changing endpoint
)

// guard protects the /v1/ endpoints. With a token configured, every one
// requires it (Authorization: Bearer TOKEN). Without one, the other
// endpoints stay as open as the listener is, and the key management ones
// (manage true: they change state, or list who holds keys) answer only
// when the listener is on loopback, the caller is on loopback and the Host
// names loopback (so a web page cannot reach them through DNS rebinding).
// A request from a browser (with an Origin header) never reaches key
// management: there is no console for it yet, so no CSRF defence to lean on.
func guard(d Deps, manage bool, h func(http.ResponseWriter, *http.Request, Caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := Caller{SrcIP: remoteIP(r), RequestID: w.Header().Get("X-Request-Id"), Method: r.Method, URL: r.URL.Path}
		if manage && (r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") == "cross-site") {
			writeJSON(w, http.StatusForbidden, apiError{Error: "browsers may not call this endpoint", Reason: ReasonCrossOrigin})
			return
		}
		token := ""
		if d.Token != nil {
			token = d.Token()
		}
		switch {
		case token != "":
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			// Compared as hashes: constant time, whatever the lengths.
			g, t := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(token))
			if !ok || subtle.ConstantTimeCompare(g[:], t[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="ztgate-admin"`)
				writeJSON(w, http.StatusUnauthorized, apiError{Error: "this endpoint needs the admin token (Authorization: Bearer <admin.token>)", Reason: ReasonAdminTokenRequired})
				return
			}
			c.Name = "admin-token"
		case manage:
			if !d.Loopback || !loopbackIP(c.SrcIP) || !loopbackHost(r.Host) {
				writeJSON(w, http.StatusForbidden, apiError{Error: "without admin.token, this endpoint answers only on a loopback admin listener, to loopback callers", Reason: ReasonAdminNotLoopback})
				return
			}
			c.Name = "admin-loopback"
		}
		h(w, r, c)
	}
}

func remoteIP(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return ap.Addr().Unmap().String()
}

func loopbackIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.IsLoopback()
}

func loopbackHost(hostport string) bool {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	return strings.EqualFold(h, "localhost") || loopbackIP(strings.Trim(h, "[]"))
}

// keyView is a key as the admin API shows it: never its hash.
type keyView struct {
	apikey.Key
	State string `json:"state"` // active | expired | revoked
}

func view(k apikey.Key) keyView { return keyView{k, k.State(time.Now())} }

// createRequest is the body of POST /v1/apikeys.
type createRequest struct {
	Name    string   `json:"name"`
	Service string   `json:"service"`
	Roles   []string `json:"roles"`
	Scopes  []string `json:"scopes"`
	Expires string   `json:"expires"` // a duration: 90d, 720h
}

// apiKeyRoutes adds /v1/apikeys: GET lists, POST creates, POST
// /v1/apikeys/{id}/revoke revokes.
func apiKeyRoutes(mux *http.ServeMux, d Deps) {
	keys := d.APIKeys
	unavailable := func(w http.ResponseWriter) bool {
		if keys == nil {
			writeJSON(w, http.StatusNotFound, apiError{Error: "no store configured: there are no API keys", Reason: "no_store"})
			return true
		}
		return false
	}
	mux.HandleFunc("GET /v1/apikeys", guard(d, true, func(w http.ResponseWriter, r *http.Request, _ Caller) {
		if unavailable(w) {
			return
		}
		ks, err := keys.List(r.Context())
		if err != nil {
			keyError(w, err)
			return
		}
		out := make([]keyView, len(ks))
		for i, k := range ks {
			out[i] = view(k)
		}
		writeJSON(w, http.StatusOK, map[string]any{"api_keys": out})
	}))
	mux.HandleFunc("POST /v1/apikeys", guard(d, true, func(w http.ResponseWriter, r *http.Request, c Caller) {
		if unavailable(w) {
			return
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			writeJSON(w, http.StatusUnsupportedMediaType, apiError{Error: "send JSON (Content-Type: application/json)", Reason: "unsupported_media_type"})
			return
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		dec.DisallowUnknownFields()
		var req createRequest
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "bad request body: " + err.Error(), Reason: "bad_request"})
			return
		}
		ttl, err := config.ParseDuration(req.Expires)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "bad expires: want a duration such as 90d or 720h", Reason: "bad_request"})
			return
		}
		key, k, err := keys.Create(r.Context(), apikey.Request{Name: req.Name, Service: req.Service, Roles: req.Roles, Scopes: req.Scopes, TTL: ttl.D()}, c)
		if err != nil {
			keyError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{
			"key":     key,
			"api_key": view(k),
			"note":    "the key is shown only now: the store keeps its hash",
		})
	}))
	mux.HandleFunc("POST /v1/apikeys/{id}/revoke", guard(d, true, func(w http.ResponseWriter, r *http.Request, c Caller) {
		if unavailable(w) {
			return
		}
		k, changed, err := keys.Revoke(r.Context(), r.PathValue("id"), c)
		if err != nil && !errors.Is(err, apikey.ErrUnrecorded) {
			keyError(w, err)
			return
		}
		out := map[string]any{"api_key": view(k), "revoked": changed, "audited": err == nil}
		if err != nil {
			out["warning"] = err.Error()
		}
		writeJSON(w, http.StatusOK, out)
	}))
}

func keyError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, apikey.ErrDisabled):
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error(), Reason: "api_keys_disabled"})
	case errors.Is(err, apikey.ErrInvalidRequest):
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Reason: "bad_request"})
	case errors.Is(err, apikey.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error(), Reason: "api_key_not_found"})
	case errors.Is(err, audit.ErrUnavailable):
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "the change cannot be recorded right now, so it was not made", Reason: "audit_unavailable"})
	default:
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "the store is unavailable", Reason: "store_unavailable"})
	}
}
