package cli

import (
	"strings"
	"testing"
)

func TestAgentFlags(t *testing.T) {
	g := &globals{errOut: &strings.Builder{}}
	ok := agentFlags{nodeName: "n1", maxPods: 10, podPidsLimit: 128, runtimes: []string{"runc=/x/plugin"}, labels: []string{"zone=a"}, reserved: "cpu=500m,memory=1Gi"}
	cfg, err := ok.config(g, "text", "info")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Runtimes) != 1 || cfg.Runtimes[0].Name != "runc" || cfg.Labels["zone"] != "a" || cfg.Reserved["memory"].Value() != 1<<30 || cfg.PodPidsLimit != 128 {
		t.Errorf("config = %+v", cfg)
	}
	for _, tc := range []struct {
		f    agentFlags
		want string
	}{
		{agentFlags{maxPods: 1, runtimes: []string{"runc"}}, "--runtime \"runc\": want NAME=PATH"},
		{agentFlags{maxPods: 1, runtimes: []string{"runc=/p"}, runtimeConfigs: []string{"runsc=/f"}}, "no runtime plugin \"runsc\""},
		{agentFlags{maxPods: 1, runtimes: []string{"runc=/p"}, runtimeConfigs: []string{"runc=/no/such/file"}}, "--runtime-config runc=/no/such/file"},
		{agentFlags{maxPods: 1, labels: []string{"bad key=x"}}, "--label \"bad key=x\""},
		{agentFlags{maxPods: 1, reserved: "gpu=1"}, "--reserved \"gpu=1\""},
		{agentFlags{maxPods: 1, reserved: "cpu=lots"}, "--reserved cpu: \"lots\" is not a quantity"},
		{agentFlags{maxPods: 0}, "--max-pods 0"},
		{agentFlags{maxPods: 1, podPidsLimit: -1}, "--pod-pids-limit -1: want 0 (no limit) or a positive number"},
		{agentFlags{maxPods: 1, network: "bridge"}, `--network "bridge": want NAME=PATH`},
		{agentFlags{maxPods: 1, network: "none", networkConfig: "/f"}, "--network-config: there is no network plugin"},
		{agentFlags{maxPods: 1, network: "bridge=/p", networkConfig: "/no/such/file"}, "--network-config: open /no/such/file"},
		{agentFlags{maxPods: 1, clusterCIDR: "10.244.0.0/33"}, "--cluster-cidr"},
		{agentFlags{maxPods: 1, serviceCIDR: "10.244.0.0/16"}, "overlaps --cluster-cidr"},
		{agentFlags{maxPods: 1, clusterDNS: []string{"dns.example"}}, `--cluster-dns "dns.example": want an IP address`},
		{agentFlags{maxPods: 1, dnsTarget: "10.0.0.1"}, `--dns-target "10.0.0.1": want HOST:PORT`},
		{agentFlags{maxPods: 1}, ""},
	} {
		_, err := tc.f.config(g, "text", "info")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.f, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want it to contain %q", tc.f, err, tc.want)
		}
	}
}
