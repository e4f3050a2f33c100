package bridge

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/internal/netns"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// TestIsolation is the tenant-isolation truth table on one node: pods of
// one tenant connect, pods of different tenants do not — their packets
// are dropped (the connection times out; it is not refused) — and the
// node reaches every pod. A source in the cluster range of no known
// tenant is dropped too.
func TestIsolation(t *testing.T) {
	e := newEnv(t, 24)
	pods := []*pod{e.attach("a1", "ta"), e.attach("a2", "ta"), e.attach("b1", "tb")}
	for _, p := range pods {
		listen(t, p.ns, 8080)
	}
	for _, src := range pods {
		for _, dst := range pods {
			if src == dst {
				continue
			}
			want := "dropped"
			if src.tenant == dst.tenant {
				want = "ok"
			}
			if got := dial(t, src.ns, netip.AddrPortFrom(dst.ip, 8080)); got != want {
				t.Errorf("%s (%s) → %s (%s): %s, want %s", src.id, src.tenant, dst.id, dst.tenant, got, want)
			}
		}
	}
	// A closed port of the own tenant is refused, not dropped: the drops
	// above are isolation, not a missing listener.
	if got := dial(t, pods[0].ns, netip.AddrPortFrom(pods[1].ip, 8081)); got != "refused" {
		t.Errorf("a1 → a2:8081 (no listener) = %s, want refused", got)
	}
	for _, p := range pods {
		if got := dial(t, "", netip.AddrPortFrom(p.ip, 8080)); got != "ok" {
			t.Errorf("node → %s: %s, want ok", p.id, got)
		}
	}
	// A remote endpoint of tenant ta reaches ta's pods only; an unknown
	// source of the cluster range reaches nobody. Both are played by a
	// namespace routed through the node (not on the bridge).
	remote, unknown := "10.251.250.7", "10.251.250.8"
	for _, src := range []string{remote, unknown} {
		routed(t, e, src)
	}
	if _, err := e.p.SetPolicy(t.Context(), &networkv1.SetPolicyRequest{RemoteEndpoints: []*networkv1.Endpoint{{Ip: remote, Tenant: "ta"}}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		src  string
		dst  *pod
		want string
	}{
		{remote, pods[0], "ok"},
		{remote, pods[2], "dropped"},
		{unknown, pods[0], "dropped"},
		{unknown, pods[2], "dropped"},
	} {
		if got := dial(t, e.nsDir+"/routed-"+tc.src, netip.AddrPortFrom(tc.dst.ip, 8080)); got != tc.want {
			t.Errorf("%s → %s (%s): %s, want %s", tc.src, tc.dst.id, tc.dst.tenant, got, tc.want)
		}
	}
}

// routed makes a namespace with address src that reaches the pods
// through the node: a veth pair to the host with a /32 route, as traffic
// from another node arrives.
func routed(t *testing.T, e *env, src string) {
	t.Helper()
	ns := e.netns("routed-" + src)
	h, c := "pdr"+randomHex(4), "eth0"
	nsh, err := vnetns.GetFromPath(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	la := netlink.NewLinkAttrs()
	la.Name = h
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: c, PeerNamespace: netlink.NsFd(int(nsh))}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(h); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	host, _ := netlink.LinkByName(h)
	// The host side carries the namespace's gateway, a link-local address.
	gw := "169.254.77.1"
	if err := netlink.AddrAdd(host, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix(gw + "/32"))}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: ipNet(netip.PrefixFrom(netip.MustParseAddr(src), 32)), Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	inNS(t, ns, func(nh *netlink.Handle) error {
		l, err := nh.LinkByName(c)
		if err != nil {
			return err
		}
		if err := nh.AddrAdd(l, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(netip.MustParseAddr(src), 32))}); err != nil {
			return err
		}
		if err := nh.LinkSetUp(l); err != nil {
			return err
		}
		if err := nh.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(netip.MustParsePrefix(gw + "/32")), Scope: netlink.SCOPE_LINK}); err != nil {
			return err
		}
		return nh.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw), Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0"))})
	})
}

// TestAntiSpoofing: a pod that takes another pod's address as an extra
// address of its own cannot send with it: its UDP packets reach neither
// the other pods nor the node, while packets from its own address do.
func TestAntiSpoofing(t *testing.T) {
	e := newEnv(t, 24)
	a1, a2, a3 := e.attach("a1", "ta"), e.attach("a2", "ta"), e.attach("a3", "ta")
	recv := udpListener(t, a3.ns, a3.ip)
	node := udpListener(t, "", e.podCIDR.Addr().Next())
	send := func(from netip.Addr, to netip.AddrPort, msg string) {
		t.Helper()
		err := netns.Do(a1.ns, func() error {
			c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), net.UDPAddrFromAddrPort(to))
			if err != nil {
				return err
			}
			defer c.Close()
			for range 3 {
				if _, err := c.Write([]byte(msg)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Own address first: it arrives (and fills a1's ARP cache).
	send(a1.ip, recv.addr, "own")
	send(a1.ip, node.addr, "own")
	if got := recv.next(2 * time.Second); got != "own from "+a1.ip.String() {
		t.Fatalf("a3 received %q, want own from %s", got, a1.ip)
	}
	if got := node.next(2 * time.Second); got != "own from "+a1.ip.String() {
		t.Fatalf("the node received %q, want own from %s", got, a1.ip)
	}
	inNS(t, a1.ns, func(h *netlink.Handle) error {
		l, _ := h.LinkByName("eth0")
		return h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a2.ip, 32))})
	})
	send(a2.ip, recv.addr, "spoofed")
	send(a2.ip, node.addr, "spoofed")
	send(a1.ip, recv.addr, "own again")
	if got := recv.next(2 * time.Second); got != "own again from "+a1.ip.String() {
		t.Errorf("a3 received %q, want only own again from %s (spoofed packets dropped)", got, a1.ip)
	}
	if got := node.next(time.Second); got != "" {
		t.Errorf("the node received %q, want nothing (spoofed packets dropped)", got)
	}
}

// udp is a UDP listener that reports what it receives.
type udp struct {
	addr netip.AddrPort
	msgs chan string
}

func udpListener(t *testing.T, ns string, ip netip.Addr) *udp {
	t.Helper()
	var c *net.UDPConn
	listen := func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		return err
	}
	var err error
	if ns == "" {
		err = listen()
	} else {
		err = netns.Do(ns, listen)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	u := &udp{addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), msgs: make(chan string, 100)}
	go func() {
		buf := make([]byte, 100)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			u.msgs <- fmt.Sprintf("%s from %s", buf[:n], from.Addr())
		}
	}()
	return u
}

// next returns the next message that differs from the previous ones
// (the sender repeats each three times), or "" after d.
func (u *udp) next(d time.Duration) string {
	deadline := time.After(d)
	for {
		select {
		case m := <-u.msgs:
			// Drain the repeats of m.
			for {
				select {
				case m2 := <-u.msgs:
					if m2 != m {
						return m + " | " + m2
					}
				case <-time.After(100 * time.Millisecond):
					return m
				}
			}
		case <-deadline:
			return ""
		}
	}
}
