package inject

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// GeneratedKeyFile is the name of the assertion key the gateway generates,
// beside its configuration file, when the configuration lists none.
const GeneratedKeyFile = "ztgate-assertion-key.pem"

// Key is an ES256 (P-256) assertion signing key. Its key id is the RFC 7638
// thumbprint of the public key, so every node holding the same key
// announces the same kid.
type Key struct {
	priv *ecdsa.PrivateKey
	kid  string
	pub  jwk.Key // public, with kid, alg and use set
}

// KeyID returns the key's kid.
func (k *Key) KeyID() string { return k.kid }

// Public returns the public key.
func (k *Key) Public() *ecdsa.PublicKey { return &k.priv.PublicKey }

// ParseKey reads a P-256 private key from PEM (SEC 1 "EC PRIVATE KEY" or
// PKCS #8 "PRIVATE KEY"). Other blocks (a certificate, parameters) are
// skipped.
func ParseKey(data []byte) (*Key, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key (want an EC PRIVATE KEY or PRIVATE KEY block)")
		}
		var priv any
		var err error
		switch block.Type {
		case "EC PRIVATE KEY":
			priv, err = x509.ParseECPrivateKey(block.Bytes)
		case "PRIVATE KEY":
			priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", block.Type, err)
		}
		ec, ok := priv.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("a %T key cannot sign ES256: want an EC P-256 key", priv)
		}
		if ec.Curve != elliptic.P256() {
			return nil, fmt.Errorf("an EC key on %s cannot sign ES256: want P-256", ec.Curve.Params().Name)
		}
		return newKey(ec)
	}
}

// GenerateKey returns a fresh P-256 key.
func GenerateKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return newKey(priv)
}

func newKey(priv *ecdsa.PrivateKey) (*Key, error) {
	pub, err := jwk.Import(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)
	for _, kv := range []struct {
		k string
		v any
	}{{jwk.KeyIDKey, kid}, {jwk.AlgorithmKey, jwa.ES256()}, {jwk.KeyUsageKey, "sig"}} {
		if err := pub.Set(kv.k, kv.v); err != nil {
			return nil, fmt.Errorf("public key %s: %w", kv.k, err)
		}
	}
	return &Key{priv: priv, kid: kid, pub: pub}, nil
}

// MarshalPEM returns the private key as a PKCS #8 PEM block.
func (k *Key) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// LoadOrGenerate reads the key in path, or generates one and writes it
// there (mode 0600) when the file does not exist. Creation is exclusive: two
// gateways starting at once from the same directory end up with one key.
func LoadOrGenerate(path string) (key *Key, created bool, err error) {
	data, err := os.ReadFile(path)
	if err == nil {
		k, err := ParseKey(data)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	k, err := GenerateKey()
	if err != nil {
		return nil, false, err
	}
	data, err = k.MarshalPEM()
	if err != nil {
		return nil, false, err
	}
	// Written whole to a temporary file, then linked into place: the key
	// file is never seen half written, and an existing one is never
	// replaced.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".assertion-key-*")
	if err != nil {
		return nil, false, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, false, err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, false, err
	}
	if err := tmp.Close(); err != nil {
		return nil, false, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadOrGenerate(path) // another process was first
		}
		return nil, false, err
	}
	return k, true, nil
}
