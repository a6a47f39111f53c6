package audit

import (
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendCanonical appends the canonical encoding of e to dst and returns the
// extended slice. The bytes are exactly those json.Marshal(e) produces:
// fields in struct order, the same omitempty rules, the same string escaping
// (HTML characters, U+2028 and U+2029 escaped, invalid UTF-8 replaced), the
// same number formatting and map keys sorted. It does the work of
// json.Marshal without reflection, because every proxied request encodes
// one event on its way through.
//
// For an event json.Marshal rejects (a time whose year is outside 0 to 9999
// or whose zone offset is a day or more, a NaN or infinite float) the
// result is not valid JSON; Canonical reports those as errors.
func AppendCanonical(dst []byte, e *Event) []byte {
	b := append(dst, `{"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendStringField(b, `,"event_type":`, e.EventType)
	b = appendStringField(b, `,"request_id":`, e.RequestID)
	b = appendStringField(b, `,"result":`, e.Result)
	b = appendStringField(b, `,"result_details":`, e.ResultDetails)
	b = appendStringField(b, `,"decision":`, e.Decision)
	b = appendStringsField(b, `,"reasons":`, e.Reasons)
	b = appendStringOmitEmpty(b, `,"message":`, e.Message)
	b = appendStringField(b, `,"policy_version":`, e.PolicyVersion)
	b = appendStringOmitEmpty(b, `,"service":`, e.Service)
	b = appendStringOmitEmpty(b, `,"route":`, e.Route)
	b = appendStringOmitEmpty(b, `,"identity_type":`, e.IdentityType)
	b = appendStringOmitEmpty(b, `,"tenant":`, e.Tenant)
	b = appendStringOmitEmpty(b, `,"object_id":`, e.ObjectID)
	b = appendStringOmitEmpty(b, `,"subject":`, e.Subject)
	b = appendStringOmitEmpty(b, `,"app_id":`, e.AppID)
	b = appendStringOmitEmpty(b, `,"identity":`, e.Identity)
	b = appendStringOmitEmpty(b, `,"workload":`, e.Workload)
	b = appendStringOmitEmpty(b, `,"cert_serial":`, e.CertSerial)
	b = appendStringOmitEmpty(b, `,"cert_issuer":`, e.CertIssuer)
	b = appendStringsField(b, `,"auth_methods":`, e.AuthMethods)
	b = appendStringsField(b, `,"auth_context":`, e.AuthContext)
	if e.TokenLifetime != 0 {
		b = strconv.AppendInt(append(b, `,"token_lifetime_s":`...), e.TokenLifetime, 10)
	}
	b = appendStringField(b, `,"src_ip":`, e.SrcIP)
	b = appendStringOmitEmpty(b, `,"src_country":`, e.SrcCountry)
	if e.SrcLat != 0 {
		b = appendFloat(append(b, `,"src_lat":`...), e.SrcLat)
	}
	if e.SrcLon != 0 {
		b = appendFloat(append(b, `,"src_lon":`...), e.SrcLon)
	}
	b = appendStringOmitEmpty(b, `,"user_agent":`, e.UserAgent)
	b = appendStringField(b, `,"method":`, e.Method)
	b = appendStringField(b, `,"url":`, e.URL)
	b = strconv.AppendInt(append(b, `,"status":`...), int64(e.Status), 10)
	b = strconv.AppendInt(append(b, `,"request_bytes":`...), e.RequestBytes, 10)
	b = appendFloat(append(b, `,"duration_ms":`...), e.DurationMS)
	if len(e.DLP) > 0 {
		b = appendCounts(append(b, `,"dlp":`...), e.DLP)
	}
	if e.DLPOverLimit {
		b = append(b, `,"dlp_over_limit":true`...)
	}
	if e.DLPUnscannedBytes != 0 {
		b = strconv.AppendInt(append(b, `,"dlp_unscanned_bytes":`...), e.DLPUnscannedBytes, 10)
	}
	b = appendStringField(b, `,"node":`, e.Node)
	b = appendStringOmitEmpty(b, `,"object":`, e.Object)
	return append(b, '}')
}

// encodable reports whether json.Marshal accepts e, that is whether
// AppendCanonical's output is the event's encoding. time.Time.MarshalJSON
// refuses a year outside [0,9999] and a zone offset of 24 hours or more;
// encoding/json refuses NaN and infinite floats, even in a field omitempty
// would leave out were it zero.
func encodable(e *Event) bool {
	if y := e.Time.Year(); y < 0 || y > 9999 {
		return false
	}
	if _, off := e.Time.Zone(); off <= -24*60*60 || off >= 24*60*60 {
		return false
	}
	return finite(e.SrcLat) && finite(e.SrcLon) && finite(e.DurationMS)
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// appendStringField appends key and s as a JSON string.
func appendStringField(b []byte, key, s string) []byte {
	return appendString(append(b, key...), s)
}

// appendStringOmitEmpty is appendStringField for an omitempty field: an
// empty s appends nothing.
func appendStringOmitEmpty(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendStringField(b, key, s)
}

// appendStringsField appends key and ss as a JSON array of strings; all the
// Event's slices are omitempty, so an empty (or nil) ss appends nothing.
func appendStringsField(b []byte, key string, ss []string) []byte {
	if len(ss) == 0 {
		return b
	}
	b = append(b, key...)
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendCounts appends m as a JSON object, keys sorted as encoding/json
// sorts them (by their bytes).
func appendCounts(b []byte, m map[string]int) []byte {
	var small [16]string // most events name a few detectors: no allocation
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(m[k]), 10)
	}
	return append(b, '}')
}

// appendFloat appends f as encoding/json formats a float64: like
// JavaScript's Number to string, plain decimal from 1e-6 up to 1e21 and an
// exponent outside, written without padding (1e-7, not 1e-07). f must be
// finite.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// plain[c] is whether byte c is written into a JSON string as it is: ASCII
// from space up, except the quote, the backslash and the HTML-sensitive <,
// > and &. (Bytes from 0x80 up start a UTF-8 sequence, checked apart.)
var plain = func() (t [256]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

// appendString appends s as a quoted JSON string, escaped as encoding/json
// escapes it by default: quote, backslash and control characters, the
// HTML-sensitive <, > and &, U+2028 and U+2029 (line and paragraph
// separators, which break JavaScript); each byte of invalid UTF-8 becomes
// U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0 // s[start:i] is still to be copied
	for i := 0; i < len(s); {
		c := s[i]
		if plain[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default: // other control characters, <, > and &
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
