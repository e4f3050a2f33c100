package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// runtimes are the agent's runtime plugins, by plugin name.
type runtimes struct {
	host   *pluginhost.Host
	mu     sync.Mutex
	byName map[string]*pluginhost.Instance
	order  []string
	// caps are each plugin's capabilities, asked at launch and after
	// every restart: which handlers it runs and how strongly they isolate.
	caps map[string]*runtimev1.CapabilitiesResponse
	// unoffered are the reasons already logged for classes not offered.
	unoffered map[string]bool
}

// launchRuntimes starts (or reattaches to) every configured plugin.
func (a *Agent) launchRuntimes(ctx context.Context) error {
	host, err := pluginhost.New(pluginhost.Config{
		StateDir: filepath.Join(a.cfg.DataDir, "plugins"),
		Logger:   a.log,
		OnEvent:  a.pluginEvent,
	})
	if err != nil {
		return err
	}
	a.rt = &runtimes{host: host, byName: map[string]*pluginhost.Instance{}, caps: map[string]*runtimev1.CapabilitiesResponse{}, unoffered: map[string]bool{}}
	for _, r := range a.cfg.Runtimes {
		inst, err := host.Launch(ctx, pluginhost.RuntimeKind, r.Name, r.Path, r.Config)
		if err != nil {
			host.Close()
			return fmt.Errorf("runtime plugin %s: %w", r.Name, err)
		}
		how := "started"
		if inst.Reattached() {
			how = "reattached"
		}
		a.log.Info("runtime plugin "+how, "plugin", r.Name, "pid", inst.PID(), "version", inst.Info().Version)
		a.rt.byName[r.Name] = inst
		a.rt.order = append(a.rt.order, r.Name)
		if err := a.rt.askCapabilities(ctx, r.Name); err != nil {
			host.Close()
			return fmt.Errorf("runtime plugin %s: %w", r.Name, err)
		}
	}
	return nil
}

// askCapabilities asks the named plugin what it can do and keeps the
// answer.
func (r *runtimes) askCapabilities(ctx context.Context, name string) error {
	c, err := r.client(name)
	if err != nil {
		return err
	}
	caps, err := c.Capabilities(ctx, &runtimev1.CapabilitiesRequest{})
	if err != nil {
		return fmt.Errorf("Capabilities: %w", err)
	}
	r.mu.Lock()
	r.caps[name] = caps
	r.mu.Unlock()
	return nil
}

// firstTime says whether this reason for not offering a class is new.
func (r *runtimes) firstTime(reason error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unoffered[reason.Error()] {
		return false
	}
	r.unoffered[reason.Error()] = true
	return true
}

// isolationRank orders the isolation classes from weakest to strongest.
var isolationRank = map[api.IsolationClass]runtimev1.IsolationClass{
	api.IsolationNamespace:       runtimev1.IsolationClass_ISOLATION_CLASS_NAMESPACE,
	api.IsolationUserspaceKernel: runtimev1.IsolationClass_ISOLATION_CLASS_USERSPACE_KERNEL,
	api.IsolationVM:              runtimev1.IsolationClass_ISOLATION_CLASS_VM,
}

// isolationName is the API's name of a plugin's isolation class.
func isolationName(c runtimev1.IsolationClass) string {
	for name, rank := range isolationRank {
		if rank == c {
			return string(name)
		}
	}
	return "nothing declared"
}

// offers says why this node cannot run a runtime class, or nil when it
// can: the class's plugin runs here, runs the class's handler, and that
// handler isolates at least as strongly as the class claims — a class
// that claims a sandbox must never land on a handler that has none.
func (r *runtimes) offers(rc *api.RuntimeClass) error {
	r.mu.Lock()
	caps, ok := r.caps[rc.Spec.Plugin]
	r.mu.Unlock()
	if !ok {
		return errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("runtime class %q: runtime plugin %q is not run by this node", rc.Metadata.Name, rc.Spec.Plugin))
	}
	got, ok := caps.Isolation(rc.Spec.Handler)
	if !ok {
		return errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("runtime class %q: runtime plugin %q has no handler %q (it has %s)", rc.Metadata.Name, rc.Spec.Plugin, rc.Spec.Handler, strings.Join(caps.GetHandlers(), ", ")))
	}
	if want := isolationRank[rc.Spec.Isolation]; got < want {
		return errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("runtime class %q claims isolation %s, but runtime plugin %q handler %q isolates with %s only", rc.Metadata.Name, rc.Spec.Isolation, rc.Spec.Plugin, rc.Spec.Handler, isolationName(got)))
	}
	return nil
}

// client returns the named plugin's current client.
func (r *runtimes) client(name string) (*runtimev1.Client, error) {
	r.mu.Lock()
	inst := r.byName[name]
	r.mu.Unlock()
	if inst == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("runtime plugin %q is not run by this node", name))
	}
	return inst.Runtime()
}

// names returns the plugins' names in configuration order.
func (r *runtimes) names() []string { return slices.Clone(r.order) }

// each calls fn with every plugin's client, collecting errors.
func (r *runtimes) each(fn func(name string, c *runtimev1.Client) error) error {
	var errs []error
	for _, name := range r.order {
		c, err := r.client(name)
		if err == nil {
			err = fn(name, c)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("runtime %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// runtimeFor resolves a pod's runtime class to its plugin's client and
// the handler to ask for.
func (a *Agent) runtimeFor(pod *api.Pod) (name string, c *runtimev1.Client, handler string, err error) {
	class := pod.Spec.RuntimeClassName
	obj, ok := a.classes.Get(class)
	if !ok {
		return "", nil, "", errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("runtime class %q does not exist", class))
	}
	rc := obj.(*api.RuntimeClass)
	if err := a.rt.offers(rc); err != nil {
		return "", nil, "", err
	}
	c, err = a.rt.client(rc.Spec.Plugin)
	return rc.Spec.Plugin, c, rc.Spec.Handler, err
}

// offeredClasses lists the runtime classes this node can run (offers).
func (a *Agent) offeredClasses() []string {
	var out []string
	for _, o := range a.classes.List() {
		rc := o.(*api.RuntimeClass)
		err := a.rt.offers(rc)
		switch {
		case err == nil:
			out = append(out, rc.Metadata.Name)
		case slices.Contains(a.rt.order, rc.Spec.Plugin) && a.rt.firstTime(err):
			a.log.Warn("runtime class not offered", "error", err)
		}
	}
	slices.Sort(out)
	return out
}

// pluginEvent reacts to plugin restarts: the new process gets the
// handles of the sandboxes it had, then every pod is synced.
func (a *Agent) pluginEvent(ev pluginhost.Event) {
	switch ev.Type {
	case pluginhost.EventExited:
		a.log.Warn("plugin exited; restarting it", "plugin", ev.Plugin, "pid", ev.PID)
	case pluginhost.EventRestartFailed:
		a.log.Error("plugin restart failed", "plugin", ev.Plugin, "error", ev.Err)
	case pluginhost.EventRestarted:
		if n := a.cfg.Network; n != nil && ev.Plugin == n.Name {
			go a.networkRestarted(context.Background())
			return
		}
		go func() {
			if err := a.rt.askCapabilities(context.Background(), ev.Plugin); err != nil {
				a.log.Error("restarted plugin's capabilities", "plugin", ev.Plugin, "error", err)
			}
			a.recoverSandboxes(context.Background(), ev.Plugin)
			a.resyncAll()
		}()
	}
}

// ---- sandbox records --------------------------------------------------

// sandboxRecord is what the agent keeps about a sandbox it created, to
// hand the plugin back after a restart and to find the pod's network
// namespace.
type sandboxRecord struct {
	Plugin string `json:"plugin"`
	ID     string `json:"id"`
	Handle []byte `json:"handle"`
	Pod    string `json:"pod"` // tenant/name
	UID    string `json:"uid"`
	Netns  string `json:"netns,omitempty"`
	// Attachment is the network plugin's attachment of Netns.
	Attachment *attachment `json:"attachment,omitempty"`
}

func (a *Agent) recordPath(id string) string {
	return filepath.Join(a.cfg.DataDir, "sandboxes", id+".json")
}

func (a *Agent) saveRecord(r sandboxRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeFileAtomic(a.recordPath(r.ID), b)
}

func (a *Agent) loadRecords() []sandboxRecord {
	paths, _ := filepath.Glob(filepath.Join(a.cfg.DataDir, "sandboxes", "*.json"))
	var out []sandboxRecord
	for _, p := range paths {
		b, err := os.ReadFile(p)
		var r sandboxRecord
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil || r.ID == "" {
			a.log.Warn("unreadable sandbox record; ignoring it", "path", p, "error", err)
			continue
		}
		out = append(out, r)
	}
	return out
}

func (a *Agent) record(id string) (sandboxRecord, bool) {
	b, err := os.ReadFile(a.recordPath(id))
	var r sandboxRecord
	if err == nil && json.Unmarshal(b, &r) == nil {
		return r, true
	}
	return r, false
}

func (a *Agent) dropRecord(id string) {
	os.Remove(a.recordPath(id))
}

// recoverSandboxes hands a plugin (all plugins when name is "") the
// handles of the sandboxes recorded for it. Records of sandboxes the
// plugin no longer knows are dropped, with their network namespaces.
func (a *Agent) recoverSandboxes(ctx context.Context, name string) {
	for _, r := range a.loadRecords() {
		if name != "" && r.Plugin != name {
			continue
		}
		c, err := a.rt.client(r.Plugin)
		if err != nil {
			continue
		}
		if _, err := c.Recover(ctx, &runtimev1.RecoverRequest{Handle: r.Handle}); err != nil {
			if errdefs.IsNotFound(err) {
				a.log.Info("sandbox gone; dropping its record", "sandbox", r.ID, "pod", r.Pod)
				if err := a.detachRecord(ctx, r); err != nil {
					a.log.Warn("detach the network of a sandbox that is gone", "sandbox", r.ID, "error", err)
					continue
				}
				a.removeNetns(r.Netns)
				a.dropRecord(r.ID)
				continue
			}
			a.log.Warn("recover sandbox", "sandbox", r.ID, "pod", r.Pod, "error", err)
		}
	}
}

// ---- images -----------------------------------------------------------

// importArchives imports every image archive in DATA_DIR/import into
// every plugin (like an air-gapped node's preloaded images).
func (a *Agent) importArchives(ctx context.Context) error {
	dir := filepath.Join(a.cfg.DataDir, "import")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".tar") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		err := a.rt.each(func(name string, c *runtimev1.Client) error {
			imgs, err := importArchive(ctx, c, path)
			if err == nil {
				a.log.Info("imported image archive", "archive", path, "plugin", name, "images", imgs)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("import %s: %w", path, err)
		}
	}
	return nil
}

// importArchive streams an archive to a plugin's image service.
func importArchive(ctx context.Context, c *runtimev1.Client, path string) ([]string, error) {
	resp, err := c.ImportFile(ctx, path)
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, img := range resp.Images {
		refs = append(refs, img.Ref)
	}
	return refs, nil
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so that a crash leaves the old or the new content.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
