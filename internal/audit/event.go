// Package audit records every decision as a typed event, chains the events
// of each gateway node by hash so that an edit, deletion or reordering is
// detected, and writes them durably through a Sink before the client gets
// its answer.
package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"sync"
	"time"
)

// Event is one audited request, shaped after Microsoft Sentinel's ASIM
// WebSession schema (EventType ApiRequest), or one change made on the
// control plane (EventType Admin: Object names what changed, Identity who
// changed it). It never holds a raw token or key.
//
// A field added here must be added to AppendCanonical too, in the same
// place in the order: events are hashed over that encoding.
// TestAppendCanonicalCoversEveryField fails until it is.
type Event struct {
	Time          time.Time `json:"time"`
	EventType     string    `json:"event_type"` // ApiRequest | Admin | Alert | DlpResult
	RequestID     string    `json:"request_id"`
	Result        string    `json:"result"`         // Success | Failure
	ResultDetails string    `json:"result_details"` // the reason code
	Decision      string    `json:"decision"`       // allow | deny | would_deny | error | preflight
	Reasons       []string  `json:"reasons,omitempty"`
	Message       string    `json:"message,omitempty"` // Alert: what was detected
	PolicyVersion string    `json:"policy_version"`
	Service       string    `json:"service,omitempty"`
	Route         string    `json:"route,omitempty"`
	IdentityType  string    `json:"identity_type,omitempty"`
	Tenant        string    `json:"tenant,omitempty"`
	ObjectID      string    `json:"object_id,omitempty"`
	Subject       string    `json:"subject,omitempty"`
	AppID         string    `json:"app_id,omitempty"`
	Identity      string    `json:"identity,omitempty"`         // stable key (tid/oid, iss|sub, or a workload ID)
	Workload      string    `json:"workload,omitempty"`         // the verified client certificate's workload ID
	CertSerial    string    `json:"cert_serial,omitempty"`      // and its serial number (hex)
	CertIssuer    string    `json:"cert_issuer,omitempty"`      // and its issuing CA
	AuthMethods   []string  `json:"auth_methods,omitempty"`     // the token's amr: how the caller signed in
	AuthContext   []string  `json:"auth_context,omitempty"`     // the token's acrs: authentication contexts met
	TokenLifetime int64     `json:"token_lifetime_s,omitempty"` // seconds from the token's iat to its exp
	SrcIP         string    `json:"src_ip"`
	SrcCountry    string    `json:"src_country,omitempty"` // ISO 3166-1 alpha-2, from policy.geoip_database
	SrcLat        float64   `json:"src_lat,omitempty"`     // with a city database
	SrcLon        float64   `json:"src_lon,omitempty"`
	UserAgent     string    `json:"user_agent,omitempty"`
	Method        string    `json:"method"`
	URL           string    `json:"url"` // path, query values redacted
	Status        int       `json:"status"`
	RequestBytes  int64     `json:"request_bytes"`
	DurationMS    float64   `json:"duration_ms"` // until the response headers
	// DLP counts the matches of each DLP detector in the response, by
	// detector name; never the values. On an ApiRequest event they are the
	// counts of a response held before it started; a response streamed
	// past the gateway has its counts in a DlpResult event after it.
	DLP map[string]int `json:"dlp,omitempty"`
	// DLPOverLimit: the response was longer than the route's dlp.max_bytes.
	DLPOverLimit bool `json:"dlp_over_limit,omitempty"`
	// DLPUnscannedBytes is how much of it passed unscanned (DlpResult).
	DLPUnscannedBytes int64  `json:"dlp_unscanned_bytes,omitempty"`
	Node              string `json:"node"`
	Object            string `json:"object,omitempty"` // Admin: what changed, e.g. api_key/<id>
}

// Record is an event in its node's chain.
type Record struct {
	Node     string
	Seq      int64
	Event    Event
	Body     string // canonical JSON of Event, as hashed
	PrevHash string
	Hash     string
}

// canonicalBufs holds encoding buffers, so that Canonical allocates only
// the exact-size result.
var canonicalBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Canonical returns the bytes an event is hashed over: its JSON encoding,
// whose field order is fixed by the struct. They are json.Marshal's bytes,
// written by AppendCanonical without reflection; an event json.Marshal
// rejects is still rejected, with json.Marshal's error.
func Canonical(e *Event) ([]byte, error) {
	bp, err := encodeCanonical(e)
	if err != nil {
		return nil, err
	}
	defer releaseCanonical(bp)
	return bytes.Clone(*bp), nil
}

// encodeCanonical writes e's canonical bytes into a pooled buffer, to be
// handed back with releaseCanonical once they are copied and hashed.
func encodeCanonical(e *Event) (*[]byte, error) {
	if !encodable(e) {
		// json.Marshal fails, with its own words. It is given a copy so
		// that e, which callers keep on their stack, does not escape.
		c := *e
		_, err := json.Marshal(&c)
		if err == nil {
			err = errors.New("audit: event cannot be encoded")
		}
		return nil, err
	}
	bp := canonicalBufs.Get().(*[]byte)
	*bp = AppendCanonical((*bp)[:0], e)
	return bp, nil
}

func releaseCanonical(bp *[]byte) {
	if cap(*bp) <= 64<<10 { // an outsized event's buffer is left to the collector
		canonicalBufs.Put(bp)
	}
}

// Chain computes the hashes of a node's records. With a key it is an HMAC,
// so a party without the key cannot rebuild a consistent chain.
type Chain struct {
	key     []byte
	linkers sync.Pool // of *linker: an HMAC keeps its padded key, set up once
}

// linker is one hasher and the scratch space to feed it without
// allocating.
type linker struct {
	h    hash.Hash
	head []byte // node, 0, seq (8 bytes, big-endian), prev, 0
	sum  [sha256.Size]byte
}

// NewChain returns a chain hasher; key may be nil.
func NewChain(key []byte) *Chain { return &Chain{key: key} }

func (c *Chain) newHash() hash.Hash {
	if len(c.key) > 0 {
		return hmac.New(sha256.New, c.key)
	}
	return sha256.New()
}

// Link returns the hash of a record: over the node, sequence, previous hash
// and canonical body.
func (c *Chain) Link(node string, seq int64, prev string, body []byte) string {
	l, _ := c.linkers.Get().(*linker)
	if l == nil {
		l = &linker{h: c.newHash()}
	}
	defer func() { l.h.Reset(); c.linkers.Put(l) }()
	b := append(l.head[:0], node...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(seq))
	b = append(b, prev...)
	b = append(b, 0)
	l.head = b
	l.h.Write(b)
	l.h.Write(body)
	return hex.EncodeToString(l.h.Sum(l.sum[:0]))
}

// Problem is the first inconsistency found in a chain.
type Problem struct {
	Node string
	Seq  int64
	What string // altered | deleted | reordered | broken link
}

// Verify walks one node's records in sequence order and reports the first
// problem: a record whose body no longer matches its hash (altered), a gap
// in the sequence (deleted), or a record out of place (reordered).
func (c *Chain) Verify(recs []Record) *Problem { return c.VerifyFrom(0, "", recs) }

// CheckpointMAC binds a retention checkpoint (the last record removed) to
// the chain's key, so that moving it to hide deletions needs the key.
func (c *Chain) CheckpointMAC(node string, seq int64, hash string) string {
	return c.Link(node, seq, "checkpoint", []byte(hash))
}

// VerifyFrom is Verify for a chain whose records up to sequence after were
// removed by retention; prev is the hash of record after.
func (c *Chain) VerifyFrom(after int64, prev string, recs []Record) *Problem {
	want := after + 1
	for _, r := range recs {
		switch {
		case r.Seq > want:
			return &Problem{r.Node, want, "deleted: records from sequence " + itoa(want) + " are missing"}
		case r.Seq < want:
			return &Problem{r.Node, r.Seq, "reordered or duplicated"}
		}
		if c.Link(r.Node, r.Seq, r.PrevHash, []byte(r.Body)) != r.Hash {
			return &Problem{r.Node, r.Seq, "altered or moved: the record does not match its hash"}
		}
		if r.PrevHash != prev {
			return &Problem{r.Node, r.Seq, "reordered: the record does not follow its predecessor"}
		}
		var e Event
		if err := json.Unmarshal([]byte(r.Body), &e); err != nil {
			return &Problem{r.Node, r.Seq, "altered: the body is not an event"}
		}
		// The searchable columns must say what the hashed body says, or a
		// query could be steered around an event without touching its hash.
		if c := r.Event; c.RequestID != "" && (c.RequestID != e.RequestID || c.Decision != e.Decision || c.Service != e.Service ||
			c.Route != e.Route || c.Identity != e.Identity || c.Status != e.Status || !c.Time.Equal(e.Time)) {
			return &Problem{r.Node, r.Seq, "altered: the indexed columns disagree with the event"}
		}
		prev = r.Hash
		want++
	}
	return nil
}

func itoa(i int64) string {
	b, _ := json.Marshal(i)
	return string(b)
}
