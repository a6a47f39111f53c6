package apikey

import (
	"strings"
	"testing"
	"time"
)

func TestGenerateParse(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		key, id := Generate()
		if len(key) != KeyLen || !strings.HasPrefix(key, "ztk_"+id+"_") {
			t.Fatalf("got key %q for id %q, want ztk_<id>_<secret> of %d characters", key, id, KeyLen)
		}
		got, err := Parse(key)
		if err != nil || got != id {
			t.Fatalf("Parse(%q) = %q, %v; want %q", key, got, err, id)
		}
		if seen[id] {
			t.Fatalf("id %q generated twice", id)
		}
		seen[id] = true
		if !Verify(key, Hash(key)) {
			t.Fatal("a key does not verify against its own hash")
		}
	}
}

func TestParse(t *testing.T) {
	key, id := Generate()
	secret := key[len(Prefix)+IDLen+1:]
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"generated", key, true},
		{"empty", "", false},
		{"prefix only", "ztk_", false},
		{"bearer-looking JWT", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", false},
		{"other prefix", "ztx_" + id + "_" + secret, false},
		{"upper-case prefix", "ZTK_" + id + "_" + secret, false},
		{"upper-case id", "ztk_0123456789ABCDEF_" + secret, false},
		{"one character short", key[:len(key)-1], false},
		{"one character long", key + "a", false},
		{"trailing space", key[:len(key)-1] + " ", false},
		{"separator moved", "ztk_" + id[:IDLen-1] + "_" + id[IDLen-1:] + secret[1:], false},
		{"second separator in the secret", "ztk_" + id + "_" + secret[:10] + "_" + secret[11:], false},
		{"letter outside the alphabet (u)", "ztk_" + id + "_" + "u" + secret[1:], false},
		{"letter outside the alphabet (l)", "ztk_" + "l" + id[1:] + "_" + secret, false},
		{"NUL byte", "ztk_" + id + "_" + "\x00" + secret[1:], false},
		{"UTF-8 in the secret", "ztk_" + id + "_" + "é" + secret[2:], false},
		{"percent-encoded separator", "ztk_" + id + "%5F" + secret[2:], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("Parse(%q): got %q, %v; want ok=%v", tt.in, got, err, tt.ok)
			}
			if tt.ok && got != id {
				t.Fatalf("Parse: got id %q, want %q", got, id)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	key, _ := Generate()
	other, _ := Generate()
	h := Hash(key)
	tests := []struct {
		name string
		key  string
		hash string
		want bool
	}{
		{"own hash", key, h, true},
		{"another key", other, h, false},
		{"same id, other secret", key[:len(key)-1] + map[bool]string{true: "b", false: "a"}[key[len(key)-1] == 'a'], h, false},
		{"hash upper case", key, strings.ToUpper(h), true},
		{"truncated hash", key, h[:62], false},
		{"not hex", key, strings.Repeat("z", 64), false},
		{"empty hash", key, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Verify(tt.key, tt.hash); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRequestValidate(t *testing.T) {
	services := []string{"orders", "billing"}
	good := Request{Name: "partner-a", Service: "orders", Roles: []string{"Orders.Read"}, TTL: 90 * 24 * time.Hour}
	tests := []struct {
		name   string
		modify func(r *Request)
		want   string // substring of the error; "" for none
	}{
		{"valid", func(r *Request) {}, ""},
		{"no roles or scopes", func(r *Request) { r.Roles = nil }, ""},
		{"scopes only", func(r *Request) { r.Roles, r.Scopes = nil, []string{"orders.read"} }, ""},
		{"empty name", func(r *Request) { r.Name = "" }, "bad name"},
		{"name with a space", func(r *Request) { r.Name = "partner a" }, "bad name"},
		{"name starting with a dash", func(r *Request) { r.Name = "-a" }, "bad name"},
		{"name too long", func(r *Request) { r.Name = strings.Repeat("a", 64) }, "bad name"},
		{"no service", func(r *Request) { r.Service = "" }, "no service"},
		{"unknown service", func(r *Request) { r.Service = "payroll" }, `unknown service "payroll" (configured: orders, billing)`},
		{"empty role", func(r *Request) { r.Roles = []string{""} }, `bad role ""`},
		{"role with a comma", func(r *Request) { r.Roles = []string{"a,b"} }, `bad role "a,b"`},
		{"scope with a newline", func(r *Request) { r.Scopes = []string{"a\nb"} }, "bad scope"},
		{"too many roles", func(r *Request) {
			r.Roles = make([]string, 65)
			for i := range r.Roles {
				r.Roles[i] = "r"
			}
		}, "more than 64 roles"},
		{"expiry too short", func(r *Request) { r.TTL = time.Minute }, "bad expiry"},
		{"expiry too long", func(r *Request) { r.TTL = 731 * 24 * time.Hour }, "bad expiry"},
		{"no expiry", func(r *Request) { r.TTL = 0 }, "bad expiry"},
		{"every problem reported", func(r *Request) { r.Name, r.Service = "", "" }, "bad name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			tt.modify(&r)
			err := r.Validate(services)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	key, k := New(Request{Name: "p", Service: "orders", TTL: 48 * time.Hour}, now, "cli:alice")
	if id, err := Parse(key); err != nil || id != k.ID {
		t.Fatalf("Parse(new key) = %q, %v; want %q", id, err, k.ID)
	}
	if strings.Contains(k.Hash, key) || !Verify(key, k.Hash) {
		t.Fatal("the record must hold the key's hash, not the key")
	}
	if want := now.Truncate(time.Millisecond).Add(48 * time.Hour); !k.ExpiresAt.Equal(want) {
		t.Fatalf("expires %v, want %v", k.ExpiresAt, want)
	}
	if k.Roles == nil || k.Scopes == nil {
		t.Fatal("roles and scopes must be empty lists, not nil (they are listed as JSON)")
	}
	if got := k.State(now); got != "active" {
		t.Fatalf("state %q, want active", got)
	}
	if got := k.State(k.ExpiresAt); got != "expired" {
		t.Fatalf("state at expiry %q, want expired", got)
	}
	k.RevokedAt = now
	if got := k.State(now); got != "revoked" {
		t.Fatalf("state %q, want revoked", got)
	}
}

// FuzzParse: Parse reads what any client sends. It must never panic, must
// accept only the exact shape, and the id it returns must be the key's.
func FuzzParse(f *testing.F) {
	key, _ := Generate()
	f.Add(key)
	f.Add("")
	f.Add("ztk_")
	f.Add("ztk_0123456789abcdef_" + strings.Repeat("0", SecretLen))
	f.Add("ztk_0123456789abcdef_" + strings.Repeat("u", SecretLen))
	f.Add("Bearer eyJ0eXAiOiJKV1QifQ.e30.")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			if id != "" {
				t.Fatalf("Parse(%q) returned id %q with an error", s, id)
			}
			return
		}
		if len(s) != KeyLen || s != Prefix+id+"_"+s[len(Prefix)+IDLen+1:] || !ValidID(id) {
			t.Fatalf("Parse(%q) accepted a malformed key (id %q)", s, id)
		}
		if strings.ContainsAny(s[len(Prefix):], "ILOUilou \t\r\n%") || strings.Count(s, "_") != 2 {
			t.Fatalf("Parse(%q) accepted characters outside the alphabet", s)
		}
	})
}
