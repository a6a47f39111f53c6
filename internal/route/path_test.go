package route

import (
	"errors"
	"path"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		name, in, want, reason string
	}{
		// Canonical already.
		{"root", "/", "/", ""},
		{"plain", "/orders/42", "/orders/42", ""},
		{"trailing slash kept", "/orders/", "/orders/", ""},
		{"reserved escapes kept", "/a%3Fb/c%3Bd%23", "/a%3Fb/c%3Bd%23", ""},
		{"sub-delims kept", "/a;b=c,d/x:y@z!$&'()*+", "/a;b=c,d/x:y@z!$&'()*+", ""},
		{"dots inside a name are a name", "/a..b/..c/.../c.", "/a..b/..c/.../c.", ""},
		{"parameter not after a dot", "/a;x/b", "/a;x/b", ""},
		{"percent literal", "/100%25", "/100%25", ""},
		{"percent then non-hex", "/a%25zz", "/a%25zz", ""},
		{"utf-8 escape", "/caf%C3%A9", "/caf%C3%A9", ""},

		// Rewritten.
		{"duplicate slashes", "//orders///42", "/orders/42", ""},
		{"only slashes", "///", "/", ""},
		{"double slash admin", "//admin", "/admin", ""},
		{"dot", "/./orders/.", "/orders/", ""},
		{"lone dot", "/.", "/", ""},
		{"dot-dot", "/public/../admin", "/admin", ""},
		{"dot-dot above root", "/../admin", "/admin", ""},
		{"lone dot-dot", "/..", "/", ""},
		{"many dot-dots", "/a/b/../../..//admin", "/admin", ""},
		{"dot-dot at the end keeps the slash", "/a/b/..", "/a/", ""},
		{"dot-dot with trailing slash", "/a/b/../", "/a/", ""},
		{"dot then dot-dot", "/public/./../admin", "/admin", ""},
		{"encoded dot-dot", "/public/%2e%2e/admin", "/admin", ""},
		{"encoded dot-dot mixed case", "/public/%2E%2e/admin", "/admin", ""},
		{"encoded dot-dot upper", "/public/%2E%2E/admin", "/admin", ""},
		{"half-encoded dot-dot", "/public/.%2e/admin", "/admin", ""},
		{"half-encoded dot-dot reversed", "/public/%2e./admin", "/admin", ""},
		{"encoded dot", "/a/%2e/b", "/a/b", ""},
		{"unreserved decoded", "/%7Euser/%41%62c%2D%5F%30", "/~user/Abc-_0", ""},
		{"lower-case hex upper-cased", "/a%3fb/caf%c3%a9", "/a%3Fb/caf%C3%A9", ""},
		{"space escaped", "/a b", "/a%20b", ""},
		{"raw utf-8 escaped", "/café", "/caf%C3%A9", ""},
		{"raw and escaped utf-8 together", "/caf\xc3%a9", "/caf%C3%A9", ""},
		{"raw quote and brackets escaped", "/a\"b<c>[d]{e}|^`", "/a%22b%3Cc%3E%5Bd%5D%7Be%7D%7C%5E%60", ""},
		{"raw hash escaped", "/a#b", "/a%23b", ""},
		{"escaped percent with escaped non-hex", "/a%25%7A", "/a%25z", ""},

		// Refused.
		{"relative", "orders", "", ReasonNotAbsolute},
		{"empty", "", "", ReasonNotAbsolute},
		{"asterisk-form", "*", "", ReasonNotAbsolute},
		{"absolute-form", "http://evil/x", "", ReasonNotAbsolute},
		{"encoded slash", "/public/%2fadmin", "", ReasonEncodedSlash},
		{"encoded slash traversal", "/public%2f..%2fadmin", "", ReasonEncodedSlash},
		{"encoded slash upper", "/a%2Fb", "", ReasonEncodedSlash},
		{"encoded backslash", "/public%5c..%5cadmin", "", ReasonBackslash},
		{"backslash", `/public\..\admin`, "", ReasonBackslash},
		{"backslash alone", `/\`, "", ReasonBackslash},
		{"double encoded dot-dot", "/public/%252e%252e/admin", "", ReasonDoubleEncoding},
		{"double encoded slash", "/a%252fb", "", ReasonDoubleEncoding},
		{"double encoded hex upper", "/a%252F", "", ReasonDoubleEncoding},
		{"double encoding assembled from an escaped hex digit", "/%250%61", "", ReasonDoubleEncoding}, // regression: found by FuzzNormalizePath
		{"double encoding at the end of a segment", "/a%25%34%31/b", "", ReasonDoubleEncoding},
		{"double encoded %u form", "/a%25u002e", "", ReasonDoubleEncoding},
		{"encoded NUL", "/a%00b", "", ReasonControl},
		{"raw NUL", "/a\x00b", "", ReasonControl},
		{"tab", "/a\tb", "", ReasonControl},
		{"raw CRLF", "/a\r\nb", "", ReasonControl},
		{"encoded CRLF", "/a%0d%0aSet-Cookie:x", "", ReasonControl},
		{"encoded DEL", "/a%7f", "", ReasonControl},
		{"raw DEL", "/a\x7f", "", ReasonControl},
		{"overlong dot-dot", "/%c0%ae%c0%ae/admin", "", ReasonInvalidUTF8},
		{"overlong dot 3 bytes", "/%e0%80%ae/admin", "", ReasonInvalidUTF8},
		{"overlong dot 4 bytes", "/%f0%80%80%ae/admin", "", ReasonInvalidUTF8},
		{"overlong slash", "/a%c0%afb", "", ReasonInvalidUTF8},
		{"lone continuation byte", "/a%80", "", ReasonInvalidUTF8},
		{"surrogate", "/%ed%a0%80", "", ReasonInvalidUTF8},
		{"above U+10FFFF", "/%f4%90%80%80", "", ReasonInvalidUTF8},
		{"sequence cut by a slash", "/%c3/%a9", "", ReasonInvalidUTF8},
		{"truncated sequence at the end", "/caf%c3", "", ReasonInvalidUTF8},
		{"raw invalid byte", "/a\xffb", "", ReasonInvalidUTF8},
		{"Tomcat dot-dot parameter", "/public/..;/admin", "", ReasonDotParameter},
		{"dot-dot parameter with value", "/public/..;jsessionid=x/admin", "", ReasonDotParameter},
		{"dot parameter", "/public/.;x/admin", "", ReasonDotParameter},
		{"encoded dot-dot parameter", "/public/%2e%2e;/admin", "", ReasonDotParameter},
		{"dot-dot escaped semicolon", "/public/..%3b/admin", "", ReasonDotParameter},
		{"dot-dot parameter last", "/public/..;", "", ReasonDotParameter},
		{"truncated escape", "/a%4", "", ReasonBadEncoding},
		{"bad escape", "/a%zz", "", ReasonBadEncoding},
		{"half-bad escape", "/a%4g", "", ReasonBadEncoding},
		{"lone percent", "/a%", "", ReasonBadEncoding},
		{"IIS %u escape", "/%u002e%u002e/admin", "", ReasonBadEncoding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizePath(tt.in)
			if tt.reason != "" {
				var pe *PathError
				if !errors.As(err, &pe) || pe.Reason != tt.reason {
					t.Fatalf("got %q, %v; want error %s", got, err, tt.reason)
				}
				if !strings.HasPrefix(err.Error(), "bad request path: ") {
					t.Errorf("got message %q, want it to start with %q", err.Error(), "bad request path: ")
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
			again, err := NormalizePath(got)
			if err != nil || again != got {
				t.Fatalf("got %q, %v from %q; want it unchanged", again, err, got)
			}
		})
	}
}

func TestNormalizePathCanonicalDoesNotAllocate(t *testing.T) {
	for _, p := range []string{"/", "/orders/42/items/7", "/orders/", "/caf%C3%A9/a%3Fb;c=d", "/a%25zz"} {
		allocs := testing.AllocsPerRun(100, func() {
			if got, err := NormalizePath(p); err != nil || got != p {
				t.Fatalf("got %q, %v; want %q", got, err, p)
			}
		})
		if allocs != 0 {
			t.Errorf("%q: got %v allocations, want 0", p, allocs)
		}
	}
}

func TestNormalizePathDirtyAllocatesOnce(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := NormalizePath("/orders//42/./items/%37/../7"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("got %v allocations, want 1", allocs)
	}
}

func TestNormalizePathLong(t *testing.T) {
	// Past the 256-byte stack buffer of normalize.
	seg := strings.Repeat("x", 100)
	in := "/" + strings.Repeat(seg+"//./", 10) + "%7E" + strings.Repeat("/%c3%a9", 50) + "/../y"
	want := "/" + strings.Repeat(seg+"/", 10) + "~/" + strings.Repeat("%C3%A9/", 49) + "y"
	got, err := NormalizePath(in)
	if err != nil || got != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	if got, err := NormalizePath(want); err != nil || got != want {
		t.Fatalf("got %q, %v; want %q unchanged", got, err, want)
	}
}

// cleanModel is what NormalizePath must return for a path made of
// letters, dots and slashes only: path.Clean, plus the trailing slash that
// RFC 3986 keeps and path.Clean drops.
func cleanModel(p string) string {
	c := path.Clean(p)
	if c != "/" && (strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")) {
		c += "/"
	}
	return c
}

var reasons = []string{ReasonNotAbsolute, ReasonBadEncoding, ReasonEncodedSlash, ReasonDoubleEncoding, ReasonInvalidUTF8, ReasonControl, ReasonBackslash, ReasonDotParameter}

// decodeAll percent-decodes a canonical path.
func decodeAll(p string) []byte {
	var b []byte
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			b = append(b, unhex(p[i+1])<<4|unhex(p[i+2]))
			i += 2
			continue
		}
		b = append(b, p[i])
	}
	return b
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{
		"/", "/a/b", "/a/b/", "/public/../admin", "/public/%2e%2e/admin", "/public/.%2E/admin", "//a//",
		"/a%2fb", "/a%5cb", `/a\b`, "/a;b/..;/c", "/..%3B/x", "/caf%c3%a9", "/café", "/%c0%ae", "/%e0%80%ae",
		"/a/b/../../../c/", "/%252e", "/%250%61", "/%25u002e", "/a%", "/a%4", "/%00", "/a b", "/%7e%41",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > 512 {
			return // long inputs add nothing but slow minimising down; TestNormalizePathLong covers them
		}
		out, err := NormalizePath(in)
		if err != nil {
			var pe *PathError
			if !errors.As(err, &pe) {
				t.Fatalf("got error of type %T, want *PathError", err)
			}
			if !slices.Contains(reasons, pe.Reason) {
				t.Fatalf("got reason %q, want one of %v", pe.Reason, reasons)
			}
			if canonical(in) {
				t.Fatalf("%q: canonical, yet refused: %v", in, err)
			}
			return
		}
		if canonical(in) && out != in {
			t.Fatalf("%q is canonical, got %q, want it unchanged", in, out)
		}
		if !canonical(out) {
			t.Fatalf("%q -> %q, which is not canonical (normalising it again would allocate)", in, out)
		}
		again, err := NormalizePath(out)
		if err != nil || again != out {
			t.Fatalf("%q -> %q -> %q, %v; want idempotent", in, out, again, err)
		}
		if !strings.HasPrefix(out, "/") {
			t.Fatalf("%q -> %q, want a leading /", in, out)
		}
		for _, bad := range []string{"/../", "/./", "//", `\`, "%2F", "%5C", "%2f", "%5c"} {
			if strings.Contains(out, bad) {
				t.Fatalf("%q -> %q, which contains %q", in, out, bad)
			}
		}
		if strings.HasSuffix(out, "/..") || strings.HasSuffix(out, "/.") || out == "/." || out == "/.." {
			t.Fatalf("%q -> %q, which ends in a dot segment", in, out)
		}
		for i := 0; i < len(out); i++ {
			if c := out[i]; c <= 0x20 || c >= 0x7f {
				t.Fatalf("%q -> %q, which has the raw byte %#x", in, out, c)
			}
		}
		d := decodeAll(out)
		if !utf8.Valid(d) {
			t.Fatalf("%q -> %q, which decodes to invalid UTF-8", in, out)
		}
		for i := range d {
			hex := func(j int) bool { return j < len(d) && strings.IndexByte("0123456789abcdefABCDEF", d[j]) >= 0 }
			if d[i] == '%' && (hex(i+1) && hex(i+2) || (i+1 < len(d) && (d[i+1] == 'u' || d[i+1] == 'U')) && hex(i+2) && hex(i+3) && hex(i+4) && hex(i+5)) {
				t.Fatalf("%q -> %q, which holds an escape once decoded (double encoding)", in, out)
			}
		}
		if !strings.ContainsAny(in, "%;") && strings.Trim(in, "/.abc") == "" {
			if want := cleanModel(in); out != want {
				t.Fatalf("%q: got %q, want %q (path.Clean)", in, out, want)
			}
		}
	})
}

func TestCleanModel(t *testing.T) {
	// The model FuzzNormalizePath trusts, checked on its own.
	got := []string{cleanModel("/a/b/.."), cleanModel("/a//"), cleanModel("/.."), cleanModel("/a/b"), cleanModel("/a/./")}
	want := []string{"/a/", "/a/", "/", "/a/b", "/a/"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("cleanModel (-want +got):\n%s", d)
	}
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, bc := range []struct{ name, path string }{
		{"canonical", "/orders/42/items/7"},
		{"canonical-escaped", "/caf%C3%A9/orders/a%3Fb"},
		{"dirty", "/orders//42/./items/%37/../7"},
		{"attack", "/public/%2e%2e;/admin"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = NormalizePath(bc.path)
			}
		})
	}
}
