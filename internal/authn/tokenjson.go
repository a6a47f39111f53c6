package authn

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// The JSON objects of a token (its header and claims) are read here in one
// pass over their bytes, instead of walking them with json.Decoder.Token:
// that walk was a tenth of the CPU of verifying a token not seen before.
// What is accepted, and the values built, are encoding/json's, as the fuzz
// targets in tokenjson_test.go check against it.

// maxJSONDepth is encoding/json's bound on the nesting of one value.
const maxJSONDepth = 10000

var errNotObject = errors.New("not a JSON object")

// jsonReader reads JSON text, accepting exactly the JSON grammar with at
// most maxDepth nested arrays and objects. The values it builds are those
// encoding/json builds for an any with UseNumber: string, json.Number,
// bool, nil, []any and map[string]any, where a name repeated in an object
// keeps the last value.
//
// The strings built share data's memory, so data must not change once
// read: the token decoders own the bytes they decoded from base64.
type jsonReader struct {
	data     []byte
	pos      int
	depth    int
	maxDepth int
	members  int // read of the outermost object
}

func (r *jsonReader) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", r.pos, fmt.Sprintf(format, args...))
}

// next skips white space and returns the byte after it, 0 at the end
// (a NUL in the text is never valid where next is asked, so it fails too).
func (r *jsonReader) next() byte {
	for r.pos < len(r.data) {
		switch c := r.data[r.pos]; c {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return c
		}
	}
	return 0
}

func (r *jsonReader) enter() error {
	r.depth++
	if r.depth > r.maxDepth {
		return r.errorf("nested deeper than %d", r.maxDepth)
	}
	return nil
}

// open reads the '{' of the outermost object.
func (r *jsonReader) open() error {
	if r.next() != '{' {
		return errNotObject
	}
	r.pos++
	return r.enter()
}

// nextKey reads the name of the outermost object's next member and the
// ':' after it; ok is false once the object has ended.
func (r *jsonReader) nextKey() (key string, ok bool, err error) {
	key, ok, err = r.memberKey(r.members)
	if ok {
		r.members++
	}
	return key, ok, err
}

// memberKey reads the name of an object's next member, after n members.
func (r *jsonReader) memberKey(n int) (string, bool, error) {
	c := r.next()
	switch {
	case c == '}':
		r.pos++
		r.depth--
		return "", false, nil
	case n > 0 && c != ',':
		return "", false, r.errorf("want , or } after a member")
	case n > 0:
		r.pos++
		c = r.next()
	}
	if c != '"' {
		return "", false, r.errorf("want a member name")
	}
	k, err := r.str(true)
	if err != nil {
		return "", false, err
	}
	if r.next() != ':' {
		return "", false, r.errorf("want : after a member name")
	}
	r.pos++
	return k, true, nil
}

// close requires nothing but white space after the outermost object.
func (r *jsonReader) close() error {
	r.next()
	if r.pos != len(r.data) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// value reads one value; with build false it only checks it, and returns
// nil.
func (r *jsonReader) value(build bool) (any, error) {
	switch c := r.next(); {
	case c == '"':
		s, err := r.str(build)
		if err != nil || !build {
			return nil, err
		}
		return s, nil
	case c == '-' || '0' <= c && c <= '9':
		n, err := r.number()
		if err != nil || !build {
			return nil, err
		}
		return json.Number(n), nil
	case c == '{':
		m, err := r.object(build)
		if err != nil || !build {
			return nil, err
		}
		return m, nil
	case c == '[':
		l, err := r.array(build)
		if err != nil || !build {
			return nil, err
		}
		return l, nil
	case c == 't':
		return true, r.literal("true")
	case c == 'f':
		return false, r.literal("false")
	case c == 'n':
		return nil, r.literal("null")
	}
	return nil, r.errorf("want a value")
}

func (r *jsonReader) literal(lit string) error {
	if len(r.data)-r.pos < len(lit) || string(r.data[r.pos:r.pos+len(lit)]) != lit {
		return r.errorf("want %s", lit)
	}
	r.pos += len(lit)
	return nil
}

func (r *jsonReader) object(build bool) (map[string]any, error) {
	r.pos++ // '{'
	if err := r.enter(); err != nil {
		return nil, err
	}
	var m map[string]any
	if build {
		m = map[string]any{}
	}
	for n := 0; ; n++ {
		k, ok, err := r.memberKey(n)
		if err != nil {
			return nil, err
		}
		if !ok {
			return m, nil
		}
		v, err := r.value(build)
		if err != nil {
			return nil, err
		}
		if build {
			m[k] = v
		}
	}
}

func (r *jsonReader) array(build bool) ([]any, error) {
	r.pos++ // '['
	if err := r.enter(); err != nil {
		return nil, err
	}
	var l []any
	if build {
		l = []any{} // encoding/json's [] is empty, not nil
	}
	if r.next() == ']' {
		r.pos++
		r.depth--
		return l, nil
	}
	for {
		v, err := r.value(build)
		if err != nil {
			return nil, err
		}
		if build {
			l = append(l, v)
		}
		switch r.next() {
		case ',':
			r.pos++
		case ']':
			r.pos++
			r.depth--
			return l, nil
		default:
			return nil, r.errorf("want , or ] after an array element")
		}
	}
}

// number reads a number, as its text.
func (r *jsonReader) number() (string, error) {
	d, i := r.data, r.pos
	digits := func() bool {
		start := i
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
		return i > start
	}
	if d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case !digits():
		return "", r.errorf("want a digit")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if !digits() {
			return "", r.errorf("want a digit after the decimal point")
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if !digits() {
			return "", r.errorf("want a digit in the exponent")
		}
	}
	s := unsafe.String(&d[r.pos], i-r.pos)
	r.pos = i
	return s, nil
}

// str reads a string; with build false it only checks it, and returns "".
func (r *jsonReader) str(build bool) (string, error) {
	d := r.data
	start := r.pos
	i := start + 1
	escaped, ascii := false, true
	for {
		if i >= len(d) {
			return "", r.errorf("unterminated string")
		}
		c := d[i]
		if c == '"' {
			break
		}
		switch {
		case c == '\\':
			escaped = true
			if i+1 >= len(d) {
				return "", r.errorf("unterminated string")
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) || !isHex(d[i+2]) || !isHex(d[i+3]) || !isHex(d[i+4]) || !isHex(d[i+5]) {
					r.pos = i
					return "", r.errorf("invalid \\u escape")
				}
				i += 6
			default:
				r.pos = i
				return "", r.errorf("invalid escape")
			}
		case c < 0x20:
			r.pos = i
			return "", r.errorf("control character in string")
		case c >= utf8.RuneSelf:
			ascii = false
			i++
		default:
			i++
		}
	}
	r.pos = i + 1
	if !build || i == start+1 {
		return "", nil
	}
	raw := d[start+1 : i]
	if !escaped && (ascii || utf8.Valid(raw)) {
		return unsafe.String(&raw[0], len(raw)), nil
	}
	// Escapes, or bytes that are not UTF-8 (each becomes U+FFFD): rare in
	// tokens, so left to encoding/json, which then decodes them as it
	// always did.
	var s string
	if err := json.Unmarshal(d[start:r.pos], &s); err != nil {
		return "", err
	}
	return s, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// member is one member of an object being read.
type member struct {
	name  string
	value any
}

// decodeJSONObject decodes a JWT JSON object strictly: a single object, no
// trailing data, no duplicate member names (at the top level; within
// nested objects the last value wins, as in encoding/json). The strings of
// the result share data's memory: data must not change afterwards.
func decodeJSONObject(data []byte) (map[string]any, error) {
	// A member nests one level below the object itself, so a member's
	// value may nest maxJSONDepth levels, as when json.Decoder decoded
	// each member on its own.
	r := jsonReader{data: data, maxDepth: maxJSONDepth + 1}
	if err := r.open(); err != nil {
		return nil, err
	}
	var few [24]member // a token's claims; more only for larger ones
	ms := few[:0]
	for {
		k, ok, err := r.nextKey()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		v, err := r.value(true)
		if err != nil {
			return nil, err
		}
		ms = append(ms, member{k, v})
	}
	if err := r.close(); err != nil {
		return nil, err
	}
	m := make(map[string]any, len(ms))
	for _, e := range ms {
		if _, dup := m[e.name]; dup {
			return nil, fmt.Errorf("duplicate member %q", e.name)
		}
		m[e.name] = e.value
	}
	return m, nil
}

// header is the part of a JOSE header the verifier reads, read as
// encoding/json reads {"alg","kid","typ"} into a struct: a name matches
// whatever its case, the last string wins, and a value of another type
// leaves the field as it was.
type header struct {
	Alg string
	Kid string
	Typ string
	// forbidden is the first member of forbiddenHeaders the header has, in
	// that list's order.
	forbidden string
	// plain is true when alg, kid and typ, where present, are named
	// exactly so and are strings, and so are cty, x5t and x5t#S256: a
	// header that jwx reads without error, and reads as the verifier does.
	// Only a plain header's signature is checked without jwx.
	plain bool
}

// parseHeader reads a token's header strictly, as decodeJSONObject does,
// without building its values.
func parseHeader(data []byte) (header, error) {
	h := header{plain: true}
	r := jsonReader{data: data, maxDepth: maxJSONDepth + 1}
	if err := r.open(); err != nil {
		return header{}, err
	}
	var names memberNames
	var forbidden [len(forbiddenHeaders)]bool
	for {
		k, ok, err := r.nextKey()
		if err != nil {
			return header{}, err
		}
		if !ok {
			break
		}
		if !names.add(k) {
			return header{}, fmt.Errorf("duplicate member %q", k)
		}
		var field *string
		switch {
		case strings.EqualFold(k, "alg"):
			field = &h.Alg
		case strings.EqualFold(k, "kid"):
			field = &h.Kid
		case strings.EqualFold(k, "typ"):
			field = &h.Typ
		}
		switch k {
		case "alg", "kid", "typ", "cty", "x5t", "x5t#S256":
		default:
			if field != nil {
				h.plain = false
			}
		}
		if r.next() == '"' {
			s, err := r.str(true)
			if err != nil {
				return header{}, err
			}
			if field != nil {
				*field = s
			}
		} else {
			switch k {
			case "alg", "kid", "typ", "cty", "x5t", "x5t#S256":
				h.plain = false
			}
			if _, err := r.value(false); err != nil {
				return header{}, err
			}
		}
		for i, f := range forbiddenHeaders {
			if k == f {
				forbidden[i] = true
			}
		}
	}
	if err := r.close(); err != nil {
		return header{}, err
	}
	for i, f := range forbidden {
		if f {
			h.forbidden = forbiddenHeaders[i]
			break
		}
	}
	return h, nil
}

// memberNames is a set of an object's member names: a few kept in place,
// more in a map, so a header of many members costs no more than linear
// time.
type memberNames struct {
	few  [8]string
	n    int
	many map[string]struct{}
}

// add adds k, and reports false when k was there already.
func (s *memberNames) add(k string) bool {
	if s.many != nil {
		if _, ok := s.many[k]; ok {
			return false
		}
		s.many[k] = struct{}{}
		return true
	}
	for _, x := range s.few[:s.n] {
		if x == k {
			return false
		}
	}
	if s.n < len(s.few) {
		s.few[s.n] = k
		s.n++
		return true
	}
	s.many = make(map[string]struct{}, 2*len(s.few))
	for _, x := range s.few {
		s.many[x] = struct{}{}
	}
	s.many[k] = struct{}{}
	return true
}

// readIssuer reads iss from a token's claims exactly as json.Unmarshal
// into struct{ Iss string `json:"iss"` } did: the whole text must be
// valid JSON (nested at most maxJSONDepth levels); null reads as no
// issuer; anything else but an object is an error; names repeat freely;
// iss matches whatever its case, the last string wins, and a value of
// another type but null is an error.
func readIssuer(data []byte) (string, error) {
	r := jsonReader{data: data, maxDepth: maxJSONDepth}
	if r.next() == 'n' {
		if err := r.literal("null"); err != nil {
			return "", err
		}
		return "", r.close()
	}
	if err := r.open(); err != nil {
		if _, verr := r.value(false); verr != nil {
			return "", verr
		}
		if cerr := r.close(); cerr != nil {
			return "", cerr
		}
		return "", err
	}
	var iss string
	var typeErr error
	for {
		k, ok, err := r.nextKey()
		if err != nil {
			return "", err
		}
		if !ok {
			break
		}
		if !strings.EqualFold(k, "iss") {
			if _, err := r.value(false); err != nil {
				return "", err
			}
			continue
		}
		switch r.next() {
		case '"':
			if iss, err = r.str(true); err != nil {
				return "", err
			}
		case 'n':
			if err := r.literal("null"); err != nil {
				return "", err
			}
		default:
			if _, err := r.value(false); err != nil {
				return "", err
			}
			if typeErr == nil {
				typeErr = errors.New("iss is not a string")
			}
		}
	}
	if err := r.close(); err != nil {
		return "", err
	}
	return iss, typeErr
}
