package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxFileBytes bounds the size of a configuration file.
const MaxFileBytes = 4 << 20

// SecretResolver resolves ${secret:PROVIDER/NAME} references.
type SecretResolver interface {
	Resolve(provider, name string) (string, error)
}

// Options control loading.
type Options struct {
	// Secrets builds the resolver for ${secret:...} references from the
	// providers declared in the file. Nil: secret references are an error.
	Secrets func(providers []SecretProvider) (SecretResolver, error)
	// LookupEnv reads ${env:NAME} references; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

// Load reads, decodes and validates the configuration file at path. The
// returned error lists every problem found, each naming file:line.
func Load(path string, opts Options) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read configuration: %v", errors.Unwrap(err))}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read configuration: %v", err)}
	}
	if len(data) > MaxFileBytes {
		return nil, &Error{File: path, Msg: fmt.Sprintf("configuration larger than %d bytes", MaxFileBytes)}
	}
	return Parse(path, data, opts)
}

// Parse decodes and validates configuration data; name is used in errors.
func Parse(name string, data []byte, opts Options) (*Config, error) {
	c, err := decodeFile(name, data, opts)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func decodeFile(name string, data []byte, opts Options) (*Config, error) {
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	root, err := parseYAML(name, data)
	if err != nil {
		return nil, err
	}
	c := &Config{File: name}
	sum := sha256.Sum256(data)
	c.Hash = hex.EncodeToString(sum[:6])

	// Phase 1: the secret providers, so that references elsewhere can use them.
	var resolver SecretResolver
	var resolverErr error
	if sn := mappingValue(root, "secrets"); sn != nil && opts.Secrets != nil {
		pre := &decoder{file: name, pos: map[string]Pos{}, interp: envOnly(opts.LookupEnv), lookupEnv: opts.LookupEnv}
		var s Secrets
		pre.decode(sn, reflect.ValueOf(&s).Elem(), "secrets")
		if len(pre.errs) == 0 {
			resolver, resolverErr = opts.Secrets(s.Providers)
		}
	}

	d := &decoder{file: name, pos: map[string]Pos{}, lookupEnv: opts.LookupEnv}
	d.interp = func(s string) (string, error) {
		return interpolate(s, opts.LookupEnv, func(provider, secret string) (string, error) {
			if resolverErr != nil {
				return "", fmt.Errorf("secret providers: %w", resolverErr)
			}
			if resolver == nil {
				return "", fmt.Errorf("no secret provider named %q (declare it under secrets.providers)", provider)
			}
			return resolver.Resolve(provider, secret)
		})
	}
	v := reflect.ValueOf(c).Elem()
	applyDefaults(v)
	d.decode(root, v, "")
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	c.pos = d.pos
	return c, nil
}

func parseYAML(name string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Msg: "configuration is empty"}
		}
		return nil, yamlError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{File: name, Line: extra.Line, Column: extra.Column, Msg: "more than one YAML document; ztgate reads exactly one"}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(name, err)
	}
	if len(doc.Content) == 0 {
		return nil, &Error{File: name, Msg: "configuration is empty"}
	}
	return doc.Content[0], nil
}

// yamlError turns a yaml.v3 syntax error ("yaml: line 3: ...") into an *Error.
func yamlError(name string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &Error{File: name, Msg: msg}
	var line int
	if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
		e.Line = line
		e.Column = 1
		e.Msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
	}
	return e
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func envOnly(lookup func(string) (string, bool)) func(string) (string, error) {
	return func(s string) (string, error) {
		return interpolate(s, lookup, func(string, string) (string, error) {
			return "", errors.New("secret references cannot be used inside secrets.providers")
		})
	}
}

// interpolate replaces ${env:NAME} and ${secret:PROVIDER/NAME} references in s.
// "$${" stands for a literal "${".
func interpolate(s string, lookupEnv func(string) (string, bool), secret func(provider, name string) (string, error)) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated reference %q (want ${env:NAME} or ${secret:PROVIDER/NAME})", s[i:])
		}
		ref := s[i+2 : i+end]
		s = s[i+end+1:]
		scheme, arg, ok := strings.Cut(ref, ":")
		if !ok || arg == "" {
			return "", fmt.Errorf("bad reference ${%s} (want ${env:NAME} or ${secret:PROVIDER/NAME})", ref)
		}
		switch scheme {
		case "env":
			v, ok := lookupEnv(arg)
			if !ok {
				return "", fmt.Errorf("environment variable %s referenced by ${env:%s} is not set", arg, arg)
			}
			b.WriteString(v)
		case "secret":
			provider, name, ok := strings.Cut(arg, "/")
			if !ok || provider == "" || name == "" {
				return "", fmt.Errorf("bad reference ${secret:%s} (want ${secret:PROVIDER/NAME})", arg)
			}
			v, err := secret(provider, name)
			if err != nil {
				return "", fmt.Errorf("${secret:%s}: %w", arg, err)
			}
			b.WriteString(v)
		default:
			return "", fmt.Errorf("unknown reference kind %q in ${%s} (want env or secret)", scheme, ref)
		}
	}
}
