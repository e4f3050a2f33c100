package bridge

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
)

// TestPolicy: with an ingress policy on p allowing q on TCP 8080, q
// reaches p:8080 but not p:9090, r (same tenant) reaches neither, the node
// reaches both; replacing the policy with none opens everything again.
func TestPolicy(t *testing.T) {
	e := newEnv(t, 24)
	p, q, r := e.attach("p", "ta"), e.attach("q", "ta"), e.attach("r", "ta")
	listen(t, p.ns, 8080)
	listen(t, p.ns, 9090)
	listen(t, r.ns, 9090)
	policy := &networkv1.SetPolicyRequest{Ingress: []*networkv1.IngressPolicy{{
		SandboxId: "p",
		Rules: []*networkv1.IngressRule{{
			From:  []string{q.ip.String() + "/32"},
			Ports: []*networkv1.PortRule{{Protocol: "TCP", Port: 8080}},
		}},
	}}}
	if _, err := e.p.SetPolicy(t.Context(), policy); err != nil {
		t.Fatal(err)
	}
	table := func(want map[string]string) {
		t.Helper()
		for _, tc := range []struct {
			name, ns string
			dst      netip.AddrPort
		}{
			{"q→p:8080", q.ns, netip.AddrPortFrom(p.ip, 8080)},
			{"q→p:9090", q.ns, netip.AddrPortFrom(p.ip, 9090)},
			{"r→p:8080", r.ns, netip.AddrPortFrom(p.ip, 8080)},
			{"q→r:9090", q.ns, netip.AddrPortFrom(r.ip, 9090)},
			{"node→p:9090", "", netip.AddrPortFrom(p.ip, 9090)},
		} {
			if got := dial(t, tc.ns, tc.dst); got != want[tc.name] {
				t.Errorf("%s: %s, want %s", tc.name, got, want[tc.name])
			}
		}
	}
	table(map[string]string{"q→p:8080": "ok", "q→p:9090": "dropped", "r→p:8080": "dropped", "q→r:9090": "ok", "node→p:9090": "ok"})
	if err := e.check("p", p.ns, "eth0"); err != nil {
		t.Errorf("Check under a policy: %v", err)
	}

	// A pod attached after the policy gets it at once.
	p2ns := e.netns("p2")
	resp, err := e.p.Attach(t.Context(), &networkv1.AttachRequest{SandboxId: "p", Tenant: "ta", NetnsPath: p2ns, Ifname: "net1"})
	if err != nil {
		t.Fatal(err)
	}
	listen(t, p2ns, 9090)
	p2 := netip.MustParsePrefix(resp.Ips[0].Address).Addr()
	if got := dial(t, q.ns, netip.AddrPortFrom(p2, 9090)); got != "dropped" {
		t.Errorf("q→p/net1:9090 right after its Attach: %s, want dropped", got)
	}

	if _, err := e.p.SetPolicy(t.Context(), &networkv1.SetPolicyRequest{}); err != nil {
		t.Fatal(err)
	}
	table(map[string]string{"q→p:8080": "ok", "q→p:9090": "ok", "r→p:8080": "ok", "q→r:9090": "ok", "node→p:9090": "ok"})

	for _, tc := range []struct {
		req   *networkv1.SetPolicyRequest
		field string
	}{
		{&networkv1.SetPolicyRequest{RemoteEndpoints: []*networkv1.Endpoint{{Ip: "nope", Tenant: "ta"}}}, "remote_endpoints[0].ip"},
		{&networkv1.SetPolicyRequest{RemoteEndpoints: []*networkv1.Endpoint{{Ip: "10.0.0.1"}}}, "remote_endpoints[0].tenant"},
		{&networkv1.SetPolicyRequest{Ingress: []*networkv1.IngressPolicy{{}}}, "ingress[0].sandbox_id"},
		{&networkv1.SetPolicyRequest{Ingress: []*networkv1.IngressPolicy{{SandboxId: "p", Rules: []*networkv1.IngressRule{{From: []string{"x"}}}}}}, "ingress[0].rules[0].from[0]"},
		{&networkv1.SetPolicyRequest{Ingress: []*networkv1.IngressPolicy{{SandboxId: "p", Rules: []*networkv1.IngressRule{{Ports: []*networkv1.PortRule{{Protocol: "ICMP"}}}}}}}, "ingress[0].rules[0].ports[0].protocol"},
		{&networkv1.SetPolicyRequest{Ingress: []*networkv1.IngressPolicy{{SandboxId: "p", Rules: []*networkv1.IngressRule{{Ports: []*networkv1.PortRule{{Protocol: "TCP", Port: 70000}}}}}}}, "ingress[0].rules[0].ports[0].port"},
	} {
		if _, err := e.p.SetPolicy(t.Context(), tc.req); !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != tc.field {
			t.Errorf("SetPolicy(%v) = %v, want ErrInvalidArgument about %s", tc.req, err, tc.field)
		}
	}
}
