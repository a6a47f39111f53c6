package secrets

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"
)

func testPEM(t *testing.T, cn string) (certPEM, keyPEM string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

func TestCertificate(t *testing.T) {
	certPEM, keyPEM := testPEM(t, "pem client")
	_, otherKey := testPEM(t, "other")
	// testdata/client.p12.b64: an RSA certificate and key in a PKCS#12 file
	// without a password (3DES, SHA-1 MAC), base64 as Key Vault returns it.
	p12, err := os.ReadFile("testdata/client.p12.b64")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, value, wantCN, wantErr string
	}{
		{"PEM key first", keyPEM + certPEM, "pem client", ""},
		{"PEM certificate first", certPEM + keyPEM, "pem client", ""},
		{"PKCS#12 base64", string(p12), "ztgate test client", ""},
		{"key of another certificate", certPEM + otherKey, "", "PEM certificate and key"},
		{"certificate without key", certPEM, "", "PEM certificate and key"},
		{"garbage", "not a certificate", "", "neither PEM nor a PKCS#12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Certificate(Secret{Value: NewValue(tt.value)})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "BEGIN") || strings.Contains(err.Error(), tt.value) {
					t.Fatalf("error %q holds the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Leaf.Subject.CommonName; got != tt.wantCN {
				t.Errorf("got CN %q, want %q", got, tt.wantCN)
			}
		})
	}
}
