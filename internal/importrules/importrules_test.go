package importrules

import (
	"bufio"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// modulePath is the module whose packages the rules govern. The test fails
// if go.mod says otherwise, rather than silently checking nothing.
const modulePath = "github.com/paddock-dev/paddock"

// mod turns a path inside the module into a full import path pattern.
func mod(p string) string { return modulePath + "/" + p }

// A rule forbids packages matching importer (and not except) to import
// packages matching forbid (and not allow).
//
// Patterns are import paths whose elements may be:
//   - a literal element;
//   - "*", any one element;
//   - "{name}", any one element, captured when matching the importer; the
//     same name in forbid or allow then matches only the captured value;
//   - "..." as the last element: zero or more elements, so "core/..."
//     matches core and everything below it.
type rule struct {
	importer []string
	except   []string
	forbid   []string
	allow    []string
	why      string
}

// rules are the dependency rules of architecture.md, numbered as there.
var rules = []rule{
	// 1. Plugin contracts.
	{
		importer: []string{mod("plugins/*/v1/...")},
		forbid:   []string{mod("core/...")},
		allow:    []string{mod("core/errdefs")},
		why:      "plugin contracts must build without the control plane so vendors can depend on them alone; only the leaf core/errdefs is allowed (architecture.md rule 1)",
	},
	// 2. Plugin implementations.
	{
		importer: []string{mod("runtimes/..."), mod("netplugins/...")},
		forbid:   []string{mod("core/...")},
		allow:    []string{mod("core/errdefs")},
		why:      "plugins reach Paddock only through their contract package; only the leaf core/errdefs is allowed (architecture.md rule 2)",
	},
	{
		importer: []string{mod("runtimes/{x}/...")},
		forbid:   []string{mod("runtimes/..."), mod("netplugins/...")},
		allow:    []string{mod("runtimes/{x}/..."), mod("runtimes/internal/...")},
		why:      "runtime plugins are independent of each other; shared code goes in runtimes/internal (architecture.md rule 2)",
	},
	{
		importer: []string{mod("netplugins/{x}/...")},
		forbid:   []string{mod("netplugins/..."), mod("runtimes/...")},
		allow:    []string{mod("netplugins/{x}/..."), mod("netplugins/internal/...")},
		why:      "network plugins are independent of each other; shared code goes in netplugins/internal (architecture.md rule 2)",
	},
	{
		importer: []string{mod("runtimes/...")},
		forbid:   []string{mod("plugins/...")},
		allow:    []string{mod("plugins/runtime/v1/...")},
		why:      "a runtime plugin imports only its contract, plugins/runtime/v1 (architecture.md rule 2)",
	},
	{
		importer: []string{mod("netplugins/...")},
		forbid:   []string{mod("plugins/...")},
		allow:    []string{mod("plugins/network/v1/...")},
		why:      "a network plugin imports only its contract, plugins/network/v1 (architecture.md rule 2)",
	},
	// 3. The control plane does not know implementations or the suites.
	{
		importer: []string{mod("core/...")},
		forbid:   []string{mod("runtimes/..."), mod("netplugins/..."), mod("conformance/...")},
		why:      "the control plane reaches plugins only through plugins/pluginhost and never depends on the conformance suites (architecture.md rule 3)",
	},
	// 4. The agent talks to the control plane through the API.
	{
		importer: []string{mod("core/agent/...")},
		forbid:   []string{mod("core/store/..."), mod("core/apiserver/..."), mod("core/scheduler/..."), mod("core/controller/...")},
		why:      "the node agent reaches the control plane only through core/client (architecture.md rule 4)",
	},
	// 5. The scheduler is pure.
	{
		importer: []string{mod("core/scheduler/...")},
		forbid:   []string{"go.etcd.io/...", "net", "net/http/...", "os/exec"},
		why:      "the scheduler is pure placement over a snapshot: no etcd, no network, no processes (architecture.md rule 5)",
	},
	// 6. Who may use etcd and memberlist.
	{
		importer: []string{mod("...")},
		except:   []string{mod("core/store/..."), mod("cmd/..."), mod("bench/...")},
		forbid:   []string{"go.etcd.io/..."},
		why:      "only core/store talks to etcd (plus the wiring in cmd, and bench, which measures the raw etcd floor) (architecture.md rule 6)",
	},
	{
		importer: []string{mod("...")},
		except:   []string{mod("core/gossip/...")},
		forbid:   []string{"github.com/hashicorp/memberlist/..."},
		why:      "only core/gossip uses memberlist (architecture.md rule 6)",
	},
	// 7. The conformance suites are black-box.
	{
		importer: []string{mod("conformance/...")},
		forbid: []string{
			mod("core/store/..."), mod("core/apiserver/..."), mod("core/scheduler/..."),
			mod("core/controller/..."), mod("core/agent/..."),
			mod("runtimes/..."), mod("netplugins/..."),
		},
		why: "conformance suites are black-box: plugins through plugins/pluginhost, clusters through core/client, never an implementation (architecture.md rule 7)",
	},
	// The node's service proxy and the cluster DNS read the API and
	// nothing else of the control plane.
	{
		importer: []string{mod("core/proxy"), mod("core/dns")},
		forbid:   []string{mod("...")},
		allow:    []string{mod("core/api/..."), mod("core/client/..."), mod("core/errdefs/...")},
		why:      "the service proxy and the cluster DNS see the cluster through core/api objects and core/client only, so the agent and the server can each run them",
	},
	// Examples are what vendors copy: they may use only what a vendor can.
	{
		importer: []string{mod("examples/...")},
		forbid:   []string{mod("...")},
		allow:    []string{mod("plugins/*/v1/..."), mod("plugins/errgrpc"), mod("core/errdefs")},
		why:      "examples are copied by plugin vendors, so they import from Paddock only the contracts, plugins/errgrpc and the leaf core/errdefs (architecture.md rule 9)",
	},
	// Leaves.
	{
		importer: []string{mod("core/errdefs/...")},
		forbid:   []string{mod("...")},
		allow:    []string{mod("core/errdefs/...")},
		why:      "core/errdefs is a leaf that plugin contracts and plugins depend on; it imports nothing from Paddock",
	},
	{
		importer: []string{mod("internal/netns/...")},
		forbid:   []string{mod("...")},
		allow:    []string{mod("internal/netns/...")},
		why:      "internal/netns is a leaf shared by runtime plugins and the node agent; it imports nothing from Paddock",
	},
	{
		importer: []string{mod("core/api/...")},
		forbid:   []string{mod("...")},
		allow:    []string{mod("core/api/..."), mod("core/errdefs/...")},
		why:      "core/api is the resource model with no I/O; it imports nothing from Paddock but core/errdefs",
	},
}

// match reports whether p matches pattern. Captures from {name} elements
// are read from and added to vars; pass nil when matching the importer for
// the first time and the returned map afterwards.
func match(pattern, p string, vars map[string]string) (bool, map[string]string) {
	pe := strings.Split(pattern, "/")
	xe := strings.Split(p, "/")
	bound := map[string]string{}
	for k, v := range vars {
		bound[k] = v
	}
	for i, e := range pe {
		if e == "..." && i == len(pe)-1 {
			return true, bound
		}
		if i >= len(xe) {
			return false, nil
		}
		switch {
		case e == "*":
		case strings.HasPrefix(e, "{") && strings.HasSuffix(e, "}"):
			name := e[1 : len(e)-1]
			if v, ok := bound[name]; ok {
				if v != xe[i] {
					return false, nil
				}
			} else {
				bound[name] = xe[i]
			}
		case e != xe[i]:
			return false, nil
		}
	}
	return len(pe) == len(xe), bound
}

func matchAny(patterns []string, p string, vars map[string]string) bool {
	for _, pat := range patterns {
		if ok, _ := match(pat, p, vars); ok {
			return true
		}
	}
	return false
}

// importEdge is one import of a package, with where it was found.
type importEdge struct {
	path string
	pos  string // file:line, for the report
}

// violations returns a report line for every import in pkgs (package path
// to its imports) that a rule forbids, sorted.
func violations(rules []rule, pkgs map[string][]importEdge) []string {
	var out []string
	for pkg, imports := range pkgs {
		for _, r := range rules {
			for _, ip := range r.importer {
				ok, vars := match(ip, pkg, nil)
				if !ok || matchAny(r.except, pkg, nil) {
					continue
				}
				for _, imp := range imports {
					if matchAny(r.forbid, imp.path, vars) && !matchAny(r.allow, imp.path, vars) {
						msg := fmt.Sprintf("%s imports forbidden %s: %s", short(pkg), short(imp.path), r.why)
						if imp.pos != "" {
							msg += " [" + imp.pos + "]"
						}
						out = append(out, msg)
					}
				}
				break // one report per rule, even if several importer patterns match
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// short trims the module path from Paddock import paths for reports.
func short(p string) string {
	if rel, ok := strings.CutPrefix(p, modulePath+"/"); ok {
		return rel
	}
	return p
}

// moduleRoot finds the directory of the go.mod above the working directory
// and checks that it declares modulePath.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			if got := strings.Trim(strings.TrimSpace(rest), `"`); got != modulePath {
				t.Fatalf("go.mod declares module %q, the rules are written for %q: update modulePath", got, modulePath)
			}
			return dir
		}
	}
	t.Fatal("go.mod has no module line")
	return ""
}

// modulePackages parses the imports of every non-test Go file under root and
// returns them by package import path. It skips hidden and underscore
// directories, testdata, vendor, bin at the root, nested modules and files
// constrained by "//go:build ignore".
func modulePackages(t *testing.T, root string) map[string][]importEdge {
	t.Helper()
	pkgs := map[string][]importEdge{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			name := d.Name()
			switch {
			case rel == ".":
				return nil
			case strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_"),
				name == "testdata", name == "vendor", rel == "bin":
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		for _, cg := range f.Comments {
			if cg.Pos() > f.Package {
				break
			}
			for _, c := range cg.List {
				if strings.TrimSpace(c.Text) == "//go:build ignore" {
					return nil
				}
			}
		}
		pkg := modulePath
		if dir := path.Dir(rel); dir != "." {
			pkg += "/" + dir
		}
		if _, ok := pkgs[pkg]; !ok {
			pkgs[pkg] = nil // a package with no imports still counts as found
		}
		for _, imp := range f.Imports {
			ip, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return fmt.Errorf("%s: %w", fset.Position(imp.Pos()), err)
			}
			pos := fset.Position(imp.Pos())
			pkgs[pkg] = append(pkgs[pkg], importEdge{path: ip, pos: fmt.Sprintf("%s:%d", rel, pos.Line)})
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading the module's Go files: %v", err)
	}
	return pkgs
}

// TestImportRules is the invariant: no package of the module has a
// forbidden import.
func TestImportRules(t *testing.T) {
	root := moduleRoot(t)
	pkgs := modulePackages(t, root)

	// Guard against checking nothing: the walk must see this package and
	// a known leaf.
	for _, want := range []string{mod("internal/importrules"), mod("core/errdefs")} {
		if _, ok := pkgs[want]; !ok {
			t.Fatalf("package %s not found under %s: the walk is broken", want, root)
		}
	}
	t.Logf("checked %d packages under %s", len(pkgs), root)

	for _, v := range violations(rules, pkgs) {
		t.Error(v)
	}
}

// TestRuleMatcher proves the checker reports forbidden edges and passes
// allowed ones, so TestImportRules cannot pass by matching nothing.
func TestRuleMatcher(t *testing.T) {
	tests := []struct {
		importer, imp string
		forbidden     bool
	}{
		// 1.
		{mod("plugins/runtime/v1"), mod("core/store"), true},
		{mod("plugins/network/v1/networkpb"), mod("core/api"), true},
		{mod("plugins/runtime/v1"), mod("core/errdefs"), false},
		{mod("plugins/pluginhost"), mod("core/api"), false},
		// 2.
		{mod("runtimes/runc"), mod("core/api"), true},
		{mod("runtimes/runc"), mod("core/errdefs"), false},
		{mod("runtimes/runc"), mod("runtimes/runsc"), true},
		{mod("runtimes/runc"), mod("runtimes/internal/oci"), false},
		{mod("runtimes/runc"), mod("runtimes/runc/cgroups"), false},
		{mod("runtimes/internal/oci"), mod("runtimes/runc"), true},
		{mod("runtimes/runc"), mod("netplugins/bridge"), true},
		{mod("runtimes/runc"), mod("plugins/runtime/v1"), false},
		{mod("runtimes/runc"), mod("plugins/network/v1"), true},
		{mod("runtimes/runc"), mod("plugins/pluginhost"), true},
		{mod("netplugins/bridge"), mod("netplugins/mesh"), true},
		{mod("netplugins/bridge"), mod("netplugins/internal/ipam"), false},
		{mod("netplugins/bridge"), mod("plugins/network/v1"), false},
		{mod("netplugins/bgp"), mod("plugins/runtime/v1"), true},
		{mod("netplugins/bgp"), mod("core/client"), true},
		{mod("netplugins/bgp"), mod("runtimes/runc"), true},
		// 3.
		{mod("core/agent"), mod("runtimes/runc"), true},
		{mod("core/apiserver"), mod("conformance/clustertest"), true},
		{mod("core/agent"), mod("plugins/pluginhost"), false},
		// 4.
		{mod("core/agent"), mod("core/store"), true},
		{mod("core/agent/probes"), mod("core/scheduler"), true},
		{mod("core/agent"), mod("core/client"), false},
		// 5.
		{mod("core/scheduler"), "net/http", true},
		{mod("core/scheduler"), "net/http/httptest", true},
		{mod("core/scheduler"), "net", true},
		{mod("core/scheduler"), "os/exec", true},
		{mod("core/scheduler"), "go.etcd.io/etcd/client/v3", true},
		{mod("core/scheduler"), "sort", false},
		{mod("core/scheduler"), mod("core/api"), false},
		// 6.
		{mod("core/store"), "go.etcd.io/etcd/client/v3", false},
		{mod("core/store"), "go.etcd.io/etcd/server/v3/embed", false},
		{mod("cmd/paddock"), "go.etcd.io/etcd/client/v3", false},
		{mod("bench/etcdfloor"), "go.etcd.io/etcd/client/v3", false},
		{mod("core/apiserver"), "go.etcd.io/etcd/client/v3", true},
		{mod("core/controller"), "go.etcd.io/etcd/client/v3/concurrency", true},
		{mod("conformance/clustertest"), "go.etcd.io/etcd/api/v3/mvccpb", true},
		{mod("core/gossip"), "github.com/hashicorp/memberlist", false},
		{mod("core/agent"), "github.com/hashicorp/memberlist", true},
		// 7.
		{mod("conformance/runtimetest"), mod("plugins/pluginhost"), false},
		{mod("conformance/clustertest"), mod("core/client"), false},
		{mod("conformance/runtimetest"), mod("runtimes/runc"), true},
		{mod("conformance/networktest"), mod("netplugins/internal/ipam"), true},
		{mod("conformance/clustertest"), mod("core/store"), true},
		{mod("conformance/clustertest"), mod("core/agent"), true},
		// Examples.
		{mod("examples/runtime-plugin"), mod("plugins/runtime/v1"), false},
		{mod("examples/runtime-plugin"), mod("plugins/errgrpc"), false},
		{mod("examples/runtime-plugin"), mod("core/errdefs"), false},
		{mod("examples/runtime-plugin"), mod("core/api"), true},
		{mod("examples/runtime-plugin"), mod("plugins/pluginhost"), true},
		{mod("examples/runtime-plugin"), mod("runtimes/runc"), true},
		{mod("examples/runtime-plugin"), mod("runtimes/internal/oci"), true},
		{mod("examples/runtime-plugin"), mod("conformance/runtimetest"), true},
		{mod("examples/network-plugin"), mod("plugins/network/v1"), false},
		// Leaves.
		{mod("core/errdefs"), mod("core/api"), true},
		{mod("core/errdefs"), "net/http", false},
		{mod("core/api"), mod("core/errdefs"), false},
		{mod("core/api"), mod("core/store"), true},
		{mod("core/api/validation"), mod("core/api"), false},
		// Unrelated.
		{mod("core/apiserver"), mod("core/store"), false},
		{mod("cmd/paddock"), mod("runtimes/runc"), false},
	}
	for _, tt := range tests {
		pkgs := map[string][]importEdge{tt.importer: {{path: tt.imp}}}
		got := violations(rules, pkgs)
		if tt.forbidden && len(got) == 0 {
			t.Errorf("%s -> %s: no violation reported, want one", short(tt.importer), short(tt.imp))
		}
		if !tt.forbidden && len(got) != 0 {
			t.Errorf("%s -> %s: reported %q, want no violation", short(tt.importer), short(tt.imp), got)
		}
		for _, v := range got {
			if want := short(tt.importer) + " imports forbidden " + short(tt.imp) + ": "; !strings.HasPrefix(v, want) {
				t.Errorf("report %q, want it to start with %q", v, want)
			}
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, path string
		vars          map[string]string
		want          bool
	}{
		{"a/...", "a", nil, true},
		{"a/...", "a/b/c", nil, true},
		{"a/...", "ab", nil, false},
		{"a/*/v1", "a/x/v1", nil, true},
		{"a/*/v1", "a/x/y/v1", nil, false},
		{"a/*/v1/...", "a/x/v1/pb", nil, true},
		{"net", "net/http", nil, false},
		{"net", "net", nil, true},
		{"a/{x}/...", "a/b/c", map[string]string{"x": "b"}, true},
		{"a/{x}/...", "a/c", map[string]string{"x": "b"}, false},
		{"a/{x}", "a", nil, false},
		{"...", "anything/at/all", nil, true},
	}
	for _, tt := range tests {
		if got, _ := match(tt.pattern, tt.path, tt.vars); got != tt.want {
			t.Errorf("match(%q, %q, %v) = %v, want %v", tt.pattern, tt.path, tt.vars, got, tt.want)
		}
	}
	// Captures come back for use in later patterns.
	if ok, vars := match("runtimes/{x}/...", "runtimes/runc/cgroups", nil); !ok || vars["x"] != "runc" {
		t.Errorf(`match("runtimes/{x}/...", "runtimes/runc/cgroups") = %v, %v; want true, x=runc`, ok, vars)
	}
}

// TestRulesWellFormed catches table entries that could never match and so
// would silently disable a rule.
func TestRulesWellFormed(t *testing.T) {
	for i, r := range rules {
		if len(r.importer) == 0 || len(r.forbid) == 0 || r.why == "" {
			t.Errorf("rule %d: importer, forbid and why are required: %+v", i, r)
		}
		for _, p := range append(append(slices.Clone(r.importer), r.forbid...), r.allow...) {
			if strings.Contains(p, "//") || strings.HasSuffix(p, "/") {
				t.Errorf("rule %d: malformed pattern %q", i, p)
			}
		}
	}
}
