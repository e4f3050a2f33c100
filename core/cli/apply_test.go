package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/api"
)

const (
	podYAML = `apiVersion: paddock.dev/v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: web
    image: nginx
---
# a comment-only document is skipped
---
apiVersion: paddock.dev/v1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 80}]
`
	cmJSON   = `{"apiVersion":"paddock.dev/v1","kind":"ConfigMap","metadata":{"name":"cfg"}}` + "\n"
	listJSON = `[{"apiVersion":"paddock.dev/v1","kind":"Secret","metadata":{"name":"s1"}},
{"apiVersion":"paddock.dev/v1","kind":"Secret","metadata":{"name":"s2"}}]`
	tenantYML = "apiVersion: paddock.dev/v1\nkind: Tenant\nmetadata: {name: acme}\nspec: {}\n"
	badYAML   = "apiVersion: paddock.dev/v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\napiVersion: paddock.dev/v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containerz: []\n"
)

// writeTree writes files (path -> content) under a new temporary directory
// and returns it.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// docSummary renders manifests as "file:line:kind/name" entries, with file
// relative to dir.
func docSummary(dir string, ms []manifest) []string {
	var out []string
	for _, m := range ms {
		name := m.name
		if rel, err := filepath.Rel(dir, m.name); err == nil && m.name != stdinName {
			name = filepath.ToSlash(rel)
		}
		for _, d := range m.docs {
			k, _ := api.KindOf(d.Object)
			out = append(out, name+":"+strconv.Itoa(d.Line)+":"+objectRef(k, d.Object.GetObjectMeta().Name))
		}
	}
	return out
}

func TestReadManifests(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"b-pod.yaml":       podYAML,
		"a-cm.json":        cmJSON,
		"c-secrets.JSON":   listJSON,
		"notes.txt":        "not a manifest",
		"sub/tenant.yml":   tenantYML,
		"sub/deeper/x.txt": "ignored",
		"empty/README":     "nothing here",
	})
	bad := filepath.Join(writeTree(t, map[string]string{"bad.yaml": badYAML}), "bad.yaml")
	tests := []struct {
		name      string
		paths     []string
		stdin     string
		recursive bool
		want      []string
		wantErr   string
	}{
		{
			name:  "one file with several documents",
			paths: []string{"b-pod.yaml"},
			want:  []string{"b-pod.yaml:1:pod/web", "b-pod.yaml:12:service/web"},
		},
		{
			name:  "a directory is its manifest files sorted, not recursive",
			paths: []string{"."},
			want:  []string{"a-cm.json:1:configmap/cfg", "b-pod.yaml:1:pod/web", "b-pod.yaml:12:service/web", "c-secrets.JSON:1:secret/s1", "c-secrets.JSON:1:secret/s2"},
		},
		{
			name:      "recursive",
			paths:     []string{"."},
			recursive: true,
			want: []string{"a-cm.json:1:configmap/cfg", "b-pod.yaml:1:pod/web", "b-pod.yaml:12:service/web",
				"c-secrets.JSON:1:secret/s1", "c-secrets.JSON:1:secret/s2", "sub/tenant.yml:1:tenant/acme"},
		},
		{
			name:  "stdin and files in order",
			paths: []string{"sub/tenant.yml", "-", "a-cm.json"},
			stdin: "---\n" + tenantYML,
			want:  []string{"sub/tenant.yml:1:tenant/acme", "<stdin>:2:tenant/acme", "a-cm.json:1:configmap/cfg"},
		},
		{name: "no paths", wantErr: "want at least one -f FILE, DIR or - (standard input)"},
		{name: "missing file", paths: []string{"nope.yaml"}, wantErr: "-f nope.yaml: no such file or directory"},
		{name: "directory without manifests", paths: []string{"empty"}, wantErr: "-f empty: the directory holds no .yaml, .yml, .json files (add -R to read subdirectories)"},
		{name: "stdin twice", paths: []string{"-", "-"}, wantErr: "-f - (standard input) may be given only once"},
		// Files are decoded before anything is applied: a bad document
		// fails the run even after good ones.
		{name: "decode error names the file, document and field", paths: []string{bad}, wantErr: bad + ": document at line 5: spec.containerz: unknown field"},
		{name: "syntax error names the file and line", paths: []string{"-"}, stdin: "kind: Pod\n---\nmetadata: [\n", wantErr: "<stdin>: malformed YAML: line "},
	}
	t.Chdir(dir)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := readManifests(tt.paths, strings.NewReader(tt.stdin), tt.recursive)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("readManifests(%q) error = %v, want one starting %q", tt.paths, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("readManifests(%q) error = %v", tt.paths, err)
			}
			if got := docSummary(".", ms); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("readManifests(%q) =\n%q\nwant\n%q", tt.paths, got, tt.want)
			}
		})
	}
}
