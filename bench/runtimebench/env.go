package runtimebench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/paddock-dev/paddock/plugins/pluginhost"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/containerd/containerdtest"
)

// env is what a run measures against: the plugin with the image imported
// and the sandboxes made, the marker FIFO, and the floor's runc.
type env struct {
	cfg   Config
	log   *slog.Logger
	dir   string // the run's temporary directory
	runID string // distinguishes this run's runc containers and cgroups

	marksDir string
	marks    *marks

	host      *pluginhost.Host
	inst      *pluginhost.Instance
	rt        *runtimev1.Client
	info      pluginhost.Info
	sandboxes []string // ids; the sequential phase uses the first

	// template is a container created (never started) in the first
	// sandbox; its bundle is the floor's.
	template string
	spec     []byte // the template's OCI spec

	plugin  *pluginStarter
	floor   *floorStarter // runc run
	twoStep *floorStarter // runc create + runc start

	// The pod starts' (setupPods): the classes' starters, in AllClasses
	// order, the other plugins and the containerd daemon, and the pod
	// floors (nil when not measured).
	pods       []*pluginStarter
	others     []*pluginhost.Instance
	daemon     *containerdtest.Daemon
	podFloor   *floorStarter // runc run, a network namespace of its own
	runscFloor *floorStarter // runsc run, a gVisor sandbox of its own

	// wasSubreaper is this process's child-subreaper flag before the run.
	wasSubreaper bool
}

// setup launches the plugin and prepares everything the phases need. On
// error it has undone what it did.
func setup(ctx context.Context, cfg Config, log *slog.Logger) (e *env, err error) {
	dir, err := os.MkdirTemp(cfg.DataDir, "pdb3-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	e = &env{cfg: cfg, log: log, dir: dir, runID: fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)}
	defer func() {
		if err != nil {
			if cerr := e.close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
			}
			e = nil
		}
	}()
	e.floor = e.newFloor("runc-run", "floor: `runc run`", cfg.Runc, "runc")
	e.twoStep = e.newFloor("runc-cs", "floor: `runc create` + `runc start`", cfg.Runc, "runc")
	e.twoStep.twoStep = true
	// The processes of containers that runc create started become this
	// process's children when runc exits, to be reaped here.
	if e.wasSubreaper, err = setSubreaper(true); err != nil {
		return e, err
	}

	e.marksDir = filepath.Join(dir, "marks")
	if e.marks, err = openMarks(e.marksDir); err != nil {
		return e, err
	}

	// Short: the plugin's socket path lies below it.
	e.host, err = pluginhost.New(pluginhost.Config{StateDir: filepath.Join(dir, "h"), Logger: quieter(log)})
	if err != nil {
		return e, fmt.Errorf("plugin host (a shorter data directory helps if the path is too long): %w", err)
	}
	if e.inst, e.rt, err = e.launch(ctx, "b3", cfg.Plugin, map[string]any{"runcPath": cfg.Runc}); err != nil {
		return e, err
	}
	e.info = e.inst.Info()
	e.plugin = &pluginStarter{e: e, short: "plugin", title: "plugin: CreateContainer + StartContainer", rt: e.rt, info: e.info, ids: map[string]started{}}
	n := max(1, cfg.Sandboxes)
	for i := range n {
		name := fmt.Sprintf("b3-%s-%d", e.runID, i)
		resp, err := e.rt.CreateSandbox(ctx, &runtimev1.CreateSandboxRequest{Config: &runtimev1.SandboxConfig{
			Name: name, Tenant: benchTenant, Uid: name, Hostname: fmt.Sprintf("b3-%d", i),
		}})
		if err != nil {
			return e, fmt.Errorf("CreateSandbox: %w", err)
		}
		e.sandboxes = append(e.sandboxes, resp.Sandbox.Id)
	}
	return e, e.makeTemplate(ctx)
}

// launch launches the runtime plugin at path through the plugin host
// with config plus the marker directory as its allowed mount root, and
// imports the image through it.
func (e *env) launch(ctx context.Context, name, path string, config map[string]any) (*pluginhost.Instance, *runtimev1.Client, error) {
	config["allowedMountRoots"] = []string{e.marksDir}
	pcfg, err := json.Marshal(config)
	if err != nil {
		return nil, nil, err
	}
	e.log.Info("launching the runtime plugin", "plugin", path)
	inst, err := e.host.Launch(ctx, pluginhost.RuntimeKind, name, path, pcfg)
	if err != nil {
		return nil, nil, fmt.Errorf("launch %s: %w", path, err)
	}
	rt, err := inst.Runtime()
	if err == nil {
		e.log.Info("importing the image", "plugin", path, "archive", e.cfg.ImageArchive)
		err = e.importImage(ctx, rt)
	}
	if err != nil {
		return nil, nil, errors.Join(err, inst.Kill(ctx))
	}
	return inst, rt, nil
}

// importImage sends the image archive through a plugin's image service.
func (e *env) importImage(ctx context.Context, rt *runtimev1.Client) error {
	f, err := os.Open(e.cfg.ImageArchive)
	if err != nil {
		return fmt.Errorf("image archive: %w", err)
	}
	defer f.Close()
	stream, err := rt.ImportImage(ctx)
	if err != nil {
		return fmt.Errorf("ImportImage: %w", err)
	}
	buf := make([]byte, 1<<20)
	for {
		n, rerr := f.Read(buf)
		if n > 0 {
			if err := stream.Send(&runtimev1.ImportChunk{Data: buf[:n]}); err != nil {
				return fmt.Errorf("ImportImage: %w", err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("image archive: %w", rerr)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("ImportImage %s: %w", e.cfg.ImageArchive, err)
	}
	var refs []string
	for _, img := range resp.Images {
		if img.Ref == e.cfg.Image {
			return nil
		}
		refs = append(refs, img.Ref)
	}
	return fmt.Errorf("image %q: not in the archive %s, which holds %q", e.cfg.Image, e.cfg.ImageArchive, refs)
}

// containerConfig is the container every start runs: the image, the
// process that writes tag to the marker FIFO, and the FIFO's directory.
func (e *env) containerConfig(tag string) *runtimev1.ContainerConfig {
	return &runtimev1.ContainerConfig{
		Name:    tag,
		Image:   e.cfg.Image,
		Command: command(tag),
		Mounts:  []*runtimev1.Mount{{HostPath: e.marksDir, ContainerPath: markDir}},
	}
}

// makeTemplate creates the container whose bundle the floor runs and
// reads its OCI spec. The plugin keeps a container's bundle next to its
// log (STATE/containers/ID/{container.log,bundle}).
func (e *env) makeTemplate(ctx context.Context) error {
	resp, err := e.rt.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: e.sandboxes[0], Config: e.containerConfig("template")})
	if err != nil {
		return fmt.Errorf("CreateContainer (the floor's template): %w", err)
	}
	e.template = resp.Container.Id
	if resp.Container.LogPath == "" {
		return errors.New("the plugin reports no log path for the template container; cannot find its bundle")
	}
	path := filepath.Join(filepath.Dir(resp.Container.LogPath), "bundle", "config.json")
	if e.spec, err = os.ReadFile(path); err != nil {
		return fmt.Errorf("the template container's OCI spec (the floor runs its bundle): %w", err)
	}
	var spec struct {
		Root *struct {
			Path string `json:"path"`
		} `json:"root"`
	}
	if err := json.Unmarshal(e.spec, &spec); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if spec.Root == nil || !filepath.IsAbs(spec.Root.Path) {
		return fmt.Errorf("%s: root.path is not absolute; the floor's bundles live elsewhere and need it to be", path)
	}
	return nil
}

// close removes everything the run made: containers (the plugin's and the
// floor's), sandboxes, the plugin, cgroups and the temporary directory.
// It goes on past errors and returns them all.
func (e *env) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var errs []error
	errs = append(errs, e.floor.removeAll(ctx), e.twoStep.removeAll(ctx), e.podFloor.removeAll(ctx), e.runscFloor.removeAll(ctx))
	for _, p := range e.pods {
		errs = append(errs, p.removeAll(ctx))
	}
	errs = append(errs, e.plugin.removeAll(ctx))
	if e.rt != nil {
		if e.template != "" {
			if _, err := e.rt.RemoveContainer(ctx, &runtimev1.RemoveContainerRequest{Id: e.template, Force: true}); err != nil {
				errs = append(errs, fmt.Errorf("RemoveContainer %s (template): %w", e.template, err))
			}
		}
		for _, id := range e.sandboxes {
			errs = append(errs, removeSandbox(ctx, e.rt, id))
		}
	}
	for _, inst := range append(e.others, e.inst) {
		if inst != nil {
			errs = append(errs, inst.Kill(ctx))
		}
	}
	if e.host != nil {
		errs = append(errs, e.host.Close())
	}
	if e.daemon != nil {
		errs = append(errs, e.daemon.Stop())
	}
	errs = append(errs, e.removeContainerdPodCgroups())
	if e.marks != nil {
		errs = append(errs, e.marks.close())
	}
	errs = append(errs, e.floor.removeCgroups(), e.twoStep.removeCgroups(), e.podFloor.removeCgroups(), e.runscFloor.removeCgroups())
	errs = append(errs, e.restoreSubreaper())
	if err := unmountUnder(e.dir); err != nil {
		errs = append(errs, err)
	} else if err := os.RemoveAll(e.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// unmountUnder detaches whatever is still mounted at or below dir (left by
// a removal that failed), deepest first, so that removing dir deletes only
// the run's own files.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var mounts []string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if mp := unescapeMount(f[4]); mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, mp := range mounts {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("not removing %s: %w", dir, errors.Join(errs...))
	}
	return nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if c, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// quieter returns log for the plugin host with the plugin's per-container
// info lines dropped unless log shows debug: they would drown the
// progress.
func quieter(log *slog.Logger) *slog.Logger {
	if log.Enabled(context.Background(), slog.LevelDebug) {
		return log
	}
	return slog.New(minLevel{log.Handler(), slog.LevelWarn})
}

// minLevel passes on only records at or above its level.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.level}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.level}
}

// restoreSubreaper gives this process back the child-subreaper flag it
// had before the run.
func (e *env) restoreSubreaper() error {
	if e.wasSubreaper {
		return nil
	}
	_, err := setSubreaper(false)
	return err
}

// Linux prctl options for the child-subreaper flag.
const (
	prSetChildSubreaper = 36
	prGetChildSubreaper = 37
)

// setSubreaper sets this process's child-subreaper flag and returns its
// previous value.
func setSubreaper(on bool) (was bool, err error) {
	var old int32
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prGetChildSubreaper, uintptr(unsafe.Pointer(&old)), 0); errno != 0 {
		return false, fmt.Errorf("prctl PR_GET_CHILD_SUBREAPER: %w", errno)
	}
	v := uintptr(0)
	if on {
		v = 1
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, v, 0); errno != 0 {
		return false, fmt.Errorf("prctl PR_SET_CHILD_SUBREAPER: %w", errno)
	}
	return old != 0, nil
}
