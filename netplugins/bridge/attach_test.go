package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"github.com/vishvananda/netlink"
)

// TestAttach checks Attach's result against the kernel: the interface
// exists in the namespace with that address, MAC and MTU, the default
// route goes via the gateway, the host side is on the bridge with
// hairpin on, and Check and Status agree.
func TestAttach(t *testing.T) {
	e := newEnv(t, 24)
	a := e.attach("sb-a", "t1")
	gw := e.podCIDR.Addr().Next()
	r := a.resp
	if len(r.Interfaces) != 2 || len(r.Ips) != 1 || len(r.Routes) != 1 {
		t.Fatalf("Attach = %v, want 2 interfaces, 1 ip, 1 route", r)
	}
	host, pod := r.Interfaces[0], r.Interfaces[1]
	if host.Sandbox != "" || !strings.HasPrefix(host.Name, "pdk") || len(host.Name) > 15 {
		t.Errorf("host interface = %v, want pdk... (<= 15 chars) with no sandbox", host)
	}
	if pod.Name != "eth0" || pod.Sandbox != a.ns || pod.Mac == "" || pod.Mtu == 0 {
		t.Errorf("pod interface = %v, want eth0 in %s with a MAC and MTU", pod, a.ns)
	}
	ip := r.Ips[0]
	if !e.podCIDR.Contains(a.ip) || ip.Gateway != gw.String() || ip.Interface != 1 || !strings.HasSuffix(ip.Address, "/24") {
		t.Errorf("ip = %v, want an address/24 of %s via %s on interface 1", ip, e.podCIDR, gw)
	}
	if rt := r.Routes[0]; rt.Dst != "0.0.0.0/0" || rt.Gw != gw.String() {
		t.Errorf("route = %v, want 0.0.0.0/0 via %s", rt, gw)
	}

	inNS(t, a.ns, func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		if l.Attrs().HardwareAddr.String() != pod.Mac || uint32(l.Attrs().MTU) != pod.Mtu || l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("eth0 in the netns: mac %s mtu %d flags %v, want %s %d up", l.Attrs().HardwareAddr, l.Attrs().MTU, l.Attrs().Flags, pod.Mac, pod.Mtu)
		}
		addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != ip.Address {
			t.Errorf("eth0 addresses = %v, want %s", addrs, ip.Address)
		}
		if got, ok := defaultRoute(h); !ok || got != gw {
			t.Errorf("default route via %v (%v), want via %s", got, ok, gw)
		}
		return nil
	})
	hl, err := netlink.LinkByName(host.Name)
	if err != nil {
		t.Fatal(err)
	}
	br, _ := netlink.LinkByName(e.bridge)
	if hl.Attrs().MasterIndex != br.Attrs().Index || hl.Attrs().Flags&net.FlagUp == 0 || uint32(hl.Attrs().MTU) != host.Mtu {
		t.Errorf("host side: master %d up %v mtu %d, want on %s (%d), up, mtu %d", hl.Attrs().MasterIndex, hl.Attrs().Flags&net.FlagUp != 0, hl.Attrs().MTU, e.bridge, br.Attrs().Index, host.Mtu)
	}
	if p := hl.Attrs().Protinfo; p != nil && !p.Hairpin {
		t.Errorf("host side hairpin is off")
	}
	if out := run(t, "ip", "-d", "link", "show", host.Name); !strings.Contains(out, "hairpin on") {
		t.Errorf("ip -d link show %s = %s, want hairpin on", host.Name, out)
	}
	if err := e.check("sb-a", a.ns, "eth0"); err != nil {
		t.Errorf("Check right after Attach: %v", err)
	}
	st, err := e.p.Status(t.Context(), &networkv1.StatusRequest{})
	if err != nil || !st.Ready || st.Code != 0 || st.Ipam.Range != e.podCIDR.String() || st.Ipam.Capacity != 253 || st.Ipam.Allocated != 1 {
		t.Errorf("Status = %v, %v, want ready, code 0, ipam %s 253/1", st, err, e.podCIDR)
	}
	// The node reaches the pod (its traffic is not isolated).
	listen(t, a.ns, 8080)
	if got := dial(t, "", netip.AddrPortFrom(a.ip, 8080)); got != "ok" {
		t.Errorf("node → pod: %s, want ok", got)
	}
}

// TestCollisionsAndMultipleInterfaces: a second Attach of one (sandbox,
// ifname) is ALREADY_EXISTS and changes nothing; eth0 and net1 of one
// sandbox get distinct addresses, and detaching net1 leaves eth0 whole.
func TestCollisionsAndMultipleInterfaces(t *testing.T) {
	e := newEnv(t, 24)
	a := e.attach("sb-a", "t1")
	_, err := e.p.Attach(t.Context(), &networkv1.AttachRequest{SandboxId: "sb-a", Tenant: "t1", NetnsPath: a.ns, Ifname: "eth0"})
	if !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second Attach = %v, want ErrAlreadyExists", err)
	}
	if err := e.check("sb-a", a.ns, "eth0"); err != nil {
		t.Errorf("Check after the refused Attach: %v", err)
	}
	r2, err := e.p.Attach(t.Context(), &networkv1.AttachRequest{SandboxId: "sb-a", Tenant: "t1", NetnsPath: a.ns, Ifname: "net1"})
	if err != nil {
		t.Fatalf("Attach net1: %v", err)
	}
	if r2.Ips[0].Address == a.resp.Ips[0].Address || r2.Interfaces[0].Name == a.resp.Interfaces[0].Name {
		t.Errorf("net1 = %v, want another address and host side than eth0 %v", r2, a.resp)
	}
	if err := e.detach("sb-a", a.ns, "net1"); err != nil {
		t.Fatal(err)
	}
	if err := e.check("sb-a", a.ns, "eth0"); err != nil {
		t.Errorf("Check eth0 after detaching net1: %v", err)
	}
	for _, tc := range []struct {
		name  string
		req   *networkv1.AttachRequest
		field string
	}{
		{"no sandbox", &networkv1.AttachRequest{Tenant: "t1", NetnsPath: a.ns, Ifname: "eth1"}, "sandbox_id"},
		{"no tenant", &networkv1.AttachRequest{SandboxId: "x", NetnsPath: a.ns, Ifname: "eth1"}, "tenant"},
		{"bad ifname", &networkv1.AttachRequest{SandboxId: "x", Tenant: "t1", NetnsPath: a.ns, Ifname: "a/b"}, "ifname"},
		{"relative netns", &networkv1.AttachRequest{SandboxId: "x", Tenant: "t1", NetnsPath: "run/x", Ifname: "eth1"}, "netns_path"},
		{"missing netns", &networkv1.AttachRequest{SandboxId: "x", Tenant: "t1", NetnsPath: "/nonexistent/ns", Ifname: "eth1"}, "netns_path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.p.Attach(t.Context(), tc.req)
			if err == nil || errdefs.FieldOf(err) != tc.field {
				t.Errorf("Attach(%v) = %v, want an error about %s", tc.req, err, tc.field)
			}
		})
	}
	if st, _ := e.p.Status(t.Context(), &networkv1.StatusRequest{}); st.Ipam.Allocated != 1 {
		t.Errorf("allocated = %d after the refused attaches, want 1 (eth0)", st.Ipam.Allocated)
	}
}

// hostSides lists the links on the bridge.
func hostSides(t *testing.T, bridge string) []string {
	t.Helper()
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		t.Fatal(err)
	}
	links, err := netlink.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// TestDetach: Detach three times succeeds and, after the first, the
// address is free, the host side and the nftables entries are gone; a
// Detach after the netns was deleted succeeds and frees the address.
func TestDetach(t *testing.T) {
	e := newEnv(t, 24)
	a := e.attach("sb-a", "t1")
	hostName := a.resp.Interfaces[0].Name
	for i := range 3 {
		if err := e.detach("sb-a", a.ns, "eth0"); err != nil {
			t.Fatalf("Detach #%d: %v", i+1, err)
		}
		if st, _ := e.p.Status(t.Context(), &networkv1.StatusRequest{}); st.Ipam.Allocated != 0 {
			t.Errorf("after Detach #%d: %d addresses allocated, want 0", i+1, st.Ipam.Allocated)
		}
		if _, err := netlink.LinkByName(hostName); err == nil {
			t.Errorf("after Detach #%d: host side %s still exists", i+1, hostName)
		}
		if out := run(t, "nft", "list", "table", "inet", e.table); strings.Contains(out, a.ip.String()) {
			t.Errorf("after Detach #%d: table still names %s:\n%s", i+1, a.ip, out)
		}
		if out := run(t, "nft", "list", "table", "bridge", e.table); strings.Contains(out, hostName) {
			t.Errorf("after Detach #%d: bridge table still names %s:\n%s", i+1, hostName, out)
		}
	}
	if err := e.check("sb-a", a.ns, "eth0"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Check after Detach = %v, want ErrNotFound", err)
	}

	b := e.attach("sb-b", "t1")
	run(t, "umount", b.ns)
	if err := e.detach("sb-b", b.ns, "eth0"); err != nil {
		t.Fatalf("Detach with the netns gone: %v", err)
	}
	if st, _ := e.p.Status(t.Context(), &networkv1.StatusRequest{}); st.Ipam.Allocated != 0 {
		t.Errorf("after Detach with the netns gone: %d allocated, want 0", st.Ipam.Allocated)
	}
	if got := hostSides(t, e.bridge); len(got) != 0 {
		t.Errorf("links on the bridge after detaching everything: %v", got)
	}
	if err := e.detach("never-attached", "", "eth0"); err != nil {
		t.Errorf("Detach of something never attached: %v", err)
	}
}

// TestCheckDrift removes, one at a time, the address, the default route,
// the isolation entry and a rule, and Check names each.
func TestCheckDrift(t *testing.T) {
	e := newEnv(t, 24)
	for _, tc := range []struct {
		name    string
		disturb func(a *pod)
		want    func(a *pod) string
	}{
		{"address", func(a *pod) {
			inNS(t, a.ns, func(h *netlink.Handle) error {
				l, _ := h.LinkByName("eth0")
				return h.AddrDel(l, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix(a.resp.Ips[0].Address))})
			})
		}, func(a *pod) string { return fmt.Sprintf("eth0 in %s has no address %s", a.ns, a.resp.Ips[0].Address) }},
		{"route", func(a *pod) {
			inNS(t, a.ns, func(h *netlink.Handle) error {
				l, _ := h.LinkByName("eth0")
				return h.RouteDel(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Gw: net.ParseIP(a.resp.Ips[0].Gateway)})
			})
		}, func(a *pod) string { return fmt.Sprintf("no default route via %s in %s", a.resp.Ips[0].Gateway, a.ns) }},
		{"isolation entry", func(a *pod) {
			run(t, "nft", "delete", "element", "inet", e.table, setPods, "{", a.ip.String(), "}")
		}, func(a *pod) string { return fmt.Sprintf("no isolation entry for %s", a.ip) }},
		{"bridge port", func(a *pod) {
			run(t, "ip", "link", "set", a.resp.Interfaces[0].Name, "nomaster")
		}, func(a *pod) string {
			return fmt.Sprintf("host side %s is not on bridge %s", a.resp.Interfaces[0].Name, e.bridge)
		}},
		{"rule", func(a *pod) {
			run(t, "nft", "flush", "chain", "inet", e.table, chainPodIngress)
		}, func(a *pod) string { return "chain pod-ingress of table inet " + e.table + " has 0 of its 4 rules" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.attach("sb-"+strings.ReplaceAll(tc.name, " ", "-"), "t1")
			if err := e.check(a.id, a.ns, "eth0"); err != nil {
				t.Fatalf("Check before: %v", err)
			}
			tc.disturb(a)
			err := e.check(a.id, a.ns, "eth0")
			if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), tc.want(a)) {
				t.Errorf("Check = %v, want FailedPrecondition naming %q", err, tc.want(a))
			}
			if err := e.detach(a.id, a.ns, "eth0"); err != nil {
				t.Fatal(err)
			}
		})
	}
	// SetupNode repairs the rules.
	if _, err := e.p.SetupNode(t.Context(), e.setupRequest()); err != nil {
		t.Fatal(err)
	}
	a := e.attach("sb-after", "t1")
	if err := e.check(a.id, a.ns, "eth0"); err != nil {
		t.Errorf("Check after SetupNode again: %v", err)
	}
}

// TestRulesReadable: the nft command prints the plugin's tables (an
// operator's first tool) with the rules as designed.
func TestRulesReadable(t *testing.T) {
	e := newEnv(t, 24)
	a := e.attach("sb-a", "t1")
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nft (Debian package nftables) is missing and CI=true")
		}
		t.Skip("skipping: nft (Debian package nftables) is missing")
	}
	inet := run(t, "nft", "list", "table", "inet", e.table)
	br := run(t, "nft", "list", "table", "bridge", e.table)
	host := a.resp.Interfaces[0].Name
	for _, want := range []string{
		"ct state established,related accept",
		"ip daddr @pods jump pod-ingress",
		"ip saddr != 10.251.0.0/16 accept",
		"ip saddr vmap @tenant_of",
		a.ip.String() + " : goto tenant-1",
		"ip daddr @pods-1 goto policy",
		"masquerade",
	} {
		if !strings.Contains(inet, want) {
			t.Errorf("nft list table inet %s lacks %q:\n%s", e.table, want, inet)
		}
	}
	for _, want := range []string{
		"iifname @ports jump from-pod",
		"iifname . ether saddr != @port_mac drop",
		"iifname . ip saddr != @port_ip drop",
		"iifname . arp saddr ip != @port_ip drop",
		fmt.Sprintf("%q . %s", host, a.ip),
		fmt.Sprintf("%q", host),
	} {
		if !strings.Contains(br, want) {
			t.Errorf("nft list table bridge %s lacks %q:\n%s", e.table, want, br)
		}
	}
}
