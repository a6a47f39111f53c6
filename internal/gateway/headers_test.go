package gateway

import (
	"net/http"
	"strings"
	"testing"
)

func TestIsSpoofable(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"X-Forwarded-For", true},
		{"x-forwarded-for", true},
		{"X_Forwarded_For", true}, // regression: CGI servers map _ to -
		{"x_forwarded_for", true},
		{"Forwarded", true},
		{"X-Real-IP", true},
		{"X-MS-CLIENT-PRINCIPAL-NAME", true},
		{"X-MS-CLIENT-PRINCIPAL", true},
		{"X-MS-TOKEN-AAD-ACCESS-TOKEN", true},
		{"X-Ztgate-Anything", true},
		{"X-Auth-Request-Groups", true},
		{"X-Forwarded-Whatever", true},
		{"X-Request-Id", true},
		{"X-ARR-ClientCert", true},
		{"Content-Type", false},
		{"Accept", false},
		{"X-Custom", false},
		{"Authorization", false}, // handled by forward_authorization
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isSpoofable(tt.name); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStripSpoofableKeepsOthers(t *testing.T) {
	h := http.Header{"X-Forwarded-For": {"1.2.3.4"}, "Content-Type": {"application/json"}, "X_forwarded_for": {"6.6.6.6"}}
	stripSpoofable(h)
	if len(h) != 1 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("got %v, want only Content-Type", h)
	}
}

func TestValidClientRequestID(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"abc-123", true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"", false},
		{"a b", false},
		{"a\r\nX-Injected: 1", false},
		{"a\"b", false},
		{string(make([]byte, 65)), false},
	}
	for _, tt := range tests {
		if got := validClientRequestID(tt.in); got != tt.want {
			t.Errorf("validClientRequestID(%q): got %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestRequestHost(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"api.example.com", "api.example.com", true},
		{"API.Example.COM:8443", "api.example.com", true},
		{"api.example.com.", "api.example.com", true},
		{"", "", true},
		{"[::1]:8080", "::1", true},
		{"evil.com/x", "", false},
		{"a:b", "", false},
		{"evil\x00.com", "", false},
	}
	for _, tt := range tests {
		got, ok := requestHost(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("requestHost(%q): got %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzHeaderHandling(f *testing.F) {
	f.Add("X-Forwarded-For", "1.2.3.4", "api.example.com:443", "req-1")
	f.Add("x_ms_client_principal", "e30=", "[::1]:8080", "a\r\nb")
	f.Add("X-Ztgate-Anything", "", "", "")
	f.Fuzz(func(t *testing.T, name, value, host, clientID string) {
		h := http.Header{}
		h[name] = []string{value}
		h["Content-Type"] = []string{"application/json"}
		stripSpoofable(h)
		for k := range h {
			if isSpoofable(k) {
				t.Fatalf("spoofable header %q survived", k)
			}
		}
		if name != "Content-Type" && h.Get("Content-Type") != "application/json" {
			t.Fatal("a plain header was stripped")
		}
		if got, ok := requestHost(host); ok && strings.ContainsAny(got, "/?#@ \t\r\n") {
			t.Fatalf("requestHost(%q) accepted %q", host, got)
		}
		if validClientRequestID(clientID) && strings.ContainsAny(clientID, "\r\n\" \t") {
			t.Fatalf("client request id %q accepted", clientID)
		}
	})
}
