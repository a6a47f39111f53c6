package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const plain = "s3cr3t-VALUE"

// holder nests a Value where printers look: an exported field, an
// unexported one (fmt cannot call methods there), a pointer, a slice, a map.
type holder struct {
	Key     Value
	hidden  Value
	Ptr     *Value
	List    []Value
	ByName  map[string]Value
	private struct{ v Value }
}

func newHolder() holder {
	v := NewValue(plain)
	h := holder{Key: v, hidden: v, Ptr: &v, List: []Value{v}, ByName: map[string]Value{"k": v}}
	h.private.v = v
	return h
}

func TestValueNeverPrints(t *testing.T) {
	v := NewValue(plain)
	h := newHolder()
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v", "%10.3s"} {
		for name, arg := range map[string]any{"value": v, "pointer": &v, "struct": h, "struct pointer": &h} {
			if got := fmt.Sprintf(format, arg); strings.Contains(got, plain) || strings.Contains(got, fmt.Sprintf("%x", plain)) {
				t.Errorf("Sprintf(%q, %s) = %s, want no secret", format, name, got)
			}
		}
	}
	if got, want := fmt.Sprint(v), Redacted; got != want {
		t.Errorf("Sprint: got %q, want %q", got, want)
	}
	if got := fmt.Errorf("wrapping %v: %w", v, errors.New("x")).Error(); strings.Contains(got, plain) {
		t.Errorf("error: got %q, want no secret", got)
	}
	if got := v.Reveal(); got != plain {
		t.Errorf("Reveal: got %q, want %q", got, plain)
	}
}

func TestValueSlog(t *testing.T) {
	v := NewValue(plain)
	h := newHolder()
	for name, handler := range map[string]func(*bytes.Buffer) slog.Handler{
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		var buf bytes.Buffer
		l := slog.New(handler(&buf))
		l.Info("secret", "value", v, slog.Any("any", v), "ptr", &v, "holder", h, slog.Group("g", "v", v))
		l.Info("msg", "err", fmt.Errorf("bad %v", v))
		if strings.Contains(buf.String(), plain) {
			t.Errorf("%s handler logged the secret:\n%s", name, buf.String())
		}
		if !strings.Contains(buf.String(), Redacted) {
			t.Errorf("%s handler: got %s, want %s in place of the value", name, buf.String(), Redacted)
		}
	}
}

func TestValueJSON(t *testing.T) {
	v := NewValue(plain)
	h := newHolder()
	for name, arg := range map[string]any{"value": v, "pointer": &v, "struct": h, "map": map[string]any{"v": v}, "slice": []Value{v}} {
		b, err := json.Marshal(arg)
		if err != nil {
			t.Fatalf("json.Marshal(%s): %v", name, err)
		}
		if strings.Contains(string(b), plain) {
			t.Errorf("json.Marshal(%s) = %s, want no secret", name, b)
		}
	}
	b, _ := json.Marshal(v)
	if got, want := string(b), `"[REDACTED]"`; got != want {
		t.Errorf("json.Marshal: got %s, want %s", got, want)
	}
	if b, _ := v.MarshalText(); string(b) != Redacted {
		t.Errorf("MarshalText: got %s, want %s", b, Redacted)
	}
}

func TestValueEqual(t *testing.T) {
	a, b, c := NewValue("x"), NewValue("x"), NewValue("y")
	if !a.Equal(b) || a.Equal(c) || a.Equal(Value{}) || !(Value{}).Equal(Value{}) {
		t.Error("Equal: got wrong answers for x=x, x≠y, x≠zero, zero=zero")
	}
}
