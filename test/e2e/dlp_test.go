package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The upstream's answer: a card number, an e-mail address, a private key
// and a social security number where a JSON path says.
const dlpOrder = `{"customer":{"name":"Ada","email":"ada@example.com","ssn":"219-09-9999"},"card":"4111 1111 1111 1111","key":"-----BEGIN PRIVATE KEY-----\nTUlJRXZRSUJBREFOQmdrcWhraUc5dzBC\n-----END PRIVATE KEY-----\n"}`

// auditEvent is what the tests read of an audit event.
type auditEvent struct {
	EventType     string         `json:"event_type"`
	RequestID     string         `json:"request_id"`
	Decision      string         `json:"decision"`
	ResultDetails string         `json:"result_details"`
	Status        int            `json:"status"`
	DLP           map[string]int `json:"dlp"`
	OverLimit     bool           `json:"dlp_over_limit"`
	Unscanned     int64          `json:"dlp_unscanned_bytes"`
}

// auditEvents returns the events of one request, read with ztgate audit query.
func auditEvents(t *testing.T, cfgPath, requestID string) []auditEvent {
	t.Helper()
	out, err := runBinary("audit", "query", "--config", cfgPath, "--json", "--limit", "1000")
	if err != nil {
		t.Fatalf("audit query: %v\n%s", err, out)
	}
	var evs []auditEvent
	for _, line := range strings.Split(out, "\n") {
		var e auditEvent
		if json.Unmarshal([]byte(line), &e) == nil && e.RequestID == requestID {
			evs = append(evs, e)
		}
	}
	return evs
}

func eventOf(evs []auditEvent, typ string) *auditEvent {
	for i := range evs {
		if evs[i].EventType == typ {
			return &evs[i]
		}
	}
	return nil
}

// TestDLP: responses on DLP routes reach the client masked (held whole with
// an exact Content-Length, or streamed), are refused with 502 dlp_blocked
// when a block detector matches, and leave their counts, never the values,
// in the audit trail.
func TestDLP(t *testing.T) {
	is := newIssuer(t)
	var mu sync.Mutex
	seen := map[string]http.Header{}
	release := make(chan struct{})
	upSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = r.Header.Clone()
		mu.Unlock()
		switch r.URL.Path {
		case "/masked/order", "/blocked/order":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", fmt.Sprint(len(dlpOrder)))
			io.WriteString(w, dlpOrder)
		case "/masked/deflate", "/masked/gzip":
			// Encoded though the gateway did not ask for it.
			var b bytes.Buffer
			var zw io.WriteCloser = zlib.NewWriter(&b)
			enc := "deflate"
			if strings.HasSuffix(r.URL.Path, "gzip") {
				zw, enc = gzip.NewWriter(&b), "gzip"
			}
			io.WriteString(zw, dlpOrder)
			zw.Close()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", enc)
			w.Write(b.Bytes())
		case "/masked/br":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "br")
			w.Write([]byte{0x1b, 0x2f, 0x00})
		case "/stream/events":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"card\":\"4111111111111111\"}\n\n")
			w.(http.Flusher).Flush()
			<-release
			io.WriteString(w, "data: {\"to\":\"bob@example.com\"}\n\n")
		case "/stream/big", "/pass/big":
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "card 5555555555554444 "+strings.Repeat("x", 3000)+"\n")
			w.(http.Flusher).Flush()
			io.WriteString(w, strings.Repeat("y", 3000)+" late card 4111111111111111\n")
		}
	}))
	defer upSrv.Close()
	cfg := fmt.Sprintf(`listen: { address: "127.0.0.1:0" }
admin: { address: "127.0.0.1:0" }
store: { driver: sqlite, dsn: audit.db }
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
services:
  - name: shop
    upstream: %q
    routes:
      - name: masked
        match: { path: "/masked/**" }
        allow: { roles: [Shop] }
        dlp: { mask: [credit_card, email, private_key], json_paths: ["$.customer.ssn"] }
      - name: blocked
        match: { path: "/blocked/**" }
        allow: { roles: [Shop] }
        dlp: { mask: [credit_card, email], block: [private_key] }
      - name: streamed
        match: { path: "/stream/**" }
        allow: { roles: [Shop] }
        dlp: { mask: [credit_card, email], max_bytes: 4096, over_limit: block }
      - name: passed
        match: { path: "/pass/**" }
        allow: { roles: [Shop] }
        dlp: { mask: [credit_card], max_bytes: 4096, over_limit: pass }
`, is.URL, upSrv.URL)
	g := startGatewayIn(t, t.TempDir(), cfg)
	tok := is.TokenFor(t, "alice", "Shop")
	plain := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	get := func(path string, hdr map[string]string) (*http.Response, []byte, error) {
		req, _ := http.NewRequest("GET", g.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, body, err
	}
	leaks := []string{"4111", "ada@example.com", "219-09-9999", "BEGIN PRIVATE KEY", "TUlJRXZR"}
	noLeak := func(what string, body []byte) {
		t.Helper()
		for _, l := range leaks {
			if bytes.Contains(body, []byte(l)) {
				t.Errorf("%s: the response holds %q:\n%s", what, l, body)
			}
		}
	}

	t.Run("masked, held whole", func(t *testing.T) {
		resp, body, err := get("/masked/order", map[string]string{"Accept-Encoding": "br", "Range": "bytes=0-10"})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("got %d %s, %v; want 200", resp.StatusCode, body, err)
		}
		var got struct {
			Customer  struct{ Email, SSN string } `json:"customer"`
			Card, Key string
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("the masked body is not JSON: %v\n%s", err, body)
		}
		want := `{Customer:{Email:[REDACTED:email] SSN:[REDACTED:json_path]} Card:[REDACTED:credit_card] Key:[REDACTED:private_key]\n}`
		if s := strings.ReplaceAll(fmt.Sprintf("%+v", got), "\n", `\n`); s != want {
			t.Errorf("got %s, want %s", s, want)
		}
		noLeak("masked", body)
		if cl := resp.Header.Get("Content-Length"); cl != fmt.Sprint(len(body)) {
			t.Errorf("Content-Length: got %q, want %d (the masked length)", cl, len(body))
		}
		mu.Lock()
		h := seen["/masked/order"]
		mu.Unlock()
		if h.Get("Range") != "" || strings.Contains(h.Get("Accept-Encoding"), "br") {
			t.Errorf("the upstream saw Range %q and Accept-Encoding %q; want neither from the client", h.Get("Range"), h.Get("Accept-Encoding"))
		}
		evs := auditEvents(t, g.CfgPath, resp.Header.Get("X-Request-Id"))
		ev := eventOf(evs, "ApiRequest")
		if ev == nil || len(evs) != 1 {
			t.Fatalf("got events %+v, want one ApiRequest", evs)
		}
		if d := cmp.Diff(map[string]int{"credit_card": 1, "email": 1, "private_key": 1, "json_path": 1}, ev.DLP); d != "" || ev.Decision != "allow" {
			t.Errorf("audit event %+v: dlp counts (-want +got):\n%s", ev, d)
		}
	})

	t.Run("encoded upstream responses", func(t *testing.T) {
		for _, enc := range []string{"gzip", "deflate"} {
			resp, body, err := get("/masked/"+enc, nil)
			if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || !bytes.Contains(body, []byte("[REDACTED:credit_card]")) {
				t.Errorf("%s: got %d %q %s, %v; want 200, masked and not encoded", enc, resp.StatusCode, resp.Header.Get("Content-Encoding"), body, err)
			}
			noLeak(enc, body)
		}
		resp, body, _ := get("/masked/br", nil)
		if resp.StatusCode != 502 || decodeError(t, body).Reason != "dlp_unreadable" {
			t.Errorf("br: got %d %s, want 502 dlp_unreadable", resp.StatusCode, body)
		}
	})

	t.Run("blocked", func(t *testing.T) {
		resp, body, _ := get("/blocked/order", nil)
		if resp.StatusCode != 502 || decodeError(t, body).Reason != "dlp_blocked" {
			t.Fatalf("got %d %s, want 502 dlp_blocked", resp.StatusCode, body)
		}
		noLeak("blocked", body)
		ev := eventOf(auditEvents(t, g.CfgPath, resp.Header.Get("X-Request-Id")), "ApiRequest")
		if ev == nil || ev.Decision != "deny" || ev.Status != 502 || ev.ResultDetails != "dlp_blocked" ||
			!cmp.Equal(ev.DLP, map[string]int{"credit_card": 1, "email": 1, "private_key": 1}) {
			t.Errorf("got audit event %+v, want deny 502 dlp_blocked with the counts", ev)
		}
	})

	t.Run("streamed", func(t *testing.T) {
		req, _ := http.NewRequest("GET", g.URL+"/stream/events", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		first, err := br.ReadString('\n')
		if err != nil || first != "data: {\"card\":\"[REDACTED:credit_card]\"}\n" {
			t.Fatalf("got %q, %v before the upstream finished; want the first event, masked", first, err)
		}
		close(release)
		rest, _ := io.ReadAll(br)
		resp.Body.Close()
		if !strings.Contains(string(rest), `data: {"to":"[REDACTED:email]"}`) {
			t.Errorf("got %q, want the second event masked", rest)
		}
		id := resp.Header.Get("X-Request-Id")
		var evs []auditEvent
		waitFor(t, "the DlpResult event", func() bool {
			evs = auditEvents(t, g.CfgPath, id)
			return eventOf(evs, "DlpResult") != nil
		})
		if ev := eventOf(evs, "DlpResult"); !cmp.Equal(ev.DLP, map[string]int{"credit_card": 1, "email": 1}) || ev.Status != 200 || ev.OverLimit {
			t.Errorf("got DlpResult %+v, want the counts of both events", ev)
		}
		if ev := eventOf(evs, "ApiRequest"); ev == nil || ev.DLP != nil {
			t.Errorf("got ApiRequest %+v, want one without counts (they follow the stream)", ev)
		}
	})

	t.Run("past max_bytes, block: the stream is aborted", func(t *testing.T) {
		resp, body, err := get("/stream/big", nil)
		if err == nil {
			t.Fatalf("got a complete response (%d bytes), want it cut short", len(body))
		}
		if resp.StatusCode != 200 || !bytes.HasPrefix(body, []byte("card [REDACTED:credit_card] xxx")) || bytes.Contains(body, []byte("4111")) {
			t.Errorf("got %d %.60q..., want 200 and the first part masked", resp.StatusCode, body)
		}
		ev := eventOf(auditEvents(t, g.CfgPath, resp.Header.Get("X-Request-Id")), "DlpResult")
		if ev == nil || !ev.OverLimit || ev.ResultDetails != "dlp_too_large" || ev.Decision != "deny" {
			t.Errorf("got DlpResult %+v, want over the limit, dlp_too_large, deny", ev)
		}
	})

	t.Run("past max_bytes, pass: the rest unscanned and counted", func(t *testing.T) {
		resp, body, err := get("/pass/big", nil)
		if err != nil || resp.StatusCode != 200 || !bytes.HasPrefix(body, []byte("card [REDACTED:credit_card] xxx")) || !bytes.HasSuffix(body, []byte("late card 4111111111111111\n")) {
			t.Fatalf("got %d %.40q...%q, %v; want the first part masked and the rest as sent", resp.StatusCode, body, body[max(len(body)-40, 0):], err)
		}
		ev := eventOf(auditEvents(t, g.CfgPath, resp.Header.Get("X-Request-Id")), "DlpResult")
		// The masked token is longer than the card it replaced.
		unscanned := int64(len(body) - 4096 - (len("[REDACTED:credit_card]") - len("5555555555554444")))
		if ev == nil || !ev.OverLimit || ev.Unscanned != unscanned {
			t.Errorf("got DlpResult %+v, want over the limit with %d bytes unscanned", ev, unscanned)
		}
	})

	_, metrics, _ := do(t, "GET", g.Admin+"/metrics", "", nil)
	for _, want := range []string{
		`ztgate_dlp_matches_total{action="mask",detector="credit_card"}`,
		`ztgate_dlp_matches_total{action="block",detector="private_key"} 1`,
		`ztgate_dlp_unscanned_bytes_total{route="passed",service="shop"}`,
		`ztgate_denials_total{reason="dlp_blocked",route="blocked",service="shop"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
