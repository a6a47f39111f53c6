package export

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ztgate/ztgate/internal/audit"
)

// tlsConfig builds the TLS configuration towards a destination: trusted CAs
// (system roots without caFile) and an optional client certificate.
func tlsConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificates", caFile)
		}
		c.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// newHTTPClient returns a client of its own (not http.DefaultClient) for one
// exporter; the attempt's context bounds each request.
func newHTTPClient(tc *tls.Config) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = tc
	t.MaxIdleConnsPerHost = 4
	t.ResponseHeaderTimeout = time.Minute
	return &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// post sends body and turns the answer into an error the worker
// understands.
func post(ctx context.Context, c *http.Client, url string, hdr http.Header, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Permanent(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return statusError(resp.StatusCode, resp.Header, msg)
}

// statusError classifies an HTTP answer: nil for 2xx; a Retry-After the
// destination sent is honoured whatever the status; 408, 429 and 5xx are
// retried; any other status is permanent (the same batch would be refused
// again).
func statusError(code int, h http.Header, body []byte) error {
	if code >= 200 && code < 300 {
		return nil
	}
	snippet := strings.Join(strings.Fields(string(body)), " ")
	if len(snippet) > 200 {
		snippet = snippet[:200] + "..."
	}
	err := fmt.Errorf("HTTP %d %s: %s", code, http.StatusText(code), snippet)
	retryable := code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
	if !retryable {
		return Permanent(err)
	}
	if after := ParseRetryAfter(h, time.Now()); after > 0 {
		return &RetryAfter{After: after, Err: err}
	}
	return err
}

// envelope is a record as the jsonl and webhook exporters write it: the
// event exactly as hashed, with its place in the chain, so a receiver can
// verify the chain.
type envelope struct {
	Node     string          `json:"node"`
	Seq      int64           `json:"seq"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
	Event    json.RawMessage `json:"event"`
}

func marshalEnvelope(r *audit.Record) ([]byte, error) {
	body := json.RawMessage(r.Body)
	if len(body) == 0 {
		var err error
		if body, err = audit.Canonical(&r.Event); err != nil {
			return nil, err
		}
	}
	return json.Marshal(envelope{Node: r.Node, Seq: r.Seq, PrevHash: r.PrevHash, Hash: r.Hash, Event: body})
}
