package gateway

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/ztgate/ztgate/internal/config"
)

// corsPolicy answers preflights at the gateway and decorates responses for
// allowed origins. An origin is never reflected unless it is listed.
type corsPolicy struct {
	origins     []string
	any         bool
	methods     []string
	headers     []string // lower case
	exposed     string
	credentials bool
	maxAge      string
}

func newCORS(c *config.CORS) *corsPolicy {
	if c == nil {
		return nil
	}
	p := &corsPolicy{credentials: c.AllowCredentials, maxAge: strconv.Itoa(int(c.MaxAge.D().Seconds())), exposed: strings.Join(c.ExposedHeaders, ", ")}
	for _, o := range c.AllowedOrigins {
		if o == "*" {
			p.any = true
			continue
		}
		p.origins = append(p.origins, strings.TrimSuffix(strings.ToLower(o), "/"))
	}
	p.methods = c.AllowedMethods
	if len(p.methods) == 0 {
		p.methods = []string{"GET", "HEAD", "POST"}
	}
	hs := c.AllowedHeaders
	if len(hs) == 0 {
		hs = []string{"Authorization", "Content-Type"}
	}
	for _, h := range hs {
		p.headers = append(p.headers, strings.ToLower(h))
	}
	return p
}

func (p *corsPolicy) allowed(origin string) bool {
	return origin != "" && (p.any || slices.Contains(p.origins, strings.ToLower(origin)))
}

// ReasonCORSRefused is the reason of a refused preflight.
const ReasonCORSRefused = "cors_preflight_refused"

// handle answers a preflight (done) or adds CORS headers for an allowed
// origin. Requests from other origins get no CORS headers, so the browser
// keeps their responses from the page.
func (p *corsPolicy) handle(w http.ResponseWriter, r *http.Request) (done bool, he *httpError) {
	origin := r.Header.Get("Origin")
	h := w.Header()
	h.Add("Vary", "Origin")
	reqMethod := r.Header.Get("Access-Control-Request-Method")
	if r.Method == http.MethodOptions && reqMethod != "" {
		if !p.allowed(origin) || !slices.Contains(p.methods, reqMethod) {
			return true, &httpError{Code: http.StatusForbidden, Reason: ReasonCORSRefused, Public: "cross-origin request not allowed"}
		}
		for _, rh := range strings.Split(r.Header.Get("Access-Control-Request-Headers"), ",") {
			if rh = strings.ToLower(strings.TrimSpace(rh)); rh != "" && !slices.Contains(p.headers, rh) {
				return true, &httpError{Code: http.StatusForbidden, Reason: ReasonCORSRefused, Public: "cross-origin request header not allowed: " + rh}
			}
		}
		p.setOrigin(h, origin)
		h.Set("Access-Control-Allow-Methods", strings.Join(p.methods, ", "))
		h.Set("Access-Control-Allow-Headers", strings.Join(p.headers, ", "))
		h.Set("Access-Control-Max-Age", p.maxAge)
		return true, nil
	}
	if p.allowed(origin) {
		p.setOrigin(h, origin)
		if p.exposed != "" {
			h.Set("Access-Control-Expose-Headers", p.exposed)
		}
	}
	return false, nil
}

func (p *corsPolicy) setOrigin(h http.Header, origin string) {
	if p.any && !p.credentials {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if p.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}
