package authn

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// The token decoders are checked against what they replaced: the
// json.Decoder walk below (with trailing data now refused whatever it is),
// json.Unmarshal of the header into a struct, and of the claims into
// struct{ Iss string }.

// referenceObject is the json.Decoder walk that decodeJSONObject was,
// with one change: trailing data is refused whatever it is (the walk
// refused it only when it began with a valid JSON value).
func referenceObject(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	m := map[string]any{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := kt.(string)
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("duplicate member %q", k)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		m[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	return m, nil
}

// referenceHeader is how parse read a header: the walk above for its
// shape and forbidden members, then json.Unmarshal into a struct.
func referenceHeader(data []byte) (alg, kid, typ, forbidden string, err error) {
	hm, err := referenceObject(data)
	if err != nil {
		return "", "", "", "", err
	}
	for _, k := range forbiddenHeaders {
		if _, ok := hm[k]; ok {
			forbidden = k
			break
		}
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}
	_ = json.Unmarshal(data, &h)
	return h.Alg, h.Kid, h.Typ, forbidden, nil
}

// referenceIssuer is how peekIssuer read iss.
func referenceIssuer(data []byte) (string, error) {
	var c struct {
		Iss string `json:"iss"`
	}
	err := json.Unmarshal(data, &c)
	return c.Iss, err
}

// jsonSeeds are the cases of TestDecodeJSONObject, and seeds of the fuzz
// targets.
var jsonSeeds = []string{
	`{}`, ` { } `, `{"a":1}`, "\t{\"a\" : 1 ,\n\"b\":[1,2,{\"c\":null}]}\r\n",
	`{"iss":"https://issuer.example","aud":["api","other"],"exp":1700000000,"nbf":1.5e9,"x":-0.25E-3,"t":true,"f":false,"n":null}`,
	`{"a":{}}`, `{"a":[]}`, `{"a":[[]]}`, `{"a":{"b":{"c":{}}}}`,
	`{"a":1,"a":2}`, `{"a":{"b":1,"b":2}}`, `{"a":1,"A":2}`,
	`{"a":1}x`, `{"a":1}}`, `{"a":1}]`, `{"a":1} {}`, `{"a":1} 1`, `{"a":1}"s"`, "{\"a\":1}\x00",
	`{"a":1,}`, `{,"a":1}`, `{"a" 1}`, `{"a":1 "b":2}`, `{a:1}`, `{"a":}`, `{"a"}`, `{"a":1`, `{"a":[1,]}`, `{"a":[,1]}`, `{"a":[1 2]}`,
	`[]`, `null`, `"s"`, `1`, `true`, ``, ` `, `{`, `}`,
	`{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":1e+}`, `{"a":+1}`, `{"a":0x10}`, `{"a":-0}`, `{"a":1E+2}`, `{"a":123456789012345678901234567890}`,
	`{"a":tru}`, `{"a":truex}`, `{"a":nul}`, `{"a":NaN}`, `{"a":Infinity}`,
	`{"a":"\u00e9\n\t\"\\\/"}`, `{"\u0061":1,"a":2}`, `{"a":"\ud83d\ude00"}`, `{"a":"\ud83d"}`, `{"a":"\ude00\ud83d"}`, `{"a":"\u12"}`, `{"a":"\x"}`, `{"a":"\`,
	"{\"a\":\"caf\xc3\xa9\"}", "{\"a\":\"\xff\xfe\"}", "{\"\xff\":1,\"\xfe\":2}", "{\"a\":\"\x01\"}", "{\"a\":\"\x7f\"}", `{"a":"é"}`,
	`{"alg":"RS256","kid":"k1","typ":"JWT"}`, `{"ALG":"RS256"}`, `{"alg":"RS256","Alg":"HS256"}`, `{"alg":"RS256","ALG":5}`, `{"alg":null}`, `{"alg":["RS256"]}`,
	`{"kid":5,"alg":"RS256"}`, "{\"\u212aid\":\"k\"}", `{"alg":"RS256","jku":"x","x5u":"y"}`, `{"alg":"RS256","crit":["b64"],"b64":false}`, `{"alg":"RS256","cty":1}`, `{"alg":"RS256","x5t#S256":"a"}`,
	`{"iss":"a","iss":"b"}`, `{"iss":null}`, `{"iss":1}`, `{"ISS":"x"}`, `{"iss":"a","Iss":null}`, `{"iss":{"a":1}}`, `{"iss":"a","x":1,"iss":2}`,
}

func TestDecodeJSONObject(t *testing.T) {
	for _, s := range append(jsonSeeds, nested(maxJSONDepth), nested(maxJSONDepth+1), "["+nested(maxJSONDepth-1)+"]") {
		name := s
		if len(name) > 40 {
			name = name[:40] + fmt.Sprintf("...(%d bytes)", len(s))
		}
		t.Run(name, func(t *testing.T) { checkDecoders(t, []byte(s)) })
	}
}

// nested is an object whose member nests depth arrays.
func nested(depth int) string {
	return `{"a":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
}

func FuzzDecodeJSONObject(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkDecoders(t, data) })
}

// checkDecoders compares the three token decoders with their references
// on data.
func checkDecoders(t *testing.T, data []byte) {
	t.Helper()
	own := bytes.Clone(data) // the decoders keep it
	want, wantErr := referenceObject(data)
	got, err := decodeJSONObject(own)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("decodeJSONObject(%q): got error %v, want %v", data, err, wantErr)
	}
	// reflect.DeepEqual first: cmp is slow on values nested thousands deep.
	if err == nil && !reflect.DeepEqual(want, got) {
		t.Fatalf("decodeJSONObject(%q) (-want +got):\n%s", data, cmp.Diff(want, got))
	}

	alg, kid, typ, forbidden, wantErr := referenceHeader(data)
	h, err := parseHeader(bytes.Clone(data))
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("parseHeader(%q): got error %v, want %v", data, err, wantErr)
	}
	if err == nil {
		if h.Alg != alg || h.Kid != kid || h.Typ != typ || h.forbidden != forbidden {
			t.Fatalf("parseHeader(%q): got alg %q kid %q typ %q forbidden %q, want %q %q %q %q", data, h.Alg, h.Kid, h.Typ, h.forbidden, alg, kid, typ, forbidden)
		}
		checkPlain(t, data, h)
	}

	iss, wantErr := referenceIssuer(data)
	gotIss, err := readIssuer(bytes.Clone(data))
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("readIssuer(%q): got error %v, want %v", data, err, wantErr)
	}
	if err == nil && gotIss != iss {
		t.Fatalf("readIssuer(%q): got %q, want %q", data, gotIss, iss)
	}
}

// checkPlain: a plain header whose signature is checked without jwx is
// one that jwx parses, into the same alg, kid and typ.
func checkPlain(t *testing.T, data []byte, h header) {
	t.Helper()
	if _, _, rsa := rsaAlgorithm(h.Alg); !h.plain || !rsa || h.forbidden != "" {
		return
	}
	tok := base64.RawURLEncoding.EncodeToString(data) + ".e30.AAAA"
	m, err := jws.Parse([]byte(tok), jws.WithCompact())
	if err != nil {
		t.Fatalf("plain header %q: jwx refuses it: %v", data, err)
	}
	ph := m.Signatures()[0].ProtectedHeaders()
	alg, _ := ph.Algorithm()
	kid, _ := ph.KeyID()
	typ, _ := ph.Type()
	if alg.String() != h.Alg || kid != h.Kid || typ != h.Typ {
		t.Fatalf("plain header %q: jwx reads alg %q kid %q typ %q, the verifier %q %q %q", data, alg, kid, typ, h.Alg, h.Kid, h.Typ)
	}
}

// TestParseHeaderPlain: which headers have their signature checked
// without jwx.
func TestParseHeaderPlain(t *testing.T) {
	for _, tt := range []struct {
		header string
		plain  bool
	}{
		{`{"alg":"RS256","kid":"k1","typ":"JWT"}`, true},
		{`{"alg":"RS256","kid":"k1","x5t":"abc","cty":"x","x5t#S256":"def","custom":{"a":[1]}}`, true},
		{`{"ALG":"RS256"}`, false},
		{`{"alg":"RS256","Kid":"k1"}`, false},
		{`{"alg":"RS256","kid":null}`, false},
		{`{"alg":"RS256","kid":5}`, false},
		{`{"alg":"RS256","typ":["JWT"]}`, false},
		{`{"alg":"RS256","x5t":1}`, false},
		{`{"alg":"RS256","cty":null}`, false},
		{"{\"alg\":\"RS256\",\"\u212aid\":\"k1\"}", false}, // the Kelvin sign folds to k
	} {
		t.Run(tt.header, func(t *testing.T) {
			h, err := parseHeader([]byte(tt.header))
			if err != nil {
				t.Fatal(err)
			}
			if h.plain != tt.plain {
				t.Fatalf("got plain %v, want %v", h.plain, tt.plain)
			}
		})
	}
}

func BenchmarkDecodeClaims(b *testing.B) {
	_, toks := freshTokens()
	payload, err := decodePart(strings.Split(toks[0], ".")[1])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeJSONObject(payload); err != nil {
			b.Fatal(err)
		}
	}
}
