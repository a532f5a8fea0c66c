// Package layout_test holds the tests that keep Latch's package structure what
// docs/ARCHITECTURE.md says it is: which package may import which, and where a client address
// may be read. They read the module with `go list` and go/parser; they need no services.
package layout_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/latchhq/latch"

// sharedLeaves import nothing of Latch and may be imported by every package below cmd. The same
// list is in docs/ARCHITECTURE.md ("Shared leaves"); change both together. A leaf that does not
// exist (yet) is fine: the list names what may be shared, not what must exist.
var sharedLeaves = []string{
	"core/api",      // Kratos' wire conventions: error JSON, pagination; the HTTP edge (Meta)
	"core/identity", // the identity model and its SQL
	"core/hooks",    // the compiled hook plan and the before-persist call contract
}

// allowed says, for each top-level area below cmd, which other areas its packages may import
// (an area may always import its own sub-packages, and everyone may import the shared leaves).
// An area that is not listed here, and is not a command or a test suite, fails the test: a new
// top-level package needs a decision and a line in docs/ARCHITECTURE.md.
var allowed = map[string][]string{
	"core":     {"sessions", "schemas", "events", "migrations"},
	"sessions": {"schemas", "events"},
	"events":   {},
	"webhooks": {"events"},
}

// selfContained areas import nothing of Latch, not even the shared leaves: they are what the
// rest is built on (schemas compiles JSON Schemas, migrations is embedded SQL).
var selfContained = []string{"schemas", "migrations"}

// commands are the areas at the top of the graph: programs and test suites may import anything
// below cmd, and nothing may import them.
var commands = []string{"cmd", "bench", "tests"}

type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Error      *struct{ Err string }
}

// listPackages runs `go list` over the whole module (non-test files only: what the program is
// made of) and returns its packages keyed by path relative to the module.
func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Dir,GoFiles,Imports,Error", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		if p.Error != nil {
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs[rel(p.ImportPath)] = p
	}
	// Guards against a go list that quietly matched nothing, which would make every check pass.
	for _, must := range []string{"cmd/latch", "core", "sessions", "schemas", "events", "webhooks"} {
		if _, ok := pkgs[must]; !ok {
			t.Fatalf("go list did not report %s; found %v", must, keys(pkgs))
		}
	}
	return pkgs
}

func rel(importPath string) string {
	if importPath == module {
		return "."
	}
	return strings.TrimPrefix(importPath, module+"/")
}

func keys(m map[string]pkg) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// within reports whether p is area or one of its sub-packages.
func within(p, area string) bool {
	return p == area || strings.HasPrefix(p, area+"/")
}

func isLeaf(p string) bool {
	for _, l := range sharedLeaves {
		if p == l {
			return true
		}
	}
	return false
}

func isCommand(p string) bool {
	for _, c := range commands {
		if within(p, c) {
			return true
		}
	}
	return false
}

func area(p string) string {
	a, _, _ := strings.Cut(p, "/")
	return a
}

// importAllowed decides one edge from package from to Latch package to (both module-relative).
// It returns why the edge is refused, or "".
func importAllowed(from, to string) string {
	switch {
	case isCommand(to) && area(to) != area(from):
		// bench/load may use bench/procstat, tests/e2e tests/latchtest; nobody else may.
		return "nothing outside a command or test suite imports it"
	case isLeaf(from):
		return "a shared leaf imports nothing of Latch"
	case isCommand(from):
		return ""
	case area(to) == area(from):
		// core/password, core/dbtest, events/natstest: an area's own sub-packages.
		return ""
	case contains(selfContained, area(from)):
		return area(from) + " imports nothing of Latch"
	case isLeaf(to):
		return ""
	}
	may, ok := allowed[area(from)]
	if !ok {
		return fmt.Sprintf("top-level package %q has no rule: add it to docs/ARCHITECTURE.md and this test", area(from))
	}
	for _, a := range may {
		if area(to) == a {
			return ""
		}
	}
	return fmt.Sprintf("%s may import only %v, its own sub-packages and the shared leaves %v",
		area(from), may, sharedLeaves)
}

// TestImportDirection enforces cmd -> core -> {sessions, schemas, events}, webhooks -> events,
// with the shared leaves importable from anywhere below cmd.
func TestImportDirection(t *testing.T) {
	pkgs := listPackages(t)
	edges := 0
	for _, from := range keys(pkgs) {
		for _, imp := range pkgs[from].Imports {
			if imp != module && !strings.HasPrefix(imp, module+"/") {
				continue
			}
			edges++
			to := rel(imp)
			if why := importAllowed(from, to); why != "" {
				t.Errorf("%s imports %s: %s", from, to, why)
			}
		}
	}
	if edges == 0 {
		t.Fatal("no import between Latch packages found: the check would pass on anything")
	}

	// Spelled out because it is the point of the split: flows and webhook delivery meet only in
	// the wiring.
	for _, from := range keys(pkgs) {
		if isCommand(from) {
			continue
		}
		for _, imp := range pkgs[from].Imports {
			if within(rel(imp), "webhooks") && !within(from, "webhooks") {
				t.Errorf("%s imports %s: only commands wire webhooks to the rest", from, rel(imp))
			}
		}
	}
}

// TestImportRules checks the rule table on edges that must pass and edges that must fail, so
// that a rule loosened by mistake shows up here and not in production.
func TestImportRules(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		ok       bool
	}{
		{"cmd/latch", "webhooks", true},
		{"cmd/latch", "core/password", true},
		{"bench/pipeline", "sessions", true},
		{"core", "sessions", true},
		{"core", "schemas", true},
		{"core", "events", true},
		{"core", "core/password", true},
		{"core", "core/hooks", true},
		{"core/dbtest", "migrations", true},
		{"sessions", "core/identity", true},
		{"sessions", "core/api", true},
		{"sessions", "events", true},
		{"webhooks", "events", true},
		{"webhooks", "core/api", true},
		{"webhooks", "core/hooks", true},
		{"events/natstest", "events", true},

		{"core/password", "core/api", true},
		{"core", "webhooks", false},
		{"core", "cmd/latch", false},
		{"core", "tests/latchtest", false},
		{"sessions", "core", false},
		{"sessions", "core/password", false},
		{"sessions", "webhooks", false},
		{"schemas", "events", false},
		{"schemas", "core/api", false},
		{"migrations", "core/identity", false},
		{"events", "core", false},
		{"events", "sessions", false},
		{"webhooks", "core", false},
		{"webhooks", "sessions", false},
		{"webhooks", "core/identity", true},
		{"core/api", "core/identity", false},
		{"core/identity", "core", false},
		{"core/hooks", "events", false},
		{"migrations", "core", false},
		{"newarea", "events", false},
		{"bench/load", "bench/procstat", true},
		{"tests/e2e", "tests/latchtest", true},
		{"bench/load", "tests/latchtest", false},
	} {
		why := importAllowed(tc.from, tc.to)
		if (why == "") != tc.ok {
			t.Errorf("%s -> %s: allowed=%v, want %v (%s)", tc.from, tc.to, why == "", tc.ok, why)
		}
	}
}

// clientAddressReaders are the only packages below the commands that may read a client address
// from a request (RemoteAddr, X-Forwarded-For and its relatives): the edge builds api.Meta once,
// and everyone else takes the address from it, so a trusted-proxy rule is decided in one place.
var clientAddressReaders = []string{"core/api"}

// addressHeaders are the request headers that claim a client address. True-Client-IP is not
// among them: it is also on Kratos' default web_hook header allow-list, a list of headers a
// webhook may see, which is not a reading of the address.
var addressHeaders = []string{"x-forwarded-for", "forwarded", "x-real-ip", "cf-connecting-ip"}

// TestOnlyTheEdgeReadsClientAddresses finds, in the non-test sources of every package below the
// commands, a use of a RemoteAddr field or a string naming an address header.
func TestOnlyTheEdgeReadsClientAddresses(t *testing.T) {
	pkgs := listPackages(t)
	files := 0
	for _, name := range keys(pkgs) {
		p := pkgs[name]
		if isCommand(name) || contains(clientAddressReaders, name) {
			continue
		}
		for _, f := range p.GoFiles {
			files++
			for _, use := range addressUses(t, filepath.Join(p.Dir, f)) {
				t.Errorf("%s: %s; only %v may read a client address (use api.Meta)",
					filepath.Join(name, f), use, clientAddressReaders)
			}
		}
	}
	if files == 0 {
		t.Fatal("no source file inspected")
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// addressUses parses one file and describes each place it touches a client address. Comments
// are not code, so they do not count.
func addressUses(t *testing.T, path string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	var uses []string
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if n.Sel.Name == "RemoteAddr" {
				uses = append(uses, fmt.Sprintf("line %d reads .RemoteAddr", fset.Position(n.Pos()).Line))
			}
		case *ast.BasicLit:
			if n.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(n.Value)
			if err != nil {
				return true
			}
			if contains(addressHeaders, strings.ToLower(strings.TrimSpace(s))) {
				uses = append(uses, fmt.Sprintf("line %d names header %q", fset.Position(n.Pos()).Line, s))
			}
		}
		return true
	})
	return uses
}
