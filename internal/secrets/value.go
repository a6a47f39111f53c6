package secrets

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
)

// Redacted is what a Value shows wherever it is printed, logged or encoded.
const Redacted = "[REDACTED]"

// Value is a secret's text. It never prints: fmt (every verb and flag),
// log/slog, encoding/json and encoding.TextMarshaler users all see
// [REDACTED]. Reveal is the only way to the text, for the one place that
// must send it.
//
// The text sits behind a pointer, so that fmt printing a struct that holds
// a Value in an unexported field (where fmt cannot call its methods) shows
// an address, not the text.
type Value struct {
	p *string
}

// NewValue wraps s.
func NewValue(s string) Value { return Value{p: &s} }

// Reveal returns the secret's text.
func (v Value) Reveal() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

// IsZero reports whether v holds nothing.
func (v Value) IsZero() bool { return v.p == nil }

// Equal compares two values in constant time.
func (v Value) Equal(o Value) bool {
	return subtle.ConstantTimeCompare([]byte(v.Reveal()), []byte(o.Reveal())) == 1 && v.IsZero() == o.IsZero()
}

// Same reports whether v and o come from the same read (not merely equal
// text): a cheap test for "has this been refreshed since".
func (v Value) Same(o Value) bool { return v.p == o.p }

// String returns [REDACTED].
func (Value) String() string { return Redacted }

// GoString returns [REDACTED], for %#v.
func (Value) GoString() string { return Redacted }

// Format writes [REDACTED] for every verb, so %x or %q cannot reveal the
// text either.
func (Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// LogValue makes slog log [REDACTED].
func (Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON encodes "[REDACTED]".
func (Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText encodes [REDACTED] (YAML, XML, map keys).
func (Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

var (
	_ fmt.Formatter  = Value{}
	_ fmt.Stringer   = Value{}
	_ fmt.GoStringer = Value{}
	_ slog.LogValuer = Value{}
)
