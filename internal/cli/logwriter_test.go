package cli

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// gateWriter records every Write; while gate is set, a Write waits for it.
type gateWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	gate   chan struct{}
	inside chan struct{} // a Write is waiting at the gate
}

func (g *gateWriter) Write(p []byte) (int, error) {
	if g.gate != nil {
		select {
		case g.inside <- struct{}{}:
		default:
		}
		<-g.gate
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writes++
	return g.buf.Write(p)
}

func (g *gateWriter) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.String()
}

func TestLogWriterKeepsEveryLineWholeAndInOrder(t *testing.T) {
	var out gateWriter
	l := newLogWriter(&out, 512) // small: writers also wait for room
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				fmt.Fprintf(l, "writer=%d line=%d %s\n", w, i, strings.Repeat("x", i%50))
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("got %d lines, want %d", len(got), writers*lines)
	}
	for _, line := range got {
		var w, i int
		f := strings.SplitN(line, " ", 3)
		if len(f) != 3 {
			t.Fatalf("broken line %q", line)
		}
		if _, err := fmt.Sscanf(f[0]+" "+f[1], "writer=%d line=%d", &w, &i); err != nil || w < 0 || w >= writers {
			t.Fatalf("broken line %q: %v", line, err)
		}
		if i != next[w] || f[2] != strings.Repeat("x", i%50) {
			t.Fatalf("writer %d: got line %q, want line %d", w, line, next[w])
		}
		next[w]++
	}
}

func TestLogWriterBatchesWhileAWriteIsUnderWay(t *testing.T) {
	out := gateWriter{gate: make(chan struct{}), inside: make(chan struct{}, 1)}
	l := newLogWriter(&out, 1<<20)
	fmt.Fprintln(l, "first")
	<-out.inside // the writer holds "first" in a write(2) that does not return
	for i := range 10 {
		fmt.Fprintln(l, "queued", i)
	}
	close(out.gate)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "\n"); got != 11 {
		t.Fatalf("got %d lines, want 11:\n%s", got, out.String())
	}
	if out.writes != 2 {
		t.Errorf("the 10 lines queued behind a write went out in %d writes in all, want 2 (the first, then them together)", out.writes)
	}
}

func TestLogWriterBlocksWhenFullAndDropsNothing(t *testing.T) {
	out := gateWriter{gate: make(chan struct{}), inside: make(chan struct{}, 1)}
	l := newLogWriter(&out, 64)
	line := strings.Repeat("y", 39) + "\n" // 40 bytes
	fmt.Fprint(l, line)
	<-out.inside // stuck writing the first line
	fmt.Fprint(l, line)
	third := make(chan struct{})
	go func() {
		fmt.Fprint(l, line) // 40 pending + 40 > 64: waits for room
		close(third)
	}()
	select {
	case <-third:
		t.Fatal("a Write past maxPending returned while the writer was stuck")
	case <-time.After(50 * time.Millisecond):
	}
	close(out.gate)
	select {
	case <-third:
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting Write did not return once the writer caught up")
	}
	l.Close()
	if got := strings.Count(out.String(), "\n"); got != 3 {
		t.Fatalf("got %d lines, want 3", got)
	}
}

func TestLogWriterWritesWithoutClose(t *testing.T) {
	var out gateWriter
	l := newLogWriter(&out, 1<<20)
	defer l.Close()
	fmt.Fprintln(l, "alone")
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != "alone\n" {
		if time.Now().After(deadline) {
			t.Fatalf("a single line was not written within 5 s: %q", out.String())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLogWriterAfterClose(t *testing.T) {
	var out gateWriter
	l := newLogWriter(&out, 1<<20)
	fmt.Fprintln(l, "before")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(l, "after") // straight through
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "before\nafter\n" {
		t.Fatalf("got %q", got)
	}
}
