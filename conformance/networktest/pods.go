package networktest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"

	"github.com/paddock-dev/paddock/internal/netns"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

var seq atomic.Int64

// unique returns a name unique in this run.
func unique(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), seq.Add(1))
}

// Netns makes a network namespace for a sandbox; the case's end removes
// it, if the case has not.
func (t *T) Netns() string {
	path := filepath.Join(t.env.cfg.WorkDir, unique("ns"))
	if err := netns.Create(path); err != nil {
		t.Fatalf("make a network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Remove(path); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return path
}

// attachment is one Attach the case made, as the plugin answered it.
type attachment struct {
	req    *networkv1.AttachRequest
	resp   *networkv1.AttachResponse
	addr   netip.Prefix // the sandbox's address and its prefix
	gw     netip.Addr
	mac    string // of the sandbox side
	hostIf string // the host side's name, "" if the plugin made none
	// detached is set once the case detached it (or released it with
	// GC), so that the cleanup does not do it again.
	detached atomic.Bool
}

func (a *attachment) ip() netip.Addr { return a.addr.Addr() }
func (a *attachment) netns() string  { return a.req.NetnsPath }
func (a *attachment) key() string    { return a.req.SandboxId + "/" + a.req.Ifname }
func (a *attachment) String() string {
	return fmt.Sprintf("%s/%s (%s)", a.req.Tenant, a.req.PodName, a.ip())
}

// attachRequest returns the request that attaches a fresh sandbox of
// tenant in netnsPath as ifname.
func (t *T) attachRequest(tenant, netnsPath, ifname string) *networkv1.AttachRequest {
	name := unique("pod")
	return &networkv1.AttachRequest{
		SandboxId: name + "-uid", Tenant: tenant, PodName: name,
		Labels:    map[string]string{"app": name, "paddock.dev/conformance": t.id},
		NetnsPath: netnsPath, Ifname: ifname,
	}
}

// Pod makes a namespace and attaches it as eth0 of a new sandbox of
// tenant; the case's end detaches it unless the case did.
func (t *T) Pod(tenant string) *attachment {
	return t.Attach(t.attachRequest(tenant, t.Netns(), "eth0"))
}

// Attach attaches req or ends the case.
func (t *T) Attach(req *networkv1.AttachRequest) *attachment {
	a, err := t.TryAttach(req)
	if err != nil {
		t.Fatalf("Attach(%s in %s as %s): %v", req.SandboxId, req.NetnsPath, req.Ifname, err)
	}
	return a
}

// TryAttach attaches req. On success the case's end detaches it unless
// the case did; an answer that does not describe the attachment is an
// error (after the cleanup is registered).
func (t *T) TryAttach(req *networkv1.AttachRequest) (*attachment, error) {
	resp, err := t.Client().Attach(t.Context(), req)
	if err != nil {
		return nil, err
	}
	a := &attachment{req: req, resp: resp}
	t.mu.Lock()
	for _, i := range resp.Interfaces {
		if i.Sandbox == "" && i.Name != "" {
			t.hostSides = append(t.hostSides, i.Name)
		}
	}
	t.mu.Unlock()
	t.Cleanup(func() {
		if a.detached.Load() {
			return
		}
		ctx, cancel := t.cleanupContext()
		defer cancel()
		if _, err := t.Client().Detach(ctx, &networkv1.DetachRequest{SandboxId: req.SandboxId, NetnsPath: req.NetnsPath, Ifname: req.Ifname}); err != nil {
			t.Errorf("cleanup Detach(%s): %v", a.key(), err)
		}
	})
	return a, a.parse()
}

// parse reads the sandbox's address, gateway, MAC and host side from the
// Attach answer.
func (a *attachment) parse() error {
	sb := slices.IndexFunc(a.resp.Interfaces, func(i *networkv1.Interface) bool {
		return i.Sandbox == a.req.NetnsPath && i.Name == a.req.Ifname
	})
	if sb < 0 {
		return fmt.Errorf("Attach(%s) answered no interface named %s with sandbox %s: %v", a.key(), a.req.Ifname, a.req.NetnsPath, a.resp.Interfaces)
	}
	a.mac = a.resp.Interfaces[sb].Mac
	if h := slices.IndexFunc(a.resp.Interfaces, func(i *networkv1.Interface) bool { return i.Sandbox == "" }); h >= 0 {
		a.hostIf = a.resp.Interfaces[h].Name
	}
	i := slices.IndexFunc(a.resp.Ips, func(c *networkv1.IPConfig) bool { return int(c.Interface) == sb })
	if i < 0 {
		return fmt.Errorf("Attach(%s) answered no address of interface %d (%s): ips %v", a.key(), sb, a.req.Ifname, a.resp.Ips)
	}
	p, err := netip.ParsePrefix(a.resp.Ips[i].Address)
	if err != nil || !p.Addr().Is4() {
		return fmt.Errorf("Attach(%s) answered address %q: want an IPv4 address with its prefix, like 10.244.0.5/24", a.key(), a.resp.Ips[i].Address)
	}
	a.addr = p
	if a.gw, err = netip.ParseAddr(a.resp.Ips[i].Gateway); err != nil {
		return fmt.Errorf("Attach(%s) answered gateway %q: want an IPv4 address", a.key(), a.resp.Ips[i].Gateway)
	}
	return nil
}

// Detach detaches a and records that the case did; a failure is an
// error of the case.
func (t *T) Detach(a *attachment) {
	if err := t.TryDetach(a); err != nil {
		t.Errorf("Detach(%s): %v", a.key(), err)
	}
}

// TryDetach detaches a and marks it detached whatever the answer.
func (t *T) TryDetach(a *attachment) error {
	a.detached.Store(true)
	_, err := t.Client().Detach(t.Context(), &networkv1.DetachRequest{SandboxId: a.req.SandboxId, NetnsPath: a.req.NetnsPath, Ifname: a.req.Ifname})
	return err
}

// Check calls Check for a.
func (t *T) Check(a *attachment) error {
	_, err := t.Client().Check(t.Context(), &networkv1.CheckRequest{SandboxId: a.req.SandboxId, NetnsPath: a.req.NetnsPath, Ifname: a.req.Ifname})
	return err
}

// Status returns the plugin's Status or ends the case.
func (t *T) Status() *networkv1.StatusResponse {
	st, err := t.Client().Status(t.Context(), &networkv1.StatusRequest{})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	return st
}

// Allocated returns Status.ipam.allocated, or ends the case if the
// plugin does not report it.
func (t *T) Allocated() uint32 {
	st := t.Status()
	if st.Ipam == nil {
		t.Fatalf("Status has no ipam: the suite counts addresses with ipam.allocated")
	}
	return st.Ipam.Allocated
}

// ifState is what an interface looks like from inside its namespace.
type ifState struct {
	index   int
	mac     string
	mtu     int
	up      bool
	addrs   []netip.Prefix
	gateway netip.Addr // of the default route, if there is one
}

// withHandle runs fn with a netlink handle in the namespace at path ("":
// the host's).
func withHandle(path string, fn func(h *netlink.Handle) error) error {
	var h *netlink.Handle
	var err error
	if path == "" {
		h, err = netlink.NewHandle()
	} else {
		ns, nerr := vnetns.GetFromPath(path)
		if nerr != nil {
			return fmt.Errorf("open network namespace %s: %w", path, nerr)
		}
		defer ns.Close()
		h, err = netlink.NewHandleAt(ns)
	}
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	return fn(h)
}

// errNoLink is a link that does not exist.
var errNoLink = errors.New("no such interface")

// inspect returns the state of the interface ifname in the namespace at
// path; errNoLink if there is none.
func inspect(path, ifname string) (*ifState, error) {
	var s *ifState
	err := withHandle(path, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				return errNoLink
			}
			return err
		}
		attrs := l.Attrs()
		s = &ifState{index: attrs.Index, mac: attrs.HardwareAddr.String(), mtu: attrs.MTU, up: attrs.Flags&net.FlagUp != 0}
		addrs, err := h.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if p, ok := prefixOf(a.IPNet); ok {
				s.addrs = append(s.addrs, p)
			}
		}
		routes, err := h.RouteList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if isDefault(r) {
				s.gateway, _ = netip.AddrFromSlice(r.Gw.To4())
			}
		}
		return nil
	})
	return s, err
}

func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0 && r.Dst.IP.IsUnspecified()
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones), true
}

// links returns the names of the interfaces in the namespace at path
// ("": the host's) but loopback; with kind set, only those of that kind
// ("veth").
func links(path, kind string) ([]string, error) {
	var names []string
	err := withHandle(path, func(h *netlink.Handle) error {
		ls, err := h.LinkList()
		if err != nil {
			return err
		}
		for _, l := range ls {
			if l.Attrs().Name != "lo" && (kind == "" || l.Type() == kind) {
				names = append(names, l.Attrs().Name)
			}
		}
		return nil
	})
	slices.Sort(names)
	return names, err
}

// hostLinkExists reports whether the host has an interface named name.
func hostLinkExists(name string) (bool, error) {
	_, err := inspect("", name)
	if errors.Is(err, errNoLink) {
		return false, nil
	}
	return err == nil, err
}

// mutate runs fn on the interface ifname inside the namespace at path,
// to make the drift Check must see or the packets anti-spoofing must
// stop.
func (t *T) mutate(path, ifname, what string, fn func(h *netlink.Handle, l netlink.Link) error) {
	err := withHandle(path, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return err
		}
		return fn(h, l)
	})
	if err != nil {
		t.Fatalf("%s in %s: %v", what, path, err)
	}
}

// ipNet returns p as a *net.IPNet.
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}
