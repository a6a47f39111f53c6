package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/ztgate/ztgate/internal/inject"
)

// httpError is what a client is told about a refused or failed request.
// Public is safe to show; Err is logged only, never sent.
type httpError struct {
	Code   int
	Reason string // stable machine-readable code
	Public string
	Err    error
	// Header is added to the response (WWW-Authenticate, Allow, ...).
	Header http.Header
}

func (e *httpError) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Err.Error()
	}
	return e.Reason
}

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error     string `json:"error"`
	Reason    string `json:"reason"`
	RequestID string `json:"request_id"`
}

// writeError writes e as JSON. Internal error text never reaches the client.
func writeError(w http.ResponseWriter, requestID string, e *httpError) {
	h := w.Header()
	for k, vs := range e.Header {
		h[k] = vs
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(headerRequestID, requestID)
	public := e.Public
	if public == "" {
		public = http.StatusText(e.Code)
	}
	body, _ := json.Marshal(errorBody{Error: public, Reason: e.Reason, RequestID: requestID})
	w.WriteHeader(e.Code)
	_, _ = w.Write(append(body, '\n'))
}

// Stable reason codes of the gateway itself.
const (
	ReasonNoRoute             = "no_route"
	ReasonBadRequestTarget    = "bad_request_target"
	ReasonConnectRefused      = "connect_refused"
	ReasonBadHost             = "bad_host"
	ReasonBodyTooLarge        = "body_too_large"
	ReasonHeadersTooLarge     = "headers_too_large"
	ReasonUpstreamUnavailable = "upstream_unavailable"
	ReasonUpstreamTimeout     = "upstream_timeout"
	ReasonInternal            = "internal_error"
	// ReasonSecretUnavailable: a credential the upstream request must carry
	// cannot be served (503); the upstream sees nothing.
	ReasonSecretUnavailable = inject.ReasonSecretUnavailable
)
