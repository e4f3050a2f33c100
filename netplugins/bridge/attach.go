package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/netplugins/internal/nft"
	"github.com/paddock-dev/paddock/netplugins/internal/statedir"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Attach connects a sandbox's network namespace: a veth pair whose host
// side joins the bridge and whose other side, named ifname, carries an
// address of the pod range and (when the namespace has none yet) the
// default route via the gateway. The isolation and anti-spoofing entries
// of the address are in place before the host side joins the bridge.
// Any failure undoes everything.
func (p *Plugin) Attach(ctx context.Context, r *networkv1.AttachRequest) (*networkv1.AttachResponse, error) {
	if r.Tenant == "" && r.SandboxId != "" {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "tenant", "is required: tenant isolation needs every pod's tenant")
	}
	cfg, node, k, done, err := p.begin(r.SandboxId, r.Ifname, r.NetnsPath, true)
	if err != nil {
		return nil, err
	}
	defer done()

	p.mu.Lock()
	existing := p.records[k]
	p.mu.Unlock()
	if existing != nil {
		return nil, errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("sandbox %s already has interface %s (address %s); detach it first", k.SandboxID, k.Ifname, existing.Address))
	}
	// Leftovers of an Attach that did not finish (the plugin died) go first.
	if err := p.release(cfg, k, nil); err != nil {
		return nil, err
	}

	rec, err := p.attach(cfg, node, k, r)
	if err != nil {
		p.log.Warn("attach failed", "sandbox", k.SandboxID, "ifname", k.Ifname, "err", err)
		if rerr := p.release(cfg, k, nil); rerr != nil {
			p.log.Error("undo of a failed attach failed", "sandbox", k.SandboxID, "ifname", k.Ifname, "err", rerr)
		}
		return nil, err
	}
	p.log.Info("attached", "sandbox", k.SandboxID, "ifname", k.Ifname, "tenant", r.Tenant, "pod", r.PodName, "address", rec.Address.String(), "hostVeth", rec.HostVeth)
	return rec.result(), nil
}

// begin starts a verb on one attachment: it validates the names, holds
// off SetupNode and locks the attachment until done is called.
func (p *Plugin) begin(sandboxID, ifname, netnsPath string, needNode bool) (cfg settings, node *nodeState, k key, done func(), err error) {
	if err := checkAttachment(sandboxID, ifname, netnsPath); err != nil {
		return settings{}, nil, key{}, nil, err
	}
	p.setupMu.RLock()
	cfg, node, err = p.snapshot(needNode)
	if err != nil {
		p.setupMu.RUnlock()
		return settings{}, nil, key{}, nil, err
	}
	k = key{sandboxID, ifname}
	unlock := p.keys.lock(k)
	return cfg, node, k, func() { unlock(); p.setupMu.RUnlock() }, nil
}

// checkAttachment validates the names of an attachment.
func checkAttachment(sandboxID, ifname, netnsPath string) error {
	switch {
	case sandboxID == "":
		return errdefs.Field(errdefs.ErrInvalidArgument, "sandbox_id", "is required")
	case ifname == "":
		return errdefs.Field(errdefs.ErrInvalidArgument, "ifname", "is required (e.g. eth0)")
	case !ifnameRE.MatchString(ifname) || ifname == "." || ifname == "..":
		return errdefs.Field(errdefs.ErrInvalidArgument, "ifname", fmt.Sprintf("%q is not an interface name (1-15 of letters, digits, _ . -)", ifname))
	case netnsPath != "" && !filepath.IsAbs(netnsPath):
		return errdefs.Field(errdefs.ErrInvalidArgument, "netns_path", fmt.Sprintf("%q is not an absolute path", netnsPath))
	}
	return nil
}

// attach does Attach's work; on error the caller releases k.
func (p *Plugin) attach(cfg settings, node *nodeState, k key, r *networkv1.AttachRequest) (*record, error) {
	if r.NetnsPath == "" {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "netns_path", "is required")
	}
	ns, err := netns.GetFromPath(r.NetnsPath)
	if err != nil {
		return nil, errdefs.Field(errdefs.ErrNotFound, "netns_path", fmt.Sprintf("network namespace %s: %v", r.NetnsPath, err))
	}
	defer ns.Close()
	nsh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", r.NetnsPath, err)
	}
	defer nsh.Close()
	if _, err := nsh.LinkByName(k.Ifname); err == nil {
		return nil, errdefs.Field(errdefs.ErrAlreadyExists, "ifname", fmt.Sprintf("%s already has an interface %s", r.NetnsPath, k.Ifname))
	}

	p.mu.Lock()
	tenantID, err := p.state.assignTenant(&p.tenants, r.Tenant)
	addrs := p.addrs
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	ip, err := addrs.Allocate(node.PodCIDR, k.owner())
	if err != nil {
		return nil, err
	}
	rec := &record{
		SandboxID: k.SandboxID, Ifname: k.Ifname, NetnsPath: r.NetnsPath,
		Tenant: r.Tenant, TenantID: tenantID, PodName: r.PodName, Labels: r.Labels,
		Address: netip.PrefixFrom(ip, node.PodCIDR.Bits()), Gateway: node.Gateway(),
		MTU: node.MTU, HostVeth: hostVeth(cfg.Bridge, k),
	}

	// The pair, its pod side made directly in the sandbox's namespace.
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = rec.HostVeth, rec.MTU
	veth := &netlink.Veth{LinkAttrs: la, PeerName: k.Ifname, PeerNamespace: netlink.NsFd(int(ns)), PeerMTU: uint32(rec.MTU)}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s (peer %s in %s): %w", rec.HostVeth, k.Ifname, r.NetnsPath, err)
	}
	pod, err := nsh.LinkByName(k.Ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %s in %s: %w", k.Ifname, r.NetnsPath, err)
	}
	rec.MAC = pod.Attrs().HardwareAddr.String()
	if err := nsh.AddrAdd(pod, &netlink.Addr{IPNet: ipNet(rec.Address)}); err != nil {
		return nil, fmt.Errorf("address %s on %s in %s: %w", rec.Address, k.Ifname, r.NetnsPath, err)
	}
	if err := nsh.LinkSetUp(pod); err != nil {
		return nil, fmt.Errorf("set %s up in %s: %w", k.Ifname, r.NetnsPath, err)
	}
	if lo, err := nsh.LinkByName("lo"); err == nil {
		_ = nsh.LinkSetUp(lo)
	}
	if !hasDefaultRoute(nsh) {
		route := &netlink.Route{LinkIndex: pod.Attrs().Index, Gw: rec.Gateway.AsSlice(), Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}}
		if err := nsh.RouteAdd(route); err != nil {
			return nil, fmt.Errorf("default route via %s in %s: %w", rec.Gateway, r.NetnsPath, err)
		}
		rec.DefaultRoute = true
	}
	host, err := netlink.LinkByName(rec.HostVeth)
	if err != nil {
		return nil, fmt.Errorf("host side %s: %w", rec.HostVeth, err)
	}
	rec.HostMAC = host.Attrs().HardwareAddr.String()

	// Isolation and anti-spoofing before the pod can send anything.
	p.mu.Lock()
	p.records[k] = rec
	p.mu.Unlock()
	if err := p.applyRules(cfg, nil); err != nil {
		return nil, err
	}
	br, err := netlink.LinkByName(cfg.Bridge)
	if err != nil {
		return nil, errdefs.Field(errdefs.ErrFailedPrecondition, "bridge", fmt.Sprintf("bridge %s: %v (SetupNode makes it)", cfg.Bridge, err))
	}
	if err := netlink.LinkSetMaster(host, br); err != nil {
		return nil, fmt.Errorf("put %s on bridge %s: %w", rec.HostVeth, cfg.Bridge, err)
	}
	if err := netlink.LinkSetHairpin(host, cfg.Hairpin); err != nil {
		return nil, fmt.Errorf("hairpin on %s: %w", rec.HostVeth, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return nil, fmt.Errorf("set %s up: %w", rec.HostVeth, err)
	}
	p.mu.Lock()
	err = statedir.WriteJSON(p.state.recordPath(k), rec)
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// result is the AttachResponse for r.
func (r *record) result() *networkv1.AttachResponse {
	resp := &networkv1.AttachResponse{
		Interfaces: []*networkv1.Interface{
			{Name: r.HostVeth, Mac: r.HostMAC, Mtu: uint32(r.MTU)},
			{Name: r.Ifname, Mac: r.MAC, Mtu: uint32(r.MTU), Sandbox: r.NetnsPath},
		},
		Ips: []*networkv1.IPConfig{{Address: r.Address.String(), Gateway: r.Gateway.String(), Interface: 1}},
	}
	if r.DefaultRoute {
		resp.Routes = []*networkv1.Route{{Dst: "0.0.0.0/0", Gw: r.Gateway.String()}}
	}
	return resp
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// hasDefaultRoute reports whether the namespace of h has an IPv4 default
// route.
func hasDefaultRoute(h *netlink.Handle) bool {
	_, ok := defaultRoute(h)
	return ok
}

// defaultRoute returns the namespace's IPv4 default route's gateway.
func defaultRoute(h *netlink.Handle) (netip.Addr, bool) {
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return netip.Addr{}, false
	}
	for _, rt := range routes {
		if rt.Dst == nil || isDefault(rt.Dst) {
			gw, _ := netip.AddrFromSlice(rt.Gw.To4())
			return gw, true
		}
	}
	return netip.Addr{}, false
}

// Detach undoes Attach. It succeeds when there is nothing to undo and when
// the network namespace is gone.
func (p *Plugin) Detach(ctx context.Context, r *networkv1.DetachRequest) (*networkv1.DetachResponse, error) {
	cfg, _, k, done, err := p.begin(r.SandboxId, r.Ifname, r.NetnsPath, false)
	if err != nil {
		return nil, err
	}
	defer done()
	var released []netip.Addr
	if err := p.release(cfg, k, &released); err != nil {
		return nil, err
	}
	if len(released) > 0 {
		p.log.Info("detached", "sandbox", k.SandboxID, "ifname", k.Ifname, "addresses", fmt.Sprint(released))
	}
	return &networkv1.DetachResponse{}, nil
}

// release removes everything of attachment k that exists: the veth pair
// (by its name, whatever the record says), the nftables entries, the
// address reservation and the record. The caller holds k's lock.
func (p *Plugin) release(cfg settings, k key, released *[]netip.Addr) error {
	veth := hostVeth(cfg.Bridge, k)
	if link, err := netlink.LinkByName(veth); err == nil {
		// The veth may vanish meanwhile: it goes with its pod's network
		// namespace when that is deleted.
		if err := netlink.LinkDel(link); err != nil && !errors.As(err, new(netlink.LinkNotFoundError)) && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("remove veth %s: %w", veth, err)
		}
	} else if !errors.As(err, new(netlink.LinkNotFoundError)) {
		return fmt.Errorf("veth %s: %w", veth, err)
	}
	p.mu.Lock()
	rec, had := p.records[k]
	delete(p.records, k)
	addrs, st := p.addrs, p.state
	p.mu.Unlock()
	if had {
		if err := p.applyRules(cfg, nil); err != nil {
			p.mu.Lock()
			p.records[k] = rec
			p.mu.Unlock()
			return err
		}
	}
	freed, err := addrs.Release(k.owner())
	if err != nil {
		return err
	}
	if released != nil {
		*released = freed
	}
	return statedir.Remove(st.recordPath(k))
}

// Check verifies an attachment and names everything missing or different.
func (p *Plugin) Check(ctx context.Context, r *networkv1.CheckRequest) (*networkv1.CheckResponse, error) {
	cfg, node, k, done, err := p.begin(r.SandboxId, r.Ifname, r.NetnsPath, true)
	if err != nil {
		return nil, err
	}
	defer done()
	p.mu.Lock()
	rec := p.records[k]
	addrs := p.addrs
	p.mu.Unlock()
	if rec == nil {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %s has no attachment %s", k.SandboxID, k.Ifname))
	}
	if r.NetnsPath != "" && r.NetnsPath != rec.NetnsPath {
		return nil, errdefs.Field(errdefs.ErrFailedPrecondition, "netns_path", fmt.Sprintf("the attachment is in %s, not %s", rec.NetnsPath, r.NetnsPath))
	}
	var problems []string
	problems = append(problems, checkSandboxSide(rec)...)
	problems = append(problems, checkHostSide(rec, cfg)...)
	problems = append(problems, p.checkRules(rec, cfg, node)...)
	if got, ok, err := addrs.Lookup(k.owner()); err != nil || !ok || got != rec.Address.Addr() {
		problems = append(problems, fmt.Sprintf("no address reservation of %s for %s", rec.Address.Addr(), k))
	}
	if len(problems) > 0 {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, strings.Join(problems, "; "))
	}
	return &networkv1.CheckResponse{}, nil
}

// checkSandboxSide checks the interface, address and route inside the
// sandbox.
func checkSandboxSide(rec *record) []string {
	ns, err := netns.GetFromPath(rec.NetnsPath)
	if err != nil {
		return []string{fmt.Sprintf("network namespace %s is gone", rec.NetnsPath)}
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return []string{fmt.Sprintf("netlink in %s: %v", rec.NetnsPath, err)}
	}
	defer h.Close()
	link, err := h.LinkByName(rec.Ifname)
	if err != nil {
		return []string{fmt.Sprintf("no interface %s in %s", rec.Ifname, rec.NetnsPath)}
	}
	var out []string
	if link.Attrs().Flags&net.FlagUp == 0 {
		out = append(out, fmt.Sprintf("%s in %s is down", rec.Ifname, rec.NetnsPath))
	}
	if link.Attrs().HardwareAddr.String() != rec.MAC {
		out = append(out, fmt.Sprintf("%s in %s has MAC %s, not %s", rec.Ifname, rec.NetnsPath, link.Attrs().HardwareAddr, rec.MAC))
	}
	list, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		out = append(out, fmt.Sprintf("addresses of %s in %s: %v", rec.Ifname, rec.NetnsPath, err))
	} else if !slices.ContainsFunc(list, func(a netlink.Addr) bool { return a.IPNet.String() == rec.Address.String() }) {
		out = append(out, fmt.Sprintf("%s in %s has no address %s", rec.Ifname, rec.NetnsPath, rec.Address))
	}
	if rec.DefaultRoute {
		if gw, ok := defaultRoute(h); !ok || gw != rec.Gateway {
			out = append(out, fmt.Sprintf("no default route via %s in %s", rec.Gateway, rec.NetnsPath))
		}
	}
	return out
}

// checkHostSide checks the host side of the pair.
func checkHostSide(rec *record, cfg settings) []string {
	host, err := netlink.LinkByName(rec.HostVeth)
	if err != nil {
		return []string{fmt.Sprintf("host side %s is missing", rec.HostVeth)}
	}
	var out []string
	br, err := netlink.LinkByName(cfg.Bridge)
	if err != nil || host.Attrs().MasterIndex != br.Attrs().Index {
		out = append(out, fmt.Sprintf("host side %s is not on bridge %s", rec.HostVeth, cfg.Bridge))
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		out = append(out, fmt.Sprintf("host side %s is down", rec.HostVeth))
	}
	return out
}

// checkRules checks the attachment's nftables entries and the static rules.
func (p *Plugin) checkRules(rec *record, cfg settings, node *nodeState) []string {
	c, err := nftables.New()
	if err != nil {
		return []string{fmt.Sprintf("nftables: %v", err)}
	}
	t := newTables(cfg.Table)
	ip := rec.Address.Addr()
	port := nft.Ifname(rec.HostVeth)
	type entry struct {
		set   *nftables.Set
		key   []byte
		chain string // for tenant_of: the tenant chain the address goes to
		what  string
	}
	isolation := fmt.Sprintf("no isolation entry for %s", ip)
	spoofing := fmt.Sprintf("no anti-spoofing entry for %s (%s, %s)", rec.HostVeth, ip, rec.MAC)
	var out []string
	for _, e := range []entry{
		{t.pods, nft.IPv4(ip), "", isolation},
		{t.tenantOf, nft.IPv4(ip), tenantVerdict(rec.TenantID).Chain, isolation},
		{t.tenantSet(rec.TenantID), nft.IPv4(ip), "", isolation},
		{t.ports, port, "", spoofing},
		{t.portMAC, nft.Key(port, rec.mac()), "", spoofing},
		{t.portIP, nft.Key(port, nft.IPv4(ip)), "", spoofing},
	} {
		have, err := nft.Elements(c, e.set)
		v, ok := have[string(e.key)]
		if (err != nil || !ok || (e.chain != "" && nft.VerdictChain(v) != e.chain)) && !slices.Contains(out, e.what) {
			out = append(out, e.what)
		}
	}
	return append(out, t.missingRules(c, node, cfg)...)
}

// GC releases every attachment that is not in valid, going on past
// errors.
func (p *Plugin) GC(ctx context.Context, r *networkv1.GCRequest) (*networkv1.GCResponse, error) {
	p.setupMu.RLock()
	defer p.setupMu.RUnlock()
	cfg, _, err := p.snapshot(false)
	if err != nil {
		return nil, err
	}
	valid := map[key]bool{}
	for _, a := range r.Valid {
		valid[key{a.SandboxId, a.Ifname}] = true
	}
	p.mu.Lock()
	candidates := map[key]bool{}
	for k := range p.records {
		candidates[k] = true
	}
	addrs := p.addrs
	p.mu.Unlock()
	reservations, err := addrs.List()
	if err != nil {
		return nil, err
	}
	for _, res := range reservations {
		candidates[key{res.Owner.SandboxID, res.Owner.Ifname}] = true
	}
	var stale []key
	for k := range candidates {
		if !valid[k] {
			stale = append(stale, k)
		}
	}
	sort.Slice(stale, func(i, j int) bool { return stale[i].String() < stale[j].String() })
	resp := &networkv1.GCResponse{}
	for _, k := range stale {
		unlock := p.keys.lock(k)
		err := p.release(cfg, k, nil)
		unlock()
		if err != nil {
			resp.Errors = append(resp.Errors, fmt.Sprintf("%s: %v", k, err))
			continue
		}
		resp.Released = append(resp.Released, &networkv1.Attachment{SandboxId: k.SandboxID, Ifname: k.Ifname})
	}
	p.log.Info("gc", "valid", len(valid), "released", len(resp.Released), "errors", len(resp.Errors))
	return resp, nil
}
