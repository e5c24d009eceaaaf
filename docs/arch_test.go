// Package docs_test keeps docs/ARCHITECTURE.md true: its table of packages is the import
// graph's rules, checked against what every package of every module in the repository
// imports.
package docs_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const modulePath = "github.com/troy-audit/troy"

// rule is a row of the packages table: what a package must not import, or, when the
// column starts with "anything but", the only things outside the standard library it may.
type rule struct {
	line      int
	allowOnly bool
	tokens    []string // import path prefixes: a package of the repository, or a module
}

var backticked = regexp.MustCompile("`([^`]+)`")

// readTable reads the packages table of ARCHITECTURE.md: package, holds, must not import.
func readTable(t *testing.T) map[string]rule {
	t.Helper()
	f, err := os.Open("ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rules := map[string]rule{}
	in := false
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "| package | holds | must not import |") {
			in = true
			continue
		}
		if !in || strings.HasPrefix(line, "|---") {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			break
		}
		cols := strings.Split(strings.Trim(line, "|"), "|")
		if len(cols) != 3 {
			t.Fatalf("ARCHITECTURE.md:%d: a row of the packages table has %d columns, want 3", n, len(cols))
		}
		last := strings.TrimSpace(cols[2])
		r := rule{line: n, allowOnly: strings.HasPrefix(last, "anything but")}
		for _, m := range backticked.FindAllStringSubmatch(last, -1) {
			r.tokens = append(r.tokens, importPath(m[1]))
		}
		for _, m := range backticked.FindAllStringSubmatch(cols[0], -1) {
			rules[m[1]] = r
		}
	}
	if len(rules) == 0 {
		t.Fatal("ARCHITECTURE.md has no packages table")
	}
	return rules
}

// importPath makes a token of the table an import path: a package of the repository is
// named by its directory, anything else by its module's path.
func importPath(tok string) string {
	if first, _, _ := strings.Cut(tok, "/"); strings.Contains(first, ".") {
		return tok
	}
	return modulePath + "/" + tok
}

func under(path, prefix string) bool { return path == prefix || strings.HasPrefix(path, prefix+"/") }

func standard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// deps lists every package of every module of the repository (by directory) with the
// packages it imports, directly or not (tests aside).
func deps(t *testing.T) map[string][]string {
	t.Helper()
	var modules []string
	err := filepath.WalkDir("..", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.Name() == "go.mod" {
			modules = append(modules, filepath.Dir(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, dir := range modules {
		cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Deps}} {{.}}{{end}}", "./...")
		cmd.Dir = dir
		raw, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list in %s: %v", dir, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			f := strings.Fields(line)
			rel, ok := strings.CutPrefix(f[0], modulePath+"/")
			if !ok || strings.HasPrefix(rel, "examples/") {
				continue // the examples are programs, not packages of troy
			}
			out[rel] = f[1:]
		}
	}
	return out
}

// The import graph follows the packages table of ARCHITECTURE.md, and the table names
// every package.
func TestImportRules(t *testing.T) {
	rules := readTable(t)
	all := deps(t)
	for pkg, ds := range all {
		r, ok := rules[pkg]
		if !ok {
			t.Errorf("package %s is not in the packages table of ARCHITECTURE.md", pkg)
			continue
		}
		for _, d := range ds {
			matched := slices.ContainsFunc(r.tokens, func(tok string) bool { return under(d, tok) })
			switch {
			case r.allowOnly && !standard(d) && !matched:
				t.Errorf("ARCHITECTURE.md:%d: %s imports %s, which it may not (only the standard library and %v)", r.line, pkg, d, r.tokens)
			case !r.allowOnly && matched:
				t.Errorf("ARCHITECTURE.md:%d: %s imports %s, which it must not", r.line, pkg, d)
			}
		}
	}
	for pkg, r := range rules {
		if _, ok := all[pkg]; !ok {
			t.Errorf("ARCHITECTURE.md:%d: the table names %s, which is not a package", r.line, pkg)
		}
	}
}

// The SDK's module graph holds nats.go and its requirements, troy's vocabulary and one
// JSON codec: what an agent's go get of the SDK resolves (ARCHITECTURE.md, Modules).
func TestSDKModuleGraph(t *testing.T) {
	allowed := []string{
		modulePath + "/sdk", modulePath + "/event", modulePath + "/schemas",
		"github.com/nats-io/nats.go", "github.com/nats-io/nkeys", "github.com/nats-io/nuid",
		"github.com/klauspost/compress", "github.com/goccy/go-json",
		"golang.org/x/crypto", "golang.org/x/sys", "golang.org/x/net", "golang.org/x/term", "golang.org/x/text",
		"go", "toolchain",
	}
	cmd := exec.Command("go", "mod", "graph")
	cmd.Dir = filepath.Join("..", "sdk")
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod graph in sdk: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		for _, node := range strings.Fields(line) {
			mod, _, _ := strings.Cut(node, "@")
			if !slices.Contains(allowed, mod) {
				t.Errorf("the SDK's module graph holds %s (%s)", node, line)
			}
		}
	}
}
