package inject

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/ztgate/ztgate/internal/config"
)

// tokenClient is the HTTP client of token endpoints: bounded, and it never
// follows a redirect with the gateway's client secret.
var tokenClient = &http.Client{
	Timeout: 10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return errors.New("the token endpoint redirected; configure its final URL")
	},
}

// ClientCredentials fetches tokens with the OAuth 2.0 client credentials
// grant (RFC 6749 §4.4), with golang.org/x/oauth2.
type ClientCredentials struct {
	conf   clientcredentials.Config
	client *http.Client
}

// NewClientCredentials returns a fetcher for c.
func NewClientCredentials(c *config.ClientCredentials) *ClientCredentials {
	params := url.Values{}
	if c.Audience != "" {
		params.Set("audience", c.Audience)
	}
	if c.Resource != "" {
		params.Set("resource", c.Resource)
	}
	style := oauth2.AuthStyleInHeader
	if c.AuthMethod == "post" {
		style = oauth2.AuthStyleInParams
	}
	return &ClientCredentials{
		conf: clientcredentials.Config{
			ClientID:       c.ClientID,
			ClientSecret:   c.ClientSecret,
			TokenURL:       c.TokenURL,
			Scopes:         c.Scopes,
			EndpointParams: params,
			AuthStyle:      style,
		},
		client: tokenClient,
	}
}

// Fetch gets a new token.
func (c *ClientCredentials) Fetch(ctx context.Context) (Token, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.client)
	t, err := c.conf.Token(ctx)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// The response body may echo request details; the status and
			// the OAuth error code are what the log needs.
			code := re.ErrorCode
			if code == "" {
				code = "no error code"
			}
			return Token{}, fmt.Errorf("token endpoint %s answered %d (%s)", c.conf.TokenURL, re.Response.StatusCode, code)
		}
		return Token{}, fmt.Errorf("token endpoint %s: %w", c.conf.TokenURL, err)
	}
	if tt := t.Type(); tt != "Bearer" {
		return Token{}, fmt.Errorf("token endpoint %s returned a %q token, want Bearer", c.conf.TokenURL, tt)
	}
	return Token{Value: t.AccessToken, Expires: t.Expiry}, nil
}

// ManagedIdentity fetches tokens of the host's Azure managed identity with
// azidentity (IMDS on a VM, the App Service and Functions identity
// endpoint, Azure Arc, ...).
type ManagedIdentity struct {
	cred  *azidentity.ManagedIdentityCredential
	scope string
}

// NewManagedIdentity returns a fetcher for m. It does no network I/O.
func NewManagedIdentity(m *config.ManagedIdentity) (*ManagedIdentity, error) {
	opts := &azidentity.ManagedIdentityCredentialOptions{}
	if m.ClientID != "" {
		opts.ID = azidentity.ClientID(m.ClientID)
	}
	cred, err := azidentity.NewManagedIdentityCredential(opts)
	if err != nil {
		return nil, fmt.Errorf("managed identity: %w", err)
	}
	return &ManagedIdentity{cred: cred, scope: m.Scope}, nil
}

// Fetch gets a token.
func (m *ManagedIdentity) Fetch(ctx context.Context) (Token, error) {
	t, err := m.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{m.scope}})
	if err != nil {
		return Token{}, fmt.Errorf("managed identity: %w", err)
	}
	return Token{Value: t.Token, Expires: t.ExpiresOn}, nil
}
