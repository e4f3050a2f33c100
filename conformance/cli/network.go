package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/paddock-dev/paddock/conformance/networktest"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
	"github.com/spf13/cobra"
)

type networkFlags struct {
	commonFlags
	workDir, podCIDR, clusterCIDR, serviceCIDR string
	probeTimeout                               time.Duration
}

func newNetworkCmd(out, errOut io.Writer) *cobra.Command {
	var f networkFlags
	cmd := &cobra.Command{
		Use:   "network --plugin PATH",
		Short: "Run the network conformance cases (NP-*) against a network plugin",
		Long: `Run the network conformance cases that apply to one node against the
plugin binary at --plugin, launched through the same host code the node
agent uses. The suite makes network namespaces of its own, attaches them
through the plugin and probes them with TCP, UDP and ICMP; after each case
it checks that no host veth, allocated address or namespace was left
behind. Prints a summary, writes junit.xml and results.json to
--report-dir, and exits non-zero if any case fails. Run it as root.

--plugin-config is the plugin's JSON configuration. Give the plugin names of its
own there (the bridge plugin's "bridge" and "table") so that the run does
not touch the dataplane of a cluster running on the same machine, and pod
ranges (--pod-cidr, --cluster-cidr) that nothing else on the machine uses.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.list {
				for _, c := range networktest.Cases() {
					name := c.Name
					if c.Capability != "" {
						name += " (when the plugin advertises " + c.Capability + ")"
					}
					listCase(out, c.ID, c.Level, "core", name)
				}
				return nil
			}
			return runNetwork(cmd.Context(), f, out, errOut)
		},
	}
	fl := cmd.Flags()
	f.register(fl, "network")
	fl.StringVar(&f.podCIDR, "pod-cidr", networktest.DefaultPodCIDR, "the node's pod range handed to SetupNode (a /24 or larger)")
	fl.StringVar(&f.clusterCIDR, "cluster-cidr", networktest.DefaultClusterCIDR, "the cluster's pod range, holding --pod-cidr")
	fl.StringVar(&f.serviceCIDR, "service-cidr", networktest.DefaultServiceCIDR, "the service range handed to SetupNode")
	fl.StringVar(&f.workDir, "work-dir", "", "directory for the suite's network namespaces (default: a fresh temporary one)")
	fl.DurationVar(&f.probeTimeout, "probe-timeout", 1500*time.Millisecond, "how long a probe waits for an answer before it counts the packet as dropped")
	return cmd
}

func runNetwork(ctx context.Context, f networkFlags, out, errOut io.Writer) error {
	sel, config, err := f.check("network")
	if err != nil {
		return err
	}
	if !json.Valid(config) {
		return fmt.Errorf("--plugin-config %s: not valid JSON", f.pluginConfig)
	}
	if f.caseTimeout <= 0 || f.probeTimeout <= 0 {
		return fmt.Errorf("--case-timeout %v, --probe-timeout %v: want positive durations", f.caseTimeout, f.probeTimeout)
	}
	spec := f.launchSpec(config)
	spec.hostConfig = networktest.HostConfig
	inst, stop, err := launch(ctx, pluginhost.NetworkKind, spec, errOut)
	if err != nil {
		return err
	}
	defer stop()
	rep, err := networktest.Run(ctx, networktest.Config{
		Target:       networktest.HostTarget(inst),
		Focus:        sel.focus,
		Skip:         sel.skip,
		PodCIDR:      f.podCIDR,
		ClusterCIDR:  f.clusterCIDR,
		ServiceCIDR:  f.serviceCIDR,
		WorkDir:      f.workDir,
		CaseTimeout:  f.caseTimeout,
		ProbeTimeout: f.probeTimeout,
		Progress:     errOut,
	})
	if err != nil {
		return err
	}
	return finish(rep, f.reportDir, out)
}
