package ociruntime

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/internal/netns"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/oci"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

// Options are what New needs besides the configuration SetConfig gives.
type Options struct {
	// Flavor is the OCI runtime driven: Runc (the default) or Runsc.
	Flavor Flavor
	// Logger receives the plugin's logs; default JSON on stderr in the
	// shape go-plugin re-emits.
	Logger *slog.Logger
	// Version is the plugin's version, answered by Info.
	Version string
	// Images resolves image references and prepares root filesystems.
	// Default: the shared image store (runtimes/internal/oci) at the
	// configuration's imageStoreRoot, which then also serves the Images
	// RPCs.
	Images Images
	// ImageService serves the Images RPCs when Images is set; without it
	// they answer ErrNotImplemented.
	ImageService runtimev1.ImageManager
	// ShimPath is the shim binary, started as "ShimPath DIR" for every
	// container (cmd/paddock-runc-shim; its main calls shim.Run), when the
	// configuration names none (shimPath). Default: ShimBinary next to
	// this process's executable, else that executable itself as "EXE shim
	// DIR" (its main must then call RunShim, see IsShim).
	ShimPath string
	// HealthInterval is how often Health re-checks runc; default 5 s.
	// An event is sent on every change and at least every 30 s.
	HealthInterval time.Duration
}

// Plugin is the runc runtime plugin. Create it with New; it serves
// nothing until SetConfig has named its state directory.
type Plugin struct {
	log  *slog.Logger
	opts Options

	mu         sync.Mutex
	cfg        *Config // effective, defaults filled; nil before SetConfig
	rawConfig  []byte
	stateDir   string
	runc       string // absolute path of the runc binary
	shim       shimCommand
	cgroups    *cgroupLayout
	images     Images                 // nil before SetConfig
	imageSvc   runtimev1.ImageManager // nil: no image service
	sandboxes  map[string]*sandbox
	containers map[string]*container
}

var _ runtimev1.Plugin = (*Plugin)(nil)

// New returns a plugin with opts.
func New(opts Options) *Plugin {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{ReplaceAttr: hclogKeys}))
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = 5 * time.Second
	}
	return &Plugin{
		log:        opts.Logger.With("plugin", opts.Flavor.name()),
		opts:       opts,
		sandboxes:  map[string]*sandbox{},
		containers: map[string]*container{},
	}
}

// hclogKeys renames slog's keys to the ones go-plugin's host parses out
// of a plugin's JSON log lines (hclog's).
func hclogKeys(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.MessageKey:
		a.Key = "@message"
	case slog.LevelKey:
		a.Key = "@level"
		a.Value = slog.StringValue(strings.ToLower(a.Value.String()))
	case slog.TimeKey:
		a.Key = "@timestamp"
		a.Value = slog.StringValue(a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
	}
	return a
}

// Info names the plugin.
func (p *Plugin) Info(context.Context, *runtimev1.InfoRequest) (*runtimev1.InfoResponse, error) {
	v := p.opts.Version
	if v == "" {
		v = "dev"
	}
	return &runtimev1.InfoResponse{
		Name:         p.opts.Flavor.name(),
		Version:      v,
		ApiVersions:  []string{runtimev1.APIVersion},
		ConfigSchema: p.opts.Flavor.schema(),
	}, nil
}

// Capabilities says what the plugin can do.
func (p *Plugin) Capabilities(context.Context, *runtimev1.CapabilitiesRequest) (*runtimev1.CapabilitiesResponse, error) {
	return p.opts.Flavor.capabilities(), nil
}

// SetConfig validates and applies the configuration. The first call with a
// state directory loads the state found there; later calls may change the
// configuration but not the state directory.
func (p *Plugin) SetConfig(ctx context.Context, r *runtimev1.SetConfigRequest) (*runtimev1.SetConfigResponse, error) {
	stateDir, err := runtimev1.CheckSetConfig(r)
	if err != nil {
		return nil, err
	}
	flavor := p.opts.Flavor
	parsed, err := parseConfig(flavor, r.Config)
	if err != nil {
		return nil, err
	}
	cfg := parsed.withDefaults(flavor, stateDir)
	runcPath, err := resolveRunc(flavor.binary(&cfg))
	if err != nil {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, flavor.binaryField(), fmt.Sprintf("%s binary %q not found: %v", flavor.name(), flavor.binary(&cfg), err))
	}
	shimPath := cmp.Or(cfg.ShimPath, p.opts.ShimPath)
	shimCmd, shimFallback, err := resolveShim(shimPath)
	if err != nil {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "shimPath", fmt.Sprintf("shim binary %q: %v", shimPath, err))
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stateDir != "" && p.stateDir != stateDir {
		return nil, errdefs.Field(errdefs.ErrFailedPrecondition, "state_dir", fmt.Sprintf("the plugin already keeps its state in %s; restart it to use %s", p.stateDir, stateDir))
	}
	if p.cfg != nil && p.opts.Images == nil && p.cfg.ImageStoreRoot != cfg.ImageStoreRoot {
		return nil, errdefs.Field(errdefs.ErrFailedPrecondition, "imageStoreRoot", fmt.Sprintf("the plugin already uses the image store in %s; restart it to use %s", p.cfg.ImageStoreRoot, cfg.ImageStoreRoot))
	}
	images, imageSvc := p.opts.Images, p.opts.ImageService
	if images == nil {
		store, err := oci.Open(cfg.ImageStoreRoot)
		if err != nil {
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, "imageStoreRoot", err.Error())
		}
		images = storeImages{store: store}
		imageSvc = &storeService{store: store, insecure: slices.Clone(cfg.InsecureRegistries), log: p.log}
	}
	if p.stateDir == "" {
		layout, err := detectCgroups()
		if err != nil {
			return nil, errdefs.New(errdefs.ErrFailedPrecondition, "cgroups: "+err.Error())
		}
		for _, d := range []string{stateDir, filepath.Join(stateDir, "sandboxes"), filepath.Join(stateDir, "containers"), filepath.Join(stateDir, flavor.name()), filepath.Join(stateDir, "volumes"), cfg.RootDir} {
			if d == "" {
				continue
			}
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, fmt.Errorf("state dir: %w", err)
			}
		}
		if err := os.Chmod(stateDir, 0o700); err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
		p.cgroups = layout
		p.stateDir = stateDir
		if err := p.loadLocked(); err != nil {
			return nil, err
		}
		p.log.Info("state loaded", "stateDir", stateDir, "cgroups", layout.String(),
			"sandboxes", len(p.sandboxes), "containers", len(p.containers))
	}
	p.cfg = &cfg
	p.rawConfig = bytes.Clone(r.Config)
	p.runc = runcPath
	if shimFallback {
		p.log.Warn("the shim binary is missing; the plugin's own binary runs as the shim, which makes every container start slower",
			"want", filepath.Join(filepath.Dir(shimCmd.Path), ShimBinary), "shim", shimCmd.Path)
	}
	p.shim = shimCmd
	p.images, p.imageSvc = images, imageSvc
	return &runtimev1.SetConfigResponse{}, nil
}

// configured returns the configuration, or FailedPrecondition before
// SetConfig.
func (p *Plugin) configured() (*Config, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "the plugin is not configured: call SetConfig with a state_dir first")
	}
	return p.cfg, nil
}

// Health streams the plugin's health: runc must be present and runnable,
// the state directory writable and the image store usable.
func (p *Plugin) Health(_ *runtimev1.HealthRequest, s grpc.ServerStreamingServer[runtimev1.HealthEvent]) error {
	return runtimev1.StreamHealth(s.Context(), s.Send, p.opts.HealthInterval, p.checkHealth)
}

// Health condition types (runtime.proto's RuntimeCondition).
const (
	conditionRuntimeReady = "RuntimeReady"
	conditionImagesReady  = "ImagesReady"
)

// checkHealth reports two conditions: RuntimeReady ("runc --version"
// answers and the state directory takes a new file) and, once
// configured, ImagesReady (the image store's root takes a new file). The
// event is healthy when every condition holds; its description is runc's
// version or the first failed condition's message.
func (p *Plugin) checkHealth(ctx context.Context) *runtimev1.HealthEvent {
	ev := &runtimev1.HealthEvent{Timestamp: time.Now().UnixNano()}
	p.mu.Lock()
	runcPath, stateDir := p.runc, p.stateDir
	var imageRoot string
	if p.cfg != nil {
		imageRoot = p.cfg.ImageStoreRoot
	}
	p.mu.Unlock()
	runtime := &runtimev1.RuntimeCondition{Type: conditionRuntimeReady}
	ev.Conditions = append(ev.Conditions, runtime)
	version, err := runcVersion(ctx, p.opts.Flavor, runcPath)
	switch {
	case err != nil:
		runtime.Reason, runtime.Message = "RuntimeUnavailable", err.Error()
	case stateDir == "":
		runtime.Status, runtime.Message = true, version+" (not configured yet)"
	default:
		if err := probeWritable(stateDir); err != nil {
			runtime.Reason, runtime.Message = "StateDirNotWritable", "state directory: "+err.Error()
		} else {
			runtime.Status, runtime.Message = true, version
		}
	}
	if imageRoot != "" {
		images := &runtimev1.RuntimeCondition{Type: conditionImagesReady, Status: true, Message: "image store " + imageRoot}
		if err := probeWritable(imageRoot); err != nil {
			images.Status, images.Reason, images.Message = false, "ImageStoreUnusable", "image store: "+err.Error()
		}
		ev.Conditions = append(ev.Conditions, images)
	}
	ev.Healthy, ev.Description = true, runtime.Message
	for _, c := range ev.Conditions {
		if !c.Status {
			ev.Healthy, ev.Description = false, c.Message
			break
		}
	}
	return ev
}

// runcVersion returns the first line of "runc --version" (runc looked up
// in PATH when runcPath is empty, before SetConfig).
func runcVersion(ctx context.Context, flavor Flavor, runcPath string) (string, error) {
	if runcPath == "" {
		var err error
		if runcPath, err = resolveRunc(flavor.defaultBinary()); err != nil {
			return "", fmt.Errorf("%s not found in PATH", flavor.name())
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, runcPath, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version failed: %v: %s", runcPath, err, bytes.TrimSpace(out))
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return first, nil
}

// probeWritable checks that dir is a directory a file can be created in.
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".health-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

// loadLocked reads every record under the state directory into memory.
// Records that cannot be read are logged and skipped, never fatal: one
// corrupt file must not take the node's other pods down.
func (p *Plugin) loadLocked() error {
	sbDir := filepath.Join(p.stateDir, "sandboxes")
	entries, err := os.ReadDir(sbDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !validID.MatchString(e.Name()) {
			continue
		}
		sb, err := loadSandbox(filepath.Join(sbDir, e.Name()))
		if err != nil {
			p.log.Warn("sandbox record unreadable", "sandbox", e.Name(), "err", err)
			continue
		}
		p.restoreSandbox(sb)
		p.sandboxes[sb.rec.ID] = sb
	}
	ctDir := filepath.Join(p.stateDir, "containers")
	entries, err = os.ReadDir(ctDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !validID.MatchString(e.Name()) {
			continue
		}
		c, err := loadContainer(filepath.Join(ctDir, e.Name()))
		if err != nil {
			p.log.Warn("container record unreadable", "container", e.Name(), "err", err)
			continue
		}
		if _, ok := p.sandboxes[c.rec.SandboxID]; !ok {
			p.log.Warn("container of a missing sandbox", "container", c.rec.ID, "sandbox", c.rec.SandboxID)
		}
		p.containers[c.rec.ID] = c
	}
	return nil
}

// restoreSandbox re-creates what a host reboot takes from a ready
// sandbox: its pod cgroup (with the pod's limits) and the network
// namespace it owns. Failures are logged; the sandbox stays listed so that
// the agent can stop and remove it.
func (p *Plugin) restoreSandbox(sb *sandbox) {
	if !sb.rec.Ready {
		return
	}
	pod := podCgroup(sb.rec.ID)
	if _, err := os.Stat(p.cgroups.dir("memory", pod)); os.IsNotExist(err) {
		if err := p.cgroups.createPod(pod, sb.rec.Config.Msg.Resources); err != nil {
			p.log.Warn("restore the pod cgroup", "sandbox", sb.rec.ID, "err", err)
		}
	}
	if sb.rec.OwnNetns {
		var st unix.Statfs_t
		if err := unix.Statfs(sb.rec.NetnsPath, &st); err != nil || st.Type != unix.NSFS_MAGIC {
			netns.Remove(sb.rec.NetnsPath)
			if err := netns.Create(sb.rec.NetnsPath); err != nil {
				p.log.Warn("restore the sandbox network namespace", "sandbox", sb.rec.ID, "err", err)
			}
		}
	}
}

// matchLabels reports whether labels has every pair of want.
func matchLabels(labels, want map[string]string) bool {
	for k, v := range want {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// jsonString quotes s as JSON, for messages.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
