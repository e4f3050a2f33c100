package agent

import (
	"testing"

	"github.com/paddock-dev/paddock/core/api"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

func netpol(tenant, name string, selector map[string]string, rules ...api.NetworkPolicyIngressRule) *api.NetworkPolicy {
	return &api.NetworkPolicy{
		Metadata: api.ObjectMeta{Tenant: tenant, Name: name},
		Spec:     api.NetworkPolicySpec{PodSelector: api.LabelSelector{MatchLabels: selector}, Ingress: rules},
	}
}

func from(labels map[string]string) []api.NetworkPolicyPeer {
	return []api.NetworkPolicyPeer{{PodSelector: api.LabelSelector{MatchLabels: labels}}}
}

// policyRequest turns NetworkPolicies into the plugin's ingress rules:
// only selected pods are isolated, peers resolve to the IPs of the
// tenant's pods only, a rule whose peers match nobody allows nothing, and
// a policy with no rules isolates completely.
func TestPolicyRequest(t *testing.T) {
	atts := []attachment{
		{ID: "web-0", Tenant: "acme", Labels: map[string]string{"app": "web"}, IP: "10.244.0.2"},
		{ID: "front-0", Tenant: "acme", Labels: map[string]string{"role": "frontend"}, IP: "10.244.0.3"},
		{ID: "db-0", Tenant: "acme", Labels: map[string]string{"app": "db"}, IP: "10.244.0.4"},
		{ID: "other-0", Tenant: "other", Labels: map[string]string{"role": "frontend", "app": "web"}, IP: "10.244.0.5"},
	}
	policies := []*api.NetworkPolicy{
		netpol("acme", "web", map[string]string{"app": "web"},
			api.NetworkPolicyIngressRule{From: from(map[string]string{"role": "frontend"}), Ports: []api.NetworkPolicyPort{{Port: 8080}}},
			api.NetworkPolicyIngressRule{From: from(map[string]string{"role": "nobody"})}),
		netpol("acme", "db-deny-all", map[string]string{"app": "db"}),
	}
	got := policyRequest(atts, policies)
	want := &networkv1.SetPolicyRequest{Ingress: []*networkv1.IngressPolicy{
		{SandboxId: "db-0"},
		{SandboxId: "web-0", Rules: []*networkv1.IngressRule{{
			From:  []string{"10.244.0.3/32"},
			Ports: []*networkv1.PortRule{{Protocol: "TCP", Port: 8080}},
		}}},
	}}
	if !proto.Equal(got, want) {
		t.Errorf("policyRequest =\n%s\nwant\n%s", prototext.Format(got), prototext.Format(want))
	}

	// An empty pod selector selects every pod of its tenant only; a rule
	// without peers allows every pod of the tenant (From stays empty).
	got = policyRequest(atts, []*api.NetworkPolicy{netpol("other", "all", nil, api.NetworkPolicyIngressRule{Ports: []api.NetworkPolicyPort{{Protocol: api.ProtocolUDP, Port: 53}}})})
	want = &networkv1.SetPolicyRequest{Ingress: []*networkv1.IngressPolicy{
		{SandboxId: "other-0", Rules: []*networkv1.IngressRule{{Ports: []*networkv1.PortRule{{Protocol: "UDP", Port: 53}}}}},
	}}
	if !proto.Equal(got, want) {
		t.Errorf("policyRequest =\n%s\nwant\n%s", prototext.Format(got), prototext.Format(want))
	}

	if got := policyRequest(atts, nil); len(got.Ingress) != 0 {
		t.Errorf("without policies: %s, want no ingress policy", prototext.Format(got))
	}
}
