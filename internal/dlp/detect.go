package dlp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
)

// A built-in detector decides, for one position of the body, whether a
// match starts there and where it ends. It may look at most lookbehind
// bytes back and maxMatch+2 bytes ahead, so that a stream cut anywhere gives
// the answers the whole body would: a position whose answer depends on bytes
// not yet read is left undecided (more) until they come or the body ends.

// Bounds of the built-in detectors, in bytes.
const (
	lookbehind = 32
	maxPEM     = 16 << 10 // a PEM block, BEGIN to END (an RSA 8192 key is ~6.5 KiB)
	maxJWT     = 32 << 10 // a JWT; a longer one is masked for its first 32 KiB
	maxJWTHead = 8 << 10  // a JWT header that is decoded
	// maxEscapeRun bounds the backslashes counted before a byte; with the
	// escape sequence before them it stays within lookbehind.
	maxEscapeRun = 16
)

// window is what a detector sees: the bytes held, whether the body ends
// with them, and the scanner for state that spans positions.
type window struct {
	b   []byte
	eof bool
	sc  *scanner
}

// need reports that the bytes up to index j (exclusive) are needed and not
// all there yet.
func (w *window) need(j int) bool { return j > len(w.b) && !w.eof }

type detectFunc func(w *window, i int) (end int, more bool)

// detectors are the built-ins by id (the index in builtinNames).
var detectors = [...]detectFunc{detectPEM, detectJWT, detectAzureKey, detectSAS, detectIBAN, detectCard, detectSSN, detectEmail}

// Byte classes.
const (
	cDigit = 1 << iota
	cUpper
	cLower
	cLocal  // e-mail local part: letters, digits, . _ % + -
	cB64    // base64: letters, digits, + /
	cB64URL // base64url: letters, digits, - _
	cSAS    // a SAS signature value: base64 and percent-encoding
	cDomain // host names: letters, digits, - .
)

var class = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		var k uint8
		switch {
		case c >= '0' && c <= '9':
			k = cDigit | cLocal | cB64 | cB64URL | cSAS | cDomain
		case c >= 'A' && c <= 'Z':
			k = cUpper | cLocal | cB64 | cB64URL | cSAS | cDomain
		case c >= 'a' && c <= 'z':
			k = cLower | cLocal | cB64 | cB64URL | cSAS | cDomain
		}
		switch c {
		case '.':
			k |= cLocal | cDomain
		case '-':
			k |= cLocal | cB64URL | cDomain
		case '_':
			k |= cLocal | cB64URL
		case '%':
			k |= cLocal | cSAS
		case '+':
			k |= cLocal | cB64 | cSAS
		case '/':
			k |= cB64 | cSAS
		case '=':
			k |= cSAS
		}
		t[c] = k
	}
	return t
}()

const cAlnum = cDigit | cUpper | cLower

func is(c byte, k uint8) bool { return class[c]&k != 0 }

// starts[c] has the bit of each built-in detector that can start at byte c.
var starts = func() (t [256]uint16) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		var m uint16
		if b == '-' {
			m |= 1 << idPEM
		}
		if b == 'e' {
			m |= 1 << idJWT
		}
		if is(b, cB64) {
			m |= 1 << idAzureKey
		}
		if is(b, cSAS) {
			m |= 1 << idSAS
		}
		if is(b, cUpper) {
			m |= 1 << idIBAN
		}
		if is(b, cDigit) {
			m |= 1<<idCard | 1<<idSSN
		}
		if is(b, cLocal) && b != '.' {
			m |= 1 << idEmail
		}
		t[c] = m
	}
	return t
}()

const (
	idPEM = iota
	idJWT
	idAzureKey
	idSAS
	idIBAN
	idCard
	idSSN
	idEmail
)

// escaped reports whether b[i] is escaped by a backslash (an odd run of
// backslashes before it), as in a JSON string: it is then no match's start.
func escaped(b []byte, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && j >= i-maxEscapeRun && b[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// escapeBefore reports whether an escape sequence (\n, \t, \/, \u003c, ...)
// ends just before b[i]. Its last character is no part of the word that
// follows: "\nbob@example.com" holds the address bob@example.com.
func escapeBefore(b []byte, i int) bool {
	if i >= 2 && b[i-2] == '\\' && bytes.IndexByte([]byte("bfnrt/"), b[i-1]) >= 0 && !escaped(b, i-2) {
		return true
	}
	if i >= 6 && b[i-6] == '\\' && b[i-5] == 'u' && isHex(b[i-4]) && isHex(b[i-3]) && isHex(b[i-2]) && isHex(b[i-1]) && !escaped(b, i-6) {
		return true
	}
	return false
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// boundary reports whether a match may start at b[i]: the byte before it is
// not of class k (or ends an escape sequence), and b[i] is not escaped.
func boundary(b []byte, i int, k uint8) bool {
	if i == 0 {
		return true
	}
	return (!is(b[i-1], k) || escapeBefore(b, i)) && !escaped(b, i)
}

// --- payment cards ---

// detectCard matches 13 to 19 digits, optionally grouped by single spaces or
// dashes, with a plausible issuer prefix for their length and a valid Luhn
// check digit. Where the digits run on in further groups, the longest valid
// number that ends at a group boundary matches; a run of digits is never cut.
func detectCard(w *window, i int) (int, bool) {
	b := w.b
	if !boundary(b, i, cAlnum) {
		return 0, false
	}
	var ds [19]byte
	n, j := 0, i
	best := 0
	for {
		for j < len(b) && is(b[j], cDigit) {
			if n == len(ds) {
				return best, false // a run past 19 digits: no boundary inside it
			}
			ds[n] = b[j]
			n++
			j++
		}
		if w.need(j + 1) {
			return 0, true
		}
		if j < len(b) && is(b[j], cUpper|cLower) {
			return best, false // digits running into letters: an identifier
		}
		if n >= 13 && luhn(ds[:n]) && plausibleIIN(ds[:n]) {
			best = j
		}
		if j < len(b) && (b[j] == ' ' || b[j] == '-') {
			if w.need(j + 2) {
				return 0, true
			}
			if j+1 < len(b) && is(b[j+1], cDigit) {
				j++
				continue
			}
		}
		return best, false
	}
}

func luhn(ds []byte) bool {
	sum := 0
	for k := range ds {
		d := int(ds[len(ds)-1-k] - '0')
		if k%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// plausibleIIN reports whether the number starts with an issuer prefix in
// use by a card scheme that issues numbers of its length.
func plausibleIIN(ds []byte) bool {
	num := func(k int) int {
		v := 0
		for _, d := range ds[:k] {
			v = v*10 + int(d-'0')
		}
		return v
	}
	n := len(ds)
	p2, p3, p4 := num(2), num(3), num(4)
	switch {
	case ds[0] == '4': // Visa
		return n == 13 || n == 16 || n == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720: // Mastercard
		return n == 16
	case p2 == 34, p2 == 37: // American Express
		return n == 15
	case p4 >= 2200 && p4 <= 2204: // Mir
		return n >= 16
	case p4 >= 3528 && p4 <= 3589: // JCB
		return n >= 16
	case p3 >= 300 && p3 <= 305, p2 == 36, p2 == 38, p2 == 39: // Diners Club
		return n >= 14
	case p4 == 6011, p3 >= 644 && p3 <= 649, p2 == 65, p2 == 62: // Discover, UnionPay
		return n >= 16
	case p2 == 50, p2 >= 56 && p2 <= 69: // Maestro
		return n >= 13
	}
	return false
}

// --- US social security numbers ---

// detectSSN matches AAA-GG-SSSS (dashes or spaces, the same twice) outside
// the ranges never issued: area 000, 666 and 900-999, group 00, serial 0000.
func detectSSN(w *window, i int) (int, bool) {
	b := w.b
	if !boundary(b, i, cAlnum) || i >= 2 && b[i-1] == '-' && is(b[i-2], cDigit) {
		return 0, false
	}
	if w.need(i + 13) {
		if end := min(len(b), i+11); !ssnPrefix(b[i:end]) {
			return 0, false
		}
		return 0, true
	}
	end := i + 11
	if end > len(b) || !ssnPrefix(b[i:end]) {
		return 0, false
	}
	if end < len(b) && (is(b[end], cAlnum) || b[end] == '-' && end+1 < len(b) && is(b[end+1], cDigit)) {
		return 0, false
	}
	area, group, serial := string(b[i:i+3]), string(b[i+4:i+6]), string(b[i+7:i+11])
	if area == "000" || area == "666" || area[0] == '9' || group == "00" || serial == "0000" {
		return 0, false
	}
	return end, false
}

// ssnPrefix reports whether p could begin DDD-DD-DDDD.
func ssnPrefix(p []byte) bool {
	for k, c := range p {
		switch k {
		case 3:
			if c != '-' && c != ' ' {
				return false
			}
		case 6:
			if c != p[3] {
				return false
			}
		default:
			if !is(c, cDigit) {
				return false
			}
		}
	}
	return true
}

// --- IBAN ---

// ibanLength is the length of each country's IBAN (ISO 13616 registry).
var ibanLength = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
	"BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
	"EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
	"GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
	"IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
	"LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
	"NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
	"RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
	"SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

// detectIBAN matches an IBAN in electronic form (DE89370400440532013000) or
// in groups of four (DE89 3704 0044 0532 0130 00) whose length fits its
// country and whose check digits pass ISO 7064 mod 97-10.
func detectIBAN(w *window, i int) (int, bool) {
	b := w.b
	if !boundary(b, i, cAlnum) {
		return 0, false
	}
	if i+4 <= len(b) && (!is(b[i+1], cUpper) || !is(b[i+2], cDigit) || !is(b[i+3], cDigit)) {
		return 0, false
	}
	if w.need(i + 5) {
		if len(b)-i >= 2 && ibanLength[string(b[i:i+2])] == 0 {
			return 0, false
		}
		return 0, true
	}
	if i+4 > len(b) {
		return 0, false
	}
	want := ibanLength[string(b[i:i+2])]
	if want == 0 || !is(b[i+2], cDigit) || !is(b[i+3], cDigit) {
		return 0, false
	}
	spaced := i+4 < len(b) && b[i+4] == ' '
	var compact [34]byte
	n, j := 0, i
	for n < want {
		if n > 0 && n%4 == 0 && spaced {
			if w.need(j + 1) {
				return 0, true
			}
			if j >= len(b) || b[j] != ' ' {
				return 0, false
			}
			j++
		}
		if w.need(j + 1) {
			return 0, true
		}
		if j >= len(b) || !is(b[j], cUpper|cDigit) {
			return 0, false
		}
		compact[n] = b[j]
		n++
		j++
	}
	if w.need(j + 1) {
		return 0, true
	}
	if j < len(b) && is(b[j], cAlnum) {
		return 0, false
	}
	if !ibanValid(compact[:n]) {
		return 0, false
	}
	return j, false
}

// ibanValid checks the mod 97-10 check digits of a compact IBAN.
func ibanValid(s []byte) bool {
	rem := 0
	add := func(c byte) {
		if c >= 'A' && c <= 'Z' {
			v := int(c-'A') + 10
			rem = (rem*100 + v) % 97
			return
		}
		rem = (rem*10 + int(c-'0')) % 97
	}
	for _, c := range s[4:] {
		add(c)
	}
	for _, c := range s[:4] {
		add(c)
	}
	return rem == 1
}

// --- e-mail addresses ---

// detectEmail matches local@domain: a local part of letters, digits and
// . _ % + - (at most 64, not starting or ending with a dot) and a domain of
// at least two labels ending in a top-level domain of letters.
func detectEmail(w *window, i int) (int, bool) {
	b := w.b
	if b[i] == '.' || !boundary(b, i, cLocal) {
		return 0, false
	}
	if at := w.sc.nextAt(i); at > i+64 || at < 0 && len(b) > i+64 {
		return 0, false // no @ close enough
	}
	j := i
	for j < len(b) && j-i <= 64 && is(b[j], cLocal) {
		j++
	}
	if j-i > 64 {
		return 0, false
	}
	if w.need(j + 1) {
		return 0, true
	}
	if j >= len(b) || b[j] != '@' || b[j-1] == '.' {
		return 0, false
	}
	at := j
	j++
	for j < len(b) && j-at <= 254 && is(b[j], cDomain) {
		j++
	}
	if j-at > 254 {
		return 0, false
	}
	if w.need(j + 1) {
		return 0, true
	}
	end := j
	for end > at+1 && (b[end-1] == '.' || b[end-1] == '-') {
		end--
	}
	if !validDomain(b[at+1 : end]) {
		return 0, false
	}
	return end, false
}

func validDomain(d []byte) bool {
	labels := 0
	for len(d) > 0 {
		k := bytes.IndexByte(d, '.')
		label := d
		if k >= 0 {
			label, d = d[:k], d[k+1:]
		} else {
			d = nil
		}
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		labels++
		if len(d) == 0 {
			if len(label) < 2 {
				return false
			}
			for _, c := range label {
				if !is(c, cUpper|cLower) {
					return false
				}
			}
		}
	}
	return labels >= 2
}

// --- JWT ---

// detectJWT matches a compact JWS or JWE: eyJ..., at least three dot-joined
// base64url segments whose first decodes to a JSON object with "alg".
func detectJWT(w *window, i int) (int, bool) {
	b := w.b
	if w.need(i + 3) {
		if bytes.HasPrefix([]byte("eyJ"), b[i:]) {
			return 0, true
		}
		return 0, false
	}
	if !bytes.HasPrefix(b[i:], []byte("eyJ")) || !boundary(b, i, cB64URL) || i > 0 && b[i-1] == '.' {
		return 0, false
	}
	limit := min(len(b), i+maxJWT)
	j, segs := i, 0
	for {
		k := j
		for k < limit && is(b[k], cB64URL) {
			k++
		}
		if k == i+maxJWT {
			if segs == 0 {
				return 0, false
			}
			return k, false // a longer token: its first 32 KiB
		}
		if w.need(k + 2) {
			return 0, segs > 0 || k-i <= maxJWTHead
		}
		if segs == 0 && (k-i > maxJWTHead || !jwtHeader(b[i:k])) {
			return 0, false
		}
		if segs == 1 && k == j {
			return 0, false // an empty payload
		}
		segs++
		if k < len(b) && b[k] == '.' && segs < 5 {
			if k+1 < len(b) && is(b[k+1], cB64URL) {
				j = k + 1
				continue
			}
			if segs == 2 {
				return k + 1, false // "header.payload.": an unsigned token
			}
		}
		if segs < 3 {
			return 0, false
		}
		return k, false
	}
}

func jwtHeader(seg []byte) bool {
	raw := make([]byte, base64.RawURLEncoding.DecodedLen(len(seg)))
	n, err := base64.RawURLEncoding.Decode(raw, seg)
	if err != nil {
		return false
	}
	var h struct {
		Alg *string `json:"alg"`
	}
	return json.Unmarshal(raw[:n], &h) == nil && h.Alg != nil
}

// --- PEM private keys ---

var (
	pemBegin = []byte("-----BEGIN ")
	pemEnd   = []byte("-----END ")
	pemDash  = []byte("-----")
)

// detectPEM matches a PEM private key block, BEGIN line to END line, for any
// label ending in PRIVATE KEY (RSA, EC, ENCRYPTED, OPENSSH, PGP ... BLOCK).
// A block without its END line within 16 KiB is masked from BEGIN to the
// end of the key material that follows it.
func detectPEM(w *window, i int) (int, bool) {
	b := w.b
	if w.need(i + len(pemBegin)) {
		return 0, bytes.HasPrefix(pemBegin, b[i:])
	}
	if !bytes.HasPrefix(b[i:], pemBegin) {
		return 0, false
	}
	// The label: upper-case words, then five dashes.
	j := i + len(pemBegin)
	for j < len(b) && j-i < 64 && (is(b[j], cUpper|cDigit) || b[j] == ' ') {
		j++
	}
	if w.need(j + len(pemDash)) {
		return 0, true
	}
	label := b[i+len(pemBegin) : j]
	if !bytes.HasPrefix(b[j:], pemDash) || !(bytes.HasSuffix(label, []byte("PRIVATE KEY")) || bytes.HasSuffix(label, []byte("PRIVATE KEY BLOCK"))) {
		return 0, false
	}
	body := j + len(pemDash)
	limit := i + maxPEM
	for from := body; ; {
		k := w.sc.nextPEMEnd(from, min(len(b), limit))
		if k < 0 {
			break
		}
		e := k + len(pemEnd)
		if w.need(e + len(label) + len(pemDash)) {
			return 0, true
		}
		if e+len(label)+len(pemDash) <= limit && bytes.HasPrefix(b[e:], label) && bytes.HasPrefix(b[e+len(label):], pemDash) {
			return e + len(label) + len(pemDash), false
		}
		from = k + 1
	}
	if w.need(limit + 1) {
		return 0, true
	}
	// No END line: the key material that follows.
	k := body
	for k < len(b) && k < limit && pemBody(b[k]) {
		k++
	}
	return k, false
}

func pemBody(c byte) bool {
	return is(c, cB64) || c == '=' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\\' || c == ':' || c == ',' || c == '-' || c == '.'
}

// --- Azure storage ---

var accountKey = []byte("accountkey=")

// detectAzureKey matches a storage account key: 86 base64 characters and
// "==" standing alone, or any base64 value of 20 to 128 characters after
// AccountKey= in a connection string.
func detectAzureKey(w *window, i int) (int, bool) {
	b := w.b
	if i >= len(accountKey) && b[i-1] == '=' && bytes.EqualFold(b[i-len(accountKey):i], accountKey) &&
		(i == len(accountKey) || !is(b[i-len(accountKey)-1], cAlnum)) {
		j := i
		for j < len(b) && j-i <= 128 && is(b[j], cB64) {
			j++
		}
		for j < len(b) && j-i <= 130 && b[j] == '=' {
			j++
		}
		if w.need(j + 1) {
			return 0, true
		}
		if n := j - i; n >= 20 && n <= 130 && (j == len(b) || !is(b[j], cB64)) {
			return j, false
		}
		return 0, false
	}
	if !boundary(b, i, cB64) || i > 0 && b[i-1] == '=' || i+88 <= len(b) && (b[i+86] != '=' || b[i+87] != '=') {
		return 0, false
	}
	j := i
	for j < len(b) && j-i <= 86 && is(b[j], cB64) {
		j++
	}
	if w.need(j + 3) {
		return 0, j-i <= 86
	}
	if j-i != 86 || j+2 > len(b) || b[j] != '=' || b[j+1] != '=' {
		return 0, false
	}
	if j+2 < len(b) && (is(b[j+2], cB64) || b[j+2] == '=') {
		return 0, false
	}
	return j + 2, false
}

var sigParam = []byte("sig=")

// detectSAS matches the signature of a shared access signature (the value
// of sig= in a SAS URL or a SharedAccessSignature= connection string), 20 to
// 256 characters of base64 or percent-encoding.
func detectSAS(w *window, i int) (int, bool) {
	b := w.b
	k := i - len(sigParam)
	if k < 0 || b[i-1] != '=' || !bytes.EqualFold(b[k:i], sigParam) {
		return 0, false
	}
	if k > 0 && bytes.IndexByte([]byte("?&;=\"'"), b[k-1]) < 0 && !escapeBefore(b, k) {
		return 0, false
	}
	j := i
	for j < len(b) && j-i <= 256 && is(b[j], cSAS) {
		j++
	}
	if w.need(j + 1) {
		return 0, true
	}
	if n := j - i; n < 20 || n > 256 {
		return 0, false
	}
	return j, false
}
