package dlp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReaderLimit(t *testing.T) {
	p, err := Compile(Config{Mask: []string{Email}})
	if err != nil {
		t.Fatal(err)
	}
	body := "a@example.com " + strings.Repeat("x", 100) + " b@example.com"
	tests := []struct {
		name      string
		limit     int64
		failOver  bool
		want      string
		wantErr   error
		unscanned int64
	}{
		{"within the limit", int64(len(body)), true, "[REDACTED:email] " + strings.Repeat("x", 100) + " [REDACTED:email]", nil, 0},
		{"past it, pass", 50, false, "[REDACTED:email] " + strings.Repeat("x", 100) + " b@example.com", nil, int64(len(body)) - 50},
		{"past it, block", 50, true, "", ErrOverLimit, 0},
		// A match across the limit is not masked: scanning stops there.
		{"a match across the limit", int64(len(body)) - 3, false, "[REDACTED:email] " + strings.Repeat("x", 100) + " b@example.com", nil, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := p.NewReader(iotest.OneByteReader(strings.NewReader(body)), Text, tt.limit, tt.failOver)
			got, err := io.ReadAll(r)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && string(got) != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
			if r.Unscanned() != tt.unscanned {
				t.Errorf("unscanned: got %d, want %d", r.Unscanned(), tt.unscanned)
			}
		})
	}
}

func TestReaderStreams(t *testing.T) {
	p, err := Compile(Config{Mask: Builtins()})
	if err != nil {
		t.Fatal(err)
	}
	// Each event is written out when it is read, without waiting for more.
	pr, pw := io.Pipe()
	r := p.NewReader(pr, Text, 1<<20, true)
	go func() {
		pw.Write([]byte("data: {\"card\":\"4111 1111 1111 1111\"}\n\n"))
	}()
	buf := make([]byte, 256)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "data: {\"card\":\"[REDACTED:credit_card]\"}\n\n" {
		t.Fatalf("got %q, %v; want the first event masked at once", buf[:n], err)
	}
	pw.Close()
}

func TestMaskLeavesInputAlone(t *testing.T) {
	p, err := Compile(Config{Mask: Builtins()})
	if err != nil {
		t.Fatal(err)
	}
	in := []byte(`{"a":"bob@example.com","b":"4111111111111111 and more text after it"}`)
	orig := bytes.Clone(in)
	big := make([]byte, len(in), len(in)+100) // spare capacity must not be written either
	copy(big, in)
	p.Mask(JSON, in)
	m := p.NewMasker(JSON)
	m.Append(nil, big[:20])
	m.Append(nil, big[20:])
	if !bytes.Equal(in, orig) || !bytes.Equal(big, orig) {
		t.Fatalf("the input was modified")
	}
}
