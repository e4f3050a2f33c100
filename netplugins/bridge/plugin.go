package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/netplugins/internal/ipam"
	"github.com/paddock-dev/paddock/netplugins/internal/statedir"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
)

// pluginName is the name Info answers.
const pluginName = "bridge"

// Status codes of the plugin's own (networkv1.StatusPluginSpecific and up).
const (
	statusNotSetUp      = networkv1.StatusPluginSpecific     // SetupNode has not been called
	statusNotConfigured = networkv1.StatusPluginSpecific + 1 // SetConfig has not been called
)

// Options are what New needs besides the configuration SetConfig gives.
type Options struct {
	// Logger receives the plugin's logs; default JSON on stderr in the
	// shape go-plugin re-emits.
	Logger *slog.Logger
	// Version is the plugin's version, answered by Info.
	Version string
}

// Plugin is the bridge network plugin. Create it with New; it serves
// nothing until SetConfig has named its state directory.
type Plugin struct {
	log     *slog.Logger
	version string

	// setupMu is held for writing by SetupNode and for reading by the
	// verbs that use the node's setup, so that no attachment is made
	// while the pod range changes.
	setupMu sync.RWMutex
	// nftMu serialises the nftables batches built from the whole state.
	nftMu sync.Mutex
	keys  keyLocks

	mu      sync.Mutex // guards the fields below
	cfg     *settings  // nil before SetConfig
	state   store
	addrs   *ipam.Store
	node    *nodeState // nil before SetupNode
	records map[key]*record
	tenants tenantIDs
	policy  policyState
}

var _ networkv1.Plugin = (*Plugin)(nil)

// New returns a plugin with opts.
func New(opts Options) *Plugin {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{ReplaceAttr: hclogKeys}))
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	return &Plugin{
		log:     opts.Logger.With("plugin", pluginName),
		version: opts.Version,
		keys:    keyLocks{m: map[key]*keyLock{}},
		records: map[key]*record{},
	}
}

// hclogKeys renames slog's keys to those go-plugin's host reads from a
// plugin's JSON log lines.
func hclogKeys(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.MessageKey:
		a.Key = "@message"
	case slog.LevelKey:
		a = slog.String("@level", strings.ToLower(a.Value.String()))
	case slog.TimeKey:
		a = slog.String("@timestamp", a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
	}
	return a
}

// Info names the plugin.
func (p *Plugin) Info(context.Context, *networkv1.InfoRequest) (*networkv1.InfoResponse, error) {
	return &networkv1.InfoResponse{
		Name:         pluginName,
		Version:      p.version,
		ApiVersions:  []string{networkv1.APIVersion},
		ConfigSchema: configSchema,
	}, nil
}

// Capabilities says what the plugin can do.
func (p *Plugin) Capabilities(context.Context, *networkv1.CapabilitiesRequest) (*networkv1.CapabilitiesResponse, error) {
	return &networkv1.CapabilitiesResponse{
		TenantIsolation:    true,
		NetworkPolicy:      true,
		AntiSpoofing:       true,
		MultipleInterfaces: true,
		CrossNode:          false,
		Encryption:         false,
		ControlDaemon:      false,
		// Bridge, veths and nftables are kernel state: they stay while
		// the plugin is down.
		KernelDataplane: true,
	}, nil
}

// SetConfig validates and applies the configuration. The first call loads
// the state directory: the attachments, tenant ids and policy a previous
// process left, and the node setup, which it applies again. Later calls
// may not change the state directory, the bridge or the table.
func (p *Plugin) SetConfig(ctx context.Context, r *networkv1.SetConfigRequest) (*networkv1.SetConfigResponse, error) {
	dir, err := networkv1.CheckSetConfig(r)
	if err != nil {
		return nil, err
	}
	cfg, err := parseConfig(r.Config)
	if err != nil {
		return nil, err
	}

	p.setupMu.Lock()
	defer p.setupMu.Unlock()
	p.mu.Lock()
	if p.cfg != nil {
		defer p.mu.Unlock()
		switch {
		case p.state.dir != dir:
			return nil, errdefs.Field(errdefs.ErrFailedPrecondition, "state_dir", fmt.Sprintf("the plugin already keeps its state in %s; restart it to use %s", p.state.dir, dir))
		case p.cfg.Bridge != cfg.Bridge:
			return nil, errdefs.Field(errdefs.ErrFailedPrecondition, "bridge", fmt.Sprintf("the plugin already uses bridge %s; restart it to use %s", p.cfg.Bridge, cfg.Bridge))
		case p.cfg.Table != cfg.Table:
			return nil, errdefs.Field(errdefs.ErrFailedPrecondition, "table", fmt.Sprintf("the plugin already uses table %s; restart it to use %s", p.cfg.Table, cfg.Table))
		}
		p.cfg = &cfg
		return &networkv1.SetConfigResponse{}, nil
	}
	p.mu.Unlock()

	st := store{dir: dir}
	if err := st.init(); err != nil {
		return nil, err
	}
	addrs, err := ipam.Open(st.path("ipam"))
	if err != nil {
		return nil, err
	}
	records, err := st.records()
	if err != nil {
		return nil, err
	}
	var tenants tenantIDs
	var policy policyState
	node := &nodeState{}
	for name, v := range map[string]any{"tenants.json": &tenants, "policy.json": &policy} {
		if _, err := statedir.ReadJSON(st.path(name), v); err != nil {
			return nil, err
		}
	}
	hasNode, err := statedir.ReadJSON(st.path("node.json"), node)
	if err != nil {
		return nil, err
	}

	p.mu.Lock()
	p.cfg, p.state, p.addrs, p.records, p.tenants, p.policy = &cfg, st, addrs, records, tenants, policy
	p.mu.Unlock()
	p.log.Info("state loaded", "stateDir", dir, "bridge", cfg.Bridge, "table", cfg.Table, "attachments", len(records), "nodeSetUp", hasNode)
	if hasNode {
		// The kernel state normally outlived the previous process; setting
		// it up again repairs whatever did not (after a reboot, say).
		if err := p.applyNode(node, cfg); err != nil {
			p.log.Warn("the saved node setup could not be applied again; SetupNode will retry", "err", err)
		} else {
			p.mu.Lock()
			p.node = node
			p.mu.Unlock()
		}
	}
	return &networkv1.SetConfigResponse{}, nil
}

// snapshot returns the configuration and the node setup, or
// FailedPrecondition naming what is missing.
func (p *Plugin) snapshot(needNode bool) (settings, *nodeState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return settings{}, nil, errdefs.New(errdefs.ErrFailedPrecondition, "the plugin is not configured: call SetConfig with a state_dir first")
	}
	if needNode && p.node == nil {
		return settings{}, nil, errdefs.New(errdefs.ErrFailedPrecondition, "the node is not set up: call SetupNode with the node's pod_cidr first")
	}
	return *p.cfg, p.node, nil
}

// Status says whether the plugin can attach now.
func (p *Plugin) Status(context.Context, *networkv1.StatusRequest) (*networkv1.StatusResponse, error) {
	p.mu.Lock()
	cfg, node, addrs := p.cfg, p.node, p.addrs
	p.mu.Unlock()
	switch {
	case cfg == nil:
		return &networkv1.StatusResponse{Code: statusNotConfigured, Message: "not configured: SetConfig has not been called"}, nil
	case node == nil:
		return &networkv1.StatusResponse{Code: statusNotSetUp, Message: "the node is not set up: SetupNode has not been called"}, nil
	}
	used, err := addrs.InUse(node.PodCIDR)
	if err != nil {
		return nil, err
	}
	resp := &networkv1.StatusResponse{
		Ready: true,
		Ipam:  &networkv1.IPAMStatus{Range: node.PodCIDR.String(), Capacity: uint32(ipam.Capacity(node.PodCIDR)), Allocated: uint32(used)},
	}
	if capacity := ipam.Capacity(node.PodCIDR); used >= capacity {
		resp.Ready, resp.Code = false, networkv1.StatusIPAMExhausted
		resp.Message = fmt.Sprintf("no address left in %s: %d of %d in use", node.PodCIDR, used, capacity)
	}
	return resp, nil
}

// applyRules makes the nftables sets and the policy and tenant chains
// match the records and the policy. With n it also makes the tables and
// replaces the static chains' rules for node n, in the same batch, so no
// packet sees the rules half made.
func (p *Plugin) applyRules(cfg settings, n *nodeState) error {
	p.nftMu.Lock()
	defer p.nftMu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := newTables(cfg.Table)
	if n != nil {
		if old := t.outdated(c); len(old) > 0 {
			// Tables of another layout (an older plugin's): made anew from
			// the records, which hold all that is in them.
			for _, table := range old {
				c.DelTable(table)
			}
			if err := c.Flush(); err != nil {
				return fmt.Errorf("nftables: remove the outdated tables %s: %w", cfg.Table, err)
			}
			p.log.Warn("nftables tables of another layout replaced", "table", cfg.Table)
		}
		if _, err := c.ListTableOfFamily(cfg.Table, nftables.TableFamilyINet); err != nil {
			// A first setup: the tables must exist before sync reads them.
			if err := t.setup(c, n, cfg); err != nil {
				return err
			}
			if err := c.Flush(); err != nil {
				return fmt.Errorf("nftables: make the tables %s: %w", cfg.Table, err)
			}
		}
		if err := t.setup(c, n, cfg); err != nil {
			return err
		}
	}
	if err := t.sync(c, p.dataplane()); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: update the tables %s: %w", cfg.Table, err)
	}
	return nil
}

// dataplane returns what the sets and the policy chain should hold now.
func (p *Plugin) dataplane() *dataplane {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := &dataplane{remote: p.policy.Remote, policy: p.policy.Ingress}
	for _, r := range p.records {
		d.local = append(d.local, r)
	}
	return d
}

// keyLocks serialises the operations on one attachment.
type keyLocks struct {
	mu sync.Mutex
	m  map[key]*keyLock
}

type keyLock struct {
	sync.Mutex
	refs int
}

// lock locks k and returns its unlock.
func (l *keyLocks) lock(k key) func() {
	l.mu.Lock()
	kl := l.m[k]
	if kl == nil {
		kl = &keyLock{}
		l.m[k] = kl
	}
	kl.refs++
	l.mu.Unlock()
	kl.Lock()
	return func() {
		kl.Unlock()
		l.mu.Lock()
		if kl.refs--; kl.refs == 0 {
			delete(l.m, k)
		}
		l.mu.Unlock()
	}
}
