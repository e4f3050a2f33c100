package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/core/agent"
	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/controller"
	"github.com/paddock-dev/paddock/core/dns"
	"github.com/paddock-dev/paddock/core/server"
	"github.com/paddock-dev/paddock/core/store"
	"github.com/spf13/cobra"
)

// defaultDataDir is /var/lib/paddock for root and ~/.paddock/data for
// others.
func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/paddock"
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".paddock", "data")
}

type serverFlags struct {
	cfg             server.Config
	logFormat       string
	logLevel        string
	schedulerConfig string
}

func (f *serverFlags) register(cmd *cobra.Command, listen string) {
	fl := cmd.Flags()
	fl.StringVar(&f.cfg.DataDir, "data-dir", defaultDataDir(), "directory for etcd data, TLS material, admin.conf and the audit log")
	fl.StringVar(&f.cfg.Listen, "listen", listen, "address the API server listens on (HOST:PORT)")
	fl.StringSliceVar(&f.cfg.EtcdEndpoints, "etcd-endpoints", nil, "use this external etcd cluster instead of the embedded one (comma-separated URLs)")
	fl.StringVar(&f.cfg.EtcdCAFile, "etcd-cafile", "", "CA bundle to verify the external etcd's certificates")
	fl.StringVar(&f.cfg.EtcdCertFile, "etcd-certfile", "", "client certificate for the external etcd")
	fl.StringVar(&f.cfg.EtcdKeyFile, "etcd-keyfile", "", "client key for the external etcd")
	fl.StringVar(&f.cfg.EtcdClientURL, "etcd-client-url", "", "also serve the embedded etcd's client API on this loopback URL (e.g. http://127.0.0.1:2379)")
	fl.StringSliceVar(&f.cfg.TLSSANs, "tls-san", nil, "extra host names or IPs for the serving certificate")
	fl.StringVar(&f.cfg.AuditLog, "audit-log", "", `audit log path ("" = DATA_DIR/audit.log, "-" = stdout, "off")`)
	fl.BoolVar(&f.cfg.Controllers.Enabled, "controllers", true, "run the controllers (deployments, replica sets, garbage collection, node lifecycle); with several servers one leads")
	fl.DurationVar(&f.cfg.Controllers.NodeMonitorGracePeriod, "node-monitor-grace-period", controller.DefaultNodeMonitorGracePeriod, "mark a node Ready=Unknown when its agent has not renewed its lease for this long")
	fl.DurationVar(&f.cfg.Controllers.PodEvictionTimeout, "pod-eviction-timeout", controller.DefaultPodEvictionTimeout, "delete the pods of a node that has been Ready=Unknown for this long, so that they are replaced")
	fl.StringVar(&f.cfg.Network.ClusterCIDR, "cluster-cidr", api.DefaultClusterCIDR, "IPv4 range pod IPs come from; each node gets a slice of it")
	fl.IntVar(&f.cfg.Network.NodeCIDRMaskSize, "node-cidr-mask-size", api.DefaultNodeCIDRMaskSize, "prefix length of each node's slice of --cluster-cidr (24: 254 pods per node)")
	fl.StringVar(&f.cfg.Network.ServiceCIDR, "service-cidr", api.DefaultServiceCIDR, "IPv4 range services' cluster IPs come from; its 10th address is the cluster DNS service's")
	fl.StringVar(&f.cfg.Network.NodePortRange, "service-node-port-range", api.DefaultNodePortRange, "ports NodePort services are given on every node, FIRST-LAST")
	fl.StringVar(&f.cfg.DNS.Listen, "dns-listen", ":1053", `UDP and TCP address of the cluster DNS server (HOST:PORT); "off" for none`)
	fl.StringVar(&f.cfg.DNS.Domain, "cluster-domain", dns.DefaultDomain, "the cluster's DNS domain: services are SVC.TENANT.svc.DOMAIN")
	fl.StringSliceVar(&f.cfg.DNS.Upstreams, "dns-upstream", nil, "IP:PORT of name servers for names outside the cluster domain, comma-separated (default: the nameservers of /etc/resolv.conf)")
	fl.StringVar(&f.schedulerConfig, "scheduler-config", "", `JSON file tuning the scheduler: {"scoreWeights":{"LeastAllocated":1,...},"percentageOfNodesToScore":0,"minFeasibleNodesToFind":100}`)
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// complete checks the flags and fills in the config's logger and version.
func (f *serverFlags) complete(g *globals) error {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--node-monitor-grace-period", f.cfg.Controllers.NodeMonitorGracePeriod}, {"--pod-eviction-timeout", f.cfg.Controllers.PodEvictionTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("%s %s: want a positive duration such as 40s or 5m", d.flag, d.v)
		}
	}
	if err := f.cfg.Network.Validate(); err != nil {
		return err
	}
	if f.schedulerConfig != "" {
		sc, err := server.LoadSchedulerConfig(f.schedulerConfig)
		if err != nil {
			return fmt.Errorf("--scheduler-config: %w", err)
		}
		f.cfg.Controllers.Scheduler = sc
	}
	log, err := newLogger(g.errOut, f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	f.cfg.Log, f.cfg.Version = log, Version
	return nil
}

func newServerCmd(g *globals) *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane (API server on embedded or external etcd)",
		Long: `Run the control plane: the API server on an embedded etcd in --data-dir, or on
an external etcd cluster with --etcd-endpoints. On first start it makes a CA
and serving certificate and writes DATA_DIR/admin.conf, a client config with
a cluster-admin token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.complete(g); err != nil {
				return err
			}
			return server.Run(cmd.Context(), f.cfg)
		},
	}
	f.register(cmd, ":6443")
	return cmd
}

func newUpCmd(g *globals) *cobra.Command {
	var f serverFlags
	var af agentFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run an all-in-one cluster on this machine",
		Long: `Run an all-in-one cluster on this machine: the control plane on an embedded
etcd, the scheduler and controllers, the cluster DNS, and a node agent with
the runc and gVisor runtime plugins (runtime classes runc and gvisor, when
runsc and its plugin are next to this binary) and the bridge network plugin.
It writes DATA_DIR/admin.conf and points ~/.paddock/config at it when
that is free, so client commands work right away. Image archives in
DATA_DIR/agent/import are imported at start (make up puts the test images
there).

Ctrl-C or SIGTERM stops the control plane and the agent but leaves the pods
running; the next 'paddock up' picks them up. 'paddock down' stops them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.complete(g); err != nil {
				return err
			}
			af.dataDir = filepath.Join(f.cfg.DataDir, "agent")
			acfg, err := af.config(g, f.logFormat, f.logLevel)
			if err != nil {
				return err
			}
			upAgentNetwork(&acfg, f.cfg)
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			start := time.Now()
			fmt.Fprintf(g.out, "• starting Paddock %s in %s\n", Version, f.cfg.DataDir)
			agentDone := make(chan error, 1)
			f.cfg.Ready = func(adminConf string) {
				fmt.Fprintf(g.out, "✓ etcd and API server ready on %s (%.1fs)\n", f.cfg.Listen, time.Since(start).Seconds())
				fmt.Fprintf(g.out, "✓ cluster-admin config: %s\n", adminConf)
				if link := linkUserConfig(adminConf); link != "" {
					fmt.Fprintf(g.out, "✓ %s points at it\n", link)
				} else {
					fmt.Fprintf(g.out, "  use it with: export PADDOCK_CONFIG=%s\n", adminConf)
				}
				// The API server serves once Ready returns: the agent
				// starts beside it.
				go func() { agentDone <- runUpAgent(ctx, g, acfg, adminConf, f.cfg.DataDir, start) }()
			}
			serverErr := server.Run(ctx, f.cfg)
			cancel()
			if f.cfg.Ready != nil {
				select {
				case err := <-agentDone:
					if serverErr == nil && err != nil && !errors.Is(err, context.Canceled) {
						serverErr = err
					}
				case <-time.After(30 * time.Second):
				}
			}
			if serverErr == nil {
				fmt.Fprintf(g.out, "• stopped; pods keep running (paddock down stops them)\n")
			}
			return serverErr
		},
	}
	f.register(cmd, "127.0.0.1:6443")
	af.register(cmd, false)
	return cmd
}

// upAgentNetwork gives the all-in-one cluster's agent the server's
// network layout and DNS server.
func upAgentNetwork(acfg *agent.Config, cfg server.Config) {
	acfg.ClusterNetwork = cfg.Network
	acfg.ClusterDomain = cfg.DNS.Domain
	if _, port, err := net.SplitHostPort(cfg.DNS.Listen); err == nil {
		// The server listens beside the agent: the agent puts in the
		// node's address pods reach.
		acfg.DNSTarget = net.JoinHostPort("127.0.0.1", port)
	}
}

// runUpAgent runs the all-in-one cluster's node agent until ctx ends.
func runUpAgent(ctx context.Context, g *globals, cfg agent.Config, adminConf, dataDir string, start time.Time) error {
	a, err := upAgent(ctx, cfg, adminConf, dataDir)
	if err == nil {
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		select {
		case <-a.Ready():
			fmt.Fprintf(g.out, "✓ node %s ready with runtimes %s (%.1fs)\n", cfg.NodeName, runtimeNames(cfg), time.Since(start).Seconds())
			fmt.Fprintf(g.out, "\nNext:\n  paddock tenant create demo --quota pods=10,cpu=4,memory=8Gi\n  paddock run hello -t demo --image paddock.dev/test/server:latest\n  paddock get pods -t demo -o wide\n  paddock logs -t demo <pod>\n\nPress Ctrl-C to stop.\n")
			err = <-done
		case err = <-done:
		}
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(g.errOut, "✗ node agent: %v\n", FormatError(err))
	}
	return err
}

func runtimeNames(cfg agent.Config) string {
	var names []string
	for _, r := range cfg.Runtimes {
		names = append(names, r.Name)
	}
	return strings.Join(names, ", ")
}

// linkUserConfig makes ~/.paddock/config a symlink to adminConf unless the
// user has a config of their own there. It returns the link's path, or ""
// when it left things alone.
func linkUserConfig(adminConf string) string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	link := filepath.Join(home, ".paddock", "config")
	abs, err := filepath.Abs(adminConf)
	if err != nil {
		return ""
	}
	if cur, err := os.Readlink(link); err == nil {
		if cur == abs {
			return link
		}
		return ""
	}
	if _, err := os.Lstat(link); err == nil {
		return "" // a real file: the user's own
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
		return ""
	}
	if err := os.Symlink(abs, link); err != nil {
		return ""
	}
	return link
}

func newEtcdCmd(g *globals) *cobra.Command {
	etcd := &cobra.Command{Use: "etcd", Short: "Operate the cluster's etcd: snapshots and compaction"}
	snap := &cobra.Command{Use: "snapshot", Short: "Save or restore etcd snapshots"}
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "Save a snapshot of the cluster's etcd through the API server (cluster admins)",
		Args:  exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Do(cmd.Context(), http.MethodGet, "/api/v1/etcd/snapshot", nil, nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			tmp := args[0] + ".part"
			f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			n, err := io.Copy(f, resp.Body)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(tmp)
				return fmt.Errorf("snapshot stream broke after %d bytes: %w", n, err)
			}
			if n == 0 {
				os.Remove(tmp)
				return fmt.Errorf("the server sent an empty snapshot")
			}
			if err := os.Rename(tmp, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "saved snapshot %s (%d bytes)\n", args[0], n)
			return nil
		},
	}
	var restoreDir string
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore a snapshot into a data directory (the server must be stopped)",
		Long: `Restore a snapshot into DATA_DIR/etcd, for the embedded etcd. Stop the server
first and move the old DATA_DIR/etcd away; then start the server on the same
--data-dir.`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := filepath.Join(restoreDir, "etcd")
			if err := store.RestoreSnapshot(args[0], dir, store.DefaultMemberName, nil); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "restored %s into %s; start the server with --data-dir %s\n", args[0], dir, restoreDir)
			return nil
		},
	}
	restore.Flags().StringVar(&restoreDir, "data-dir", defaultDataDir(), "the server's data directory")
	var rev int64
	compact := &cobra.Command{
		Use:   "compact",
		Short: "Discard etcd history before a revision (default: the current one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := g.client()
			if err != nil {
				return err
			}
			q := map[string][]string{}
			if rev > 0 {
				q["revision"] = []string{fmt.Sprint(rev)}
			}
			resp, err := c.Do(cmd.Context(), http.MethodPost, "/api/v1/etcd/compact", q, []byte("{}"))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			fmt.Fprintf(g.out, "compacted: %s\n", strings.TrimSpace(string(b)))
			return nil
		},
	}
	compact.Flags().Int64Var(&rev, "revision", 0, "compact up to this revision (0 = current)")
	snap.AddCommand(save, restore)
	etcd.AddCommand(snap, compact)
	return etcd
}

// exactArgs is cobra.ExactArgs with a message naming what is missing.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return fmt.Errorf("%s takes %s (got %d arguments); see %s --help", cmd.CommandPath(), strings.Join(names, " "), len(args), cmd.CommandPath())
		}
		return nil
	}
}
