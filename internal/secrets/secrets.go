// Package secrets reads secrets for ${secret:PROVIDER/NAME} references from
// named providers: environment variables and files (Azure Key Vault comes later).
package secrets

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/ztgate/ztgate/internal/config"
)

// MaxSecretBytes bounds a secret read from a file.
const MaxSecretBytes = 64 << 10

// Provider returns the current value of a named secret.
type Provider interface {
	Get(name string) (string, error)
}

// Resolver dispatches references to named providers.
type Resolver struct {
	providers map[string]Provider
}

var _ config.SecretResolver = (*Resolver)(nil)

// NewResolver builds the providers declared in a configuration.
func NewResolver(specs []config.SecretProvider) (config.SecretResolver, error) {
	r := &Resolver{providers: map[string]Provider{}}
	for _, s := range specs {
		switch s.Type {
		case "env":
			r.providers[s.Name] = Env{Prefix: s.Prefix}
		case "file":
			r.providers[s.Name] = File{Dir: s.Dir}
		default:
			return nil, fmt.Errorf("secret provider %q: type %q is not supported", s.Name, s.Type)
		}
	}
	return r, nil
}

// Resolve returns the secret name from the provider named provider.
func (r *Resolver) Resolve(provider, name string) (string, error) {
	p, ok := r.providers[provider]
	if !ok {
		return "", fmt.Errorf("no secret provider named %q (declare it under secrets.providers)", provider)
	}
	v, err := p.Get(name)
	if err != nil {
		return "", fmt.Errorf("provider %q: %w", provider, err)
	}
	return v, nil
}

var (
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	fileNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// Env reads secrets from environment variables named Prefix+name.
type Env struct {
	Prefix string
}

// Get returns the variable's value; an unset variable is an error.
func (e Env) Get(name string) (string, error) {
	v := e.Prefix + name
	if !envNameRE.MatchString(v) {
		return "", fmt.Errorf("bad secret name %q: want letters, digits and _", name)
	}
	val, ok := os.LookupEnv(v)
	if !ok {
		return "", fmt.Errorf("environment variable %s is not set", v)
	}
	return val, nil
}

// File reads each secret from its own file in Dir (the layout of Kubernetes
// secret volumes and Docker secrets). One trailing newline is trimmed.
type File struct {
	Dir string
}

// Get reads Dir/name.
func (f File) Get(name string) (string, error) {
	if !fileNameRE.MatchString(name) || strings.Contains(name, "..") {
		return "", fmt.Errorf("bad secret name %q: one file name, no path", name)
	}
	fh, err := os.Open(filepath.Join(f.Dir, name))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("secret %q not found in %s", name, f.Dir)
		}
		return "", fmt.Errorf("read secret %q: %w", name, errors.Unwrap(err))
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, MaxSecretBytes+1))
	if err != nil {
		return "", fmt.Errorf("read secret %q: %w", name, err)
	}
	if len(b) > MaxSecretBytes {
		return "", fmt.Errorf("secret %q is larger than %d bytes", name, MaxSecretBytes)
	}
	s := strings.TrimSuffix(string(b), "\n")
	return strings.TrimSuffix(s, "\r"), nil
}
