// Command tokens is the benchmark's identity provider. It keeps an RS256
// signing key in a file, mints bearer tokens for the benchmark's issuer, and
// serves OpenID Connect discovery and the JWKS, so ztgate verifies them
// exactly as it would a real provider's. FOR BENCHMARKS ONLY: it signs
// whatever it is asked to.
//
//	tokens -key K -issuer URL -mint 200000 -out tokens.txt   # one token a line, each unique
//	tokens -key K -issuer URL -serve 127.0.0.1:18471         # discovery and JWKS
package main

import (
	"bufio"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

func main() {
	keyFile := flag.String("key", "", "PEM (PKCS #8) RSA signing key; created when missing")
	issuer := flag.String("issuer", "", "issuer URL (iss); discovery is served under it")
	audience := flag.String("audience", "orders-api", "aud of minted tokens")
	roles := flag.String("roles", "Orders.Read", "comma-separated roles of minted tokens")
	mint := flag.Int("mint", 0, "mint this many tokens into -out, one a line, and exit")
	out := flag.String("out", "", "file the minted tokens are written to")
	prefix := flag.String("prefix", "user", "subject prefix; also makes jti unique between files")
	users := flag.Int("users", 1000, "distinct subjects the minted tokens spread over")
	ttl := flag.Duration("ttl", 24*time.Hour, "lifetime of minted tokens")
	serve := flag.String("serve", "", "serve discovery and the JWKS on this address")
	flag.Parse()
	if *keyFile == "" || *issuer == "" || (*mint > 0) == (*serve != "") {
		log.Fatal("usage: tokens -key FILE -issuer URL (-mint N -out FILE | -serve ADDR)")
	}
	key, err := loadKey(*keyFile)
	if err != nil {
		log.Fatal(err)
	}
	kid := keyID(&key.PublicKey)
	if *mint > 0 {
		claims := claimSet{issuer: *issuer, audience: *audience, roles: strings.Split(*roles, ","), prefix: *prefix, users: max(*users, 1), ttl: *ttl}
		if err := mintFile(*out, key, kid, claims, *mint); err != nil {
			log.Fatal(err)
		}
		return
	}
	ln, err := net.Listen("tcp", *serve)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, handler(*issuer, kid, &key.PublicKey)))
}

// loadKey reads the signing key, or generates and saves one.
func loadKey(file string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		return k, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", file)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA key", file)
	}
	return rk, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// keyID is derived from the public key, so it stays with the key file.
func keyID(pub *rsa.PublicKey) string {
	sum := sha256.Sum256(pub.N.Bytes())
	return "bench-" + b64(sum[:9])
}

type claimSet struct {
	issuer, audience, prefix string
	roles                    []string
	users                    int
	ttl                      time.Duration
}

func (c claimSet) token(key *rsa.PrivateKey, header string, i int, now time.Time) (string, error) {
	payload, err := json.Marshal(map[string]any{
		"iss": c.issuer, "aud": c.audience,
		"sub": fmt.Sprintf("%s-%d", c.prefix, i%c.users), "oid": fmt.Sprintf("oid-%s-%d", c.prefix, i%c.users),
		"jti": fmt.Sprintf("%s-%d-%d", c.prefix, now.UnixNano(), i),
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(c.ttl).Unix(),
		"tid": "bench-tenant", "azp": "bench-client", "idtyp": "user",
		"name": "Benchmark User", "roles": c.roles, "amr": []string{"pwd", "mfa"},
	})
	if err != nil {
		return "", err
	}
	signing := header + "." + b64(payload)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signing + "." + b64(sig), nil
}

// mintFile signs n tokens on every CPU and writes them in order.
func mintFile(file string, key *rsa.PrivateKey, kid string, c claimSet, n int) error {
	header := b64([]byte(`{"alg":"RS256","kid":"` + kid + `","typ":"JWT"}`))
	now := time.Now()
	toks := make([]string, n)
	workers := runtime.NumCPU()
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if toks[i], errs[w] = c.token(key, header, i, now); errs[w] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	for _, t := range toks {
		bw.WriteString(t)
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func handler(issuer, kid string, pub *rsa.PublicKey) http.Handler {
	issuer = strings.TrimSuffix(issuer, "/")
	discovery, _ := json.Marshal(map[string]any{
		"issuer":                                issuer,
		"jwks_uri":                              issuer + "/jwks",
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
	}}})
	mux := http.NewServeMux()
	serveJSON := func(body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}
	}
	mux.Handle("GET /.well-known/openid-configuration", serveJSON(discovery))
	mux.Handle("GET /jwks", serveJSON(jwks))
	return mux
}
