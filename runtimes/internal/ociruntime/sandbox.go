package ociruntime

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/internal/netns"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"
	"github.com/paddock-dev/paddock/runtimes/internal/sandboxconf"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// sandbox is a pod: a record, a directory with the files its containers
// share (hostname, hosts, resolv.conf) and a pod cgroup.
type sandbox struct {
	// mu serialises the sandbox's lifecycle: stop, remove and creating
	// containers in it. It is taken before a container's mu, never after.
	mu      sync.Mutex
	dir     string
	rec     sandboxRecord // guarded by Plugin.mu for readers, mu for writers
	removed bool          // guarded by mu
}

func loadSandbox(dir string) (*sandbox, error) {
	sb := &sandbox{dir: dir}
	if err := shim.ReadJSON(filepath.Join(dir, "sandbox.json"), &sb.rec); err != nil {
		return nil, err
	}
	if sb.rec.Version != recordVersion {
		return nil, fmt.Errorf("record version %d, want %d", sb.rec.Version, recordVersion)
	}
	if sb.rec.ID != filepath.Base(dir) || sb.rec.Config.Msg == nil {
		return nil, errors.New("record does not match its directory")
	}
	return sb, nil
}

func (sb *sandbox) save() error {
	return shim.WriteJSON(filepath.Join(sb.dir, "sandbox.json"), &sb.rec, shim.Durable)
}

// proto returns the sandbox as the contract's message. The caller holds
// Plugin.mu or sb.mu.
func (sb *sandbox) proto(plugin string) *runtimev1.Sandbox {
	state := runtimev1.SandboxState_SANDBOX_NOTREADY
	if sb.rec.Ready {
		state = runtimev1.SandboxState_SANDBOX_READY
	}
	return &runtimev1.Sandbox{
		Id:        sb.rec.ID,
		Config:    proto.Clone(sb.rec.Config.Msg).(*runtimev1.SandboxConfig),
		State:     state,
		CreatedAt: sb.rec.CreatedAt,
		Handle:    makeHandle(plugin, sb.rec.ID),
	}
}

// validateSandboxConfig checks what the plugin relies on.
func validateSandboxConfig(c *runtimev1.SandboxConfig) error {
	if c == nil {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config", "a sandbox config is required")
	}
	if c.Name == "" {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config.name", "a sandbox name is required")
	}
	if h := c.Hostname; h != "" {
		if len(h) > 64 || strings.ContainsAny(h, " \t\n/\x00") {
			return errdefs.Field(errdefs.ErrInvalidArgument, "config.hostname", fmt.Sprintf("%q is not a valid hostname (at most 64 characters, no spaces or slashes)", h))
		}
	}
	if p := c.NetnsPath; p != "" {
		if !filepath.IsAbs(p) {
			return errdefs.Field(errdefs.ErrInvalidArgument, "config.netns_path", fmt.Sprintf("%q is not an absolute path", p))
		}
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err != nil {
			return errdefs.Field(errdefs.ErrInvalidArgument, "config.netns_path", fmt.Sprintf("network namespace %s: %v", p, err))
		}
		if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
			return errdefs.Field(errdefs.ErrInvalidArgument, "config.netns_path", fmt.Sprintf("%s is not a network namespace (bind-mounted nsfs file or /proc/PID/ns/net)", p))
		}
	}
	if d := c.Dns; d != nil {
		for i, s := range d.Servers {
			if _, err := netip.ParseAddr(s); err != nil {
				return errdefs.Field(errdefs.ErrInvalidArgument, fmt.Sprintf("config.dns.servers[%d]", i), fmt.Sprintf("%q is not an IP address", s))
			}
		}
		for i, s := range d.Searches {
			if s == "" || strings.ContainsAny(s, " \t\n\r\x00") {
				return errdefs.Field(errdefs.ErrInvalidArgument, fmt.Sprintf("config.dns.searches[%d]", i), fmt.Sprintf("%q is not a domain name", s))
			}
		}
		for i, s := range d.Options {
			if s == "" || strings.ContainsAny(s, " \t\n\r\x00") {
				return errdefs.Field(errdefs.ErrInvalidArgument, fmt.Sprintf("config.dns.options[%d]", i), fmt.Sprintf("%q is not a resolver option", s))
			}
		}
	}
	return sandboxconf.CheckResources("config.resources", c.Resources)
}

// CreateSandbox makes a sandbox: its record, the files its containers
// share and its pod cgroup. A sandbox of the same tenant, name, uid and
// attempt is AlreadyExists.
func (p *Plugin) CreateSandbox(ctx context.Context, r *runtimev1.CreateSandboxRequest) (*runtimev1.CreateSandboxResponse, error) {
	if _, err := p.configured(); err != nil {
		return nil, err
	}
	if err := validateSandboxConfig(r.GetConfig()); err != nil {
		return nil, err
	}
	cfg := proto.Clone(r.Config).(*runtimev1.SandboxConfig)
	id := newID()
	sb := &sandbox{
		dir: filepath.Join(p.stateDir, "sandboxes", id),
		rec: sandboxRecord{
			Version:   recordVersion,
			ID:        id,
			CreatedAt: time.Now().UnixNano(),
			NetnsPath: cfg.NetnsPath,
		},
	}
	sb.rec.Config.Msg = cfg
	// Reserve the identity under the lock; the sandbox is visible (and
	// its mu held) while it is being made.
	sb.mu.Lock()
	defer sb.mu.Unlock()
	p.mu.Lock()
	for _, o := range p.sandboxes {
		oc := o.rec.Config.Msg
		if oc.Tenant == cfg.Tenant && oc.Name == cfg.Name && oc.Uid == cfg.Uid && oc.Attempt == cfg.Attempt {
			p.mu.Unlock()
			return nil, errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("sandbox %s/%s (uid %q, attempt %d) already exists as %s", cfg.Tenant, cfg.Name, cfg.Uid, cfg.Attempt, o.rec.ID))
		}
	}
	p.sandboxes[id] = sb
	cg := p.cgroups
	p.mu.Unlock()

	err := p.makeSandbox(sb, cg)
	if err != nil {
		p.cleanupSandbox(sb, cg)
		p.mu.Lock()
		delete(p.sandboxes, id)
		p.mu.Unlock()
		sb.removed = true
		return nil, err
	}
	p.log.Info("sandbox created", "sandbox", id, "tenant", cfg.Tenant, "pod", cfg.Name)
	p.mu.Lock()
	defer p.mu.Unlock()
	return &runtimev1.CreateSandboxResponse{Sandbox: sb.proto(p.opts.Flavor.name())}, nil
}

func (p *Plugin) makeSandbox(sb *sandbox, cg *cgroupLayout) error {
	cfg := sb.rec.Config.Msg
	if err := os.Mkdir(sb.dir, 0o700); err != nil {
		return fmt.Errorf("sandbox dir: %w", err)
	}
	for name, data := range sandboxconf.Files(cfg) {
		// Readable by the containers' users; the directory above is 0700
		// but bind mounts do not traverse it.
		if err := shim.WriteFileAtomic(filepath.Join(sb.dir, name), data, 0o644, shim.Durable); err != nil {
			return fmt.Errorf("sandbox %s: %w", name, err)
		}
	}
	res := cfg.Resources
	if p.opts.Flavor == Runsc && res.GetPids() > 0 {
		// The pod's pids limit holds inside the sandbox (sandboxRlimits);
		// the host's counts the sandbox's own tasks.
		res = proto.Clone(res).(*runtimev1.Resources)
		res.Pids = hostPidsLimit(res.Pids)
	}
	if err := cg.createPod(podCgroup(sb.rec.ID), res); err != nil {
		return fmt.Errorf("pod cgroup: %w", err)
	}
	if sb.rec.NetnsPath == "" {
		path := filepath.Join(sb.dir, "netns")
		sb.rec.OwnNetns = true // from here on, cleanup removes it
		if err := netns.Create(path); err != nil {
			return err
		}
		sb.rec.NetnsPath = path
	}
	if p.opts.Flavor == Runsc {
		if err := p.startGVisorSandbox(context.Background(), sb); err != nil {
			return err
		}
	}
	sb.rec.Ready = true
	return sb.save()
}

// cleanupSandbox removes what makeSandbox made, best effort.
func (p *Plugin) cleanupSandbox(sb *sandbox, cg *cgroupLayout) error {
	var errs []error
	if p.opts.Flavor == Runsc {
		if err := p.deleteGVisorSandbox(context.Background(), sb.rec.ID); err != nil {
			errs = append(errs, err)
		}
		p.releaseNullNetns(sb.rec.ID)
	}
	if err := cg.removeTree(podCgroup(sb.rec.ID)); err != nil {
		errs = append(errs, err)
	}
	if sb.rec.OwnNetns {
		if err := netns.Remove(filepath.Join(sb.dir, "netns")); err != nil {
			errs = append(errs, err)
		}
	}
	// Never delete through a mount that is left.
	if mounts, err := mountsUnder(sb.dir); err != nil || len(mounts) > 0 {
		return errors.Join(append(errs, fmt.Errorf("%v still mounted below %s; not removing it", mounts, sb.dir))...)
	}
	if err := os.RemoveAll(sb.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// lookupSandbox returns sandbox id or NotFound.
func (p *Plugin) lookupSandbox(id string) (*sandbox, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "the plugin is not configured: call SetConfig with a state_dir first")
	}
	sb, ok := p.sandboxes[id]
	if !ok {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %s not found", jsonString(id)))
	}
	return sb, nil
}

// containersOf returns the containers of sandbox id.
func (p *Plugin) containersOf(id string) []*container {
	p.mu.Lock()
	defer p.mu.Unlock()
	var cs []*container
	for _, c := range p.containers {
		if c.rec.SandboxID == id {
			cs = append(cs, c)
		}
	}
	return cs
}

// StopSandbox stops every container of the sandbox (each gets the grace
// period, then SIGKILL) and marks it not ready. A missing sandbox is not
// an error.
func (p *Plugin) StopSandbox(ctx context.Context, r *runtimev1.StopSandboxRequest) (*runtimev1.StopSandboxResponse, error) {
	sb, err := p.lookupSandbox(r.Id)
	if errdefs.IsNotFound(err) {
		return &runtimev1.StopSandboxResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.removed {
		return &runtimev1.StopSandboxResponse{}, nil
	}
	grace := time.Duration(max(r.GracePeriodSeconds, 0)) * time.Second
	if err := p.stopAll(ctx, p.containersOf(sb.rec.ID), grace); err != nil {
		return nil, err
	}
	if p.opts.Flavor == Runsc {
		// Nothing of a stopped pod runs: the sandbox goes too.
		if err := p.deleteGVisorSandbox(ctx, sb.rec.ID); err != nil {
			return nil, fmt.Errorf("stop sandbox %s: %w", sb.rec.ID, err)
		}
	}
	p.mu.Lock()
	sb.rec.Ready = false
	err = sb.save()
	p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", sb.rec.ID, err)
	}
	return &runtimev1.StopSandboxResponse{}, nil
}

// stopAll stops cs in parallel, each with its own stop signal.
func (p *Plugin) stopAll(ctx context.Context, cs []*container, grace time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, len(cs))
	for i, c := range cs {
		wg.Go(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.removed {
				return
			}
			errs[i] = p.stopLocked(ctx, c, grace, 0)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// RemoveSandbox removes the sandbox's containers (killing any still
// running), its pod cgroup and its state. A missing sandbox is not an
// error.
func (p *Plugin) RemoveSandbox(ctx context.Context, r *runtimev1.RemoveSandboxRequest) (*runtimev1.RemoveSandboxResponse, error) {
	sb, err := p.lookupSandbox(r.Id)
	if errdefs.IsNotFound(err) {
		return &runtimev1.RemoveSandboxResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.removed {
		return &runtimev1.RemoveSandboxResponse{}, nil
	}
	cs := p.containersOf(sb.rec.ID)
	var wg sync.WaitGroup
	errs := make([]error, len(cs))
	for i, c := range cs {
		wg.Go(func() { errs[i] = p.removeContainer(ctx, c, true) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("remove sandbox %s: %w", sb.rec.ID, err)
	}
	p.mu.Lock()
	cg := p.cgroups
	p.mu.Unlock()
	if err := p.cleanupSandbox(sb, cg); err != nil {
		return nil, fmt.Errorf("remove sandbox %s: %w", sb.rec.ID, err)
	}
	sb.removed = true
	p.mu.Lock()
	delete(p.sandboxes, sb.rec.ID)
	p.mu.Unlock()
	p.log.Info("sandbox removed", "sandbox", sb.rec.ID)
	return &runtimev1.RemoveSandboxResponse{}, nil
}

// InspectSandbox returns a sandbox.
func (p *Plugin) InspectSandbox(ctx context.Context, r *runtimev1.InspectSandboxRequest) (*runtimev1.Sandbox, error) {
	sb, err := p.lookupSandbox(r.Id)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sandboxProto(sb), nil
}

// sandboxProto returns the sandbox as the contract's message (the caller
// holds p.mu). A gVisor sandbox whose sandbox process died (the host's
// OOM killer ends the whole sandbox when the pod exceeds its memory
// limit) is not ready: its containers have all exited.
func (p *Plugin) sandboxProto(sb *sandbox) *runtimev1.Sandbox {
	v := sb.proto(p.opts.Flavor.name())
	if p.opts.Flavor == Runsc && v.State == runtimev1.SandboxState_SANDBOX_READY && p.gvisorSandboxGone(sb.rec.ID, 0) {
		v.State = runtimev1.SandboxState_SANDBOX_NOTREADY
	}
	return v
}

// ListSandboxes lists the sandboxes matching the filter (id, labels).
func (p *Plugin) ListSandboxes(ctx context.Context, r *runtimev1.ListSandboxesRequest) (*runtimev1.ListSandboxesResponse, error) {
	if _, err := p.configured(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	resp := &runtimev1.ListSandboxesResponse{}
	for _, id := range sortedKeys(p.sandboxes) {
		sb := p.sandboxes[id]
		if r.Id != "" && r.Id != id {
			continue
		}
		if !matchLabels(sb.rec.Config.Msg.Labels, r.Labels) {
			continue
		}
		resp.Sandboxes = append(resp.Sandboxes, p.sandboxProto(sb))
	}
	return resp, nil
}

// Recover re-adopts the sandbox a handle names, with its containers,
// after a plugin restart. The state is reloaded from disk: a container
// that exited while the plugin was down reports the exit its shim
// recorded.
func (p *Plugin) Recover(ctx context.Context, r *runtimev1.RecoverRequest) (*runtimev1.RecoverResponse, error) {
	if _, err := p.configured(); err != nil {
		return nil, err
	}
	id, err := parseHandle(p.opts.Flavor.name(), r.Handle)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	sb, ok := p.sandboxes[id]
	if !ok {
		// Not in memory: perhaps written after this process loaded its
		// state (another process on the same state dir); read it now.
		dir := filepath.Join(p.stateDir, "sandboxes", id)
		loaded, err := loadSandbox(dir)
		if err != nil {
			p.mu.Unlock()
			if isNotExist(err) {
				return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("recover: sandbox %s not found", id))
			}
			return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("recover: sandbox %s: %v", id, err))
		}
		sb = loaded
		p.sandboxes[id] = sb
		if entries, err := os.ReadDir(filepath.Join(p.stateDir, "containers")); err == nil {
			for _, e := range entries {
				if _, known := p.containers[e.Name()]; known || !validID.MatchString(e.Name()) {
					continue
				}
				c, err := loadContainer(filepath.Join(p.stateDir, "containers", e.Name()))
				if err == nil && c.rec.SandboxID == id {
					p.containers[c.rec.ID] = c
				}
			}
		}
	}
	resp := &runtimev1.RecoverResponse{Sandbox: p.sandboxProto(sb)}
	p.mu.Unlock()
	for _, c := range p.containersOf(id) {
		v, err := p.inspect(c)
		if err != nil {
			if errdefs.IsNotFound(err) {
				continue
			}
			return nil, err
		}
		resp.Containers = append(resp.Containers, v)
	}
	sortContainers(resp.Containers)
	p.log.Info("sandbox recovered", "sandbox", id, "containers", len(resp.Containers))
	return resp, nil
}
