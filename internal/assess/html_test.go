package assess

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/ztgate/ztgate/internal/store"
)

// TestHTMLSelfContained: the page loads nothing from elsewhere and runs no
// script, and has a section with a chart for every pillar.
func TestHTMLSelfContained(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := runScenario(t, sc, Options{}).HTML(&b); err != nil {
				t.Fatal(err)
			}
			doc, err := html.Parse(bytes.NewReader(b.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			sections, charts := map[string]bool{}, 0
			for n := range doc.Descendants() {
				if n.Type != html.ElementNode {
					continue
				}
				switch n.Data {
				case "script", "iframe", "object", "embed", "link", "img":
					t.Errorf("got a <%s> element, want none: the page must stand alone", n.Data)
				case "svg":
					charts++
				}
				for _, a := range n.Attr {
					if (a.Key == "src" || a.Key == "href") && !strings.HasPrefix(a.Val, "#") {
						t.Errorf("<%s %s=%q>: want only in-page links", n.Data, a.Key, a.Val)
					}
					if strings.HasPrefix(a.Key, "on") {
						t.Errorf("<%s %s>: want no event handlers", n.Data, a.Key)
					}
					if n.Data == "section" && a.Key == "data-pillar" {
						sections[a.Val] = true
					}
				}
			}
			for _, p := range Pillars {
				if !sections[string(p.ID)] {
					t.Errorf("no section for %s", p.Name)
				}
			}
			if want := len(Pillars) + 1; charts != want {
				t.Errorf("got %d charts, want %d (one per pillar and the overview)", charts, want)
			}
		})
	}
}

func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// consoleLine is how Chromium logs a page's console message (and an
// uncaught error, or a Content-Security-Policy violation) to stderr.
var consoleLine = regexp.MustCompile(`:CONSOLE[:(]\d+\)?\] (.*)`)

// openInChromium loads a page in headless Chromium and returns the DOM it
// built and every console message the page produced.
func openInChromium(t *testing.T, bin, page string, extra ...string) (string, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--enable-logging=stderr", "--v=0",
		"--user-data-dir=" + t.TempDir()}, extra...)
	args = append(args, "--dump-dom", "file://"+page)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, stderr.String())
	}
	var console []string
	for _, m := range consoleLine.FindAllStringSubmatch(stderr.String(), -1) {
		console = append(console, m[1])
	}
	return stdout.String(), console
}

// TestHTMLInChromium opens each golden report in headless Chromium: no
// console errors (a script error, a blocked load), every pillar's section
// in the DOM, and the page prints.
func TestHTMLInChromium(t *testing.T) {
	bin := chromium()
	if bin == "" {
		if testing.Short() {
			t.Skip("chromium is not installed; skipped with -short (apt-get install chromium; ./scripts/test installs it)")
		}
		t.Fatal("chromium is not installed: apt-get install -y chromium (./scripts/test installs it); go test -short skips this test")
	}
	dir := t.TempDir()

	t.Run("the console watch sees errors", func(t *testing.T) {
		// A page that fails must fail this test: the check itself is checked.
		bad := filepath.Join(dir, "bad.html")
		page := `<!DOCTYPE html><html><head><meta charset="utf-8"><title>x</title></head><body><script>nosuch()</script></body></html>`
		if err := os.WriteFile(bad, []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, console := openInChromium(t, bin, bad); len(console) == 0 {
			t.Fatal("got no console message from a page whose script throws; the check would miss real errors")
		}
	})

	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			rep := runScenario(t, sc, Options{})
			if sc.name == "strong" {
				// With a previous run, the trend parts are on the page too.
				prev := rep.stored()
				prev.Time = goldenNow.Add(-7 * 24 * time.Hour)
				prev.Stages["data"] = "Initial"
				prev.Outcomes["DA-04"] = "fail"
				rep.withHistory([]store.Assessment{prev})
			}
			page := filepath.Join(dir, sc.name+".html")
			var b bytes.Buffer
			if err := rep.HTML(&b); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(page, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			dom, console := openInChromium(t, bin, page)
			if len(console) > 0 {
				t.Errorf("console messages, want none:\n%s", strings.Join(console, "\n"))
			}
			for _, p := range rep.Pillars {
				if want := `id="pillar-` + string(p.ID) + `"`; !strings.Contains(dom, want) {
					t.Errorf("the DOM has no %s section (%s)", p.Name, want)
				}
				for _, f := range p.Findings {
					if want := `data-check="` + f.ID + `"`; !strings.Contains(dom, want) {
						t.Errorf("the DOM has no finding %s", f.ID)
					}
				}
			}
			if sc.name == "strong" && !strings.Contains(dom, `id="trend"`) {
				t.Error("the DOM has no trend section")
			}
		})
	}

	t.Run("the README's demo report", func(t *testing.T) {
		page, err := filepath.Abs("../../docs/assessment-demo.html")
		if err != nil {
			t.Fatal(err)
		}
		dom, console := openInChromium(t, bin, page)
		if len(console) > 0 {
			t.Errorf("console messages, want none:\n%s", strings.Join(console, "\n"))
		}
		if !strings.Contains(dom, `id="pillar-governance"`) {
			t.Error("the DOM has no Governance section")
		}
	})

	t.Run("prints", func(t *testing.T) {
		page := filepath.Join(dir, "strong.html")
		pdf := filepath.Join(dir, "strong.pdf")
		_, console := openInChromium(t, bin, page, "--print-to-pdf="+pdf, "--no-pdf-header-footer")
		if len(console) > 0 {
			t.Errorf("console messages while printing:\n%s", strings.Join(console, "\n"))
		}
		st, err := os.Stat(pdf)
		if err != nil || st.Size() < 10_000 {
			t.Fatalf("printed PDF: %v, want a file of some size", err)
		}
	})
}
