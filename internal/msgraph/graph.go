package msgraph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Bounds on what one lookup reads from Graph.
const (
	maxBody  = 8 << 20 // one response
	maxPages = 200     // of up to 999 entries each
	pageSize = 999     // Graph's largest $top
	// maxRetryAfter is the longest Retry-After honoured; a longer one
	// fails the lookup and holds back the tenant's lookups for that long.
	maxRetryAfter = 5 * time.Minute
	// defaultRetryAfter is the wait after a 429 or 503 without Retry-After.
	defaultRetryAfter = time.Second
)

// Lookup failures a caller may tell apart (errors.Is).
var (
	ErrThrottled    = errors.New("microsoft graph throttled the lookup (429 or 503 with Retry-After)")
	ErrUnauthorized = errors.New("microsoft graph refused the gateway's token (401)")
	ErrForbidden    = errors.New("microsoft graph denied the lookup (403): the application lacks a permission or admin consent")
	ErrNotFound     = errors.New("microsoft graph does not know the object (404)")
	ErrTimeout      = errors.New("microsoft graph lookup timed out")
)

// errSizeLimit is getMemberObjects' 400 Directory_ResultSizeLimitExceeded:
// more than 11,000 ids; transitiveMemberOf pages them instead.
var errSizeLimit = errors.New("microsoft graph: result size limit exceeded")

// graphError is Graph's error body: {"error": {"code": ..., "message": ...}}.
type graphError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// call sends one Graph request with tenant tid's token and decodes a 200
// answer into out. A refused token (401) is replaced once; 429, 503 and
// 504 are retried after their Retry-After while ctx's deadline allows.
func (r *Resolver) call(ctx context.Context, tid, method, url string, body []byte, out any) error {
	if until, ok := r.throttled(tid); ok {
		return fmt.Errorf("%w: tenant held back until %s", ErrThrottled, until.UTC().Format(time.RFC3339))
	}
	renewed := false
	for attempt := 0; ; attempt++ {
		tok, err := r.tokens.token(ctx, tid)
		if err != nil {
			return err
		}
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, url, rd)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := r.client.Do(req)
		if err != nil {
			return fmt.Errorf("microsoft graph: %w", err)
		}
		if resp.StatusCode == http.StatusOK {
			err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(out)
			resp.Body.Close()
			if err != nil {
				return fmt.Errorf("microsoft graph: response: %w", err)
			}
			return nil
		}
		var ge graphError
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&ge)
		resp.Body.Close()
		code := ge.Error.Code
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			if !renewed {
				// The token may have been revoked or rolled over early.
				r.tokens.drop(tid, tok)
				renewed = true
				continue
			}
			return fmt.Errorf("%w: %s", ErrUnauthorized, code)
		case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			wait := retryAfter(resp.Header.Get("Retry-After"), time.Now())
			deadline, ok := ctx.Deadline()
			if attempt < 2 && wait <= maxRetryAfter && (!ok || time.Now().Add(wait).Before(deadline)) {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				case <-t.C:
				}
				continue
			}
			r.holdBack(tid, min(wait, maxRetryAfter))
			return fmt.Errorf("%w: status %d, Retry-After %s", ErrThrottled, resp.StatusCode, wait)
		case http.StatusForbidden:
			return fmt.Errorf("%w: %s", ErrForbidden, code)
		case http.StatusNotFound:
			return fmt.Errorf("%w: %s", ErrNotFound, code)
		case http.StatusBadRequest:
			if code == "Directory_ResultSizeLimitExceeded" {
				return errSizeLimit
			}
		}
		return fmt.Errorf("microsoft graph: status %d %s: %s", resp.StatusCode, code, clip(ge.Error.Message, 200))
	}
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return defaultRetryAfter
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return defaultRetryAfter
		}
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), 24*time.Hour)
	}
	return defaultRetryAfter
}

// memberObjects is POST {object}/getMemberObjects: the ids of the groups,
// directory roles and administrative units the object is a member of,
// transitively, in one answer.
func (r *Resolver) memberObjects(ctx context.Context, tid, object string) ([]string, error) {
	body, _ := json.Marshal(map[string]bool{"securityEnabledOnly": r.cfg.SecurityEnabledOnly})
	var out struct {
		Value []string `json:"value"`
	}
	if err := r.call(ctx, tid, http.MethodPost, object+"/getMemberObjects", body, &out); err != nil {
		return nil, err
	}
	if out.Value == nil {
		return nil, errors.New("microsoft graph: getMemberObjects answer without value")
	}
	return out.Value, nil
}

// transitiveMemberOf is GET {object}/transitiveMemberOf/microsoft.graph.group,
// followed through its @odata.nextLink pages.
func (r *Resolver) transitiveMemberOf(ctx context.Context, tid, object string) ([]string, error) {
	var groups []string
	err := r.pages(ctx, tid, object+"/transitiveMemberOf/microsoft.graph.group?$select=id,securityEnabled&$top="+strconv.Itoa(pageSize), func(raw json.RawMessage) error {
		var g struct {
			ID              string `json:"id"`
			SecurityEnabled *bool  `json:"securityEnabled"`
		}
		if err := json.Unmarshal(raw, &g); err != nil {
			return err
		}
		if g.ID == "" {
			return errors.New("group without id")
		}
		if !r.cfg.SecurityEnabledOnly || (g.SecurityEnabled != nil && *g.SecurityEnabled) {
			groups = append(groups, g.ID)
		}
		return nil
	})
	return groups, err
}

// assignedGroups is the ids of the groups assigned to the application
// r.cfg.AssignedToApp in tenant tid: its service principal's
// appRoleAssignedTo entries for groups.
func (r *Resolver) assignedGroups(ctx context.Context, tid string) ([]string, error) {
	var groups []string
	u := r.graph + "/v1.0/servicePrincipals(appId='" + r.cfg.AssignedToApp + "')/appRoleAssignedTo?$select=principalId,principalType&$top=" + strconv.Itoa(pageSize)
	err := r.pages(ctx, tid, u, func(raw json.RawMessage) error {
		var a struct {
			PrincipalID   string `json:"principalId"`
			PrincipalType string `json:"principalType"`
		}
		if err := json.Unmarshal(raw, &a); err != nil {
			return err
		}
		if a.PrincipalType == "Group" && a.PrincipalID != "" {
			groups = append(groups, a.PrincipalID)
		}
		return nil
	})
	return groups, err
}

// pages reads a collection from url and the pages its @odata.nextLink
// names, giving each entry to add. A next link must stay on the configured
// Graph host: the gateway's token goes nowhere else.
func (r *Resolver) pages(ctx context.Context, tid, url string, add func(json.RawMessage) error) error {
	for n := 0; ; n++ {
		if n == maxPages {
			return fmt.Errorf("microsoft graph: more than %d pages", maxPages)
		}
		var page struct {
			Value    []json.RawMessage `json:"value"`
			NextLink string            `json:"@odata.nextLink"`
		}
		if err := r.call(ctx, tid, http.MethodGet, url, nil, &page); err != nil {
			return err
		}
		if page.Value == nil {
			return errors.New("microsoft graph: collection answer without value")
		}
		for _, raw := range page.Value {
			if err := add(raw); err != nil {
				return fmt.Errorf("microsoft graph: entry: %w", err)
			}
		}
		if page.NextLink == "" {
			return nil
		}
		if !strings.HasPrefix(page.NextLink, r.graph+"/") {
			return fmt.Errorf("microsoft graph: @odata.nextLink leaves %s: refused", r.graph)
		}
		url = page.NextLink
	}
}
