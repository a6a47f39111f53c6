package e2e

import (
	"bufio"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ztgate/ztgate/test/harness"
)

// TestDemo runs "ztgate demo" as the README says and tries the calls it
// prints: allowed, denied for a missing role, no token, disguised path.
func TestDemo(t *testing.T) {
	cmd := exec.Command(harness.Binary, "demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--dir", t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &harness.SyncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-done
	}()

	guide := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		sent := false
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if !sent && strings.HasPrefix(sc.Text(), "Where to see the decisions") {
				guide <- b.String()
				sent = true
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	var g string
	select {
	case g = <-guide:
	case <-time.After(60 * time.Second):
		t.Fatalf("demo printed no guide; logs:\n%s", logs.String())
	}
	gw := regexp.MustCompile(`gateway\s+(http://\S+)`).FindStringSubmatch(g)
	reader := regexp.MustCompile(`export READER='([^']+)'`).FindStringSubmatch(g)
	writer := regexp.MustCompile(`export WRITER='([^']+)'`).FindStringSubmatch(g)
	if gw == nil || reader == nil || writer == nil {
		t.Fatalf("guide lacks the gateway URL or tokens:\n%s", g)
	}
	for _, want := range []string{"curl -s " + gw[1] + "/orders/42 -H \"Authorization: Bearer $READER\"", "/metrics", "/readyz"} {
		if !strings.Contains(g, want) {
			t.Errorf("guide lacks %q", want)
		}
	}
	url := gw[1]
	tests := []struct {
		name, method, path, token string
		status                    int
		reason                    string
	}{
		{"allowed", "GET", "/orders/42", reader[1], 200, ""},
		{"denied for a missing role", "POST", "/orders/42", reader[1], 403, "role_missing"},
		{"allowed writer with MFA", "POST", "/orders/42", writer[1], 200, ""},
		{"no token", "GET", "/orders/42", "", 401, "missing_credentials"},
		{"default deny on admin", "GET", "/admin/keys", writer[1], 403, "no_allow_rule"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, _ := do(t, tt.method, url+tt.path, tt.token, nil)
			if status != tt.status {
				t.Fatalf("got %d %s, want %d", status, body, tt.status)
			}
			if tt.reason != "" {
				if e := decodeError(t, body); e.Reason != tt.reason {
					t.Fatalf("got reason %q, want %q", e.Reason, tt.reason)
				}
			}
		})
	}
	// The disguised path of the guide (curl --path-as-is) never reaches /admin.
	addr := strings.TrimPrefix(url, "http://")
	status, body := rawRequest(t, addr, "GET /orders/../admin/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+writer[1]+"\r\nConnection: close\r\n\r\n")
	if status != 403 || !strings.Contains(body, "no_allow_rule") {
		t.Errorf("disguised path: got %d %s, want the admin route's default deny", status, body)
	}
	if !strings.Contains(g, "denied 403 no_allow_rule: a disguised path") {
		t.Errorf("the guide does not say what the disguised path gets (403 no_allow_rule):\n%s", g)
	}
	// Decisions are visible in the log.
	waitFor(t, "decision log lines", func() bool {
		l := logs.String()
		return strings.Contains(l, "decision=allow") && strings.Contains(l, "reason=role_missing")
	})
	// Where do we stand: the admin API assesses the demo from its traffic.
	adm := regexp.MustCompile(`admin\s+(http://\S+)`).FindStringSubmatch(g)
	if adm == nil || !strings.Contains(g, "assess --config") {
		t.Fatalf("guide lacks the admin URL or how to assess:\n%s", g)
	}
	resp, err := http.Get(adm[1] + "/v1/assess?format=md")
	if err != nil {
		t.Fatal(err)
	}
	report, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"# Zero Trust maturity assessment", "| orders/read-orders |", "### ID-04 Traffic on sensitive routes shows MFA: pass"} {
		if resp.StatusCode != 200 || !strings.Contains(string(report), want) {
			t.Errorf("GET /v1/assess?format=md: got %d, want a report with %q:\n%s", resp.StatusCode, want, report)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("demo exit after Ctrl-C: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("demo did not stop on Ctrl-C")
	}
}
