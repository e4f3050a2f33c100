package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"google.golang.org/protobuf/proto"
)

// sandbox is a pod. In this example it is only a record: its containers
// each get namespaces of their own, with the sandbox's hostname. A real
// plugin makes the sandbox's namespaces once (a pause process or bind-
// mounted namespace files) and lets its containers join them, so that a
// pod's containers share ipc and uts, and holds the pod's cgroup here.
type sandbox struct {
	id        string
	config    *runtimev1.SandboxConfig // as given; never modified
	createdAt int64
	ready     bool // guarded by Runtime.mu
}

// handle is what Sandbox.handle carries: the agent stores it and gives it
// back to Recover. Keep it small and versionable; here it is the id.
type handle struct {
	Sandbox string `json:"sandbox"`
}

// proto returns the sandbox as the contract's message; the caller holds
// Runtime.mu.
func (sb *sandbox) proto() *runtimev1.Sandbox {
	state := runtimev1.SandboxState_SANDBOX_NOTREADY
	if sb.ready {
		state = runtimev1.SandboxState_SANDBOX_READY
	}
	h, _ := json.Marshal(handle{Sandbox: sb.id})
	return &runtimev1.Sandbox{Id: sb.id, Config: proto.Clone(sb.config).(*runtimev1.SandboxConfig), State: state, CreatedAt: sb.createdAt, Handle: h}
}

// CreateSandbox records a sandbox after checking what the containers will
// rely on. The same tenant, name, uid and attempt twice is AlreadyExists.
func (r *Runtime) CreateSandbox(_ context.Context, req *runtimev1.CreateSandboxRequest) (*runtimev1.CreateSandboxResponse, error) {
	if _, err := r.configured(); err != nil {
		return nil, err
	}
	cfg := req.GetConfig()
	if err := validateSandbox(cfg); err != nil {
		return nil, err
	}
	sb := &sandbox{id: newID(), config: proto.Clone(cfg).(*runtimev1.SandboxConfig), createdAt: time.Now().UnixNano(), ready: true}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.sandboxes {
		if oc := o.config; oc.Tenant == cfg.Tenant && oc.Name == cfg.Name && oc.Uid == cfg.Uid && oc.Attempt == cfg.Attempt {
			return nil, errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("sandbox %s/%s (uid %q, attempt %d) already exists as %s", cfg.Tenant, cfg.Name, cfg.Uid, cfg.Attempt, o.id))
		}
	}
	r.sandboxes[sb.id] = sb
	r.log.Info("sandbox created", "sandbox", sb.id, "tenant", cfg.Tenant, "pod", cfg.Name)
	return &runtimev1.CreateSandboxResponse{Sandbox: sb.proto()}, nil
}

func validateSandbox(cfg *runtimev1.SandboxConfig) error {
	switch {
	case cfg == nil:
		return invalid("config", "a sandbox config is required")
	case cfg.Name == "":
		return invalid("config.name", "a sandbox name is required")
	case len(cfg.Hostname) > 64 || strings.ContainsAny(cfg.Hostname, " \t\n/\x00"):
		return invalid("config.hostname", fmt.Sprintf("%q is not a hostname (at most 64 characters, no spaces or slashes)", cfg.Hostname))
	case cfg.Handler != "" && cfg.Handler != "default":
		return invalid("config.handler", fmt.Sprintf("%q is not a handler of this plugin (it has \"default\")", cfg.Handler))
	}
	if p := cfg.NetnsPath; p != "" {
		if _, err := os.Stat(p); err != nil || !filepath.IsAbs(p) {
			return invalid("config.netns_path", fmt.Sprintf("%q is not the absolute path of a network namespace", p))
		}
	}
	return noResources("config.resources", cfg.Resources)
}

// noResources refuses limits this plugin cannot enforce: accepting a
// memory limit and not applying it would be a lie a tenant pays for.
func noResources(field string, res *runtimev1.Resources) error {
	if res.GetCpuMillis() != 0 || res.GetCpuSharesMillis() != 0 || res.GetMemoryBytes() != 0 || res.GetPids() != 0 {
		return errdefs.Field(errdefs.ErrNotImplemented, field, "the example runtime enforces no resource limits (it makes no cgroups); leave them 0")
	}
	return nil
}

// sandboxLocked returns sandbox id or NotFound; the caller holds mu.
func (r *Runtime) sandboxLocked(id string) (*sandbox, error) {
	if sb, ok := r.sandboxes[id]; ok {
		return sb, nil
	}
	return nil, notFound("sandbox", id)
}

// containersOf returns the containers of sandbox id.
func (r *Runtime) containersOf(id string) []*container {
	r.mu.Lock()
	defer r.mu.Unlock()
	var cs []*container
	for _, c := range r.containers {
		if c.sandboxID == id {
			cs = append(cs, c)
		}
	}
	return cs
}

// forEach runs f on every container in parallel (so that stopping a pod
// takes one grace period, not one per container) and joins the errors.
func forEach(cs []*container, f func(*container) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(cs))
	for i, c := range cs {
		wg.Go(func() { errs[i] = f(c) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// StopSandbox stops the sandbox's containers (stop signal, grace, then
// SIGKILL) and marks it not ready. A missing sandbox is not an error: the
// agent retries stops and removes freely.
func (r *Runtime) StopSandbox(ctx context.Context, req *runtimev1.StopSandboxRequest) (*runtimev1.StopSandboxResponse, error) {
	r.mu.Lock()
	sb, err := r.sandboxLocked(req.Id)
	r.mu.Unlock()
	if err != nil {
		return &runtimev1.StopSandboxResponse{}, nil
	}
	grace := time.Duration(max(req.GracePeriodSeconds, 0)) * time.Second
	if err := forEach(r.containersOf(sb.id), func(c *container) error { return r.stop(ctx, c, grace, 0) }); err != nil {
		return nil, fmt.Errorf("stop sandbox %s: %w", sb.id, err)
	}
	r.mu.Lock()
	sb.ready = false
	r.mu.Unlock()
	return &runtimev1.StopSandboxResponse{}, nil
}

// RemoveSandbox kills and removes the sandbox's containers, then forgets
// it. Removing a missing sandbox succeeds.
func (r *Runtime) RemoveSandbox(ctx context.Context, req *runtimev1.RemoveSandboxRequest) (*runtimev1.RemoveSandboxResponse, error) {
	r.mu.Lock()
	sb, err := r.sandboxLocked(req.Id)
	if err == nil {
		sb.ready = false // no new containers from here on
	}
	r.mu.Unlock()
	if err != nil {
		return &runtimev1.RemoveSandboxResponse{}, nil
	}
	if err := forEach(r.containersOf(sb.id), func(c *container) error { return r.remove(ctx, c, true) }); err != nil {
		return nil, fmt.Errorf("remove sandbox %s: %w", sb.id, err)
	}
	r.mu.Lock()
	delete(r.sandboxes, sb.id)
	r.mu.Unlock()
	r.log.Info("sandbox removed", "sandbox", sb.id)
	return &runtimev1.RemoveSandboxResponse{}, nil
}

// InspectSandbox returns a sandbox, or NotFound.
func (r *Runtime) InspectSandbox(_ context.Context, req *runtimev1.InspectSandboxRequest) (*runtimev1.Sandbox, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, err := r.sandboxLocked(req.Id)
	if err != nil {
		return nil, err
	}
	return sb.proto(), nil
}

// ListSandboxes lists the sandboxes matching the filter, oldest first.
func (r *Runtime) ListSandboxes(_ context.Context, req *runtimev1.ListSandboxesRequest) (*runtimev1.ListSandboxesResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	resp := &runtimev1.ListSandboxesResponse{}
	for _, sb := range r.sandboxes {
		if (req.Id == "" || req.Id == sb.id) && matchLabels(sb.config.Labels, req.Labels) {
			resp.Sandboxes = append(resp.Sandboxes, sb.proto())
		}
	}
	slices.SortFunc(resp.Sandboxes, func(a, b *runtimev1.Sandbox) int {
		return cmpCreated(a.CreatedAt, b.CreatedAt, a.Id, b.Id)
	})
	return resp, nil
}

// Recover is how the agent re-adopts a sandbox after a restart. This
// plugin's containers die with its process, so only a sandbox this very
// process made can be recovered (the agent restarted, the plugin did not,
// and the host reattached to it). Any other handle names a sandbox that
// is gone: NotFound, which tells the agent to make the pod again. A handle
// that does not parse is InvalidArgument.
func (r *Runtime) Recover(_ context.Context, req *runtimev1.RecoverRequest) (*runtimev1.RecoverResponse, error) {
	var h handle
	if err := json.Unmarshal(req.Handle, &h); err != nil || h.Sandbox == "" {
		return nil, invalid("handle", "not a handle this plugin made (want the Sandbox.handle CreateSandbox returned)")
	}
	r.mu.Lock()
	sb, ok := r.sandboxes[h.Sandbox]
	if !ok {
		r.mu.Unlock()
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %q is gone: its containers ended with the plugin process that ran them (containers_tied_to_plugin)", h.Sandbox))
	}
	resp := &runtimev1.RecoverResponse{Sandbox: sb.proto()}
	r.mu.Unlock()
	list, err := r.ListContainers(context.Background(), &runtimev1.ListContainersRequest{SandboxId: sb.id})
	if err != nil {
		return nil, err
	}
	resp.Containers = list.Containers
	return resp, nil
}

// newID returns a random id for a sandbox or container (26 characters,
// 130 random bits).
func newID() string { return strings.ToLower(rand.Text()) }

// cmpCreated orders by creation time, then id: lists come out stable.
func cmpCreated(a, b int64, aID, bID string) int {
	return cmp.Or(cmp.Compare(a, b), strings.Compare(aID, bID))
}
