package netbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/paddock-dev/paddock/internal/netns"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
)

// pair is two pod network namespaces joined by one datapath: the
// workloads go from a to b, which owns addrB.
type pair struct {
	name  string // "bridge plugin" or "bare veth pair"
	a, b  string // the namespaces' mount files
	addrB netip.Addr
}

// tenant is the tenant both pods are attached under.
const tenant = "b6-datapath"

// The floor's addresses.
var (
	floorA = netip.MustParsePrefix("10.254.250.1/24")
	floorB = netip.MustParsePrefix("10.254.250.2/24")
)

// bridgeBed is the bridge plugin, launched through a plugin host, with its
// node set up and two pods attached.
type bridgeBed struct {
	pair
	host          *pluginhost.Host
	inst          *pluginhost.Instance
	info          pluginhost.Info
	bridge, table string
	mtu           int
	attached      []*networkv1.DetachRequest
	namespaces    []string
}

// newBridgeBed launches cfg.Plugin with a private bridge and table, sets
// up the node and attaches two pods; state lives below dir. On error it
// has undone what it did.
func newBridgeBed(ctx context.Context, cfg Config, dir string) (b *bridgeBed, err error) {
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(suffix)
	b = &bridgeBed{pair: pair{name: "bridge plugin"}, bridge: "pdb6n" + id, table: "paddock-b6n-" + id}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.close())
			b = nil
		}
	}()
	if b.host, err = pluginhost.New(pluginhost.Config{StateDir: filepath.Join(dir, "h"), Logger: cfg.Log.With("component", "pluginhost")}); err != nil {
		return b, fmt.Errorf("plugin host (a shorter data directory helps if the path is too long): %w", err)
	}
	pcfg, err := json.Marshal(map[string]string{"bridge": b.bridge, "table": b.table})
	if err != nil {
		return b, err
	}
	if b.inst, err = b.host.Launch(ctx, pluginhost.NetworkKind, "b6-datapath", cfg.Plugin, pcfg); err != nil {
		return b, fmt.Errorf("launch %s: %w", cfg.Plugin, err)
	}
	b.info = b.inst.Info()
	c, err := b.inst.Network()
	if err != nil {
		return b, err
	}
	if _, err := c.SetupNode(ctx, &networkv1.SetupNodeRequest{
		NodeName: "b6-datapath", PodCidr: cfg.PodCIDR, ClusterCidr: cfg.ClusterCIDR, ServiceCidr: cfg.ServiceCIDR,
	}); err != nil {
		return b, fmt.Errorf("SetupNode(pod_cidr %s): %w", cfg.PodCIDR, err)
	}
	for i, end := range []*string{&b.a, &b.b} {
		ns := filepath.Join(dir, fmt.Sprintf("pod-%c", 'a'+i))
		if err := netns.Create(ns); err != nil {
			return b, err
		}
		b.namespaces = append(b.namespaces, ns)
		*end = ns
		req := &networkv1.AttachRequest{
			SandboxId: fmt.Sprintf("b6-datapath-%s-%c", id, 'a'+i), Tenant: tenant, PodName: fmt.Sprintf("pod-%c", 'a'+i),
			NetnsPath: ns, Ifname: "eth0",
		}
		resp, err := c.Attach(ctx, req)
		if err != nil {
			return b, fmt.Errorf("Attach(%s): %w", req.SandboxId, err)
		}
		b.attached = append(b.attached, &networkv1.DetachRequest{SandboxId: req.SandboxId, NetnsPath: ns, Ifname: req.Ifname})
		addr, mtu, err := podSide(req, resp)
		if err != nil {
			return b, err
		}
		if i == 1 {
			b.addrB = addr
		}
		if b.mtu != 0 && b.mtu != mtu {
			return b, fmt.Errorf("Attach(%s) gave MTU %d, the first pod %d", req.SandboxId, mtu, b.mtu)
		}
		b.mtu = mtu
	}
	return b, nil
}

// podSide returns the address and MTU of the pod's interface from an
// Attach answer.
func podSide(req *networkv1.AttachRequest, resp *networkv1.AttachResponse) (netip.Addr, int, error) {
	for i, itf := range resp.Interfaces {
		if itf.Name != req.Ifname || itf.Sandbox != req.NetnsPath {
			continue
		}
		for _, ip := range resp.Ips {
			if int(ip.Interface) != i {
				continue
			}
			p, err := netip.ParsePrefix(ip.Address)
			if err != nil || !p.Addr().Is4() {
				return netip.Addr{}, 0, fmt.Errorf("Attach(%s) answered address %q: want an IPv4 address with its prefix", req.SandboxId, ip.Address)
			}
			if itf.Mtu == 0 {
				return netip.Addr{}, 0, fmt.Errorf("Attach(%s) answered no MTU for %s", req.SandboxId, req.Ifname)
			}
			return p.Addr(), int(itf.Mtu), nil
		}
	}
	return netip.Addr{}, 0, fmt.Errorf("Attach(%s) answered no address of %s in %s: %v", req.SandboxId, req.Ifname, req.NetnsPath, resp)
}

// close detaches the pods, stops the plugin and removes the namespaces,
// the bridge and the tables, going on past errors.
func (b *bridgeBed) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	if b.inst != nil {
		if c, err := b.inst.Network(); err != nil {
			errs = append(errs, err)
		} else {
			for _, req := range b.attached {
				if _, err := c.Detach(ctx, req); err != nil {
					errs = append(errs, fmt.Errorf("Detach(%s): %w", req.SandboxId, err))
				}
			}
		}
		errs = append(errs, b.inst.Kill(ctx))
	}
	if b.host != nil {
		errs = append(errs, b.host.Close())
	}
	for _, ns := range b.namespaces {
		errs = append(errs, netns.Remove(ns))
	}
	if l, err := netlink.LinkByName(b.bridge); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete bridge %s: %w", b.bridge, err))
		}
	}
	errs = append(errs, deleteTables(b.table))
	return errors.Join(errs...)
}

// deleteTables deletes the plugin's nftables tables named name (families
// inet and bridge) where they exist.
func deleteTables(name string) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	tables, err := c.ListTables()
	if err != nil {
		return fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == name {
			c.DelTable(t)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables tables %s: %w", name, err)
	}
	return nil
}

// floorBed is two namespaces joined by a bare veth pair.
type floorBed struct {
	pair
	dir string
}

// newFloorBed makes the floor's namespaces below dir and joins them with
// a veth pair of the given MTU. On error it has undone what it did.
func newFloorBed(dir string, mtu int) (f *floorBed, err error) {
	f = &floorBed{pair: pair{name: "bare veth pair", a: filepath.Join(dir, "a"), b: filepath.Join(dir, "b"), addrB: floorB.Addr()}, dir: dir}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, f.close())
			f = nil
		}
	}()
	for _, ns := range []string{f.a, f.b} {
		if err := netns.Create(ns); err != nil {
			return f, err
		}
	}
	ha, closeA, err := handleAt(f.a)
	if err != nil {
		return f, err
	}
	defer closeA()
	hb, closeB, err := handleAt(f.b)
	if err != nil {
		return f, err
	}
	defer closeB()
	nsB, err := vnetns.GetFromPath(f.b)
	if err != nil {
		return f, err
	}
	defer nsB.Close()

	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = "eth0", mtu
	if err := ha.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(nsB)), PeerMTU: uint32(mtu)}); err != nil {
		return f, fmt.Errorf("create the veth pair: %w", err)
	}
	for _, end := range []struct {
		h    *netlink.Handle
		addr netip.Prefix
	}{{ha, floorA}, {hb, floorB}} {
		l, err := end.h.LinkByName("eth0")
		if err != nil {
			return f, err
		}
		ipn := &net.IPNet{IP: end.addr.Addr().AsSlice(), Mask: net.CIDRMask(end.addr.Bits(), 32)}
		if err := end.h.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
			return f, fmt.Errorf("address %s: %w", end.addr, err)
		}
		if err := end.h.LinkSetUp(l); err != nil {
			return f, fmt.Errorf("set eth0 up: %w", err)
		}
	}
	return f, nil
}

// handleAt returns a netlink handle in the namespace mounted at path.
func handleAt(path string) (*netlink.Handle, func(), error) {
	ns, err := vnetns.GetFromPath(path)
	if err != nil {
		return nil, nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	return h, h.Close, nil
}

// close removes the namespaces, which takes the veth pair with them.
func (f *floorBed) close() error {
	return errors.Join(netns.Remove(f.a), netns.Remove(f.b), os.RemoveAll(f.dir))
}
