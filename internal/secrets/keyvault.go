package secrets

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/ztgate/ztgate/internal/config"
)

// KeyVaultAPIVersion is the Key Vault REST API version the gateway speaks:
// the generally available 7.x contract (GET {vault}/secrets/{name}/{version}),
// pinned so that an SDK update cannot change what is asked of the vault.
const KeyVaultAPIVersion = "7.6"

// KeyVault reads secrets from Azure Key Vault with the official SDK client.
type KeyVault struct {
	client *azsecrets.Client
	host   string
}

var _ Provider = (*KeyVault)(nil)

// KeyVaultOptions configure a KeyVault.
type KeyVaultOptions struct {
	VaultURL   string
	Credential azcore.TokenCredential
	// Client carries transport and retry settings.
	Client azcore.ClientOptions
}

// NewKeyVault returns a provider for the vault at o.VaultURL. The challenge
// resource (which tells the client where its token may go) must match the
// vault's domain, except for a vault on a loopback address (tests).
func NewKeyVault(o KeyVaultOptions) (*KeyVault, error) {
	u, err := url.Parse(o.VaultURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("bad vault URL %q: want https://NAME.vault.azure.net/", o.VaultURL)
	}
	co := o.Client
	co.APIVersion = KeyVaultAPIVersion
	if co.Retry.TryTimeout == 0 {
		co.Retry.TryTimeout = 10 * time.Second
	}
	c, err := azsecrets.NewClient(o.VaultURL, o.Credential, &azsecrets.ClientOptions{
		ClientOptions:                        co,
		DisableChallengeResourceVerification: isLoopback(u.Hostname()),
	})
	if err != nil {
		return nil, err
	}
	return &KeyVault{client: c, host: u.Host}, nil
}

// Fetch reads the secret's value at version, or its current version.
func (k *KeyVault) Fetch(ctx context.Context, name, version string) (Secret, error) {
	resp, err := k.client.GetSecret(ctx, name, version, nil)
	if err != nil {
		return Secret{}, k.error(name, err)
	}
	if resp.Value == nil {
		return Secret{}, fmt.Errorf("key vault %s: secret %q has no value (disabled?)", k.host, name)
	}
	s := Secret{Value: NewValue(*resp.Value)}
	if resp.ID != nil {
		s.Version = resp.ID.Version()
	}
	if resp.ContentType != nil {
		s.ContentType = *resp.ContentType
	}
	return s, nil
}

// error turns an SDK error into a short one: status and Key Vault's error
// code, and when to try again if the vault said so.
func (k *KeyVault) error(name string, err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		e := &vaultError{host: k.host, name: name, status: re.StatusCode, code: re.ErrorCode}
		if re.StatusCode == http.StatusNotFound {
			e.notFound = true
		}
		if re.RawResponse != nil {
			e.retryAfter = retryAfter(re.RawResponse.Header)
		}
		return e
	}
	var ae *azidentity.AuthenticationFailedError
	if errors.As(err, &ae) {
		status := 0
		if ae.RawResponse != nil {
			status = ae.RawResponse.StatusCode
		}
		return fmt.Errorf("key vault %s: secret %q: sign-in to Entra ID failed (HTTP %d)", k.host, name, status)
	}
	return fmt.Errorf("key vault %s: secret %q: %w", k.host, name, err)
}

type vaultError struct {
	host, name, code string
	status           int
	notFound         bool
	retryAfter       time.Duration
}

func (e *vaultError) Error() string {
	msg := fmt.Sprintf("key vault %s: secret %q: HTTP %d", e.host, e.name, e.status)
	if e.code != "" {
		msg += " " + e.code
	}
	if e.retryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %s)", e.retryAfter)
	}
	return msg
}

func (e *vaultError) Is(target error) bool { return target == ErrNotFound && e.notFound }

// RetryAfter is how long the vault asked the client to wait (429, 503).
func (e *vaultError) RetryAfter() time.Duration { return e.retryAfter }

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}

// newKeyVaultFromConfig builds the credential the configuration chose and
// the client. material identifies credential input read from files (the
// certificate), for the source's fingerprint.
func newKeyVaultFromConfig(p *config.SecretProvider, clientSecret, password Value, opts Options) (*KeyVault, string, error) {
	co := azcore.ClientOptions{Transport: opts.Transport, Retry: opts.Retry}
	cred, material, err := newCredential(p, clientSecret, password, co)
	if err != nil {
		return nil, "", err
	}
	kv, err := NewKeyVault(KeyVaultOptions{VaultURL: p.VaultURL, Credential: cred, Client: co})
	return kv, material, err
}

// newCredential builds the azidentity credential named by p.Credential.
func newCredential(p *config.SecretProvider, clientSecret, password Value, co azcore.ClientOptions) (azcore.TokenCredential, string, error) {
	// A custom authority host (a sovereign or private cloud, a test) is
	// trusted as configured: instance discovery would ask the public cloud
	// about it.
	discover := true
	if p.AuthorityHost != "" {
		co.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: strings.TrimRight(p.AuthorityHost, "/") + "/"}
		discover = false
	}
	switch p.Credential {
	case "", "managed_identity":
		o := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: co}
		if p.ClientID != "" {
			o.ID = azidentity.ClientID(p.ClientID)
		}
		c, err := azidentity.NewManagedIdentityCredential(o)
		return c, "", err
	case "workload_identity":
		c, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: co, ClientID: p.ClientID, TenantID: p.Tenant, TokenFilePath: p.TokenFile,
			DisableInstanceDiscovery: !discover,
		})
		return c, "", err
	case "client_secret":
		if clientSecret.Reveal() == "" {
			return nil, "", errors.New("client_secret is empty")
		}
		c, err := azidentity.NewClientSecretCredential(p.Tenant, p.ClientID, clientSecret.Reveal(), &azidentity.ClientSecretCredentialOptions{
			ClientOptions: co, DisableInstanceDiscovery: !discover,
		})
		return c, "", err
	case "client_certificate":
		data, err := os.ReadFile(p.CertificateFile)
		if err != nil {
			return nil, "", fmt.Errorf("certificate_file: %w", err)
		}
		var pw []byte
		if !password.IsZero() {
			pw = []byte(password.Reveal())
		}
		certs, key, err := azidentity.ParseCertificates(data, pw)
		if err != nil {
			return nil, "", fmt.Errorf("certificate_file %s: %w", p.CertificateFile, err)
		}
		c, err := azidentity.NewClientCertificateCredential(p.Tenant, p.ClientID, certs, key, &azidentity.ClientCertificateCredentialOptions{
			ClientOptions: co, DisableInstanceDiscovery: !discover, SendCertificateChain: len(certs) > 1,
		})
		return c, string(data), err
	}
	return nil, "", fmt.Errorf("credential %q is not supported", p.Credential)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Compile-time check that the SDK's transport option takes an *http.Client.
var _ policy.Transporter = (*http.Client)(nil)
