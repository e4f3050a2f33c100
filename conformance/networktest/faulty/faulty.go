// Package faulty is a deliberately broken network plugin for testing the
// network conformance suite: it launches a real network plugin through
// plugins/pluginhost, forwards every call of plugins/network/v1 to it,
// and injects the faults its configuration names. A suite that passes
// the real plugin must fail the faulty one in exactly the cases each
// fault breaks — that is how the suite proves it can fail.
//
// Its configuration (SetConfig's JSON) names the real plugin, the faults
// and the real plugin's own configuration:
//
//	{"target": "/usr/lib/paddock/paddock-net-bridge", "faults": ["gc-noop"], "config": {"bridge": "pdconf0"}}
//
// The real plugin is launched at the first SetConfig, under a host whose
// state is kept in the faulty plugin's state directory: a faulty process
// started again after a crash reattaches to the real plugin still
// running. Info answers for the faulty plugin itself until then.
//
// It is black-box like the suite: it knows the real plugin only through
// its binary and the network protocol.
package faulty

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/paddock-dev/paddock/core/errdefs"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
	"google.golang.org/grpc"
)

// The faults, and what each breaks.
const (
	// VersionAny accepts SetConfig with any API version (breaks
	// NP-VR-001).
	VersionAny = "version-any"
	// AttachDuplicateOK answers a second Attach of the same sandbox and
	// interface with the first answer instead of ALREADY_EXISTS (breaks
	// NP-AT-002).
	AttachDuplicateOK = "attach-duplicate-ok"
	// DetachNotIdempotent answers NOT_FOUND to a Detach of an attachment
	// already detached (breaks NP-DT-001).
	DetachNotIdempotent = "detach-not-idempotent"
	// LeakOnDetach answers Detach without forwarding it: the address, the
	// host side and the rules stay (breaks every case that detaches,
	// through its own checks or the leak check).
	LeakOnDetach = "leak-ip-on-detach"
	// CheckAlwaysOK answers every Check with success (breaks NP-CK-001).
	CheckAlwaysOK = "check-always-ok"
	// GCNoop answers GC without forwarding it (breaks NP-GC-001).
	GCNoop = "gc-noop"
	// StatusAlwaysOK reports ready, code 0, whatever the plugin says
	// (breaks NP-ST-001).
	StatusAlwaysOK = "status-always-ok"
	// NoIsolation attaches every pod as one tenant's (breaks NP-MT-001
	// and NP-RS-001).
	NoIsolation = "no-isolation"
	// PolicyNoop answers SetPolicy without forwarding it (breaks
	// NP-NP-001).
	PolicyNoop = "policy-noop"
)

// Faults lists every fault.
var Faults = []string{VersionAny, AttachDuplicateOK, DetachNotIdempotent, LeakOnDetach, CheckAlwaysOK, GCNoop, StatusAlwaysOK, NoIsolation, PolicyNoop}

// Config is the faulty plugin's configuration.
type Config struct {
	// Target is the path of the real plugin's binary.
	Target string `json:"target"`
	// Faults are the faults to inject.
	Faults []string `json:"faults,omitempty"`
	// Config is the real plugin's configuration (default {}).
	Config json.RawMessage `json:"config,omitempty"`
}

// oneTenant is the tenant NoIsolation attaches every pod as.
const oneTenant = "faulty-one-tenant"

// Main is the faulty plugin's main.
func Main() {
	p := &Plugin{log: slog.New(slog.NewJSONHandler(os.Stderr, nil))}
	defer p.close()
	networkv1.Serve(p)
}

// Plugin is the faulty plugin: a proxy to the real plugin.
type Plugin struct {
	log *slog.Logger

	mu       sync.Mutex
	cfg      Config
	host     *pluginhost.Host
	inst     *pluginhost.Instance
	attached map[string]*networkv1.AttachResponse // by sandbox/ifname, for AttachDuplicateOK
	detached map[string]bool                      // by sandbox/ifname, for DetachNotIdempotent
}

var _ networkv1.Plugin = (*Plugin)(nil)

func (p *Plugin) has(fault string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Contains(p.cfg.Faults, fault)
}

// target returns the real plugin's client.
func (p *Plugin) target() (*networkv1.Client, error) {
	p.mu.Lock()
	inst := p.inst
	p.mu.Unlock()
	if inst == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "the faulty plugin has no configuration yet: SetConfig names the real plugin")
	}
	return inst.Network()
}

// close stops the real plugin when the host shuts the faulty one down.
func (p *Plugin) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inst != nil {
		p.inst.Kill(context.Background())
	}
	if p.host != nil {
		p.host.Close()
	}
}

func (p *Plugin) Info(ctx context.Context, req *networkv1.InfoRequest) (*networkv1.InfoResponse, error) {
	c, err := p.target()
	if err != nil {
		return &networkv1.InfoResponse{Name: "faulty", Version: "0", ApiVersions: []string{networkv1.APIVersion}}, nil
	}
	return c.Info(ctx, req)
}

func (p *Plugin) Capabilities(ctx context.Context, req *networkv1.CapabilitiesRequest) (*networkv1.CapabilitiesResponse, error) {
	return forward(ctx, p, req, (*networkv1.Client).Capabilities)
}

// forward calls method of the real plugin with req.
func forward[Req, Resp any](ctx context.Context, p *Plugin, req Req, method func(*networkv1.Client, context.Context, Req, ...grpc.CallOption) (Resp, error)) (Resp, error) {
	c, err := p.target()
	if err != nil {
		var zero Resp
		return zero, err
	}
	return method(c, ctx, req)
}

// SetConfig launches the real plugin with its configuration the first
// time and hands it on afterwards.
func (p *Plugin) SetConfig(ctx context.Context, req *networkv1.SetConfigRequest) (*networkv1.SetConfigResponse, error) {
	var cfg Config
	if err := json.Unmarshal(req.Config, &cfg); err != nil {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "config", "want a JSON object: "+err.Error())
	}
	if cfg.Target == "" {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "config.target", "is required: the real plugin's binary")
	}
	for _, f := range cfg.Faults {
		if !slices.Contains(Faults, f) {
			return nil, errdefs.Field(errdefs.ErrInvalidArgument, "config.faults", fmt.Sprintf("unknown fault %q, want one of %v", f, Faults))
		}
	}
	if len(cfg.Config) == 0 {
		cfg.Config = json.RawMessage("{}")
	}
	if slices.Contains(cfg.Faults, VersionAny) && req.ApiVersion != networkv1.APIVersion {
		return &networkv1.SetConfigResponse{}, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inst == nil {
		if req.ApiVersion != networkv1.APIVersion {
			return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("api version %q: the faulty plugin speaks %s", req.ApiVersion, networkv1.APIVersion))
		}
		host, err := pluginhost.New(pluginhost.Config{StateDir: filepath.Join(req.StateDir, "h"), Logger: p.log})
		if err != nil {
			return nil, err
		}
		inst, err := host.Launch(ctx, pluginhost.NetworkKind, "target", cfg.Target, cfg.Config)
		if err != nil {
			host.Close()
			return nil, err
		}
		p.host, p.inst, p.cfg = host, inst, cfg
		p.attached, p.detached = map[string]*networkv1.AttachResponse{}, map[string]bool{}
		return &networkv1.SetConfigResponse{}, nil
	}
	c, err := p.inst.Network()
	if err != nil {
		return nil, err
	}
	// The real plugin keeps the state directory its own host gave it.
	if _, err := c.SetConfig(ctx, &networkv1.SetConfigRequest{ApiVersion: req.ApiVersion, Config: cfg.Config, StateDir: filepath.Join(req.StateDir, "h", "plugins", "target")}); err != nil {
		return nil, err
	}
	p.cfg = cfg
	return &networkv1.SetConfigResponse{}, nil
}

func (p *Plugin) SetupNode(ctx context.Context, req *networkv1.SetupNodeRequest) (*networkv1.SetupNodeResponse, error) {
	return forward(ctx, p, req, (*networkv1.Client).SetupNode)
}

func key(sandbox, ifname string) string { return sandbox + "/" + ifname }

func (p *Plugin) Attach(ctx context.Context, req *networkv1.AttachRequest) (*networkv1.AttachResponse, error) {
	c, err := p.target()
	if err != nil {
		return nil, err
	}
	k := key(req.SandboxId, req.Ifname)
	if p.has(AttachDuplicateOK) {
		p.mu.Lock()
		prev := p.attached[k]
		p.mu.Unlock()
		if prev != nil {
			return prev, nil
		}
	}
	if p.has(NoIsolation) {
		req.Tenant = oneTenant
	}
	resp, err := c.Attach(ctx, req)
	if err == nil {
		p.mu.Lock()
		p.attached[k] = resp
		delete(p.detached, k)
		p.mu.Unlock()
	}
	return resp, err
}

func (p *Plugin) Detach(ctx context.Context, req *networkv1.DetachRequest) (*networkv1.DetachResponse, error) {
	c, err := p.target()
	if err != nil {
		return nil, err
	}
	k := key(req.SandboxId, req.Ifname)
	p.mu.Lock()
	again := p.detached[k]
	p.detached[k] = true
	delete(p.attached, k)
	p.mu.Unlock()
	switch {
	case p.has(DetachNotIdempotent) && again:
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("attachment %s not found (fault %s)", k, DetachNotIdempotent))
	case p.has(LeakOnDetach):
		return &networkv1.DetachResponse{}, nil
	}
	return c.Detach(ctx, req)
}

func (p *Plugin) Check(ctx context.Context, req *networkv1.CheckRequest) (*networkv1.CheckResponse, error) {
	if p.has(CheckAlwaysOK) {
		return &networkv1.CheckResponse{}, nil
	}
	return forward(ctx, p, req, (*networkv1.Client).Check)
}

func (p *Plugin) GC(ctx context.Context, req *networkv1.GCRequest) (*networkv1.GCResponse, error) {
	if p.has(GCNoop) {
		return &networkv1.GCResponse{}, nil
	}
	return forward(ctx, p, req, (*networkv1.Client).GC)
}

func (p *Plugin) Status(ctx context.Context, req *networkv1.StatusRequest) (*networkv1.StatusResponse, error) {
	st, err := forward(ctx, p, req, (*networkv1.Client).Status)
	if err == nil && p.has(StatusAlwaysOK) {
		st.Ready, st.Code, st.Message = true, networkv1.StatusOK, "ok"
	}
	return st, err
}

func (p *Plugin) SetPolicy(ctx context.Context, req *networkv1.SetPolicyRequest) (*networkv1.SetPolicyResponse, error) {
	if p.has(PolicyNoop) {
		return &networkv1.SetPolicyResponse{}, nil
	}
	return forward(ctx, p, req, (*networkv1.Client).SetPolicy)
}
