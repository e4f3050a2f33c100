package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/paddock-dev/paddock/core/agent"
	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/spf13/cobra"
)

// agentFlags are the node agent's flags, shared by agent, up and down.
type agentFlags struct {
	nodeName       string
	dataDir        string
	nodeIP         string
	runtimes       []string
	runtimeConfigs []string
	labels         []string
	maxPods        int64
	podPidsLimit   int64
	streamsListen  string
	reserved       string
	network        string
	networkConfig  string
	clusterCIDR    string
	serviceCIDR    string
	clusterDNS     []string
	dnsTarget      string
}

// register adds the flags. standalone is for `paddock agent`; up and
// down take the data directory from their own --data-dir, and up the
// cluster's ranges from the server's flags.
func (f *agentFlags) register(cmd *cobra.Command, standalone bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.nodeName, "node-name", defaultNodeName(), "name of this node")
	if standalone {
		fl.StringVar(&f.dataDir, "data-dir", agent.DefaultDataDir, "directory for the agent's state (plugins, sandboxes, network namespaces, import/)")
		fl.StringVar(&f.clusterCIDR, "cluster-cidr", api.DefaultClusterCIDR, "the cluster's pod range: the server's --cluster-cidr")
		fl.StringVar(&f.serviceCIDR, "service-cidr", api.DefaultServiceCIDR, "the cluster's service range: the server's --service-cidr")
		fl.StringVar(&f.dnsTarget, "dns-target", "", "HOST:PORT of the cluster DNS server, where the service proxy sends queries to the DNS service IP (default: the API server's host, port 1053)")
	}
	fl.StringVar(&f.network, "network", defaultPlugin("bridge", "paddock-net-bridge"), `network plugin NAME=PATH, or "none" for pods with a loopback interface only`)
	fl.StringVar(&f.networkConfig, "network-config", "", "configuration of the network plugin, a JSON file")
	fl.StringSliceVar(&f.clusterDNS, "cluster-dns", nil, "nameservers of pods' resolv.conf (default: the cluster DNS service IP, the 10th address of the service range)")
	fl.StringVar(&f.nodeIP, "node-ip", "", "address reported as the node's InternalIP (default: the first global IPv4 address)")
	fl.StringArrayVar(&f.runtimes, "runtime", nil, "runtime plugin NAME=PATH, repeatable (default: runc=paddock-runtime-runc next to this binary, and runsc=paddock-runtime-runsc when it is there with runsc)")
	fl.StringArrayVar(&f.runtimeConfigs, "runtime-config", nil, "configuration of a runtime plugin, NAME=FILE (JSON), repeatable")
	fl.StringArrayVar(&f.labels, "label", nil, "node label KEY=VALUE, repeatable")
	fl.Int64Var(&f.maxPods, "max-pods", 110, "most pods this node runs")
	fl.Int64Var(&f.podPidsLimit, "pod-pids-limit", defaultPodPidsLimit, "most processes (threads included) of each pod, its cgroup's pids.max; 0: no limit")
	fl.StringVar(&f.reserved, "reserved", "", "what the node keeps for itself, e.g. cpu=500m,memory=1Gi (allocatable is capacity less this)")
	fl.StringVar(&f.streamsListen, "streams-listen", "", "address of the stream server the API server reaches for logs and exec (default :10250)")
}

// defaultPodPidsLimit is the per-pod pids limit of --pod-pids-limit: room
// for any ordinary workload, while a fork bomb stops long before the node
// runs out of pids.
const defaultPodPidsLimit = 1024

// defaultNodeName is the host's name when it is a valid node name.
func defaultNodeName() string {
	h, err := os.Hostname()
	if err != nil {
		return "paddock-node"
	}
	h = strings.ToLower(h)
	if len(api.IsDNS1123Subdomain(h)) > 0 {
		return "paddock-node"
	}
	return h
}

// defaultRuntimes are the runc plugin next to the running binary and,
// when it is there with its runsc, the gVisor plugin (`make build` puts
// both in bin/).
func defaultRuntimes() []string {
	out := []string{defaultPlugin("runc", "paddock-runtime-runc")}
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		if isFile(filepath.Join(dir, "paddock-runtime-runsc")) && isFile(filepath.Join(dir, "runsc")) {
			out = append(out, "runsc="+filepath.Join(dir, "paddock-runtime-runsc"))
		}
	}
	return out
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// defaultPlugin is NAME=PATH of the plugin binary next to the running
// binary.
func defaultPlugin(name, binary string) string {
	exe, err := os.Executable()
	if err != nil {
		return name + "=" + binary
	}
	return name + "=" + filepath.Join(filepath.Dir(exe), binary)
}

// config turns the flags into an agent config (without a client).
func (f *agentFlags) config(g *globals, logFormat, logLevel string) (agent.Config, error) {
	cfg := agent.Config{NodeName: f.nodeName, DataDir: f.dataDir, NodeIP: f.nodeIP, MaxPods: f.maxPods, PodPidsLimit: f.podPidsLimit, StreamsListen: f.streamsListen, Version: Version}
	runtimes := f.runtimes
	if len(runtimes) == 0 {
		runtimes = defaultRuntimes()
	}
	byName := map[string]int{}
	for _, r := range runtimes {
		name, path, ok := strings.Cut(r, "=")
		if !ok || name == "" || path == "" {
			return cfg, fmt.Errorf("--runtime %q: want NAME=PATH, e.g. runc=/usr/local/bin/paddock-runtime-runc", r)
		}
		byName[name] = len(cfg.Runtimes)
		cfg.Runtimes = append(cfg.Runtimes, agent.RuntimePlugin{Name: name, Path: path})
	}
	for _, rc := range f.runtimeConfigs {
		name, file, ok := strings.Cut(rc, "=")
		i, known := byName[name]
		if !ok || file == "" {
			return cfg, fmt.Errorf("--runtime-config %q: want NAME=FILE", rc)
		}
		if !known {
			return cfg, fmt.Errorf("--runtime-config %q: no runtime plugin %q (give it with --runtime %s=PATH)", rc, name, name)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return cfg, fmt.Errorf("--runtime-config %s: %w", rc, err)
		}
		cfg.Runtimes[i].Config = b
	}
	if f.network != "none" && f.network != "" {
		name, path, ok := strings.Cut(f.network, "=")
		if !ok || name == "" || path == "" {
			return cfg, fmt.Errorf(`--network %q: want NAME=PATH, e.g. bridge=/usr/local/bin/paddock-net-bridge, or "none"`, f.network)
		}
		cfg.Network = &agent.NetworkPlugin{Name: name, Path: path}
		if f.networkConfig != "" {
			b, err := os.ReadFile(f.networkConfig)
			if err != nil {
				return cfg, fmt.Errorf("--network-config: %w", err)
			}
			cfg.Network.Config = b
		}
	} else if f.networkConfig != "" {
		return cfg, errors.New(`--network-config: there is no network plugin (--network none)`)
	}
	cfg.ClusterNetwork = api.NetworkConfig{ClusterCIDR: f.clusterCIDR, ServiceCIDR: f.serviceCIDR}.WithDefaults()
	if err := cfg.ClusterNetwork.Validate(); err != nil {
		return cfg, err
	}
	for _, ip := range f.clusterDNS {
		if net.ParseIP(ip) == nil {
			return cfg, fmt.Errorf("--cluster-dns %q: want an IP address such as 10.96.0.10", ip)
		}
	}
	cfg.DNSServers = f.clusterDNS
	if f.dnsTarget != "" {
		if _, _, err := net.SplitHostPort(f.dnsTarget); err != nil {
			return cfg, fmt.Errorf("--dns-target %q: want HOST:PORT such as 192.168.1.10:1053", f.dnsTarget)
		}
	}
	cfg.DNSTarget = f.dnsTarget
	if len(f.labels) > 0 {
		cfg.Labels = map[string]string{}
		for _, l := range f.labels {
			k, v, ok := strings.Cut(l, "=")
			if !ok || len(api.IsLabelKey(k)) > 0 || len(api.IsLabelValue(v)) > 0 {
				return cfg, fmt.Errorf("--label %q: want KEY=VALUE with a valid label key and value", l)
			}
			cfg.Labels[k] = v
		}
	}
	if f.reserved != "" {
		cfg.Reserved = api.ResourceList{}
		for _, kv := range strings.Split(f.reserved, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			name := api.ResourceName(k)
			if !ok || (name != api.ResourceCPU && name != api.ResourceMemory) {
				return cfg, fmt.Errorf("--reserved %q: want cpu=QUANTITY and/or memory=QUANTITY, e.g. cpu=500m,memory=1Gi", kv)
			}
			q, err := api.ParseQuantity(v)
			if err != nil || q.MilliValue() < 0 {
				return cfg, fmt.Errorf("--reserved %s: %q is not a quantity such as 500m or 1Gi", k, v)
			}
			cfg.Reserved[name] = q
		}
	}
	if f.maxPods <= 0 {
		return cfg, fmt.Errorf("--max-pods %d: want a positive number", f.maxPods)
	}
	if f.podPidsLimit < 0 {
		return cfg, fmt.Errorf("--pod-pids-limit %d: want 0 (no limit) or a positive number", f.podPidsLimit)
	}
	log, err := newLogger(g.errOut, logFormat, logLevel)
	if err != nil {
		return cfg, err
	}
	cfg.Log = log
	return cfg, nil
}

func newAgentCmd(g *globals) *cobra.Command {
	var f agentFlags
	var logFormat, logLevel string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: register this node and run the pods bound to it",
		Long: `Run the node agent. It registers this machine as a Node, heartbeats, and runs
the pods the scheduler binds to it through its runtime plugins. It talks to
the API server with the client config of --config (a node credential:
paddock token create --role node --node NAME -o config). Pods keep running
while the agent is stopped; a new agent picks them up.`,
		Example: `  paddock token create --role node --node n1 -o config > /etc/paddock/node.conf
  paddock agent --config /etc/paddock/node.conf --node-name n1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.config(g, logFormat, logLevel)
			if err != nil {
				return err
			}
			c, conf, err := g.client()
			if err != nil {
				return err
			}
			cfg.Client, cfg.ClientCA = c, []byte(conf.CertificateAuthority)
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVar(&logFormat, "log-format", "text", "log format: text or json")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

func newDownCmd(g *globals) *cobra.Command {
	var f agentFlags
	var dataDir string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop every pod of the all-in-one cluster and its runtime plugins",
		Long: `Stop every pod that 'paddock up' left running on this machine — containers,
sandboxes, network namespaces — and the runtime plugins. Stop 'paddock up'
first. The cluster's state (etcd) stays; the next 'paddock up' starts the
pods that should run again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.dataDir = filepath.Join(dataDir, "agent")
			cfg, err := f.config(g, "text", "warn")
			if err != nil {
				return err
			}
			if err := agent.Down(cmd.Context(), cfg); err != nil {
				if strings.Contains(err.Error(), "in use by another host") {
					return errors.New("the node agent of 'paddock up' is still running in " + dataDir + ": stop it first (Ctrl-C or SIGTERM)")
				}
				return err
			}
			fmt.Fprintf(g.out, "✓ every pod in %s stopped\n", dataDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the data directory 'paddock up' used")
	f.register(cmd, false)
	return cmd
}

// upAgent runs the all-in-one cluster's node agent with a node credential
// minted through adminConf and kept in DATA_DIR/agent.conf.
func upAgent(ctx context.Context, cfg agent.Config, adminConf, dataDir string) (*agent.Agent, error) {
	c, conf, err := nodeClient(ctx, adminConf, filepath.Join(dataDir, "agent.conf"), cfg.NodeName)
	if err != nil {
		return nil, err
	}
	cfg.Client, cfg.ClientCA = c, []byte(conf.CertificateAuthority)
	return agent.New(cfg)
}

// nodeClient returns a client with the node's credential from path,
// minting a new one through the admin config when it is missing or no
// longer valid.
func nodeClient(ctx context.Context, adminConf, path, node string) (*client.Client, *client.Config, error) {
	nodes, _ := api.KindFor("nodes")
	if conf, err := client.LoadConfig(path); err == nil {
		if c, err := client.New(conf); err == nil {
			_, err := c.Get(ctx, nodes, "", node)
			if err == nil || errdefs.IsNotFound(err) {
				return c, conf, nil
			}
		}
	}
	aconf, err := client.LoadConfig(adminConf)
	if err != nil {
		return nil, nil, err
	}
	admin, err := client.New(aconf)
	if err != nil {
		return nil, nil, err
	}
	tok := &api.Token{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Token"},
		Spec:     api.TokenSpec{Role: api.RoleNode, Node: node, Description: "node agent of paddock up"},
	}
	out, err := admin.Create(ctx, tok)
	if err != nil {
		return nil, nil, fmt.Errorf("node credential: %w", err)
	}
	conf := *aconf
	conf.Token, conf.Tenant, conf.Role = out.(*api.Token).Status.Token, "", string(api.RoleNode)
	if err := conf.Write(path); err != nil {
		return nil, nil, err
	}
	c, err := client.New(&conf)
	return c, &conf, err
}
