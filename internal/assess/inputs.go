package assess

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ztgate/ztgate/internal/config"
	"github.com/ztgate/ztgate/internal/explain"
)

// Inputs is everything the checks judge by, gathered once.
type Inputs struct {
	Cfg    *config.Config
	File   string // the configuration's base name, for locations
	Dir    string // the configuration's directory
	Now    time.Time
	Since  time.Duration
	Routes []Route

	// Traffic is the audit trail's window; nil when there is none to read
	// (TrafficNote says why).
	Traffic     *Traffic
	TrafficNote string

	Secrets    []SecretValue
	SecretsErr string // the raw file could not be read for references
	Certs      []CertInfo
	Repo       string       // where .git was found, relative to Dir; "" when not
	Tests      *PolicyTests // nil: no policy test files found

	// Capability reports whether this version has a configuration key.
	Capability func(path string) Capability
}

// loc returns where a key path is written, file:line.
func (in *Inputs) loc(path string) string {
	if p := in.Cfg.PosOf(path); p.Line > 0 {
		return fmt.Sprintf("%s:%d", in.File, p.Line)
	}
	return in.File
}

// SecretValue is a secret-bearing value of the configuration and where it
// comes from. The value itself is never kept.
type SecretValue struct {
	Path     string `json:"path"`
	Line     int    `json:"line"`
	Source   string `json:"source"` // vault | provider | env | inline
	Provider string `json:"provider,omitempty"`
}

// secretKeys are keys whose values are secrets wherever they appear.
var secretKeys = []string{"hmac_key", "client_secret", "password", "secret", "token", "api_key"}

func secretBearing(path string) bool {
	last := path[strings.LastIndexByte(path, '.')+1:]
	if slices.Contains(secretKeys, last) {
		return true
	}
	// Header values sent upstream or to exporters carry credentials.
	parent := path[:max(strings.LastIndexByte(path, '.'), 0)]
	return strings.HasSuffix(parent, "inject.headers") || (strings.HasSuffix(parent, ".headers") && strings.Contains(parent, "exporters"))
}

// secretValues walks the raw YAML for secret-bearing values: keys that
// hold secrets, and a password in store.dsn.
func secretValues(cfg *config.Config, raw []byte) ([]SecretValue, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	types := map[string]string{}
	for _, p := range cfg.Secrets.Providers {
		types[p.Name] = p.Type
	}
	var out []SecretValue
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				p := k
				if path != "" {
					p = path + "." + k
				}
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		case yaml.ScalarNode:
			v := n.Value
			switch {
			case v == "":
				return
			case path == "store.dsn":
				if !dsnHasPassword(v) {
					return
				}
			case !secretBearing(path):
				return
			}
			sv := SecretValue{Path: path, Line: n.Line, Source: "inline"}
			if i := strings.Index(v, "${secret:"); i >= 0 {
				sv.Provider, _, _ = strings.Cut(v[i+len("${secret:"):], "/")
				sv.Source = "provider"
				if types[sv.Provider] == "azure_keyvault" {
					sv.Source = "vault"
				}
			} else if strings.Contains(v, "${env:") {
				sv.Source = "env"
			}
			out = append(out, sv)
		}
	}
	walk(doc.Content[0], "")
	return out, nil
}

// dsnHasPassword reports whether a database URL or key=value string
// carries a password (or a reference standing for one).
func dsnHasPassword(dsn string) bool {
	if strings.Contains(dsn, "password=") {
		return true
	}
	_, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return false
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		return strings.Contains(rest[:at], ":")
	}
	return false
}

// CertInfo is a certificate file the configuration names.
type CertInfo struct {
	Path     string    `json:"path"` // the key path
	File     string    `json:"file"` // as written
	Subject  string    `json:"subject,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"` // the earliest expiry in the file
	Err      string    `json:"error,omitempty"`
}

func certFiles(cfg *config.Config) [][2]string {
	var out [][2]string
	add := func(path, file string) {
		if file != "" {
			out = append(out, [2]string{path, file})
		}
	}
	if t := cfg.Listen.TLS; t != nil {
		add("listen.tls.cert_file", t.CertFile)
		add("listen.tls.client_ca_file", t.ClientCAFile)
	}
	add("identity.mtls.trust_bundle", stringAt(cfg, "identity.mtls.trust_bundle"))
	for i, s := range cfg.Services {
		if u := s.UpstreamTLS; u != nil {
			add(fmt.Sprintf("services[%d].upstream_tls.ca_file", i), u.CAFile)
			add(fmt.Sprintf("services[%d].upstream_tls.cert_file", i), u.CertFile)
		}
	}
	return out
}

// resolve finds a file named in the configuration: beside the
// configuration first, then from the working directory.
func resolve(dir, file string) string {
	if filepath.IsAbs(file) {
		return file
	}
	if p := filepath.Join(dir, file); fileExists(p) {
		return p
	}
	return file
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func readCert(dir, path, file string) CertInfo {
	ci := CertInfo{Path: path, File: file}
	data, err := os.ReadFile(resolve(dir, file))
	if err != nil {
		ci.Err = "cannot read: " + errors.Unwrap(err).Error()
		return ci
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			ci.Err = "not a certificate: " + err.Error()
			return ci
		}
		if ci.NotAfter.IsZero() || c.NotAfter.Before(ci.NotAfter) {
			ci.NotAfter, ci.Subject = c.NotAfter.UTC(), c.Subject.String()
		}
	}
	if ci.NotAfter.IsZero() {
		ci.Err = "no PEM certificate in the file"
	}
	return ci
}

// findRepo looks for .git in dir and its parents and returns where it is,
// relative to dir.
func findRepo(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for d := abs; ; d = filepath.Dir(d) {
		if fileExists(filepath.Join(d, ".git")) {
			rel, err := filepath.Rel(abs, filepath.Join(d, ".git"))
			if err != nil {
				return filepath.Join(d, ".git")
			}
			return rel
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// PolicyTests is what the policy test files beside the configuration say.
type PolicyTests struct {
	Files   []TestFile      `json:"files"`
	Covered map[string]bool `json:"covered"` // routes some case reaches, service/route
}

// TestFile is one policy test file's result.
type TestFile struct {
	Name   string `json:"name"`
	Cases  int    `json:"cases"`
	Failed int    `json:"failed"`
	Err    string `json:"error,omitempty"`
}

// Totals returns the number of cases and of failures, a file that cannot
// be read counting as one failure.
func (p *PolicyTests) Totals() (cases, failed int) {
	for _, f := range p.Files {
		cases += f.Cases
		failed += f.Failed
		if f.Err != "" {
			failed++
		}
	}
	return cases, failed
}

// discoverTests lists policy test files beside the configuration and in
// its tests/ directory: *_test.yaml and *_test.yml.
func discoverTests(dir string) []string {
	var out []string
	for _, d := range []string{dir, filepath.Join(dir, "tests")} {
		for _, pat := range []string{"*_test.yaml", "*_test.yml"} {
			m, _ := filepath.Glob(filepath.Join(d, pat))
			out = append(out, m...)
		}
	}
	slices.Sort(out)
	return out
}

// runTests runs policy test files offline against cfg.
func runTests(ctx context.Context, cfg *config.Config, dir string, files []string) *PolicyTests {
	if len(files) == 0 {
		return nil
	}
	pt := &PolicyTests{Covered: map[string]bool{}}
	for _, f := range files {
		name := f
		if rel, err := filepath.Rel(dir, f); err == nil && !strings.HasPrefix(rel, "..") {
			name = rel
		}
		tr := TestFile{Name: filepath.ToSlash(name)}
		tf, err := explain.LoadTests(f)
		if err != nil {
			tr.Err = strings.TrimPrefix(err.Error(), f+": ")
			pt.Files = append(pt.Files, tr)
			continue
		}
		tr.Cases = len(tf.Tests)
		tr.Failed = explain.RunTests(ctx, cfg, tf, io.Discard)
		for _, c := range tf.Tests {
			if res, err := explain.Explain(ctx, cfg, c.Request, explain.Options{Offline: true}); err == nil && res.Route != "" {
				pt.Covered[res.Route] = true
			}
		}
		pt.Files = append(pt.Files, tr)
	}
	return pt
}
