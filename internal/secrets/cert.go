package secrets

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Certificate parses a secret holding a TLS certificate chain and its
// private key: PEM (the blocks in any order, as Key Vault returns a
// certificate made with content type application/x-pem-file), or PKCS#12
// without a password, base64-encoded (as Key Vault returns a certificate's
// secret, content type application/x-pkcs12) or raw. The key must match the
// first certificate. Errors never hold the secret's text.
func Certificate(s Secret) (*tls.Certificate, error) {
	text := s.Value.Reveal()
	if strings.Contains(text, "-----BEGIN") {
		cert, err := tls.X509KeyPair([]byte(text), []byte(text))
		if err != nil {
			return nil, fmt.Errorf("PEM certificate and key: %w", err)
		}
		return &cert, nil
	}
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil {
		data = []byte(text)
	}
	certs, key, err := azidentity.ParseCertificates(data, nil)
	if err != nil {
		return nil, errors.New("neither PEM nor a PKCS#12 file without a password")
	}
	if len(certs) == 0 || key == nil {
		return nil, errors.New("PKCS#12: want a certificate and its private key")
	}
	// Through PEM again, so that tls checks the key against the certificate.
	var certPEM []byte
	for _, c := range certs {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("PKCS#12 private key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		return nil, fmt.Errorf("PKCS#12: %w", err)
	}
	return &cert, nil
}
