package dlp

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func fuzzPolicies(t testing.TB) (plain, paths *Policy) {
	c := Config{
		Mask: append(Builtins(), "emp", "token"),
		Custom: []Rule{
			{Name: "emp", Regex: `\bEMP-[0-9]{6}\b`},            // needs the byte before it
			{Name: "token", Regex: `(?i)tok_[a-z0-9\x{e9}]{8}`}, // a literal prefix; a two-byte rune
		},
	}
	plain, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	c.JSONPaths = []string{"$.a", "$.items[*].card", "$..secret", "$[1]"}
	paths, err = Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	return plain, paths
}

// FuzzMask feeds arbitrary bodies cut at arbitrary places. The output must
// be the same as for the whole body, nothing may panic, and no value a
// detector found may be left in the output.
func FuzzMask(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.in")
	for _, file := range files {
		data, _ := os.ReadFile(file)
		for _, line := range strings.Split(string(data), "\n") {
			if len(line) > 2 && line[0] != '#' {
				f.Add([]byte(line[2:]), []byte{3, 7, 1}, false)
			}
		}
	}
	order, _ := os.ReadFile("testdata/order.json")
	f.Add(order, []byte{200, 13, 77, 1, 1, 1}, true)
	f.Add([]byte(`{"a":{"x":[1,"}"]},"items":[{"card":4111111111111111}],"b":"EMP-123456 tok_abcdefgh"}`), []byte{5}, true)
	f.Add([]byte("caf\xc3\xa9 tok_\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9 \xe2\x82"), []byte{4, 1, 1}, false)
	plain, paths := fuzzPolicies(f)
	f.Fuzz(func(t *testing.T, in, cutBytes []byte, json bool) {
		k := Text
		if json {
			k = JSON
		}
		var cuts []int
		at := 0
		for _, c := range cutBytes {
			at += int(c%97) + 1
			if at >= len(in) {
				break
			}
			cuts = append(cuts, at)
		}
		bytewise := make([]int, 0, len(in))
		for i := 1; i < len(in) && len(in) <= 4096; i++ {
			bytewise = append(bytewise, i)
		}
		for _, p := range []*Policy{plain, paths} {
			whole, res := p.Mask(k, in)
			for _, cs := range [][]int{cuts, bytewise} {
				got, gotRes := maskCut(p, k, in, cs)
				if !bytes.Equal(got, whole) {
					t.Fatalf("cut at %v:\ngot  %q\nwant %q (the whole body's)", cs, got, whole)
				}
				if d := cmp.Diff(res, gotRes); d != "" {
					t.Fatalf("cut at %v: result differs from the whole body's (-whole +cut):\n%s", cs, d)
				}
			}
		}

		// Without JSON paths the scanner sees the body as it is, so the
		// values it found can be looked for in the output.
		var spans [][2]int
		m := plain.NewMasker(k)
		m.sc.spans = &spans
		out := m.Finish(m.Append(nil, in))
		outside := append([]byte(nil), in...)
		for _, s := range spans {
			for i := s[0]; i < s[1]; i++ {
				outside[i] = 0
			}
		}
		for _, s := range spans {
			v := in[s[0]:s[1]]
			if bytes.Count(out, v) > bytes.Count(outside, v) {
				t.Fatalf("detected value %q is left in the output %q", v, out)
			}
		}
	})
}
