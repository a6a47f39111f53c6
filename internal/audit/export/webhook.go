package export

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"

	"github.com/ztgate/ztgate/internal/audit"
)

// Webhook headers: the batch's signing time (Unix seconds) and
// "sha256=" + hex(HMAC-SHA256(key, timestamp + "." + body)). A receiver
// recomputes the HMAC over the exact bytes received, compares in constant
// time and refuses a timestamp far from its clock (replays).
const (
	TimestampHeader = "X-Ztgate-Timestamp"
	SignatureHeader = "X-Ztgate-Signature"
)

// Sign returns the signature header value of body signed at ts.
func Sign(key []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// webhookSender posts each batch as a JSON array of records (the event as
// hashed, with its chain position), signed with HMAC-SHA256.
type webhookSender struct {
	client *http.Client
	url    string
	header http.Header
	key    []byte
	now    func() time.Time
}

var _ Sender = (*webhookSender)(nil)

func (s *webhookSender) Send(ctx context.Context, recs []audit.Record) error {
	body := []byte{'['}
	for i := range recs {
		line, err := marshalEnvelope(&recs[i])
		if err != nil {
			return Permanent(err)
		}
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, line...)
	}
	body = append(body, ']')
	ts := s.now().Unix()
	h := s.header.Clone()
	h.Set("Content-Type", "application/json")
	h.Set(TimestampHeader, strconv.FormatInt(ts, 10))
	h.Set(SignatureHeader, Sign(s.key, ts, body))
	return post(ctx, s.client, s.url, h, body)
}

func (s *webhookSender) Close() error {
	s.client.CloseIdleConnections()
	return nil
}
