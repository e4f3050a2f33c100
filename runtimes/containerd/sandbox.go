package containerd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/internal/netns"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/sandboxconf"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// sandbox is a pod: the plugin's record, a directory with the files its
// containers share (hostname, hosts, resolv.conf), a pod cgroup with the
// pod's limits and the network namespace its containers join. There is no
// pause container.
type sandbox struct {
	// mu serialises the sandbox's lifecycle (stop, remove, creating
	// containers in it); it is taken before a container's mu.
	mu      sync.Mutex
	dir     string
	rec     *sandboxRecord // Ready guarded by Plugin.mu for readers, mu for writers
	removed bool           // guarded by mu
}

// proto returns the sandbox as the contract's message. The caller holds
// Plugin.mu or sb.mu.
func (sb *sandbox) proto() *runtimev1.Sandbox {
	state := runtimev1.SandboxState_SANDBOX_NOTREADY
	if sb.rec.Ready {
		state = runtimev1.SandboxState_SANDBOX_READY
	}
	return &runtimev1.Sandbox{Id: sb.rec.ID, Config: proto.Clone(sb.rec.cfg).(*runtimev1.SandboxConfig), State: state,
		CreatedAt: sb.rec.CreatedAt, Handle: makeHandle(sb.rec.ID)}
}

// checkSandboxConfig checks what the plugin relies on.
func checkSandboxConfig(c *runtimev1.SandboxConfig) error {
	if c == nil {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config", "a sandbox config is required")
	}
	if c.Name == "" {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config.name", "a sandbox name is required")
	}
	if c.Tenant != "" && !namespaceRE.MatchString(c.Tenant) {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config.tenant", fmt.Sprintf("%q cannot name a containerd namespace (letters, digits and single . _ - between them)", c.Tenant))
	}
	if h := c.Hostname; len(h) > 64 || strings.ContainsAny(h, " \t\n/\x00") {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config.hostname", fmt.Sprintf("%q is not a valid hostname (at most 64 characters, no spaces or slashes)", h))
	}
	if p := c.NetnsPath; p != "" {
		var st unix.Statfs_t
		if !filepath.IsAbs(p) {
			return errdefs.Field(errdefs.ErrInvalidArgument, "config.netns_path", fmt.Sprintf("%q is not an absolute path", p))
		}
		if err := unix.Statfs(p, &st); err != nil {
			return errdefs.Field(errdefs.ErrInvalidArgument, "config.netns_path", fmt.Sprintf("network namespace %s: %v", p, err))
		}
		if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
			return errdefs.Field(errdefs.ErrInvalidArgument, "config.netns_path", fmt.Sprintf("%s is not a network namespace (a bind-mounted nsfs file or /proc/PID/ns/net)", p))
		}
	}
	if d := c.Dns; d != nil {
		for i, s := range d.Servers {
			if _, err := netip.ParseAddr(s); err != nil {
				return errdefs.Field(errdefs.ErrInvalidArgument, fmt.Sprintf("config.dns.servers[%d]", i), fmt.Sprintf("%q is not an IP address", s))
			}
		}
		for field, list := range map[string][]string{"searches": d.Searches, "options": d.Options} {
			for i, s := range list {
				if s == "" || strings.ContainsAny(s, " \t\n\r\x00") {
					return errdefs.Field(errdefs.ErrInvalidArgument, fmt.Sprintf("config.dns.%s[%d]", field, i), fmt.Sprintf("%q has blanks or is empty", s))
				}
			}
		}
	}
	return sandboxconf.CheckResources("config.resources", c.Resources)
}

// CreateSandbox makes a sandbox: its record, shared files, pod cgroup and,
// when the config names no network namespace, one of its own. A sandbox of
// the same tenant, name, uid and attempt is AlreadyExists.
func (p *Plugin) CreateSandbox(ctx context.Context, r *runtimev1.CreateSandboxRequest) (*runtimev1.CreateSandboxResponse, error) {
	cfg, d, err := p.configured()
	if err != nil {
		return nil, err
	}
	if err := checkSandboxConfig(r.GetConfig()); err != nil {
		return nil, err
	}
	runtime, err := cfg.runtimeFor(r.Config.Handler)
	if err != nil {
		return nil, err
	}
	c := proto.Clone(r.Config).(*runtimev1.SandboxConfig)
	id := newID()
	rec := &sandboxRecord{Version: recordVersion, ID: id, CreatedAt: time.Now().UnixNano(),
		Namespace: cfg.namespace(c.Tenant), Runtime: runtime, NetnsPath: c.NetnsPath}
	if err := rec.setConfig(c); err != nil {
		return nil, err
	}
	sb := &sandbox{dir: filepath.Join(p.stateDir, "sandboxes", id), rec: rec}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	p.mu.Lock()
	for _, o := range p.sandboxes {
		oc := o.rec.cfg
		if oc.Tenant == c.Tenant && oc.Name == c.Name && oc.Uid == c.Uid && oc.Attempt == c.Attempt {
			p.mu.Unlock()
			return nil, errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("sandbox %s/%s (uid %q, attempt %d) already exists as %s", c.Tenant, c.Name, c.Uid, c.Attempt, o.rec.ID))
		}
	}
	p.sandboxes[id] = sb
	p.mu.Unlock()

	if err := p.makeSandbox(ctx, d, sb); err != nil {
		if cerr := p.cleanupSandbox(ctx, d, sb); cerr != nil {
			p.log.Warn("clean up a failed sandbox", "sandbox", id, "err", cerr)
		}
		p.mu.Lock()
		delete(p.sandboxes, id)
		p.mu.Unlock()
		sb.removed = true
		return nil, err
	}
	p.log.Info("sandbox created", "sandbox", id, "tenant", c.Tenant, "pod", c.Name, "namespace", rec.Namespace)
	p.mu.Lock()
	defer p.mu.Unlock()
	return &runtimev1.CreateSandboxResponse{Sandbox: sb.proto()}, nil
}

func (p *Plugin) makeSandbox(ctx context.Context, d *daemon, sb *sandbox) error {
	if err := os.Mkdir(sb.dir, 0o700); err != nil {
		return fmt.Errorf("sandbox dir: %w", err)
	}
	for name, data := range sandboxconf.Files(sb.rec.cfg) {
		if err := writeFileSynced(filepath.Join(sb.dir, name), data, 0o644); err != nil {
			return fmt.Errorf("sandbox %s: %w", name, err)
		}
	}
	if err := p.cgroups.createPod(podCgroupPath(sb.rec.ID), sb.rec.cfg.Resources); err != nil {
		return fmt.Errorf("pod cgroup: %w", err)
	}
	if sb.rec.NetnsPath == "" {
		sb.rec.OwnNetns, sb.rec.NetnsPath = true, filepath.Join(sb.dir, "netns")
		if err := netns.Create(sb.rec.NetnsPath); err != nil {
			return err
		}
	}
	if gVisor(sb.rec.Runtime) {
		if err := p.startPause(ctx, d, sb); err != nil {
			return err
		}
	}
	sb.rec.Ready = true
	return sb.rec.write(sb.dir)
}

// cleanupSandbox removes what makeSandbox made.
func (p *Plugin) cleanupSandbox(ctx context.Context, d *daemon, sb *sandbox) error {
	if gVisor(sb.rec.Runtime) {
		if err := p.stopPause(ctx, d, sb, true); err != nil {
			return err
		}
		p.releaseNullNetns(sb.rec.Namespace, sb.rec.ID)
	}
	var errs []error
	if err := p.cgroups.remove(podCgroupPath(sb.rec.ID)); err != nil {
		errs = append(errs, err)
	}
	if sb.rec.OwnNetns {
		if err := netns.Remove(sb.rec.NetnsPath); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		errs = append(errs, os.RemoveAll(sb.dir))
	}
	return errors.Join(errs...)
}

// lookupSandbox returns sandbox id or NotFound.
func (p *Plugin) lookupSandbox(id string) (*sandbox, error) {
	if _, _, err := p.configured(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	sb, ok := p.sandboxes[id]
	if !ok {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %q not found", id))
	}
	return sb, nil
}

// containersOf returns the containers of sandbox id.
func (p *Plugin) containersOf(id string) []*container {
	p.mu.Lock()
	defer p.mu.Unlock()
	var cs []*container
	for _, c := range p.containers {
		if c.sandboxID == id {
			cs = append(cs, c)
		}
	}
	return cs
}

// StopSandbox stops every container of the sandbox (each gets the grace
// period, then SIGKILL), then its gVisor sandbox if it has one, and marks
// it not ready. A missing sandbox is not an error.
func (p *Plugin) StopSandbox(ctx context.Context, r *runtimev1.StopSandboxRequest) (*runtimev1.StopSandboxResponse, error) {
	sb, err := p.lookupSandbox(r.Id)
	if errdefs.IsNotFound(err) {
		return &runtimev1.StopSandboxResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	_, d, err := p.configured()
	if err != nil {
		return nil, err
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.removed {
		return &runtimev1.StopSandboxResponse{}, nil
	}
	grace := time.Duration(max(r.GracePeriodSeconds, 0)) * time.Second
	if err := p.forEach(p.containersOf(sb.rec.ID), func(c *container) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		return p.stopLocked(ctx, c, grace, 0)
	}); err != nil {
		return nil, err
	}
	if gVisor(sb.rec.Runtime) {
		if err := p.stopPause(ctx, d, sb, false); err != nil {
			return nil, fmt.Errorf("stop sandbox %s: %w", sb.rec.ID, err)
		}
	}
	p.mu.Lock()
	sb.rec.Ready = false
	err = sb.rec.write(sb.dir)
	p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", sb.rec.ID, err)
	}
	return &runtimev1.StopSandboxResponse{}, nil
}

// forEach runs fn on every container in parallel.
func (p *Plugin) forEach(cs []*container, fn func(*container) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(cs))
	for i, c := range cs {
		wg.Go(func() { errs[i] = fn(c) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// RemoveSandbox removes the sandbox's containers (killing any still
// running), its pod cgroup, network namespace and files. A missing
// sandbox is not an error.
func (p *Plugin) RemoveSandbox(ctx context.Context, r *runtimev1.RemoveSandboxRequest) (*runtimev1.RemoveSandboxResponse, error) {
	sb, err := p.lookupSandbox(r.Id)
	if errdefs.IsNotFound(err) {
		return &runtimev1.RemoveSandboxResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	_, d, err := p.configured()
	if err != nil {
		return nil, err
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.removed {
		return &runtimev1.RemoveSandboxResponse{}, nil
	}
	if err := p.forEach(p.containersOf(sb.rec.ID), func(c *container) error { return p.removeContainer(ctx, c, true) }); err != nil {
		return nil, fmt.Errorf("remove sandbox %s: %w", sb.rec.ID, err)
	}
	if err := p.cleanupSandbox(ctx, d, sb); err != nil {
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
	p.checkGVisorAlive(ctx, sb)
	p.mu.Lock()
	defer p.mu.Unlock()
	return sb.proto(), nil
}

// ListSandboxes lists the sandboxes matching the filter (id, labels).
func (p *Plugin) ListSandboxes(ctx context.Context, r *runtimev1.ListSandboxesRequest) (*runtimev1.ListSandboxesResponse, error) {
	if _, _, err := p.configured(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	sbs := slices.Collect(maps.Values(p.sandboxes))
	p.mu.Unlock()
	for _, sb := range sbs {
		p.checkGVisorAlive(ctx, sb)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	resp := &runtimev1.ListSandboxesResponse{}
	for id, sb := range p.sandboxes {
		if (r.Id == "" || r.Id == id) && matchLabels(sb.rec.cfg.Labels, r.Labels) {
			resp.Sandboxes = append(resp.Sandboxes, sb.proto())
		}
	}
	sort.Slice(resp.Sandboxes, func(i, j int) bool { return resp.Sandboxes[i].Id < resp.Sandboxes[j].Id })
	return resp, nil
}

// Recover re-adopts the sandbox a handle names, with its containers, after
// a plugin restart: the sandbox from the state directory, its containers
// from containerd, where their tasks kept running (or kept how they
// exited).
func (p *Plugin) Recover(ctx context.Context, r *runtimev1.RecoverRequest) (*runtimev1.RecoverResponse, error) {
	if _, _, err := p.configured(); err != nil {
		return nil, err
	}
	id, err := parseHandle(r.Handle)
	if err != nil {
		return nil, err
	}
	sb, err := p.lookupSandbox(id)
	if errdefs.IsNotFound(err) {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("recover: sandbox %s not found", id))
	} else if err != nil {
		return nil, err
	}
	p.mu.Lock()
	resp := &runtimev1.RecoverResponse{Sandbox: sb.proto()}
	p.mu.Unlock()
	for _, c := range p.containersOf(id) {
		v, err := p.inspect(ctx, c)
		if errdefs.IsNotFound(err) {
			continue
		} else if err != nil {
			return nil, err
		}
		resp.Containers = append(resp.Containers, v)
	}
	sortContainers(resp.Containers)
	p.log.Info("sandbox recovered", "sandbox", id, "containers", len(resp.Containers))
	return resp, nil
}
