package export

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ztgate/ztgate/internal/config"
)

// rsyslog is a real rsyslogd on loopback, in the foreground, with its own
// configuration: imtcp (plain and TLS) and imudp inputs on ephemeral ports,
// writing every message's parsed RFC 5424 fields to a file.
type rsyslog struct {
	out                       string
	tcpPort, tlsPort, udpPort int
	caFile                    string
}

// rsyslogOrSkip finds rsyslogd: ./scripts/test installs it (Debian packages
// rsyslog and rsyslog-gnutls). Without it the test fails, unless -short.
func rsyslogOrSkip(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		if bin = "/usr/sbin/rsyslogd"; fileExists(bin) {
			return bin
		}
		if testing.Short() {
			t.Skip("rsyslogd is not installed (Debian package rsyslog; ./scripts/test installs it); skipped under -short")
		}
		t.Fatal("rsyslogd is not installed: ./scripts/test installs it (Debian packages rsyslog and rsyslog-gnutls)")
	}
	return bin
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// selfSigned writes a certificate for 127.0.0.1 that is its own CA.
func selfSigned(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(k)
	cert, key = filepath.Join(dir, "syslog.pem"), filepath.Join(dir, "syslog.key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return cert, key
}

func startRsyslog(t *testing.T) *rsyslog {
	t.Helper()
	bin := rsyslogOrSkip(t)
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	r := &rsyslog{out: filepath.Join(dir, "out.log"), tcpPort: freePort(t, "tcp"), tlsPort: freePort(t, "tcp"), udpPort: freePort(t, "udp"), caFile: cert}
	conf := fmt.Sprintf(`global(workDirectory=%[1]q maxMessageSize="64k"
       defaultNetstreamDriverCAFile=%[2]q defaultNetstreamDriverCertFile=%[2]q defaultNetstreamDriverKeyFile=%[3]q)
module(load="imudp")
module(load="imtcp" maxSessions="100")
input(type="imtcp" name="tcp" address="127.0.0.1" port="%[4]d")
input(type="imtcp" name="tls" address="127.0.0.1" port="%[5]d" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imudp" name="udp" address="127.0.0.1" port="%[6]d")
template(name="fields" type="string" string="%%inputname%%|%%syslogfacility-text%%|%%syslogseverity-text%%|%%hostname%%|%%app-name%%|%%msgid%%|%%msg%%\n")
action(type="omfile" file=%[7]q template="fields")
`, dir, cert, key, r.tcpPort, r.tlsPort, r.udpPort, r.out)
	confFile := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-N1", "-f", confFile).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd refuses the test configuration: %v\n%s", err, out)
	}
	logFile := filepath.Join(dir, "rsyslogd.log")
	logf, _ := os.Create(logFile)
	cmd := exec.Command(bin, "-n", "-f", confFile, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(logFile)
			out, _ := os.ReadFile(r.out)
			t.Logf("rsyslogd log:\n%s\nreceived:\n%s", log, out)
		}
	})
	// Ready when both TCP listeners accept and a UDP probe arrives.
	deadline := time.Now().Add(20 * time.Second)
	for _, port := range []int{r.tcpPort, r.tlsPort} {
		for {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				log, _ := os.ReadFile(logFile)
				t.Fatalf("rsyslogd exited at start:\n%s", log)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("rsyslogd does not listen on %d: %v", port, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	udp, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", r.udpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for len(r.lines("udp|")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("rsyslogd does not receive on UDP")
		}
		fmt.Fprint(udp, "<13>1 - probe test - probe - ready")
		time.Sleep(50 * time.Millisecond)
	}
	return r
}

// lines returns the received lines that start with prefix.
func (r *rsyslog) lines(prefix string) []string {
	f, err := os.Open(r.out)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// TestSyslogCEFToRsyslog sends records over TCP, TLS and UDP to a real
// rsyslogd and checks that each arrives once, parsed as RFC 5424 (facility,
// severity, host, app name, msgid) with the CEF event as its message.
func TestSyslogCEFToRsyslog(t *testing.T) {
	rs := startRsyslog(t)
	for _, network := range []string{"tcp", "tls", "udp"} {
		t.Run(network, func(t *testing.T) {
			port := map[string]int{"tcp": rs.tcpPort, "tls": rs.tlsPort, "udp": rs.udpPort}[network]
			c := config.Exporter{
				Type: "syslog", Name: "siem-" + network, Network: network, Address: fmt.Sprintf("127.0.0.1:%d", port), Facility: "local3",
				Buffer: 100, BatchSize: 4, FlushInterval: config.Duration(10 * time.Millisecond), Timeout: config.Duration(5 * time.Second),
				Retry: config.Retry{InitialInterval: config.Duration(50 * time.Millisecond), MaxInterval: config.Duration(time.Second), MaxElapsed: config.Duration(20 * time.Second)},
			}
			if network == "tls" {
				c.CAFile = rs.caFile
			}
			set, err := FromConfig([]config.Exporter{c}, Options{Logger: discard, Node: "gw-1"})
			if err != nil {
				t.Fatal(err)
			}
			recs := records(10)
			for i := range recs {
				recs[i].Event.RequestID = fmt.Sprintf("%s-%d", network, i+1)
			}
			recs[3].Event.Decision, recs[3].Event.Status, recs[3].Event.Reasons = "deny", 403, []string{"role_missing", "mfa_required"}
			recs[4].Event.URL = `/a?x=1|b\c`
			set.Start()
			set.Offer(recs)
			if err := set.Close(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			var got []string
			deadline := time.Now().Add(10 * time.Second)
			for len(got) < len(recs) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				got = rs.lines(network + "|")
			}
			byID := map[string]string{}
			for _, l := range got {
				if i := strings.Index(l, "externalId="); i >= 0 {
					id := strings.Fields(l[i+len("externalId="):])[0]
					if _, dup := byID[id]; dup {
						t.Errorf("%s received twice", id)
					}
					byID[id] = l
				}
			}
			for i, r := range recs {
				l, ok := byID[r.Event.RequestID]
				if !ok {
					t.Errorf("record %s did not arrive; got %d lines", r.Event.RequestID, len(got))
					continue
				}
				sev := "info"
				if r.Event.Decision == "deny" {
					sev = "warning"
				}
				head := fmt.Sprintf("%s|local3|%s|gw-1|ztgate|ApiRequest|CEF:0|ztgate|ztgate|dev|%s|API request %s|", network, sev, r.Event.Decision, r.Event.Decision)
				if !strings.HasPrefix(l, head) {
					t.Errorf("record %d: got %q, want it to start with %q", i, l, head)
				}
				for _, want := range []string{"rt=" + fmt.Sprint(r.Event.Time.UnixMilli()), "src=10.1.2.3", "requestMethod=GET", "cs1Label=Service cs1=orders", fmt.Sprintf("cn1=%d", r.Event.Status), fmt.Sprintf("cn2Label=AuditSeq cn2=%d", r.Seq)} {
					if !strings.Contains(l, want) {
						t.Errorf("record %d: %q lacks %q", i, l, want)
					}
				}
			}
			if l := byID[recs[3].Event.RequestID]; !strings.Contains(l, "cs4=role_missing,mfa_required") {
				t.Errorf("deny record lacks its reasons: %q", l)
			}
			if l := byID[recs[4].Event.RequestID]; !strings.Contains(l, `request=/a?x\=1|b\\c `) {
				t.Errorf("CEF escaping of = and \\ in an extension value: got %q", l)
			}
		})
	}
}

func TestCEFEscaping(t *testing.T) {
	tests := []struct{ in, header, value string }{
		{"plain", "plain", "plain"},
		{`a|b`, `a\|b`, `a|b`},
		{`a=b`, `a=b`, `a\=b`},
		{`a\b`, `a\\b`, `a\\b`},
		{"a\nb\rc", "a b c", `a\nb\rc`},
	}
	for _, tt := range tests {
		if got := cefHeader(tt.in); got != tt.header {
			t.Errorf("cefHeader(%q): got %q, want %q", tt.in, got, tt.header)
		}
		if got := cefValue(tt.in); got != tt.value {
			t.Errorf("cefValue(%q): got %q, want %q", tt.in, got, tt.value)
		}
	}
	// A hostile user agent cannot add an extension key or break the line.
	r := records(1)[0]
	r.Event.UserAgent = "x act=allow\nCEF:0|forged"
	s := &syslogSender{facility: 16, version: "dev"}
	msg := string(s.message(&r))
	if strings.Count(msg, "\n") != 0 || strings.Count(msg, " act=") != 1 {
		t.Errorf("user agent escaped badly: %q", msg)
	}
	if !strings.Contains(msg, `requestClientApplication=x act\=allow\nCEF:0|forged`) {
		t.Errorf("got %q, want the user agent escaped", msg)
	}
}
