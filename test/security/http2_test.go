package security

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ztgate/ztgate/test/harness"
)

// TestHTTP2Abuse: rapid reset (CVE-2023-44487) and an oversized header
// list over HTTP/2 on TLS. The gateway keeps serving, and the upstream sees
// nothing of either.
func TestHTTP2Abuse(t *testing.T) {
	is, up := harness.NewIssuer(t), harness.NewUpstream(t)
	dir := t.TempDir()
	certFile, keyFile := harness.SelfSigned(t, dir)
	g := harness.StartGatewayIn(t, dir, fmt.Sprintf(`listen:
  address: "127.0.0.1:0"
  tls: { cert_file: %q, key_file: %q }
  max_header_bytes: 8192
admin: { address: "127.0.0.1:0" }
identity:
  providers:
    - { name: test, type: oidc, issuer: %q, audiences: [orders-api] }
services:
  - name: app
    upstream: %q
    routes: [ { name: all, match: { path: "/**" }, allow: { roles: [Admin] } } ]
`, certFile, keyFile, is.URL, up.URL))
	token := is.TokenFor(t, "mallory")

	dial := func() (*tls.Conn, *http2.Framer) {
		c, err := tls.Dial("tcp", g.Addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) // the test's own self-signed certificate
		if err != nil {
			t.Fatal(err)
		}
		if c.ConnectionState().NegotiatedProtocol != "h2" {
			t.Fatalf("negotiated %q, want h2", c.ConnectionState().NegotiatedProtocol)
		}
		c.Write([]byte(http2.ClientPreface))
		fr := http2.NewFramer(c, c)
		fr.WriteSettings()
		return c, fr
	}
	headers := func(extra map[string]string) []byte {
		var b bytes.Buffer
		enc := hpack.NewEncoder(&b)
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "gw.example"}, {":path", "/admin/keys"}, {"authorization", "Bearer " + token}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		for k, v := range extra {
			enc.WriteField(hpack.HeaderField{Name: k, Value: v})
		}
		return b.Bytes()
	}

	t.Run("rapid reset", func(t *testing.T) {
		up.Reset()
		c, fr := dial()
		defer c.Close()
		block := headers(nil)
		for i := uint32(0); i < 2000; i++ {
			id := 2*i + 1
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
				break // the server closed the connection: fine
			}
			if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
				break
			}
		}
	})
	t.Run("huge header list", func(t *testing.T) {
		c, fr := dial()
		defer c.Close()
		extra := map[string]string{}
		for i := range 400 {
			extra[fmt.Sprintf("x-h%d", i)] = strings.Repeat("a", 64)
		}
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headers(extra), EndStream: true, EndHeaders: true})
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		status := ""
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				break
			}
			if hf, ok := f.(*http2.HeadersFrame); ok {
				dec := hpack.NewDecoder(4096, nil)
				fields, _ := dec.DecodeFull(hf.HeaderBlockFragment())
				for _, fl := range fields {
					if fl.Name == ":status" {
						status = fl.Value
					}
				}
				break
			}
			if _, ok := f.(*http2.GoAwayFrame); ok {
				status = "goaway"
				break
			}
		}
		if status != "431" && status != "goaway" {
			t.Fatalf("got %q, want 431 or GOAWAY", status)
		}
	})
	// Still serving, and nothing reached the upstream: the caller lacks
	// the Admin role, so every one of those requests was refused.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", "https://"+g.Addr+"/admin/keys", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("after the abuse: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || resp.ProtoMajor != 2 {
		t.Fatalf("after the abuse: got %d over %s, want 403 over HTTP/2", resp.StatusCode, resp.Proto)
	}
	if n := len(up.Requests()); n != 0 {
		t.Fatalf("the upstream saw %d requests", n)
	}
}
