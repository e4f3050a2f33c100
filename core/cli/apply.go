package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/spf13/cobra"
)

// stdinName is how messages name manifests read from standard input.
const stdinName = "<stdin>"

// manifestExts are the extensions of the files a directory contributes.
var manifestExts = []string{".yaml", ".yml", ".json"}

// manifest is one decoded source file.
type manifest struct {
	// name is the file as the user named it (or stdinName).
	name string
	docs []api.Document
}

// fileFlags are -f and -R, shared by apply and delete.
type fileFlags struct {
	files     []string
	recursive bool
}

func (f *fileFlags) register(cmd *cobra.Command, what string) {
	cmd.Flags().StringArrayVarP(&f.files, "filename", "f", nil, what+" (a file, a directory of *.yaml, *.yml and *.json files, or - for standard input; repeatable)")
	cmd.Flags().BoolVarP(&f.recursive, "recursive", "R", false, "read directories given with -f recursively")
}

// readManifests reads and decodes every manifest that paths name, in
// order: a file, "-" for stdin, or a directory's manifest files sorted by
// name (with recursive, its subdirectories' too). Nothing is applied until
// every file decodes, so that a typo in the last file changes nothing.
func readManifests(paths []string, stdin io.Reader, recursive bool) ([]manifest, error) {
	if len(paths) == 0 {
		return nil, errors.New("want at least one -f FILE, DIR or - (standard input)")
	}
	var out []manifest
	stdinRead := false
	for _, p := range paths {
		if p == "-" {
			if stdinRead {
				return nil, errors.New("-f - (standard input) may be given only once")
			}
			stdinRead = true
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("read standard input: %w", err)
			}
			m, err := decodeManifest(stdinName, data)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
			continue
		}
		files, err := manifestFiles(p, recursive)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", f, unwrapPathError(err))
			}
			m, err := decodeManifest(f, data)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// decodeManifest decodes one source; errors name it.
func decodeManifest(name string, data []byte) (manifest, error) {
	docs, err := api.DecodeDocuments(data)
	if err != nil {
		return manifest{}, fmt.Errorf("%s: %w", name, err)
	}
	return manifest{name: name, docs: docs}, nil
}

// manifestFiles returns path itself for a file, or the manifest files of a
// directory sorted by path.
func manifestFiles(path string, recursive bool) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("-f %s: %w", path, unwrapPathError(err))
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != path && !recursive {
				return filepath.SkipDir
			}
			return nil
		}
		if slices.Contains(manifestExts, strings.ToLower(filepath.Ext(p))) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("-f %s: %w", path, unwrapPathError(err))
	}
	if len(files) == 0 {
		hint := ""
		if !recursive {
			hint = " (add -R to read subdirectories)"
		}
		return nil, fmt.Errorf("-f %s: the directory holds no %s files%s", path, strings.Join(manifestExts, ", "), hint)
	}
	slices.Sort(files)
	return files, nil
}

// unwrapPathError drops the path that *fs.PathError repeats, since the
// message names the file already.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func newApplyCmd(g *globals) *cobra.Command {
	var f fileFlags
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|- [-f ...]",
		Short: "Create or update objects from YAML or JSON manifests",
		Long: `Create the objects of YAML or JSON manifests, or update them when they exist
(last write wins). A file may hold several documents separated by "---", a
JSON array or a List. Objects are applied in order and the first error stops
the run.

Tenant-scoped objects go to their metadata.tenant, else the tenant of -t,
else the client config's tenant.`,
		Example: `  paddock apply -f pod.yaml -t acme
  paddock apply -f manifests/ -R
  cat deploy.json | paddock apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			manifests, err := readManifests(f.files, cmd.InOrStdin(), f.recursive)
			if err != nil {
				return err
			}
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			return g.apply(cmd.Context(), c, cfg, manifests)
		},
	}
	f.register(cmd, "manifests to apply")
	return cmd
}

// apply creates or updates every object of manifests in order and stops at
// the first error, which names the file, the document and the object.
func (g *globals) apply(ctx context.Context, c *client.Client, cfg *client.Config, manifests []manifest) error {
	total, applied := 0, 0
	for _, m := range manifests {
		total += len(m.docs)
	}
	for _, m := range manifests {
		for _, d := range m.docs {
			action, err := g.applyOne(ctx, c, cfg, d.Object)
			if err != nil {
				if applied > 0 {
					fmt.Fprintf(g.errOut, "applied %d of %d objects before the error\n", applied, total)
				}
				k, _ := api.KindOf(d.Object)
				return fmt.Errorf("%s: document at line %d (%s): %w", m.name, d.Line, objectRef(k, d.Object.GetObjectMeta().Name), err)
			}
			applied++
			k, _ := api.KindOf(d.Object)
			fmt.Fprintf(g.out, "%s %s\n", objectRef(k, d.Object.GetObjectMeta().Name), action)
		}
	}
	if total == 0 {
		fmt.Fprintln(g.errOut, "no objects to apply: the manifests are empty")
	}
	return nil
}

// applyOne creates obj, or replaces it when it exists, and says which.
func (g *globals) applyOne(ctx context.Context, c *client.Client, cfg *client.Config, obj api.Object) (string, error) {
	k, ok := api.KindOf(obj)
	if !ok {
		return "", fmt.Errorf("unknown object type %T", obj)
	}
	m := obj.GetObjectMeta()
	if k.TenantScoped && m.Tenant == "" {
		m.Tenant = g.tenantFor(cfg)
		if m.Tenant == "" {
			return "", fmt.Errorf("metadata.tenant: required: %s are tenant-scoped; set metadata.tenant or pass -t TENANT", k.Resource)
		}
	}
	if m.Name == "" && k.Resource != "tokens" {
		return "", errors.New("metadata.name: required")
	}
	_, err := c.Create(ctx, obj)
	if err == nil {
		return "created", nil
	}
	if !errdefs.IsAlreadyExists(err) {
		return "", err
	}
	m.ResourceVersion = "" // last write wins; the server keeps what it assigned
	if _, err := c.Update(ctx, obj); err != nil {
		return "", err
	}
	return "configured", nil
}
