package export

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/ztgate/ztgate/internal/config"
)

// Options are what every exporter built from configuration shares.
type Options struct {
	Logger  *slog.Logger
	Metrics *Metrics
	Node    string    // the gateway's node name: syslog HOSTNAME, OTLP host.name
	Dir     string    // relative paths are relative to it (the configuration's directory)
	Stdout  io.Writer // jsonl path "-"; nil: os.Stdout
	// HTTPClient replaces the client built from ca_file, cert_file and
	// key_file (tests).
	HTTPClient *http.Client
}

// FromConfig builds the exporters of audit.exporters; none is started.
func FromConfig(cfgs []config.Exporter, o Options) (Set, error) {
	var set Set
	for i, c := range cfgs {
		e, err := newExporter(c, o)
		if err != nil {
			for _, prev := range set {
				_ = prev.Close(0)
			}
			return nil, fmt.Errorf("audit.exporters[%d] (%s): %w", i, exporterName(c), err)
		}
		set = append(set, e)
	}
	return set, nil
}

func exporterName(c config.Exporter) string {
	if c.Name != "" {
		return c.Name
	}
	return c.Type
}

func (o Options) path(p string) string {
	if p == "" || filepath.IsAbs(p) || o.Dir == "" {
		return p
	}
	return filepath.Join(o.Dir, p)
}

func newExporter(c config.Exporter, o Options) (*Exporter, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	version := productVersion()
	hc := o.HTTPClient
	if hc == nil && (c.Type == "sentinel" || c.Type == "otlp" || c.Type == "webhook") {
		tc, err := tlsConfig(o.path(c.CAFile), o.path(c.CertFile), o.path(c.KeyFile), "")
		if err != nil {
			return nil, err
		}
		hc = newHTTPClient(tc)
	}
	var s Sender
	switch c.Type {
	case "jsonl":
		if c.Path == "" || c.Path == "-" {
			w := o.Stdout
			if w == nil {
				w = os.Stdout
			}
			s = &jsonlSender{w: w}
		} else {
			r := &rotator{path: o.path(c.Path), max: c.MaxBytes, keep: c.MaxFiles}
			if err := r.open(); err != nil {
				return nil, err
			}
			s = &jsonlSender{rot: r}
		}
	case "sentinel":
		ss, err := newSentinel(c, hc, version)
		if err != nil {
			return nil, err
		}
		s = ss
	case "syslog":
		ss := &syslogSender{network: c.Network, address: c.Address, facility: syslogFacilities[c.Facility], hostname: o.Node, version: version}
		if c.Network == "tls" {
			host, _, _ := net.SplitHostPort(c.Address)
			name := c.ServerName
			if name == "" {
				name = host
			}
			tc, err := tlsConfig(o.path(c.CAFile), o.path(c.CertFile), o.path(c.KeyFile), name)
			if err != nil {
				return nil, err
			}
			ss.tls = tc
		}
		s = ss
	case "otlp":
		s = &otlpSender{client: hc, url: c.URL, header: headers(c.Headers), node: o.Node, version: version}
	case "webhook":
		s = &webhookSender{client: hc, url: c.URL, header: headers(c.Headers), key: []byte(c.HMACKey.Reveal()), now: time.Now}
	default:
		return nil, fmt.Errorf("unknown exporter type %q", c.Type)
	}
	set := Settings{
		Buffer: c.Buffer, BatchSize: c.BatchSize, FlushInterval: c.FlushInterval.D(), Timeout: c.Timeout.D(),
		Backoff: Backoff{Initial: c.Retry.InitialInterval.D(), Max: c.Retry.MaxInterval.D(), MaxElapsed: c.Retry.MaxElapsed.D()},
	}
	return New(exporterName(c), c.Type, s, set, o.Metrics, o.Logger), nil
}

func headers(m map[string]config.Secret) http.Header {
	h := http.Header{}
	for k, v := range m {
		h.Set(k, v.Reveal())
	}
	return h
}

func productVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func nowNano() int64 { return time.Now().UnixNano() }
