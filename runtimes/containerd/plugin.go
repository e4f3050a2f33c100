package containerd

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/oci"
	"google.golang.org/grpc"
)

// pluginName is the name Info answers and RuntimeClass.spec.plugin uses.
const pluginName = "containerd"

// Options are what New needs besides the configuration SetConfig gives.
type Options struct {
	// Logger receives the plugin's logs; default JSON on stderr in the
	// shape go-plugin re-emits.
	Logger *slog.Logger
	// Version is the plugin's version, answered by Info.
	Version string
	// LoggerPath is the binary containerd's shim starts to write a
	// container's output to its log file, as "LoggerPath
	// paddock-container-log DIR" (its main must call RunLogger, see
	// IsLogger). Default: this process's executable.
	LoggerPath string
	// HealthInterval is how often Health re-checks the daemon; default
	// 5 s. An event is sent on every change and at least every 30 s.
	HealthInterval time.Duration
}

// Plugin is the containerd runtime plugin. Create it with New; it serves
// nothing until SetConfig has named its state directory and daemon.
type Plugin struct {
	log  *slog.Logger
	opts Options

	mu         sync.Mutex
	cfg        *Config // nil before SetConfig
	stateDir   string
	d          *daemon
	cgroups    *cgroupHost
	staging    *oci.Store
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
		log:        opts.Logger.With("plugin", pluginName),
		opts:       opts,
		sandboxes:  map[string]*sandbox{},
		containers: map[string]*container{},
	}
}

// hclogKeys renames slog's keys to the ones go-plugin's host parses out of
// a plugin's JSON log lines.
func hclogKeys(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.MessageKey:
		a.Key = "@message"
	case slog.LevelKey:
		a.Key, a.Value = "@level", slog.StringValue(strings.ToLower(a.Value.String()))
	case slog.TimeKey:
		a.Key, a.Value = "@timestamp", slog.StringValue(a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
	}
	return a
}

// Info names the plugin.
func (p *Plugin) Info(context.Context, *runtimev1.InfoRequest) (*runtimev1.InfoResponse, error) {
	v := p.opts.Version
	if v == "" {
		v = "dev"
	}
	return &runtimev1.InfoResponse{Name: pluginName, Version: v, ApiVersions: []string{runtimev1.APIVersion}, ConfigSchema: configSchema}, nil
}

// Capabilities says what the plugin can do. The isolation class is that
// of the default handler's shim (runc: namespace, the RuntimeClass
// "containerd"); handlers whose shim isolates otherwise (runsc:
// userspace-kernel, "containerd-gvisor") are in handler_isolation.
func (p *Plugin) Capabilities(context.Context, *runtimev1.CapabilitiesRequest) (*runtimev1.CapabilitiesResponse, error) {
	runtimes, def := map[string]string{defaultHandler: runcRuntime}, defaultHandler
	p.mu.Lock()
	if p.cfg != nil {
		runtimes, def = p.cfg.Runtimes, p.cfg.DefaultHandler
	}
	p.mu.Unlock()
	class := isolation(runtimes[def])
	var byHandler map[string]runtimev1.IsolationClass
	for h, rt := range runtimes {
		if c := isolation(rt); c != class {
			if byHandler == nil {
				byHandler = map[string]runtimev1.IsolationClass{}
			}
			byHandler[h] = c
		}
	}
	return &runtimev1.CapabilitiesResponse{
		IsolationClass:   class,
		HandlerIsolation: byHandler,
		Exec:             true,
		ExecTty:          true,
		Signals:          true,
		UpdateResources:  true,
		ReadOnlyRootfs:   true,
		// containerd's shims keep the containers while the plugin is away.
		ContainersTiedToPlugin: false,
		Handlers:               slices.Sorted(maps.Keys(runtimes)),
	}, nil
}

// SetConfig validates and applies the configuration. The first call loads
// the state directory's sandboxes and finds their containers in
// containerd; later calls may change the configuration but not the state
// directory.
func (p *Plugin) SetConfig(ctx context.Context, r *runtimev1.SetConfigRequest) (*runtimev1.SetConfigResponse, error) {
	stateDir, err := runtimev1.CheckSetConfig(r)
	if err != nil {
		return nil, err
	}
	cfg, err := parseConfig(r.Config, stateDir)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stateDir != "" && p.stateDir != stateDir {
		return nil, errdefs.Field(errdefs.ErrFailedPrecondition, "state_dir", fmt.Sprintf("the plugin already keeps its state in %s; restart it to use %s", p.stateDir, stateDir))
	}
	if p.cfg != nil && p.cfg.Address != cfg.Address {
		return nil, errdefs.Field(errdefs.ErrFailedPrecondition, "address", fmt.Sprintf("the plugin already uses the daemon at %s; restart it to use %s", p.cfg.Address, cfg.Address))
	}
	if p.cfg != nil && (p.cfg.NamespacePrefix != cfg.NamespacePrefix || p.cfg.ImageNamespace != cfg.ImageNamespace) {
		return nil, errdefs.Field(errdefs.ErrFailedPrecondition, "namespacePrefix", "the namespaces of a running plugin cannot change; restart it")
	}
	if p.stateDir == "" {
		cg, err := detectCgroupHost()
		if err != nil {
			return nil, errdefs.New(errdefs.ErrFailedPrecondition, "cgroups: "+err.Error())
		}
		for _, dir := range []string{"sandboxes", "containers", "volumes", "staging"} {
			if err := os.MkdirAll(filepath.Join(stateDir, dir), 0o700); err != nil {
				return nil, fmt.Errorf("state dir: %w", err)
			}
		}
		if err := os.Chmod(stateDir, 0o700); err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
		staging, err := oci.Open(filepath.Join(stateDir, "staging"))
		if err != nil {
			return nil, err
		}
		d, err := dial(cfg.Address)
		if err != nil {
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, "address", err.Error())
		}
		if _, err := d.serverVersion(ctx); err != nil {
			d.close()
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, "address", fmt.Sprintf("no containerd answers at %s: %v", cfg.Address, err))
		}
		p.d, p.cgroups, p.staging, p.stateDir, p.cfg = d, cg, staging, stateDir, cfg
		if err := p.loadLocked(ctx); err != nil {
			p.d, p.stateDir, p.cfg = nil, "", nil
			d.close()
			return nil, err
		}
		p.log.Info("state loaded", "stateDir", stateDir, "address", cfg.Address, "sandboxes", len(p.sandboxes), "containers", len(p.containers))
	}
	if err := writeRunscShimConfig(stateDir, cfg); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	p.cfg = cfg
	return &runtimev1.SetConfigResponse{}, nil
}

// loadLocked reads the sandbox records and finds their containers in
// containerd. An unreadable record is logged and skipped.
func (p *Plugin) loadLocked(ctx context.Context) error {
	dir := filepath.Join(p.stateDir, "sandboxes")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	namespaces := map[string]bool{}
	for _, e := range entries {
		if !validID.MatchString(e.Name()) {
			continue
		}
		rec, err := readSandboxRecord(filepath.Join(dir, e.Name()))
		if err != nil {
			p.log.Warn("sandbox record unreadable", "sandbox", e.Name(), "err", err)
			continue
		}
		p.sandboxes[rec.ID] = &sandbox{dir: filepath.Join(dir, rec.ID), rec: rec}
		namespaces[rec.Namespace] = true
	}
	for ns := range namespaces {
		resp, err := p.d.containers.List(inNamespace(ctx, ns), &containersapi.ListContainersRequest{})
		if err != nil {
			return fmt.Errorf("list the containers of namespace %s: %w", ns, err)
		}
		for _, c := range resp.Containers {
			sb := c.Labels[labelSandbox]
			if _, ok := p.sandboxes[sb]; !ok || !validID.MatchString(c.ID) {
				continue
			}
			p.containers[c.ID] = &container{id: c.ID, ns: ns, sandboxID: sb, dir: filepath.Join(p.stateDir, "containers", c.ID)}
		}
	}
	return nil
}

// configured returns the configuration and daemon, or FailedPrecondition
// before SetConfig.
func (p *Plugin) configured() (*Config, *daemon, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return nil, nil, errdefs.New(errdefs.ErrFailedPrecondition, "the plugin is not configured: call SetConfig with a state_dir and the daemon's address first")
	}
	return p.cfg, p.d, nil
}

// Health streams the plugin's health: the daemon must answer, the state
// directory take files and the image namespace be listable.
func (p *Plugin) Health(_ *runtimev1.HealthRequest, s grpc.ServerStreamingServer[runtimev1.HealthEvent]) error {
	return runtimev1.StreamHealth(s.Context(), s.Send, p.opts.HealthInterval, p.checkHealth)
}

func (p *Plugin) checkHealth(ctx context.Context) *runtimev1.HealthEvent {
	ev := &runtimev1.HealthEvent{Timestamp: time.Now().UnixNano()}
	runtime := &runtimev1.RuntimeCondition{Type: "RuntimeReady"}
	ev.Conditions = append(ev.Conditions, runtime)
	p.mu.Lock()
	cfg, d, stateDir := p.cfg, p.d, p.stateDir
	p.mu.Unlock()
	if cfg == nil {
		runtime.Status, runtime.Message = true, "not configured yet"
	} else if v, err := d.serverVersion(ctx); err != nil {
		runtime.Reason, runtime.Message = "ContainerdUnavailable", fmt.Sprintf("containerd at %s: %v", cfg.Address, err)
	} else if err := probeWritable(stateDir); err != nil {
		runtime.Reason, runtime.Message = "StateDirNotWritable", "state directory: "+err.Error()
	} else {
		runtime.Status, runtime.Message = true, "containerd "+v+" at "+cfg.Address
		images := &runtimev1.RuntimeCondition{Type: "ImagesReady", Status: true, Message: "images in containerd namespace " + cfg.ImageNamespace}
		lctx, cancel := context.WithTimeout(inNamespace(ctx, cfg.ImageNamespace), 5*time.Second)
		if _, err := d.images.List(lctx, &imagesapi.ListImagesRequest{}); err != nil {
			images.Status, images.Reason, images.Message = false, "ImageServiceUnavailable", "containerd images: "+err.Error()
		}
		cancel()
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

func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".health-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
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
