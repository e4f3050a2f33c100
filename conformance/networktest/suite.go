// Package networktest is the network plugin conformance suite: the cases
// of the conformance catalogue (NP-*) that apply to one node, run
// black-box against any plugin that speaks plugins/network/v1. It is a
// library — Run takes a Target, the plugin under test launched by the
// caller — and the `paddock conformance network` command, which launches
// the plugin through plugins/pluginhost exactly as the node agent does.
//
// The suite makes its own network namespaces (kept alive by bind mounts
// under Config.WorkDir), attaches them through the plugin, and judges
// the result from inside them with netlink and with Go sockets created in
// each namespace: a TCP connection, a UDP datagram and an ICMP echo per
// probe, told apart as reached, refused, unreachable (an ICMP error) or
// dropped (nothing came back). Traffic goes only between those
// namespaces and the node.
//
// Run calls SetupNode once with the configured ranges before the cases,
// as the agent does before the first Attach, and again after a case that
// changed them or restarted the plugin. Cases run one at a time, each in
// its own goroutine with a fresh context, and each is followed by a leak
// check: host interfaces that Attach named during the case and that are
// still there, addresses the plugin still counts as allocated
// (Status.ipam.allocated) and namespace mounts left behind fail it. A case is skipped only when the
// plugin does not advertise the capability it needs, and says so.
package networktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/conformance/internal/caserun"
	"github.com/paddock-dev/paddock/conformance/report"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
)

// Target is the plugin under test.
type Target interface {
	// Client is the connection to the plugin's current process; while
	// the plugin is being restarted it waits for the new process, and it
	// returns nil if none comes.
	Client() *networkv1.Client
	// Config is the configuration (JSON) the plugin was handed.
	Config() []byte
	// PluginPID is the plugin process's pid, or 0 while it is down.
	PluginPID() int
	// KillPlugin kills the plugin process with SIGKILL and returns once
	// the host has seen it exit. The host starts it again after its
	// restart back-off (see HostConfig); WaitReady waits for that.
	KillPlugin(ctx context.Context) error
	// WaitReady returns once a plugin process is up.
	WaitReady(ctx context.Context) error
}

// Defaults of Config.
const (
	DefaultPodCIDR     = "10.252.0.0/24"
	DefaultClusterCIDR = "10.252.0.0/16"
	DefaultServiceCIDR = "10.253.0.0/16"
	DefaultNodeName    = "conformance"
)

// Config configures a run.
type Config struct {
	Target Target
	// Focus, when set, runs only the cases whose id or name matches.
	Focus *regexp.Regexp
	// Skip, when set, leaves out the cases whose id or name matches: they
	// are reported as skipped, so a run that leaves out a MUST case of its
	// profile is not certifiable.
	Skip *regexp.Regexp
	// PodCIDR is the node's pod range handed to SetupNode (default
	// DefaultPodCIDR). It must hold at least 150 addresses (NP-CC-001)
	// and lie inside ClusterCIDR. NP-IP-001 and NP-ST-001 switch the node
	// to the first /29 of it for a while.
	PodCIDR string
	// ClusterCIDR and ServiceCIDR are SetupNode's other ranges (defaults
	// DefaultClusterCIDR, DefaultServiceCIDR).
	ClusterCIDR, ServiceCIDR string
	// NodeName is SetupNode's node name (default DefaultNodeName).
	NodeName string
	// WorkDir is where the suite keeps the network namespaces it makes
	// (default: a temporary directory, removed at the end).
	WorkDir string
	// CaseTimeout bounds one case (default 2 minutes).
	CaseTimeout time.Duration
	// ProbeTimeout is how long a probe waits for an answer before it
	// counts the packet as dropped (default 1.5 s).
	ProbeTimeout time.Duration
	// Progress, when set, gets a line per finished case.
	Progress io.Writer
}

// Case is one conformance case.
type Case struct {
	ID         string
	Name       string
	Level      string // MUST or SHOULD
	Capability string // a Capabilities field that gates the case, or ""
	Anchor     string // the public test it mirrors
	Run        func(t *T)
}

// Run runs the suite and returns its report.
func Run(ctx context.Context, cfg Config) (*report.Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	c := cfg.Target.Client()
	if c == nil {
		return nil, errors.New("the plugin is not running")
	}
	info, err := c.Info(ctx, &networkv1.InfoRequest{})
	if err != nil {
		return nil, fmt.Errorf("plugin Info: %w", err)
	}
	caps, err := c.Capabilities(ctx, &networkv1.CapabilitiesRequest{})
	if err != nil {
		return nil, fmt.Errorf("plugin Capabilities: %w", err)
	}
	if cfg.WorkDir == "" {
		dir, err := os.MkdirTemp("", "paddock-nettest-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg.WorkDir = dir
	}
	e := &env{cfg: cfg, caps: caps, podCIDR: cfg.PodCIDR}
	if err := e.setupNode(ctx, e.podCIDR); err != nil {
		return nil, fmt.Errorf("SetupNode(pod_cidr %s): %w", e.podCIDR, err)
	}
	rep := &report.Report{Suite: "network", Plugin: info.Name, Version: info.Version, Profile: "core", Started: time.Now()}
	for _, tc := range Cases() {
		if cfg.Focus != nil && !cfg.Focus.MatchString(tc.ID) && !cfg.Focus.MatchString(tc.Name) {
			continue
		}
		res := e.runCase(ctx, tc)
		rep.Results = append(rep.Results, res)
		caserun.Progress(cfg.Progress, res)
	}
	rep.Sort()
	rep.Finish(time.Now())
	return rep, nil
}

// defaults fills in and checks the configuration.
func (cfg *Config) defaults() error {
	if cfg.Target == nil {
		return errors.New("networktest: Config.Target is nil")
	}
	for _, f := range []struct {
		v    *string
		def  string
		flag string
	}{{&cfg.PodCIDR, DefaultPodCIDR, "pod CIDR"}, {&cfg.ClusterCIDR, DefaultClusterCIDR, "cluster CIDR"}, {&cfg.ServiceCIDR, DefaultServiceCIDR, "service CIDR"}} {
		if *f.v == "" {
			*f.v = f.def
		}
		p, err := netip.ParsePrefix(*f.v)
		if err != nil || !p.Addr().Is4() || p != p.Masked() {
			return fmt.Errorf("%s %q: want an IPv4 network such as %s", f.flag, *f.v, f.def)
		}
	}
	pod, cluster := netip.MustParsePrefix(cfg.PodCIDR), netip.MustParsePrefix(cfg.ClusterCIDR)
	if pod.Bits() > 24 {
		return fmt.Errorf("pod CIDR %s: want a /24 or larger (NP-CC-001 holds 150 attachments at once)", pod)
	}
	if !cluster.Contains(pod.Addr()) || cluster.Bits() > pod.Bits() {
		return fmt.Errorf("pod CIDR %s: want it inside the cluster CIDR %s", pod, cluster)
	}
	if cfg.NodeName == "" {
		cfg.NodeName = DefaultNodeName
	}
	if cfg.CaseTimeout == 0 {
		cfg.CaseTimeout = 2 * time.Minute
	}
	if cfg.ProbeTimeout == 0 {
		cfg.ProbeTimeout = 1500 * time.Millisecond
	}
	return nil
}

// env is what every case of a run shares.
type env struct {
	cfg  Config
	caps *networkv1.CapabilitiesResponse
	// podCIDR is the pod range the node is set up with now.
	podCIDR string
}

// setupNode calls SetupNode with podCIDR and the configured other ranges.
func (e *env) setupNode(ctx context.Context, podCIDR string) error {
	c := e.cfg.Target.Client()
	if c == nil {
		return errors.New("the plugin is not running")
	}
	_, err := c.SetupNode(ctx, &networkv1.SetupNodeRequest{
		NodeName: e.cfg.NodeName, PodCidr: podCIDR, ClusterCidr: e.cfg.ClusterCIDR, ServiceCidr: e.cfg.ServiceCIDR,
	})
	if err == nil {
		e.podCIDR = podCIDR
	}
	return err
}

// capability reports whether the plugin advertises a Capabilities field
// ("" is no gate).
func (e *env) capability(name string) bool {
	return name == "" || map[string]bool{
		"tenant_isolation":    e.caps.TenantIsolation,
		"network_policy":      e.caps.NetworkPolicy,
		"anti_spoofing":       e.caps.AntiSpoofing,
		"multiple_interfaces": e.caps.MultipleInterfaces,
		"control_daemon":      e.caps.ControlDaemon,
		"kernel_dataplane":    e.caps.KernelDataplane,
	}[name]
}

func (e *env) runCase(ctx context.Context, tc Case) report.Result {
	var t *T
	return caserun.Run(ctx, caserun.Case{
		Result:     report.Result{ID: tc.ID, Name: tc.Name, Level: tc.Level, Profile: "core", Capability: tc.Capability, Anchor: tc.Anchor},
		Advertised: e.capability(tc.Capability),
		LeftOut:    caserun.LeftOut(e.cfg.Skip, tc.ID, tc.Name),
		Timeout:    e.cfg.CaseTimeout,
		Watch: func() func() []string {
			before := e.snapshot(ctx, nil)
			return func() []string { return e.waitNoLeaks(ctx, before, t.attachedHostSides(), 5*time.Second) }
		},
		Body: func(base *caserun.T) {
			t = &T{T: base, env: e, id: tc.ID}
			tc.Run(t)
		},
	})
}

// T is a case's handle, like testing.T: Errorf records a failure, Fatalf
// records one and ends the case, Skipf ends it as skipped. Context,
// Errorf, Fatalf, Skipf, Logf, Cleanup and Eventually are the ones every
// conformance suite shares.
type T struct {
	*caserun.T
	env *env
	id  string

	mu        sync.Mutex             // guards servers and hostSides
	servers   map[netip.Addr]*server // by the address probes reach them at
	hostSides []string               // the host interfaces Attach answered
}

// attachedHostSides is the host interfaces Attach answered during the
// case (none if the case never started).
func (t *T) attachedHostSides() []string {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.hostSides
}

// Client is the plugin's current client; the case ends if the plugin is
// not running.
func (t *T) Client() *networkv1.Client {
	c := t.env.cfg.Target.Client()
	if c == nil {
		t.Fatalf("the plugin is not running")
	}
	return c
}

// Caps is the plugin's capabilities.
func (t *T) Caps() *networkv1.CapabilitiesResponse { return t.env.caps }

// cleanupContext is a context for cleanups: it outlives the case's, for
// at most 30 seconds.
func (t *T) cleanupContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
}
