package dlp

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with the file, or rewrites it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got); run go test -update if intended:\n%s", path, d)
	}
}

// maskCut masks in fed in pieces cut at the given offsets.
func maskCut(p *Policy, k Kind, in []byte, cuts []int) ([]byte, Result) {
	m := p.NewMasker(k)
	var out []byte
	last := 0
	for _, c := range cuts {
		out = m.Append(out, in[last:c])
		last = c
	}
	out = m.Append(out, in[last:])
	out = m.Finish(out)
	return out, m.Result()
}

// TestDetectorsGolden runs each built-in detector alone over its cases in
// testdata/NAME.in: a line starting "+" must be masked (a true positive), a
// line starting "-" must come out unchanged (a near miss: a number failing
// Luhn, an IBAN with a wrong check digit, SSN 000-xx-xxxx, ...). The masked
// lines are kept in testdata/NAME.golden.
func TestDetectorsGolden(t *testing.T) {
	for _, name := range Builtins() {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", name+".in"))
			if err != nil {
				t.Fatal(err)
			}
			p, err := Compile(Config{Mask: []string{name}})
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			pos, neg := 0, 0
			for n, line := range strings.Split(string(data), "\n") {
				if line == "" || line[0] == '#' {
					continue
				}
				sign, body, ok := strings.Cut(line, " ")
				if !ok || sign != "+" && sign != "-" {
					t.Fatalf("%s.in:%d: want a line starting with + or -", name, n+1)
				}
				out, res := p.Mask(Text, []byte(body))
				switch sign {
				case "+":
					pos++
					if res.Counts[name] == 0 || !bytes.Contains(out, []byte("[REDACTED:"+name+"]")) {
						t.Errorf("%s.in:%d: got %q unmasked, want a match (true positive)", name, n+1, body)
					}
				case "-":
					neg++
					if string(out) != body {
						t.Errorf("%s.in:%d: got %q, want %q unchanged (near miss)", name, n+1, out, body)
					}
				}
				for cut := 1; cut < len(body); cut++ {
					if o, _ := maskCut(p, Text, []byte(body), []int{cut}); !bytes.Equal(o, out) {
						t.Errorf("%s.in:%d cut at %d: got %q, want %q", name, n+1, cut, o, out)
					}
				}
				fmt.Fprintf(&got, "%s %s\n", sign, out)
			}
			if pos < 4 || neg < 3 {
				t.Errorf("%s.in has %d true positives and %d near misses, want at least 4 and 3", name, pos, neg)
			}
			golden(t, filepath.Join("testdata", name+".golden"), got.Bytes())
		})
	}
}

// TestJSONBodyGolden masks a realistic JSON body with every detector and
// JSON paths.
func TestJSONBodyGolden(t *testing.T) {
	in, err := os.ReadFile("testdata/order.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(Config{
		Mask:      []string{CreditCard, Email, IBAN, USSSN, JWT, AzureStorageKey, AzureSAS, "employee_id"},
		Block:     []string{PrivateKey},
		Custom:    []Rule{{Name: "employee_id", Regex: `\bEMP-[0-9]{6}\b`}},
		JSONPaths: []string{"$.customer.date_of_birth", "$.items[*].serial", "$..password"},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, res := p.Mask(JSON, in)
	want := map[string]int{CreditCard: 2, Email: 2, IBAN: 1, USSSN: 1, JWT: 1, AzureStorageKey: 1, AzureSAS: 1, "employee_id": 1, PrivateKey: 1, JSONPath: 6}
	if d := cmp.Diff(want, res.Counts); d != "" {
		t.Errorf("counts (-want +got):\n%s", d)
	}
	if res.Blocked != PrivateKey {
		t.Errorf("blocked: got %q, want %q", res.Blocked, PrivateKey)
	}
	golden(t, "testdata/order.golden.json", out)
	for cut := 1; cut < len(in); cut++ {
		if o, _ := maskCut(p, JSON, in, []int{cut}); !bytes.Equal(o, out) {
			t.Fatalf("cut at %d: output differs from the whole body's", cut)
		}
	}
}

func TestJSONPaths(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		in    string
		want  string
	}{
		{"member", []string{"$.customer.ssn"}, `{"customer":{"ssn":"x","name":"n"}}`, `{"customer":{"ssn":"[REDACTED:json_path]","name":"n"}}`},
		{"every element", []string{"$.items[*].card"}, `{"items":[{"card":1},{"card":{"n":[1,"]"]}},{"other":2}]}`, `{"items":[{"card":"[REDACTED:json_path]"},{"card":"[REDACTED:json_path]"},{"other":2}]}`},
		{"one index", []string{"$.a[1]"}, `{"a":[1,2,3]}`, `{"a":[1,"[REDACTED:json_path]",3]}`},
		{"any depth", []string{"$..password"}, `{"a":{"b":[{"password":"p"}]},"password":true}`, `{"a":{"b":[{"password":"[REDACTED:json_path]"}]},"password":"[REDACTED:json_path]"}`},
		{"quoted name", []string{"$['odd key']"}, `{"odd key":null,"odd":1}`, `{"odd key":"[REDACTED:json_path]","odd":1}`},
		{"escaped name", []string{"$.ssn"}, `{"\u0073sn":"x"}`, `{"\u0073sn":"[REDACTED:json_path]"}`},
		{"whitespace kept", []string{"$.a"}, "{ \"a\" : 12 ,\n \"b\": 1 }", "{ \"a\" : \"[REDACTED:json_path]\" ,\n \"b\": 1 }"},
		{"string with brackets", []string{"$.b"}, `{"a":"}]{[\"","b":"x"}`, `{"a":"}]{[\"","b":"[REDACTED:json_path]"}`},
		{"json lines", []string{"$.k"}, "{\"k\":1}\n{\"k\":2}\n", "{\"k\":\"[REDACTED:json_path]\"}\n{\"k\":\"[REDACTED:json_path]\"}\n"},
		{"top-level array", []string{"$[0].k"}, `[{"k":1},{"k":2}]`, `[{"k":"[REDACTED:json_path]"},{"k":2}]`},
		{"no match", []string{"$.x.y"}, `{"x":{"z":1},"y":2}`, `{"x":{"z":1},"y":2}`},
		{"not JSON passes through", []string{"$.a"}, `not json {"a":1}`, `not json {"a":1}`},
		{"broken after a mask", []string{"$.a"}, `{"a":1 x "a":2}`, `{"a":"[REDACTED:json_path]" x "a":2}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(Config{JSONPaths: tt.paths})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := p.Mask(JSON, []byte(tt.in))
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			for cut := 1; cut < len(tt.in); cut++ {
				if o, _ := maskCut(p, JSON, []byte(tt.in), []int{cut}); string(o) != tt.want {
					t.Errorf("cut at %d: got %s", cut, o)
				}
			}
		})
	}
}

func TestParsePathErrors(t *testing.T) {
	for _, s := range []string{"", "a.b", "$", "$.", "$..", "$[", "$[x]", "$[-1]", "$.a b", `$['a\b']`, "$" + strings.Repeat(".a", 33)} {
		if _, err := ParsePath(s); err == nil {
			t.Errorf("ParsePath(%q): got no error, want one", s)
		}
	}
}

func TestDeepJSONPassesThrough(t *testing.T) {
	p, err := Compile(Config{JSONPaths: []string{"$..k"}})
	if err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat("[", maxJSONDepth+10) + `{"k":1}` + strings.Repeat("]", maxJSONDepth+10)
	in := `{"a":` + deep + `,"k":2}`
	got, _ := p.Mask(JSON, []byte(in))
	want := `{"a":` + deep + `,"k":"[REDACTED:json_path]"}`
	if string(got) != want {
		t.Errorf("got %.80s..., want the deep part passed through and k after it masked", got)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		want string
	}{
		{"unknown detector", Config{Mask: []string{"credit_cards"}}, `unknown detector "credit_cards"`},
		{"twice", Config{Mask: []string{Email}, Block: []string{Email}}, `detector "email" is listed twice`},
		{"unused custom", Config{Custom: []Rule{{"emp", "EMP-[0-9]{6}"}}}, `custom detector "emp" is in neither mask nor block`},
		{"taken name", Config{Custom: []Rule{{"email", "x"}}}, `the name is taken`},
		{"reserved name", Config{Custom: []Rule{{"json_path", "x"}}}, `reserved`},
		{"bad name", Config{Custom: []Rule{{"Emp", "x"}}}, `bad name "Emp"`},
		{"bad regex", Config{Custom: []Rule{{"emp", "EMP-[0-9"}}}, `bad regex: missing closing ]`},
		{"unbounded", Config{Custom: []Rule{{"emp", "EMP-[0-9]+"}}}, `unbounded repetition`},
		{"too long", Config{Custom: []Rule{{"emp", "[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}[a-z]{1000}"}}}, `at most 4096`},
		{"empty match", Config{Custom: []Rule{{"emp", "a?"}}}, `can match the empty string`},
		{"bad path", Config{JSONPaths: []string{"customer.ssn"}}, `bad JSON path "customer.ssn"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestCustomPatterns(t *testing.T) {
	p, err := Compile(Config{
		Mask:   []string{"emp", "token"},
		Custom: []Rule{{"emp", `\bEMP-[0-9]{6}\b`}, {"token", `(?i)tok_[a-z0-9]{8}`}},
	})
	if err != nil {
		t.Fatal(err)
	}
	in := "EMP-123456 xEMP-123456 EMP-1234567 (EMP-000001) TOK_abcd1234 tok_ABCDEFGH9"
	want := "[REDACTED:emp] xEMP-123456 EMP-1234567 ([REDACTED:emp]) [REDACTED:token] [REDACTED:token]9"
	got, res := p.Mask(Text, []byte(in))
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if d := cmp.Diff(map[string]int{"emp": 2, "token": 2}, res.Counts); d != "" {
		t.Errorf("counts (-want +got):\n%s", d)
	}
	for cut := 1; cut < len(in); cut++ {
		if o, _ := maskCut(p, Text, []byte(in), []int{cut}); string(o) != want {
			t.Errorf("cut at %d: got %s", cut, o)
		}
	}
}

func TestCardLast4(t *testing.T) {
	p, err := Compile(Config{Mask: []string{CreditCard}, CardLast4: true})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := p.Mask(JSON, []byte(`{"a":"4000-0566-5566-5556 x","b":5555555555554444}`))
	if want := `{"a":"[REDACTED:credit_card:****5556] x","b":"[REDACTED:credit_card:****4444]"}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestJSONNumbersBecomeStrings: a card written as a JSON number is replaced
// by a string, so the body stays JSON; inside strings no quotes are added.
func TestJSONNumbersBecomeStrings(t *testing.T) {
	p, err := Compile(Config{Mask: []string{CreditCard}})
	if err != nil {
		t.Fatal(err)
	}
	in := `{"n":4111111111111111,"s":"4111111111111111","e":"\"4111111111111111\"","arr":[4111111111111111]}`
	want := `{"n":"[REDACTED:credit_card]","s":"[REDACTED:credit_card]","e":"\"[REDACTED:credit_card]\"","arr":["[REDACTED:credit_card]"]}`
	got, _ := p.Mask(JSON, []byte(in))
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got, _ := p.Mask(Text, []byte(in)); bytes.Contains(got, []byte(`"[REDACTED`+`:credit_card]"`)) && !bytes.Contains(got, []byte(`:[REDACTED`)) {
		t.Errorf("text body: got %s, want no quotes added", got)
	}
}

// TestHeldBytesBounded: a long body with no match is written out as it
// comes, holding back only what could start a match.
func TestHeldBytesBounded(t *testing.T) {
	p, err := Compile(Config{Mask: Builtins()})
	if err != nil {
		t.Fatal(err)
	}
	m := p.NewMasker(JSON)
	chunk := []byte(`{"id":"0f8c2a","name":"Widget","qty":12,"note":"nothing to see here"},` + "\n")
	var out []byte
	for range 10000 {
		out = m.Append(out[:0], chunk)
		if h := m.Held(); h > 64 {
			t.Fatalf("held %d bytes, want at most 64", h)
		}
	}
	// A PEM header waits for its END line, up to 16 KiB.
	out = m.Append(out[:0], []byte(`"-----BEGIN PRIVATE KEY-----\n`))
	if h := m.Held(); h < 20 {
		t.Fatalf("held %d bytes, want the BEGIN line held", h)
	}
	for range 1000 {
		m.Append(out[:0], []byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\\n"))
		if h := m.Held(); h > maxPEM+1024 {
			t.Fatalf("held %d bytes, want at most %d", h, maxPEM+1024)
		}
	}
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		ct   string
		kind Kind
		ok   bool
	}{
		{"application/json", JSON, true},
		{"application/problem+json; charset=utf-8", JSON, true},
		{"application/x-ndjson", JSON, true},
		{"text/plain", Text, true},
		{"text/event-stream", Text, true},
		{"application/xml", Text, true},
		{"", Text, true},
		{"not a type", Text, true},
		{"image/png", Text, false},
		{"application/octet-stream", Text, false},
	}
	for _, tt := range tests {
		if k, ok := KindOf(tt.ct); k != tt.kind || ok != tt.ok {
			t.Errorf("KindOf(%q): got %v, %v; want %v, %v", tt.ct, k, ok, tt.kind, tt.ok)
		}
	}
}
