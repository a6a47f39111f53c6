package deptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/build"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/ztgate/ztgate"

// forbidden lists, for each package, imports it must not have, directly or
// through any of its dependencies.
var forbidden = []struct {
	pkg  string   // path below the module root
	deny []string // import paths; a path below the module root starts with "internal/" or "cmd/"
	why  string
}{
	{
		pkg:  "internal/route",
		deny: []string{"net/http", "internal/gateway"},
		why:  "route matching works on method, host and path values, not on *http.Request",
	},
	{
		pkg:  "internal/policy",
		deny: []string{"net/http", "internal/store", "internal/gateway"},
		why:  "policy decides from an input it is given; transport and storage belong to its callers",
	},
	{pkg: "internal/authn", deny: []string{"internal/gateway"}, why: "gateway calls authn, never the reverse"},
	{pkg: "internal/config", deny: []string{"internal/gateway"}, why: "gateway is built from config, never the reverse"},
	{pkg: "internal/secrets", deny: []string{"internal/gateway", "internal/inject"}, why: "gateway and inject call secrets, never the reverse"},
	{pkg: "internal/audit", deny: []string{"internal/gateway"}, why: "gateway writes audit events, never the reverse"},
	{
		pkg:  "internal/dlp",
		deny: []string{"net/http", "internal/gateway", "internal/audit", "internal/config"},
		why:  "dlp masks bytes; HTTP, audit and configuration belong to its callers",
	},
	{
		pkg:  "internal/audit/export",
		deny: []string{"internal/gateway", "internal/store", "internal/node"},
		why:  "exporters take records the pipeline hands them; they never read the store or reach into the data plane",
	},
	{pkg: "internal/inject", deny: []string{"internal/gateway", "internal/node"}, why: "gateway asks inject for credentials, never the reverse"},
	{
		pkg:  "internal/apikey",
		deny: []string{"net/http", "internal/store", "internal/authn", "internal/gateway"},
		why:  "the key format and record are shared by the store, authn, the admin API and the CLI; it depends on none of them",
	},
	{pkg: "internal/assess", deny: []string{"internal/gateway", "internal/node"}, why: "the assessment reads the configuration and the store; it never runs the data plane"},
}

// listed is one package as printed by go list -json.
type listed struct {
	ImportPath string
	Imports    []string
	Error      *struct{ Err string }
}

func TestForbiddenImports(t *testing.T) {
	var pkgs []string
	for _, row := range forbidden {
		pkgs = append(pkgs, fullPath(row.pkg))
	}
	root := moduleRoot(t)
	graph := goList(t, root, pkgs...)

	checked := 0
	for _, row := range forbidden {
		t.Run(row.pkg, func(t *testing.T) {
			p, ok := graph[fullPath(row.pkg)]
			if !ok {
				t.Fatalf("go list printed nothing for %s", fullPath(row.pkg))
			}
			if p.Error != nil {
				if !hasGoFiles(filepath.Join(root, filepath.FromSlash(row.pkg))) {
					t.Logf("skipped: %s does not exist yet", row.pkg)
					return
				}
				t.Fatalf("go list %s: %s", row.pkg, p.Error.Err)
			}
			checked++
			for _, d := range row.deny {
				if chain := importChain(graph, p.ImportPath, fullPath(d)); chain != nil {
					t.Errorf("%s imports %s (%s), want no such import: %s",
						row.pkg, d, strings.Join(chain, " -> "), row.why)
				}
			}
		})
	}
	if checked == 0 {
		t.Fatalf("checked 0 packages, want at least 1: none of the listed packages exists; is the table out of date?")
	}
}

// TestImportChain checks the search that the failure messages rely on.
func TestImportChain(t *testing.T) {
	graph := map[string]*listed{
		"a": {ImportPath: "a", Imports: []string{"b", "c"}},
		"b": {ImportPath: "b", Imports: []string{"d"}},
		"c": {ImportPath: "c"},
		"d": {ImportPath: "d", Imports: []string{"a"}}, // a cycle must not loop forever
	}
	tests := []struct {
		from, to string
		want     []string
	}{
		{"a", "c", []string{"a", "c"}},
		{"a", "d", []string{"a", "b", "d"}},
		{"c", "a", nil},
		{"a", "x", nil},
	}
	for _, tt := range tests {
		if got := importChain(graph, tt.from, tt.to); !slices.Equal(got, tt.want) {
			t.Errorf("importChain(%s, %s) = %v, want %v", tt.from, tt.to, got, tt.want)
		}
	}
}

// TestPackageDocs checks that every package under internal/ and cmd/ has a
// package doc comment: "Package name ..." or, for a command, "Command ...".
func TestPackageDocs(t *testing.T) {
	root := moduleRoot(t)
	checked := 0
	for _, top := range []string{"internal", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(dir string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && dir == filepath.Join(root, top) {
				return filepath.SkipDir
			}
			if err != nil {
				return err
			}
			if !d.IsDir() {
				return nil
			}
			if name := d.Name(); name == "testdata" || name == "node_modules" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				return filepath.SkipDir
			}
			rel, _ := filepath.Rel(root, dir)
			pkg, err := build.ImportDir(dir, 0)
			var noGo *build.NoGoError
			if errors.As(err, &noGo) {
				return nil
			}
			if err != nil {
				t.Errorf("%s: %v", rel, err)
				return nil
			}
			checked++
			if !hasPackageDoc(t, dir, pkg) {
				want := "Package " + pkg.Name + " ..."
				if pkg.Name == "main" {
					want = "Command ..."
				}
				t.Errorf("%s: got no package doc comment in %v, want one file with a doc comment %q", rel, pkg.GoFiles, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked == 0 {
		t.Fatal("checked 0 packages, want at least 1 (this package itself)")
	}
}

func hasPackageDoc(t *testing.T, dir string, pkg *build.Package) bool {
	t.Helper()
	fset := token.NewFileSet()
	for _, name := range slices.Concat(pkg.GoFiles, pkg.CgoFiles) {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			t.Errorf("parse %s: %v", filepath.Join(dir, name), err)
			continue
		}
		if f.Doc == nil {
			continue
		}
		doc := f.Doc.Text()
		if strings.HasPrefix(doc, "Package "+pkg.Name+" ") {
			return true
		}
		if pkg.Name == "main" {
			// Go's style for commands: "Command ztgate ..." or "Ztgate is ...".
			base := filepath.Base(dir)
			if strings.HasPrefix(doc, "Command ") ||
				strings.HasPrefix(doc, strings.ToUpper(base[:1])+base[1:]+" ") {
				return true
			}
		}
	}
	return false
}

// goList runs go list -deps -json on pkgs in dir and returns every package printed,
// the listed ones and all their dependencies, by import path.
func goList(t *testing.T, dir string, pkgs ...string) map[string]*listed {
	t.Helper()
	args := append([]string{"list", "-e", "-deps", "-json=ImportPath,Imports,Error"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	graph := map[string]*listed{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(listed)
		err := dec.Decode(p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		graph[p.ImportPath] = p
	}
	return graph
}

// importChain returns the shortest import path from one package to another,
// both ends included, or nil when from does not depend on to.
func importChain(graph map[string]*listed, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var chain []string
			for p := cur; p != ""; p = prev[p] {
				chain = append(chain, p)
			}
			slices.Reverse(chain)
			return chain
		}
		p, ok := graph[cur]
		if !ok {
			continue
		}
		for _, imp := range p.Imports {
			if _, seen := prev[imp]; !seen {
				prev[imp] = cur
				queue = append(queue, imp)
			}
		}
	}
	return nil
}

// fullPath turns a path below the module root into an import path and
// leaves standard-library paths alone.
func fullPath(p string) string {
	if strings.HasPrefix(p, "internal/") || strings.HasPrefix(p, "cmd/") {
		return module + "/" + p
	}
	return p
}

// hasGoFiles reports whether dir holds a .go file other than a test.
func hasGoFiles(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if n := e.Name(); !e.IsDir() && strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			return true
		}
	}
	return false
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod)
}
