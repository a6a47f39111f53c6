// Package secrets reads secrets from named providers (environment variables,
// files, Azure Key Vault) and keeps the ones that injected credentials use in
// a cache that is refreshed in the background, so that a request never waits
// on a vault and a rotated secret is picked up without a restart. A secret's
// text is a Value, which never prints.
package secrets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/ztgate/ztgate/internal/config"
)

// Provider reads one secret.
type Provider interface {
	// Fetch returns the secret name at version ("" for the current one).
	// Errors never hold the secret's text.
	Fetch(ctx context.Context, name, version string) (Secret, error)
}

// Secret is one read of a secret.
type Secret struct {
	Value Value
	// Version is the provider's version id ("" for providers without).
	Version string
	// ContentType is the provider's content type, if it keeps one (Key
	// Vault: application/x-pkcs12 for a certificate's secret).
	ContentType string
}

// ErrNotFound is wrapped by errors for a secret that does not exist.
var ErrNotFound = errors.New("secret not found")

// Options tune how providers are built.
type Options struct {
	// Transport carries Azure requests (Entra ID and Key Vault); nil: the
	// Azure SDK's default HTTP client. Tests pass a client that trusts a
	// local server.
	Transport policy.Transporter
	// Retry overrides the Azure SDK's retry policy (zero: its defaults:
	// three retries, exponential backoff, Retry-After honoured).
	Retry policy.RetryOptions
}

// Source is a built provider with its cache settings.
type Source struct {
	Name     string
	Type     string
	Provider Provider
	// Fingerprint changes when anything that decides what the provider
	// returns changes (its configuration, its credential); cached values
	// of a provider whose fingerprint is unchanged survive a reload.
	Fingerprint string
	TTL         time.Duration
	MaxStale    time.Duration
}

// Open builds the providers of a configuration. It does no network I/O.
// A vault's client secret or certificate password is read here, through
// the env and file providers of the same configuration.
func Open(sc config.Secrets, opts Options) (map[string]*Source, error) {
	out := map[string]*Source{}
	local := map[string]Provider{}
	for i := range sc.Providers {
		p := &sc.Providers[i]
		s := &Source{Name: p.Name, Type: p.Type, TTL: sc.EffectiveTTL(p).D(), MaxStale: sc.EffectiveMaxStale(p).D()}
		switch p.Type {
		case "env":
			s.Provider = Env{Prefix: p.Prefix}
		case "file":
			s.Provider = File{Dir: p.Dir}
		case "azure_keyvault":
			continue
		default:
			return nil, fmt.Errorf("secret provider %q: type %q is not supported", p.Name, p.Type)
		}
		s.Fingerprint = fmt.Sprintf("%#v", *p)
		local[p.Name] = s.Provider
		out[p.Name] = s
	}
	for i := range sc.Providers {
		p := &sc.Providers[i]
		if p.Type != "azure_keyvault" {
			continue
		}
		clientSecret, err := resolveLocal(p.ClientSecret, local)
		if err != nil {
			return nil, fmt.Errorf("secret provider %q: client_secret: %w", p.Name, err)
		}
		password, err := resolveLocal(p.CertificatePassword, local)
		if err != nil {
			return nil, fmt.Errorf("secret provider %q: certificate_password: %w", p.Name, err)
		}
		kv, material, err := newKeyVaultFromConfig(p, clientSecret, password, opts)
		if err != nil {
			return nil, fmt.Errorf("secret provider %q: %w", p.Name, err)
		}
		sum := sha256.Sum256([]byte(clientSecret.Reveal() + "\x00" + password.Reveal() + "\x00" + material))
		out[p.Name] = &Source{
			Name: p.Name, Type: p.Type, Provider: kv,
			TTL: sc.EffectiveTTL(p).D(), MaxStale: sc.EffectiveMaxStale(p).D(),
			Fingerprint: fmt.Sprintf("%#v", *p) + "/" + hex.EncodeToString(sum[:8]),
		}
	}
	return out, nil
}

// resolveLocal reads a template's references (to env and file providers)
// now, once.
func resolveLocal(t config.Template, providers map[string]Provider) (Value, error) {
	if t.IsZero() {
		return Value{}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	for _, part := range t.Parts() {
		if part.Ref == nil {
			b.WriteString(part.Literal)
			continue
		}
		p, ok := providers[part.Ref.Provider]
		if !ok {
			return Value{}, fmt.Errorf("${secret:%s}: no env or file provider named %q", part.Ref, part.Ref.Provider)
		}
		s, err := p.Fetch(ctx, part.Ref.Name, part.Ref.Version)
		if err != nil {
			return Value{}, fmt.Errorf("${secret:%s}: %w", part.Ref, err)
		}
		b.WriteString(s.Value.Reveal())
	}
	return NewValue(b.String()), nil
}

// Resolver resolves the ${secret:...} references that the configuration
// reads once, at load (every string value but injected credentials).
type Resolver struct {
	sources map[string]*Source
	err     error
}

var _ config.SecretResolver = (*Resolver)(nil)

// NewResolver builds the providers declared in a configuration, for
// config.Options.Secrets.
func NewResolver(specs []config.SecretProvider) (config.SecretResolver, error) {
	sources, err := Open(config.Secrets{Providers: specs}, Options{})
	return &Resolver{sources: sources, err: err}, nil
}

// Resolve returns the secret name (NAME or NAME/VERSION) from the provider
// named provider.
func (r *Resolver) Resolve(provider, name string) (string, error) {
	if r.err != nil {
		return "", r.err
	}
	s, ok := r.sources[provider]
	if !ok {
		return "", fmt.Errorf("no secret provider named %q (declare it under secrets.providers)", provider)
	}
	ref, err := config.ParseSecretRef(provider + "/" + name)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := s.Provider.Fetch(ctx, ref.Name, ref.Version)
	if err != nil {
		return "", fmt.Errorf("provider %q: %w", provider, err)
	}
	return v.Value.Reveal(), nil
}
