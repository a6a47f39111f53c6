package config

import (
	"encoding/json"
	"fmt"
	"strings"
)

// SecretRef names one secret: ${secret:PROVIDER/NAME} or, for providers with
// versions (azure_keyvault), ${secret:PROVIDER/NAME/VERSION}. A reference
// without a version follows the secret's rotations.
type SecretRef struct {
	Provider, Name, Version string
}

// String is the reference as written, without ${secret:...}.
func (r SecretRef) String() string {
	if r.Version != "" {
		return r.Provider + "/" + r.Name + "/" + r.Version
	}
	return r.Provider + "/" + r.Name
}

// ParseSecretRef parses PROVIDER/NAME or PROVIDER/NAME/VERSION.
func ParseSecretRef(s string) (SecretRef, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || slicesContainsEmpty(parts) {
		return SecretRef{}, fmt.Errorf("bad reference ${secret:%s} (want ${secret:PROVIDER/NAME} or ${secret:PROVIDER/NAME/VERSION})", s)
	}
	r := SecretRef{Provider: parts[0], Name: parts[1]}
	if len(parts) == 3 {
		r.Version = parts[2]
	}
	return r, nil
}

func slicesContainsEmpty(s []string) bool {
	for _, p := range s {
		if p == "" {
			return true
		}
	}
	return false
}

// Template is a string value whose ${secret:...} references are resolved
// when it is used, not at load: injected credentials follow rotations without
// a reload. ${env:NAME} references in it are resolved at load.
//
// A Template prints as written (references, never values): the text an
// environment variable contributed stays out of fmt, logs and JSON.
type Template struct {
	raw string
	t   *template // behind a pointer so that reflection-based printing of a containing struct shows an address, not text
}

type template struct {
	parts []TemplatePart
}

// TemplatePart is a literal or a secret reference.
type TemplatePart struct {
	Literal string
	Ref     *SecretRef // nil for a literal
}

// ParseTemplate parses s: ${env:NAME} references are resolved with lookupEnv,
// ${secret:...} references are kept, "$${" is a literal "${".
func ParseTemplate(s string, lookupEnv func(string) (string, bool)) (Template, error) {
	t := &template{}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, TemplatePart{Literal: lit.String()})
			lit.Reset()
		}
	}
	_, err := interpolate(s, lookupEnv, func(provider, name string) (string, error) {
		return "", nil
	})
	if err != nil {
		return Template{}, err
	}
	// A second pass, now known to be well formed, splits the parts.
	rest := s
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			lit.WriteString(rest)
			break
		}
		if i > 0 && rest[i-1] == '$' {
			lit.WriteString(rest[:i-1])
			lit.WriteString("${")
			rest = rest[i+2:]
			continue
		}
		lit.WriteString(rest[:i])
		end := strings.IndexByte(rest[i:], '}')
		ref := rest[i+2 : i+end]
		rest = rest[i+end+1:]
		scheme, arg, _ := strings.Cut(ref, ":")
		if scheme == "env" {
			v, _ := lookupEnv(arg)
			lit.WriteString(v)
			continue
		}
		r, err := ParseSecretRef(arg)
		if err != nil {
			return Template{}, err
		}
		flush()
		t.parts = append(t.parts, TemplatePart{Ref: &r})
	}
	flush()
	return Template{raw: s, t: t}, nil
}

// Raw is the value as written in the file.
func (t Template) Raw() string { return t.raw }

// IsZero reports whether the template is empty.
func (t Template) IsZero() bool { return t.raw == "" }

// Parts are the template's literals and references in order.
func (t Template) Parts() []TemplatePart {
	if t.t == nil {
		return nil
	}
	return t.t.parts
}

// Refs are the template's secret references in order.
func (t Template) Refs() []SecretRef {
	var out []SecretRef
	for _, p := range t.Parts() {
		if p.Ref != nil {
			out = append(out, *p.Ref)
		}
	}
	return out
}

// HasEnv reports whether the raw text holds an ${env:...} reference.
func (t Template) HasEnv() bool {
	return strings.Contains(strings.ReplaceAll(t.raw, "$${", ""), "${env:")
}

// String returns the template as written.
func (t Template) String() string { return t.raw }

// GoString returns the template as written, quoted.
func (t Template) GoString() string { return fmt.Sprintf("config.Template(%q)", t.raw) }

// Format prints the template as written for every verb.
func (t Template) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(t.GoString()))
		return
	}
	_, _ = f.Write([]byte(t.raw))
}

// MarshalJSON encodes the template as written.
func (t Template) MarshalJSON() ([]byte, error) { return json.Marshal(t.raw) }
