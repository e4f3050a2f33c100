package api

import (
	"errors"
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
)

func TestNetworkConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  NetworkConfig
		want string // part of the error; "" for valid
	}{
		{"defaults", NetworkConfig{}, ""},
		{"custom", NetworkConfig{ClusterCIDR: "10.42.0.0/16", NodeCIDRMaskSize: 26, ServiceCIDR: "10.43.0.0/20", NodePortRange: "31000-31010"}, ""},
		{"cluster not a CIDR", NetworkConfig{ClusterCIDR: "10.244.0.0"}, "--cluster-cidr"},
		{"cluster IPv6", NetworkConfig{ClusterCIDR: "fd00::/64"}, "only IPv4"},
		{"cluster host bits", NetworkConfig{ClusterCIDR: "10.244.1.0/16"}, "did you mean 10.244.0.0/16"},
		{"mask shorter than cluster", NetworkConfig{NodeCIDRMaskSize: 8}, "--node-cidr-mask-size 8"},
		{"mask too long", NetworkConfig{NodeCIDRMaskSize: 31}, "--node-cidr-mask-size 31"},
		{"service IPv6", NetworkConfig{ServiceCIDR: "fd00::/112"}, "--service-cidr"},
		{"service too small", NetworkConfig{ServiceCIDR: "10.96.0.0/29"}, "too small"},
		{"overlap", NetworkConfig{ServiceCIDR: "10.244.128.0/20"}, "overlaps --cluster-cidr"},
		{"port range not a range", NetworkConfig{NodePortRange: "30000"}, "--service-node-port-range"},
		{"port range reversed", NetworkConfig{NodePortRange: "32000-31000"}, "--service-node-port-range"},
		{"port range too high", NetworkConfig{NodePortRange: "30000-70000"}, "--service-node-port-range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.WithDefaults().Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate(%+v) = %v, want nil", tc.cfg, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
			}
		})
	}
}

func TestNetworkConfigAddresses(t *testing.T) {
	c := NetworkConfig{}.WithDefaults()
	if got := c.DNSServiceIP().String(); got != "10.96.0.10" {
		t.Errorf("DNSServiceIP() = %s, want 10.96.0.10", got)
	}
	if got := (NetworkConfig{ServiceCIDR: "172.20.16.0/20"}).WithDefaults().DNSServiceIP().String(); got != "172.20.16.10" {
		t.Errorf("DNSServiceIP(172.20.16.0/20) = %s, want 172.20.16.10", got)
	}
	if n := c.NodeCIDRCount(); n != 256 {
		t.Errorf("NodeCIDRCount() = %d, want 256 /24s in a /16", n)
	}
	for _, i := range []int{0, 1, 255} {
		p, ok := c.NodeCIDR(i)
		if !ok {
			t.Fatalf("NodeCIDR(%d) = none", i)
		}
		if j, ok := c.NodeCIDRIndex(p.String()); !ok || j != i {
			t.Errorf("NodeCIDRIndex(NodeCIDR(%d) = %s) = %d, %v; want %d", i, p, j, ok, i)
		}
	}
	if p, _ := c.NodeCIDR(3); p.String() != "10.244.3.0/24" {
		t.Errorf("NodeCIDR(3) = %s, want 10.244.3.0/24", p)
	}
	if _, ok := c.NodeCIDR(256); ok {
		t.Error("NodeCIDR(256) exists, want none past the cluster CIDR")
	}
	for _, s := range []string{"10.245.0.0/24", "10.244.3.0/25", "10.244.3.1/24", "junk"} {
		if _, ok := c.NodeCIDRIndex(s); ok {
			t.Errorf("NodeCIDRIndex(%q) ok, want not a node CIDR of %s", s, c.ClusterCIDR)
		}
	}
	if first, last := c.NodePorts(); first != 30000 || last != 32767 {
		t.Errorf("NodePorts() = %d-%d, want 30000-32767", first, last)
	}
}

func netpol(mut func(*NetworkPolicy)) *NetworkPolicy {
	n := &NetworkPolicy{
		TypeMeta: TypeMeta{APIVersion: Version, Kind: "NetworkPolicy"},
		Metadata: ObjectMeta{Name: "allow-web", Tenant: "acme"},
		Spec: NetworkPolicySpec{
			PodSelector: LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Ingress: []NetworkPolicyIngressRule{{
				From:  []NetworkPolicyPeer{{PodSelector: LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
				Ports: []NetworkPolicyPort{{Port: 5432}, {Protocol: ProtocolUDP}},
			}},
		},
	}
	if mut != nil {
		mut(n)
	}
	return n
}

func TestNetworkPolicy(t *testing.T) {
	n := netpol(nil)
	Default(n)
	if got := n.Spec.Ingress[0].Ports[0].Protocol; got != ProtocolTCP {
		t.Errorf("defaulted protocol = %q, want TCP", got)
	}
	if got := n.Spec.Ingress[0].Ports[1].Protocol; got != ProtocolUDP {
		t.Errorf("protocol UDP defaulted to %q", got)
	}
	if err := Validate(n); err != nil {
		t.Errorf("Validate(valid policy) = %v", err)
	}
	b, err := Encode(n)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(Encode(policy)) = %v", err)
	}
	if !jsonEqual(back, n) {
		t.Errorf("round trip changed the policy:\n got %s\nwant %+v", b, n)
	}
	if k, ok := KindFor("netpol"); !ok || k.Resource != "networkpolicies" || !k.TenantScoped {
		t.Errorf("KindFor(netpol) = %+v, %v; want the tenant-scoped networkpolicies", k, ok)
	}

	cases := []struct {
		name  string
		mut   func(*NetworkPolicy)
		field string
		msg   string
	}{
		{"port out of range", func(n *NetworkPolicy) {
			n.Spec.Ingress[0].Ports[1].Port = 70000
		}, "spec.ingress[0].ports[1].port", "spec.ingress[0].ports[1].port: invalid port 70000: want 1-65535"},
		{"negative port", func(n *NetworkPolicy) { n.Spec.Ingress[0].Ports[0].Port = -1 }, "spec.ingress[0].ports[0].port", "invalid port -1"},
		{"bad protocol", func(n *NetworkPolicy) { n.Spec.Ingress[0].Ports[0].Protocol = "SCTP" }, "spec.ingress[0].ports[0].protocol", "SCTP"},
		{"bad pod selector", func(n *NetworkPolicy) { n.Spec.PodSelector.MatchLabels = map[string]string{"app": "no spaces"} }, "spec.podSelector.matchLabels[app]", "no spaces"},
		{"bad peer", func(n *NetworkPolicy) {
			n.Spec.Ingress[0].From[0].PodSelector.MatchLabels = map[string]string{"-bad": "x"}
		}, "spec.ingress[0].from[0].podSelector.matchLabels", "-bad"},
		{"no tenant", func(n *NetworkPolicy) { n.Metadata.Tenant = "" }, "metadata.tenant", "required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := netpol(tc.mut)
			Default(n)
			err := Validate(n)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != tc.field || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Validate = %v (field %q), want invalid %s containing %q", err, errdefs.FieldOf(err), tc.field, tc.msg)
			}
		})
	}

	// An empty policy (all pods, no ingress: deny all) is valid.
	empty := &NetworkPolicy{Metadata: ObjectMeta{Name: "deny-all", Tenant: "acme"}}
	Default(empty)
	if err := Validate(empty); err != nil {
		t.Errorf("Validate(deny-all policy) = %v, want nil", err)
	}
}

func TestServiceNodePortsKeptOnlyForNodePort(t *testing.T) {
	cur := &Service{Metadata: ObjectMeta{Name: "s", Tenant: "a"}, Spec: ServiceSpec{Type: ServiceNodePort, ClusterIP: "10.96.0.5",
		Ports: []ServicePort{{Port: 80, Protocol: ProtocolTCP, NodePort: 30080}}}}
	same := &Service{Metadata: cur.Metadata, Spec: ServiceSpec{Type: ServiceNodePort, Ports: []ServicePort{{Port: 80}}}}
	Default(same)
	KeepAssigned(same, cur)
	if same.Spec.ClusterIP != "10.96.0.5" || same.Spec.Ports[0].NodePort != 30080 {
		t.Errorf("KeepAssigned(NodePort manifest) = %+v, want cluster IP and node port kept", same.Spec)
	}
	toClusterIP := &Service{Metadata: cur.Metadata, Spec: ServiceSpec{Ports: []ServicePort{{Port: 80}}}}
	Default(toClusterIP)
	KeepAssigned(toClusterIP, cur)
	if toClusterIP.Spec.Ports[0].NodePort != 0 {
		t.Errorf("KeepAssigned(ClusterIP manifest) kept node port %d, want none", toClusterIP.Spec.Ports[0].NodePort)
	}
	if err := ValidateUpdate(toClusterIP, cur); err != nil {
		t.Errorf("NodePort → ClusterIP update = %v, want allowed", err)
	}
}

func TestNodePodCIDRImmutable(t *testing.T) {
	cur := &Node{Metadata: ObjectMeta{Name: "n1"}, Spec: NodeSpec{PodCIDR: "10.244.1.0/24"}}
	unset := &Node{Metadata: ObjectMeta{Name: "n1"}}
	if err := ValidateUpdate(&Node{Metadata: ObjectMeta{Name: "n1"}, Spec: NodeSpec{PodCIDR: "10.244.1.0/24"}}, unset); err != nil {
		t.Errorf("setting an unset pod CIDR = %v, want allowed", err)
	}
	other := &Node{Metadata: ObjectMeta{Name: "n1"}, Spec: NodeSpec{PodCIDR: "10.244.2.0/24"}}
	if err := ValidateUpdate(other, cur); errdefs.FieldOf(err) != "spec.podCIDR" {
		t.Errorf("changing the pod CIDR = %v, want refused on spec.podCIDR", err)
	}
	KeepAssigned(unset, cur)
	if unset.Spec.PodCIDR != cur.Spec.PodCIDR {
		t.Errorf("KeepAssigned(node without pod CIDR) = %q, want %q kept", unset.Spec.PodCIDR, cur.Spec.PodCIDR)
	}
}
