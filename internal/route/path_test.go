package route

import (
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		name, in, want, reason string
	}{
		{"root", "/", "/", ""},
		{"plain", "/orders/42", "/orders/42", ""},
		{"trailing slash kept", "/orders/", "/orders/", ""},
		{"duplicate slashes", "//orders///42", "/orders/42", ""},
		{"only slashes", "///", "/", ""},
		{"dot", "/./orders/.", "/orders/", ""},
		{"dot-dot", "/public/../admin", "/admin", ""},
		{"dot-dot above root", "/../admin", "/admin", ""},
		{"many dot-dots", "/a/b/../../..//admin", "/admin", ""},
		{"dot-dot at end", "/a/b/..", "/a/", ""},
		{"dot then dot-dot", "/public/./../admin", "/admin", ""},
		{"encoded dot-dot", "/public/%2e%2e/admin", "/admin", ""},
		{"encoded dot-dot upper", "/public/%2E%2E/admin", "/admin", ""},
		{"mixed dot-dot", "/public/.%2e/admin", "/admin", ""},
		{"mixed dot-dot 2", "/public/%2e./admin", "/admin", ""},
		{"encoded dot", "/a/%2e/b", "/a/b", ""},
		{"unreserved decoded", "/%7Euser/%41%62c", "/~user/Abc", ""},
		{"reserved kept and upper-cased", "/a%3fb/c%3Bd", "/a%3Fb/c%3Bd", ""},
		{"space escaped", "/a%20b", "/a%20b", ""},
		{"utf-8 escape kept", "/caf%c3%a9", "/caf%C3%A9", ""},
		{"raw utf-8 escaped", "/café", "/caf%C3%A9", ""},
		{"percent literal", "/100%25", "/100%25", ""},
		{"percent then non-hex", "/a%25zz", "/a%25zz", ""},
		{"sub-delims kept", "/a;b=c,d", "/a;b=c,d", ""},
		{"dot-dot inside name is a name", "/a..b/..c", "/a..b/..c", ""},
		{"semicolon not after dot", "/a;x/b", "/a;x/b", ""},
		{"raw quote escaped", "/a\"b", "/a%22b", ""},

		{"relative", "orders", "", ReasonNotAbsolute},
		{"empty", "", "", ReasonNotAbsolute},
		{"asterisk", "*", "", ReasonNotAbsolute},
		{"absolute URI", "http://evil/x", "", ReasonNotAbsolute},
		{"encoded slash", "/public%2f..%2fadmin", "", ReasonEncodedSlash},
		{"encoded slash upper", "/a%2Fb", "", ReasonEncodedSlash},
		{"encoded backslash", "/public%5c..%5cadmin", "", ReasonBackslash},
		{"backslash", "/public\\..\\admin", "", ReasonBackslash},
		{"double encoding dot", "/public/%252e%252e/admin", "", ReasonDoubleEncoding},
		{"double encoding slash", "/a%252fb", "", ReasonDoubleEncoding},
		{"double encoding assembled from an escaped hex digit", "/%250%61", "", ReasonDoubleEncoding}, // regression: found by FuzzNormalizePath
		{"double encoding at the end of a segment", "/a%25%34%31/b", "", ReasonDoubleEncoding},
		{"null", "/a%00b", "", ReasonControl},
		{"raw null", "/a\x00b", "", ReasonControl},
		{"tab", "/a\tb", "", ReasonControl},
		{"encoded newline", "/a%0d%0aSet-Cookie:x", "", ReasonControl},
		{"DEL", "/a%7f", "", ReasonControl},
		{"overlong dot", "/%c0%ae%c0%ae/admin", "", ReasonInvalidUTF8},
		{"overlong dot 3 bytes", "/%e0%80%ae/admin", "", ReasonInvalidUTF8},
		{"overlong slash", "/a%c0%afb", "", ReasonInvalidUTF8},
		{"lone continuation", "/a%80", "", ReasonInvalidUTF8},
		{"raw invalid utf-8", "/a\xffb", "", ReasonInvalidUTF8},
		{"Tomcat dot-dot param", "/public/..;/admin", "", ReasonDotParameter},
		{"dot param", "/public/.;x/admin", "", ReasonDotParameter},
		{"encoded dot-dot param", "/public/%2e%2e;/admin", "", ReasonDotParameter},
		{"truncated escape", "/a%4", "", ReasonBadEncoding},
		{"bad escape", "/a%zz", "", ReasonBadEncoding},
		{"lone percent", "/a%", "", ReasonBadEncoding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizePath(tt.in)
			if tt.reason != "" {
				pe, ok := err.(*PathError)
				if !ok || pe.Reason != tt.reason {
					t.Fatalf("got %q, %v; want error %s", got, err, tt.reason)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
			again, err := NormalizePath(got)
			if err != nil || again != got {
				t.Fatalf("not idempotent: %q -> %q, %v", got, again, err)
			}
		})
	}
}

func TestNormalizePathCanonicalDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := NormalizePath("/orders/42/items/7"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("got %v allocations, want 0 for a canonical path", allocs)
	}
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/public/../admin", "/%2e%2e/", "//a//", "/a%2fb", "/a;b/..;/c", "/caf%c3%a9", "/a/b/../../../c/", "/%252e", "/\\", "/a%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizePath(in)
		if err != nil {
			if _, ok := err.(*PathError); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		again, err := NormalizePath(out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
		if !strings.HasPrefix(out, "/") {
			t.Fatalf("%q -> %q does not start with /", in, out)
		}
		for _, bad := range []string{"/../", "/./", "//", "\\", "%2F", "%5C", "%2f", "%5c"} {
			if strings.Contains(out, bad) {
				t.Fatalf("%q -> %q contains %q", in, out, bad)
			}
		}
		if strings.HasSuffix(out, "/..") || strings.HasSuffix(out, "/.") {
			t.Fatalf("%q -> %q ends in a dot segment", in, out)
		}
	})
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, bc := range []struct{ name, path string }{
		{"canonical", "/orders/42/items/7"},
		{"dirty", "/orders//42/./items/%37/../7"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = NormalizePath(bc.path)
			}
		})
	}
}
