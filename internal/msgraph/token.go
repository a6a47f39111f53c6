package msgraph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// maxTenants bounds the Graph tokens held, one per tenant.
const maxTenants = 1000

// tokenSource gets the gateway's own Microsoft Graph tokens with the client
// credentials grant, one per tenant, from
// {authority}/{tenant}/oauth2/v2.0/token. A token is reused until shortly
// before it expires; one request per tenant is in flight at a time.
type tokenSource struct {
	authority string // no trailing slash
	clientID  string
	secret    string
	scope     string // {graph}/.default
	client    *http.Client
	now       func() time.Time

	flight singleflight.Group
	mu     sync.Mutex
	tokens map[string]graphToken // by tenant
}

type graphToken struct {
	value     string
	refreshAt time.Time
}

// token returns a Graph token for tenant tid.
func (s *tokenSource) token(ctx context.Context, tid string) (string, error) {
	if v, ok := s.cached(tid); ok {
		return v, nil
	}
	v, err, _ := s.flight.Do(tid, func() (any, error) {
		if v, ok := s.cached(tid); ok {
			return v, nil
		}
		t, err := s.fetch(ctx, tid)
		if err != nil {
			return "", err
		}
		s.mu.Lock()
		if len(s.tokens) >= maxTenants {
			now := s.now()
			for k, old := range s.tokens {
				if !now.Before(old.refreshAt) || len(s.tokens) >= maxTenants {
					delete(s.tokens, k)
				}
			}
		}
		s.tokens[tid] = t
		s.mu.Unlock()
		return t.value, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

func (s *tokenSource) cached(tid string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tid]
	if !ok || !s.now().Before(t.refreshAt) {
		return "", false
	}
	return t.value, true
}

// drop forgets tenant tid's token if it is still value (Graph refused it).
func (s *tokenSource) drop(tid, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[tid]; ok && t.value == value {
		delete(s.tokens, tid)
	}
}

// tokenResponse is the token endpoint's answer, success or error
// (RFC 6749 §5.1 and §5.2, with Entra ID's error_codes).
type tokenResponse struct {
	AccessToken string      `json:"access_token"`
	TokenType   string      `json:"token_type"`
	ExpiresIn   json.Number `json:"expires_in"` // a number, or a string of one
	Error       string      `json:"error"`
	Description string      `json:"error_description"`
	ErrorCodes  []int       `json:"error_codes"`
}

// errToken is a failure to get a Graph token.
var errToken = errors.New("no Microsoft Graph token")

func (s *tokenSource) fetch(ctx context.Context, tid string) (graphToken, error) {
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {s.clientID},
		"client_secret": {s.secret},
		"scope":         {s.scope},
	}
	endpoint := s.authority + "/" + url.PathEscape(tid) + "/oauth2/v2.0/token"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return graphToken{}, fmt.Errorf("%w: %v", errToken, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	start := s.now()
	resp, err := s.client.Do(req)
	if err != nil {
		// The error names the endpoint, never the form.
		return graphToken{}, fmt.Errorf("%w: %v", errToken, err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	dec := json.NewDecoder(io.LimitReader(resp.Body, 1<<20))
	dec.UseNumber()
	decErr := dec.Decode(&tr)
	if resp.StatusCode != http.StatusOK {
		if decErr == nil && tr.Error != "" {
			return graphToken{}, fmt.Errorf("%w: token endpoint status %d: %s%s: %s", errToken, resp.StatusCode, tr.Error, aadsts(tr.ErrorCodes), clip(tr.Description, 300))
		}
		return graphToken{}, fmt.Errorf("%w: token endpoint status %d", errToken, resp.StatusCode)
	}
	if decErr != nil {
		return graphToken{}, fmt.Errorf("%w: token response: %v", errToken, decErr)
	}
	secs, err := strconv.ParseInt(tr.ExpiresIn.String(), 10, 64)
	switch {
	case tr.AccessToken == "":
		return graphToken{}, fmt.Errorf("%w: token response without access_token", errToken)
	case !strings.EqualFold(tr.TokenType, "Bearer"):
		return graphToken{}, fmt.Errorf("%w: token type %q, want Bearer", errToken, tr.TokenType)
	case err != nil || secs <= 0:
		return graphToken{}, fmt.Errorf("%w: bad expires_in %q", errToken, tr.ExpiresIn)
	}
	life := time.Duration(secs) * time.Second
	// Refresh five minutes early (half the lifetime for short ones), so a
	// token never expires on its way to Graph.
	return graphToken{value: tr.AccessToken, refreshAt: start.Add(life - min(5*time.Minute, life/2))}, nil
}

func aadsts(codes []int) string {
	if len(codes) == 0 {
		return ""
	}
	return fmt.Sprintf(" (AADSTS%d)", codes[0])
}

func clip(s string, n int) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
