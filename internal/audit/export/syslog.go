package export

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ztgate/ztgate/internal/audit"
)

// syslogFacilities are the facility codes of RFC 5424.
var syslogFacilities = map[string]int{
	"kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// syslogSender writes each record as an RFC 5424 message carrying a CEF
// event: over TCP or TLS with octet-counting framing (RFC 6587, RFC 5425),
// or one message per UDP datagram (RFC 5426).
type syslogSender struct {
	network  string // tcp | tls | udp
	address  string
	tls      *tls.Config
	facility int
	hostname string
	version  string

	mu   sync.Mutex
	conn net.Conn
}

var _ Sender = (*syslogSender)(nil)

// maxUDPMessage keeps a datagram under what a receiver takes by default
// (rsyslog: 8 KiB); longer messages are truncated, as RFC 5426 allows.
const maxUDPMessage = 8000

func (s *syslogSender) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	switch s.network {
	case "tls":
		td := &tls.Dialer{NetDialer: d, Config: s.tls}
		return td.DialContext(ctx, "tcp", s.address)
	case "udp":
		return d.DialContext(ctx, "udp", s.address)
	default:
		return d.DialContext(ctx, "tcp", s.address)
	}
}

func (s *syslogSender) Send(ctx context.Context, recs []audit.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		c, err := s.dial(ctx)
		if err != nil {
			return err
		}
		s.conn = c
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.conn.SetWriteDeadline(dl)
	}
	var buf []byte
	for i := range recs {
		msg := s.message(&recs[i])
		if s.network == "udp" {
			if len(msg) > maxUDPMessage {
				msg = msg[:maxUDPMessage]
			}
			if _, err := s.conn.Write(msg); err != nil {
				s.reset()
				return &Partial{Sent: i, Err: err}
			}
			continue
		}
		buf = strconv.AppendInt(buf, int64(len(msg)), 10)
		buf = append(buf, ' ')
		buf = append(buf, msg...)
	}
	if s.network == "udp" {
		return nil
	}
	if _, err := s.conn.Write(buf); err != nil {
		// The receiver may have part of the batch: it is sent again whole
		// (at least once).
		s.reset()
		return err
	}
	return nil
}

func (s *syslogSender) reset() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

func (s *syslogSender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset()
	return nil
}

// syslogSeverity maps a decision to an RFC 5424 severity.
func syslogSeverity(decision string) int {
	switch decision {
	case "allow", "preflight":
		return 6 // informational
	case "would_deny":
		return 5 // notice
	case "deny":
		return 4 // warning
	default:
		return 3 // error
	}
}

// message is one RFC 5424 message: header, no structured data, and the
// CEF event as MSG.
func (s *syslogSender) message(r *audit.Record) []byte {
	e := &r.Event
	pri := s.facility*8 + syslogSeverity(e.Decision)
	host := s.hostname
	if host == "" {
		host = e.Node
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<%d>1 %s %s ztgate %d %s - ", pri, e.Time.UTC().Format("2006-01-02T15:04:05.000000Z"), headerField(host, 255), os.Getpid(), headerField(e.EventType, 32))
	b.WriteString(cef(r, s.version))
	return []byte(b.String())
}

// headerField is an RFC 5424 header field: printable US-ASCII, no space,
// at most n long, "-" when empty.
func headerField(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r <= 32 || r >= 127 {
			return -1
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n]
	}
	if s == "" {
		return "-"
	}
	return s
}

// CEF severities (0-10) by decision.
var cefSeverity = map[string]int{"allow": 1, "preflight": 1, "would_deny": 5, "deny": 6, "error": 8}

// cef formats a record as an ArcSight CEF event (the format of Sentinel's
// CommonSecurityLog table):
// CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension.
func cef(r *audit.Record, version string) string {
	e := &r.Event
	sev, ok := cefSeverity[e.Decision]
	if !ok {
		sev = 8
	}
	name := "API request " + e.Decision
	var b strings.Builder
	b.WriteString("CEF:0|ztgate|ztgate|")
	b.WriteString(cefHeader(version))
	b.WriteByte('|')
	b.WriteString(cefHeader(e.Decision))
	b.WriteByte('|')
	b.WriteString(cefHeader(name))
	b.WriteByte('|')
	b.WriteString(strconv.Itoa(sev))
	b.WriteByte('|')
	ext := []struct{ k, v string }{
		{"rt", strconv.FormatInt(e.Time.UnixMilli(), 10)},
		{"externalId", e.RequestID},
		{"act", e.Decision},
		{"outcome", e.Result},
		{"reason", e.ResultDetails},
		{"src", e.SrcIP},
		{"suser", e.Identity},
		{"suid", e.ObjectID},
		{"requestMethod", e.Method},
		{"request", truncate(e.URL, 4096)},
		{"requestClientApplication", truncate(e.UserAgent, 1024)},
		{"in", strconv.FormatInt(e.RequestBytes, 10)},
		{"dvchost", e.Node},
		{"cs1Label", "Service"}, {"cs1", e.Service},
		{"cs2Label", "Route"}, {"cs2", e.Route},
		{"cs3Label", "PolicyVersion"}, {"cs3", e.PolicyVersion},
		{"cs4Label", "Reasons"}, {"cs4", strings.Join(e.Reasons, ",")},
		{"cs5Label", "Tenant"}, {"cs5", e.Tenant},
		{"cs6Label", "AppId"}, {"cs6", e.AppID},
		{"cn1Label", "HttpStatusCode"}, {"cn1", strconv.Itoa(e.Status)},
		{"cn2Label", "AuditSeq"}, {"cn2", strconv.FormatInt(r.Seq, 10)},
		{"cfp1Label", "DurationMs"}, {"cfp1", strconv.FormatFloat(e.DurationMS, 'f', 3, 64)},
	}
	first := true
	for _, kv := range ext {
		if kv.v == "" {
			continue
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteString(kv.k)
		b.WriteByte('=')
		b.WriteString(cefValue(kv.v))
	}
	return b.String()
}

// cefHeader escapes a CEF header field: backslash and pipe.
func cefHeader(s string) string {
	return strings.NewReplacer(`\`, `\\`, `|`, `\|`, "\n", " ", "\r", " ").Replace(s)
}

// cefValue escapes a CEF extension value: backslash, equals sign and line
// breaks.
func cefValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, `=`, `\=`, "\n", `\n`, "\r", `\r`).Replace(s)
}
