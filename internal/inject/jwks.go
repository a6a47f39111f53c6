package inject

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// JWKSPath is where the data plane publishes the assertion keys.
const JWKSPath = "/.well-known/jwks.json"

// KeyRing publishes the public assertion keys. It outlives configurations:
// when a reload removes a key (a new key signs), the removed key stays
// published for the configured overlap, so assertions it signed just
// before the reload still verify until they expire.
type KeyRing struct {
	mu       sync.Mutex
	active   []*Key // the current configuration's keys, signing key first
	retiring []retiringKey
	doc      []byte    // the JWKS document
	rebuild  time.Time // when the earliest retiring key leaves; zero: none
}

type retiringKey struct {
	key   *Key
	until time.Time
}

// Install makes keys the published keys (keys[0] signs). A previously
// installed key that is not among them stays published for overlap.
func (r *KeyRing) Install(keys []*Key, overlap time.Duration) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	in := func(ks []*Key, k *Key) bool {
		return slices.ContainsFunc(ks, func(o *Key) bool { return o.kid == k.kid })
	}
	var retiring []retiringKey
	for _, rk := range r.retiring {
		if now.Before(rk.until) && !in(keys, rk.key) {
			retiring = append(retiring, rk)
		}
	}
	for _, k := range r.active {
		if !in(keys, k) {
			retiring = append(retiring, retiringKey{key: k, until: now.Add(overlap)})
		}
	}
	r.active = slices.Clone(keys)
	r.retiring = retiring
	r.build(now)
}

// build renders the document; r.mu is held.
func (r *KeyRing) build(now time.Time) {
	set := jwk.NewSet()
	r.rebuild = time.Time{}
	kept := r.retiring[:0]
	for _, rk := range r.retiring {
		if !now.Before(rk.until) {
			continue
		}
		kept = append(kept, rk)
		if r.rebuild.IsZero() || rk.until.Before(r.rebuild) {
			r.rebuild = rk.until
		}
	}
	r.retiring = kept
	for _, k := range r.active {
		_ = set.AddKey(k.pub)
	}
	for _, rk := range r.retiring {
		_ = set.AddKey(rk.key.pub)
	}
	doc, err := json.Marshal(set)
	if err != nil {
		// A set of EC public keys always marshals; an empty document
		// rather than a half one if that ever changes.
		doc = []byte(`{"keys":[]}`)
	}
	r.doc = doc
}

// JWKS returns the JSON Web Key Set of the published keys; nil when no key
// was ever installed.
func (r *KeyRing) JWKS() []byte {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.rebuild.IsZero() && !now.Before(r.rebuild) {
		r.build(now)
	}
	if len(r.active) == 0 && len(r.retiring) == 0 {
		return nil
	}
	return r.doc
}

// ServeHTTP answers GET and HEAD with the key set.
func (r *KeyRing) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	doc := r.JWKS()
	if doc == nil {
		http.NotFound(w, req)
		return
	}
	h := w.Header()
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.Set("Content-Type", "application/jwk-set+json")
	// Verifiers refetch on an unknown kid; a short cache life bounds how
	// long a removed key stays trusted by those that do not.
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	if req.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(doc)
}
