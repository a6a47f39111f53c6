// Package apikey defines ztgate's API keys for callers that cannot use
// OAuth: the key format (ztk_<id>_<secret>), how a key is made and parsed,
// and the record the store keeps of it. The store never holds a key, only
// its SHA-256; the key itself is shown once, when it is made.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Prefix starts every key, so that a leaked key is recognisable (secret
// scanners, logs) and cannot be mistaken for a JWT.
const Prefix = "ztk_"

// Lengths of the parts, in characters of the alphabet below.
const (
	IDLen     = 16 // 80 random bits
	SecretLen = 52 // 256 random bits
	KeyLen    = len(Prefix) + IDLen + 1 + SecretLen
)

// alphabet is Crockford's base32 in lower case: no i, l, o or u, so a key
// read aloud or copied by hand is not misread, and no '_' (the separator).
const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"

var encoding = base32.NewEncoding(alphabet).WithPadding(base32.NoPadding)

// inAlphabet[c] reports whether byte c belongs to the alphabet.
var inAlphabet = func() (t [256]bool) {
	for i := range len(alphabet) {
		t[alphabet[i]] = true
	}
	return t
}()

// Generate returns a new random key and its id.
func Generate() (key, id string) {
	var idb [10]byte
	var sec [32]byte
	_, _ = rand.Read(idb[:]) // crypto/rand.Read never fails (it aborts the program instead)
	_, _ = rand.Read(sec[:])
	id = encoding.EncodeToString(idb[:])
	return Prefix + id + "_" + encoding.EncodeToString(sec[:]), id
}

// ErrNotFound is returned for a key id that is not in the store.
var ErrNotFound = errors.New("no such API key")

// ErrInvalidRequest wraps what is wrong with a request for a new key.
var ErrInvalidRequest = errors.New("invalid API key request")

// ErrDisabled refuses key management where identity.api_keys is off.
var ErrDisabled = errors.New("API keys are not enabled: set identity.api_keys.enabled: true (keys are kept in the store)")

// ErrUnrecorded reports a revocation that took effect but whose audit
// event could not be written.
var ErrUnrecorded = errors.New("the key is revoked, but its audit event could not be written")

// ErrMalformed is returned for a string that is not a well-formed key.
var ErrMalformed = errors.New("not a ztgate API key (want ztk_<id>_<secret>)")

// Parse checks that s has the shape of a key and returns its id. It reads
// untrusted input: it never allocates, and rejects anything but exactly
// Prefix, IDLen alphabet characters, '_' and SecretLen alphabet characters.
// Whether the key is genuine is for Verify to say.
func Parse(s string) (id string, err error) {
	if len(s) != KeyLen || !strings.HasPrefix(s, Prefix) || s[len(Prefix)+IDLen] != '_' {
		return "", ErrMalformed
	}
	for i := len(Prefix); i < len(s); i++ {
		if i == len(Prefix)+IDLen {
			continue
		}
		if !inAlphabet[s[i]] {
			return "", ErrMalformed
		}
	}
	return s[len(Prefix) : len(Prefix)+IDLen], nil
}

// ValidID reports whether id has the shape of a key id.
func ValidID(id string) bool {
	if len(id) != IDLen {
		return false
	}
	for i := range len(id) {
		if !inAlphabet[id[i]] {
			return false
		}
	}
	return true
}

// Hash returns the hex SHA-256 of a whole key: what the store keeps. A key
// carries 256 random bits, so a plain hash is as hard to reverse as the key
// is to guess; a slow password hash would add cost on every request and no
// safety.
func Hash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// Verify reports whether key hashes to the stored hash, in constant time.
func Verify(key, hash string) bool {
	want, err := hex.DecodeString(hash)
	if err != nil || len(want) != sha256.Size {
		return false
	}
	got := sha256.Sum256([]byte(key))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}

// Key is the stored record of an API key. It never holds the key.
type Key struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Service   string    `json:"service"` // the only service the key opens
	Roles     []string  `json:"roles"`
	Scopes    []string  `json:"scopes"`
	Hash      string    `json:"-"` // hex SHA-256 of the key
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"` // zero: not revoked
	LastUsed  time.Time `json:"last_used,omitzero"`  // zero: never (as last written by a gateway)
	// Rev orders changes (creation, revocation) across every node: a
	// gateway that has seen Rev n has seen every change up to n.
	Rev int64 `json:"-"`
}

// Revoked reports whether the key was revoked.
func (k *Key) Revoked() bool { return !k.RevokedAt.IsZero() }

// Expired reports whether the key has expired at now.
func (k *Key) Expired(now time.Time) bool { return !now.Before(k.ExpiresAt) }

// State is "active", "expired" or "revoked".
func (k *Key) State(now time.Time) string {
	switch {
	case k.Revoked():
		return "revoked"
	case k.Expired(now):
		return "expired"
	}
	return "active"
}

// Limits of a key's request.
const (
	MinTTL    = time.Hour
	MaxTTL    = 730 * 24 * time.Hour // rotate at least every two years
	maxValues = 64
	maxValue  = 128
)

// nameRE is a key name but for its length (at most 63), checked apart: a
// bound in the pattern compiles into a state per character, kept for the
// life of the process.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Request is what a new key is asked for.
type Request struct {
	Name    string        `json:"name"`
	Service string        `json:"service"`
	Roles   []string      `json:"roles"`
	Scopes  []string      `json:"scopes"`
	TTL     time.Duration `json:"-"`
}

// Validate checks a request against the configured services. It changes
// nothing.
func (r *Request) Validate(services []string) error {
	var errs []error
	if len(r.Name) > 63 || !nameRE.MatchString(r.Name) {
		errs = append(errs, fmt.Errorf("bad name %q: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", r.Name))
	}
	switch {
	case r.Service == "":
		errs = append(errs, errors.New("no service: a key opens exactly one service"))
	case !slices.Contains(services, r.Service):
		errs = append(errs, fmt.Errorf("unknown service %q (configured: %s)", r.Service, strings.Join(services, ", ")))
	}
	for _, l := range []struct {
		what string
		vals []string
	}{{"role", r.Roles}, {"scope", r.Scopes}} {
		if len(l.vals) > maxValues {
			errs = append(errs, fmt.Errorf("more than %d %ss", maxValues, l.what))
		}
		for _, v := range l.vals {
			if v == "" || len(v) > maxValue || strings.ContainsFunc(v, func(c rune) bool { return c <= ' ' || c == 0x7f || c == ',' }) {
				errs = append(errs, fmt.Errorf("bad %s %q: 1 to %d printable characters, no spaces or commas", l.what, v, maxValue))
			}
		}
	}
	if r.TTL < MinTTL || r.TTL > MaxTTL {
		errs = append(errs, fmt.Errorf("bad expiry %v: between %v and %dd", r.TTL, MinTTL, int(MaxTTL.Hours()/24)))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidRequest, errors.Join(errs...))
}

// New makes a key for a validated request: the key, shown once, and the
// record to store.
func New(r Request, now time.Time, createdBy string) (string, Key) {
	key, id := Generate()
	now = now.UTC().Truncate(time.Millisecond)
	return key, Key{
		ID: id, Name: r.Name, Service: r.Service,
		Roles: append([]string{}, r.Roles...), Scopes: append([]string{}, r.Scopes...),
		Hash: Hash(key), CreatedAt: now, CreatedBy: createdBy, ExpiresAt: now.Add(r.TTL),
	}
}
