package agent

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/paddock-dev/paddock/core/agent/streams"
	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// RuntimePlugin is a runtime plugin the agent runs.
type RuntimePlugin struct {
	// Name is the plugin's name, which RuntimeClass.spec.plugin refers to
	// (e.g. "runc").
	Name string
	// Path is the plugin binary.
	Path string
	// Config is the plugin's JSON configuration (empty: its defaults).
	Config []byte
}

// NetworkPlugin is the network plugin the agent runs.
type NetworkPlugin struct {
	// Name is the plugin's name (e.g. "bridge").
	Name string
	// Path is the plugin binary.
	Path string
	// Config is the plugin's JSON configuration (empty: its defaults).
	Config []byte
}

// Config configures an agent.
type Config struct {
	// Client reaches the API server; a node credential for NodeName (or
	// a cluster admin's).
	Client *client.Client
	// NodeName is the Node this agent registers and runs pods for.
	NodeName string
	// DataDir holds the agent's state: the plugin host, sandbox records,
	// pod network namespaces, and import/ (image archives imported at
	// start).
	DataDir string
	// Runtimes are the runtime plugins to run.
	Runtimes []RuntimePlugin
	// Network is the network plugin that gives pods their IPs; nil: pods
	// get a network namespace with a loopback interface only.
	Network *NetworkPlugin
	// ClusterNetwork is the cluster's network layout (the server's
	// --cluster-cidr and --service-cidr); empty fields take the defaults.
	ClusterNetwork api.NetworkConfig
	// DNSTarget is HOST:PORT of the cluster DNS server: the service proxy
	// sends queries to the DNS service IP there. A loopback or empty host
	// means this node's IP (the server runs beside the agent); empty:
	// port 1053.
	DNSTarget string
	// ProxyTable is the nftables table of the service proxy (default
	// "paddock-proxy"); "off" runs no service proxy.
	ProxyTable string
	// StreamsListen is where the stream server (logs and exec for the API
	// server) listens; default ":10250".
	StreamsListen string
	// ClientCA is the PEM of the cluster CA: the stream server accepts
	// only the API server's certificate signed by it.
	ClientCA []byte
	// NodeIP is the address reported as the node's InternalIP.
	NodeIP string
	// Labels are the node's labels.
	Labels map[string]string
	// Reserved is what the node keeps for itself: allocatable is capacity
	// less this.
	Reserved api.ResourceList
	// MaxPods caps the pods on the node (default 110).
	MaxPods int64
	// PodPidsLimit caps the processes (threads included) of each pod: the
	// pids limit of its sandbox, which the runtime plugin enforces (runc
	// in the pod cgroup). 0: no limit (`paddock agent` defaults to 1024).
	PodPidsLimit int64
	// DNSServers are the nameservers of pods' resolv.conf (searches are
	// filled in per tenant); default with a network plugin: the cluster
	// DNS service's IP (the 10th address of the service CIDR).
	DNSServers []string
	// ClusterDomain is the cluster's DNS domain (default cluster.local).
	ClusterDomain string

	// HeartbeatInterval is how often the node's lease is renewed (default
	// 10s); LeaseDuration is how long it is valid (default 40s).
	HeartbeatInterval, LeaseDuration time.Duration
	// StatusInterval is how often the Node's status is written when
	// nothing changed (default 1m).
	StatusInterval time.Duration
	// ResyncInterval is how often every pod is synced when nothing
	// happened (default 10s).
	ResyncInterval time.Duration
	// RestartBackoff paces restarts of exited containers (CrashLoopBackOff)
	// and retries of image pulls: Initial (default 10s) doubling to Max
	// (default 5m).
	RestartBackoff Backoff
	// Workers is how many pods are synced at once (default 8).
	Workers int

	Log     *slog.Logger
	Version string
}

// Backoff is an exponential back-off.
type Backoff struct {
	Initial, Max time.Duration
}

// delay is the back-off before attempt n+1 after n failures (n ≥ 1).
func (b Backoff) delay(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := b.Initial << min(n-1, 20)
	if d > b.Max || d <= 0 {
		d = b.Max
	}
	return d
}

// DefaultDataDir is where `paddock agent` keeps its state.
const DefaultDataDir = "/var/lib/paddock/agent"

func (c *Config) setDefaults() error {
	if msgs := api.IsDNS1123Subdomain(c.NodeName); len(msgs) > 0 {
		return errdefs.Field(errdefs.ErrInvalidArgument, "node-name", fmt.Sprintf("%q: %s", c.NodeName, msgs[0]))
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return errdefs.Field(errdefs.ErrInvalidArgument, "data-dir", err.Error())
	}
	c.DataDir = abs
	if len(c.Runtimes) == 0 {
		return errdefs.Field(errdefs.ErrInvalidArgument, "runtime", "at least one runtime plugin is required, e.g. runc=/usr/local/bin/paddock-runtime-runc")
	}
	seen := map[string]bool{}
	for _, r := range c.Runtimes {
		if r.Name == "" || r.Path == "" {
			return errdefs.Field(errdefs.ErrInvalidArgument, "runtime", fmt.Sprintf("%q=%q: want NAME=PATH", r.Name, r.Path))
		}
		if seen[r.Name] {
			return errdefs.Field(errdefs.ErrInvalidArgument, "runtime", fmt.Sprintf("plugin %q given twice", r.Name))
		}
		seen[r.Name] = true
	}
	if c.MaxPods == 0 {
		c.MaxPods = 110
	}
	if c.MaxPods < 0 {
		return errdefs.Field(errdefs.ErrInvalidArgument, "max-pods", "must be positive")
	}
	if c.PodPidsLimit < 0 {
		return errdefs.Field(errdefs.ErrInvalidArgument, "pod-pids-limit", fmt.Sprintf("%d: want 0 (no limit) or a positive number", c.PodPidsLimit))
	}
	if c.StreamsListen == "" {
		c.StreamsListen = fmt.Sprintf(":%d", streams.DefaultPort)
	}
	c.ClusterNetwork = c.ClusterNetwork.WithDefaults()
	if err := c.ClusterNetwork.Validate(); err != nil {
		return errdefs.New(errdefs.ErrInvalidArgument, err.Error())
	}
	if n := c.Network; n != nil {
		if n.Name == "" || n.Path == "" {
			return errdefs.Field(errdefs.ErrInvalidArgument, "network", fmt.Sprintf("%q=%q: want NAME=PATH", n.Name, n.Path))
		}
		if len(c.DNSServers) == 0 {
			c.DNSServers = []string{c.ClusterNetwork.DNSServiceIP().String()}
		}
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	setDuration(&c.HeartbeatInterval, 10*time.Second)
	setDuration(&c.LeaseDuration, 40*time.Second)
	setDuration(&c.StatusInterval, time.Minute)
	setDuration(&c.ResyncInterval, 10*time.Second)
	setDuration(&c.RestartBackoff.Initial, 10*time.Second)
	setDuration(&c.RestartBackoff.Max, 5*time.Minute)
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

func setDuration(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}
