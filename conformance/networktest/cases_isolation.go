package networktest

import (
	"net"
	"net/netip"

	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"github.com/vishvananda/netlink"
)

// The cases of what reaches what: tenant isolation, anti-spoofing,
// NetworkPolicy, and all of it across a plugin restart.

// tenantPods attaches perTenant pods of each tenant, each serving TCP 80
// and UDP 53.
func (t *T) tenantPods(perTenant int, tenants ...string) []*attachment {
	var pods []*attachment
	for _, tenant := range tenants {
		for range perTenant {
			p := t.Pod(tenant)
			t.Serve(p, 80)
			pods = append(pods, p)
		}
	}
	return pods
}

func isolation(t *T) {
	t.CheckIsolation(t.tenantPods(3, tenantA, tenantB), "")
}

func antiSpoofing(t *T) {
	a, b, e := t.Pod(tenantA), t.Pod(tenantA), t.Pod(tenantA)
	c, d := t.Pod(tenantB), t.Pod(tenantB)
	t.Serve(d)
	t.Serve(e)
	host := t.serveAt("", a.gw, a.gw, 0)
	// A knows the destinations' MACs already, so that its spoofed
	// datagrams leave without an ARP request that anti-spoofing might
	// stop first.
	t.mutate(a.netns(), a.req.Ifname, "pin the neighbours", func(h *netlink.Handle, l netlink.Link) error {
		for _, n := range []*attachment{d, e} {
			mac, err := net.ParseMAC(n.mac)
			if err != nil {
				return err
			}
			if err := h.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: n.ip().AsSlice(), HardwareAddr: mac}); err != nil {
				return err
			}
		}
		return nil
	})
	// Control: from its own address, A reaches a pod of its tenant.
	if got, detail := t.send(a.netns(), netip.Addr{}, e.ip(), udp53); got != reached {
		t.Fatalf("control: %s → %s udp:53 from its own address: %s%s, want reached", a, e, orError(got), withDetail(detail))
	}
	hostPort := probe{"udp", host.udpPort}
	hostControl, _ := t.send(a.netns(), netip.Addr{}, a.gw, hostPort)
	t.Logf("control: %s → the node (%s) %s from its own address: %s", a, a.gw, hostPort, orError(hostControl))
	t.mutate(a.netns(), a.req.Ifname, "add the other pods' addresses", func(h *netlink.Handle, l netlink.Link) error {
		for _, n := range []*attachment{b, c} {
			if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(n.ip(), 32))}); err != nil {
				return err
			}
		}
		return nil
	})
	for _, s := range []struct {
		what     string
		from     *attachment
		dst      netip.Addr
		p        probe
		dstLabel string
	}{
		{"another tenant's address", c, d.ip(), udp53, d.String()},
		{"a same-tenant pod's address", b, e.ip(), udp53, e.String()},
		{"another tenant's address", c, a.gw, hostPort, "the node"},
	} {
		if s.dst == a.gw && hostControl != reached {
			t.Logf("the node does not take UDP from pods; spoofing towards it is not judged")
			continue
		}
		got, detail := t.send(a.netns(), s.from.ip(), s.dst, s.p)
		t.Logf("%s → %s %s from %s (%s): %s%s", a, s.dstLabel, s.p, s.from.ip(), s.what, orError(got), withDetail(detail))
		if got == reached {
			t.Errorf("%s sent %s with %s as its source (%s) and it arrived at %s: want it dropped", a, s.p, s.from.ip(), s.what, s.dstLabel)
		}
	}
}

func policy(t *T) {
	x, y, z := t.Pod(tenantA), t.Pod(tenantA), t.Pod(tenantA)
	t.Serve(x, 80, 81)
	set := func(req *networkv1.SetPolicyRequest) {
		if _, err := t.Client().SetPolicy(t.Context(), req); err != nil {
			t.Fatalf("SetPolicy(%v): %v", req, err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := t.cleanupContext()
		defer cancel()
		if _, err := t.Client().SetPolicy(ctx, &networkv1.SetPolicyRequest{}); err != nil {
			t.Errorf("cleanup SetPolicy(empty): %v", err)
		}
	})
	t.Expect(z, x, tcp81, reached)
	set(&networkv1.SetPolicyRequest{Ingress: []*networkv1.IngressPolicy{{
		SandboxId: x.req.SandboxId,
		Rules: []*networkv1.IngressRule{{
			From:  []string{netip.PrefixFrom(y.ip(), 32).String()},
			Ports: []*networkv1.PortRule{{Protocol: "TCP", Port: 80}},
		}},
	}}})
	t.Expect(y, x, tcp80, reached)
	t.ExpectNot(y, x, tcp81, reached)
	t.ExpectNot(z, x, tcp80, reached)
	t.ExpectNot(z, x, tcp81, reached)
	if got, detail := t.send("", netip.Addr{}, x.ip(), tcp81); got != reached {
		t.Errorf("the node → %s tcp:81 under the policy: %s%s, want reached (node traffic is not affected)", x, orError(got), withDetail(detail))
	}
	set(&networkv1.SetPolicyRequest{})
	t.Expect(z, x, tcp80, reached)
	t.Expect(z, x, tcp81, reached)
	t.Expect(y, x, tcp81, reached)
}

func restart(t *T) {
	tenants := []string{tenantA, tenantB}
	if !t.Caps().TenantIsolation {
		tenants = []string{tenantA, tenantA}
	}
	pods := t.tenantPods(2, tenants...)
	t.CheckIsolation(pods, "before the restart")
	base := t.Allocated()
	if err := t.env.cfg.Target.KillPlugin(t.Context()); err != nil {
		t.Fatalf("SIGKILL the plugin: %v", err)
	}
	if t.Caps().KernelDataplane {
		t.CheckIsolation(pods, "while the plugin is down")
		if t.env.cfg.Target.PluginPID() != 0 {
			t.Errorf("the host started the plugin again before the probes while it was down had ended: launch it on a host configured with networktest.HostConfig")
		}
	} else {
		t.Logf("the plugin does not advertise kernel_dataplane: the dataplane is not probed while it is down")
	}
	if err := t.env.cfg.Target.WaitReady(t.Context()); err != nil {
		t.Fatalf("the host did not start the plugin again: %v", err)
	}
	// As the agent does after a restart.
	if err := t.env.setupNode(t.Context(), t.env.podCIDR); err != nil {
		t.Fatalf("SetupNode after the restart: %v", err)
	}
	t.CheckIsolation(pods, "after the restart")
	n := t.Pod(tenants[0])
	t.Expect(n, pods[0], tcp80, reached)
	if t.Caps().TenantIsolation {
		t.Expect(n, pods[len(pods)-1], tcp80, dropped)
	}
	t.Detach(n)
	for _, p := range pods {
		t.Detach(p)
	}
	if got := t.Allocated(); got != base-uint32(len(pods)) {
		t.Errorf("ipam.allocated after detaching the earlier attachments = %d, want %d", got, base-uint32(len(pods)))
	}
}
