package bridge

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/netplugins/internal/ipam"
	"github.com/paddock-dev/paddock/netplugins/internal/statedir"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"github.com/vishvananda/netlink"
)

// The sysctls the node needs.
const (
	sysctlForward    = "/proc/sys/net/ipv4/ip_forward"
	sysctlBridgeDir  = "/proc/sys/net/bridge"
	sysctlBridgeCall = "/proc/sys/net/bridge/bridge-nf-call-iptables"
)

// defaultMTU is the MTU when neither the configuration nor SetupNode
// names one and no uplink is found.
const defaultMTU = 1500

// SetupNode makes the node ready for attachments: ip_forward and
// br_netfilter's bridge-nf-call-iptables on, the bridge up with the
// gateway address (the pod range's first host address), and the nftables
// tables. It is idempotent. A pod range different from the current one
// while attachments exist is FailedPrecondition.
func (p *Plugin) SetupNode(ctx context.Context, r *networkv1.SetupNodeRequest) (*networkv1.SetupNodeResponse, error) {
	n, err := parseNode(r)
	if err != nil {
		return nil, err
	}
	p.setupMu.Lock()
	defer p.setupMu.Unlock()
	cfg, old, err := p.snapshot(false)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	attached := len(p.records)
	p.mu.Unlock()
	if old != nil && old.PodCIDR != n.PodCIDR && attached > 0 {
		return nil, errdefs.Field(errdefs.ErrFailedPrecondition, "pod_cidr",
			fmt.Sprintf("the node has %d attachments in %s; detach them before changing the pod range to %s", attached, old.PodCIDR, n.PodCIDR))
	}
	if err := p.applyNode(n, cfg); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := statedir.WriteJSON(p.state.path("node.json"), n); err != nil {
		return nil, err
	}
	p.node = n
	p.log.Info("node set up", "node", n.Name, "podCIDR", n.PodCIDR.String(), "bridge", cfg.Bridge, "mtu", n.MTU)
	return &networkv1.SetupNodeResponse{}, nil
}

// parseNode validates a SetupNodeRequest.
func parseNode(r *networkv1.SetupNodeRequest) (*nodeState, error) {
	n := &nodeState{Name: r.NodeName, RequestMTU: r.Mtu}
	var err error
	if n.PodCIDR, err = parsePrefix("pod_cidr", r.PodCidr, true); err != nil {
		return nil, err
	}
	if err := ipam.CheckRange(n.PodCIDR); err != nil {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "pod_cidr", err.Error())
	}
	if n.ClusterCIDR, err = parsePrefix("cluster_cidr", r.ClusterCidr, false); err != nil {
		return nil, err
	}
	if !n.ClusterCIDR.IsValid() {
		n.ClusterCIDR = n.PodCIDR
	}
	if !n.ClusterCIDR.Contains(n.PodCIDR.Addr()) || n.ClusterCIDR.Bits() > n.PodCIDR.Bits() {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "cluster_cidr", fmt.Sprintf("%s does not contain the pod range %s", n.ClusterCIDR, n.PodCIDR))
	}
	if n.ServiceCIDR, err = parsePrefix("service_cidr", r.ServiceCidr, false); err != nil {
		return nil, err
	}
	if n.ServiceCIDR.IsValid() && n.ServiceCIDR.Overlaps(n.ClusterCIDR) {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "service_cidr", fmt.Sprintf("%s overlaps the cluster range %s", n.ServiceCIDR, n.ClusterCIDR))
	}
	if r.Mtu != 0 && (r.Mtu < minMTU || r.Mtu > 65535) {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "mtu", fmt.Sprintf("%d is out of range: 0 (the plugin picks) or %d to 65535", r.Mtu, minMTU))
	}
	return n, nil
}

// parsePrefix parses an IPv4 network named field.
func parsePrefix(field, s string, required bool) (netip.Prefix, error) {
	if s == "" {
		if required {
			return netip.Prefix{}, errdefs.Field(errdefs.ErrInvalidArgument, field, "is required (an IPv4 network such as 10.244.0.0/24)")
		}
		return netip.Prefix{}, nil
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil || !pfx.Addr().Is4() {
		return netip.Prefix{}, errdefs.Field(errdefs.ErrInvalidArgument, field, fmt.Sprintf("%q is not an IPv4 network such as 10.244.0.0/24", s))
	}
	if pfx.Masked() != pfx {
		return netip.Prefix{}, errdefs.Field(errdefs.ErrInvalidArgument, field, fmt.Sprintf("%s is not a network address (did you mean %s?)", pfx, pfx.Masked()))
	}
	return pfx, nil
}

// applyNode puts n into the kernel: sysctls, bridge, nftables. It fills
// in n.MTU.
func (p *Plugin) applyNode(n *nodeState, cfg settings) error {
	if _, err := os.Stat(sysctlBridgeDir); err != nil {
		return errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("%s is missing: load the br_netfilter kernel module (modprobe br_netfilter), which tenant isolation on the bridge needs", sysctlBridgeDir))
	}
	for _, f := range []string{sysctlForward, sysctlBridgeCall} {
		if err := os.WriteFile(f, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("set %s to 1: %w", f, err)
		}
	}
	n.MTU = pickMTU(cfg.MTU, int(n.RequestMTU))
	if err := ensureBridge(cfg.Bridge, n); err != nil {
		return err
	}
	return p.applyRules(cfg, n)
}

// pickMTU returns the configuration's MTU, else SetupNode's, else the
// uplink's (the interface holding the default route), else 1500.
func pickMTU(configured, requested int) int {
	switch {
	case configured != 0:
		return configured
	case requested != 0:
		return requested
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return defaultMTU
	}
	for _, r := range routes {
		if r.LinkIndex == 0 || (r.Dst != nil && !isDefault(r.Dst)) {
			continue
		}
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().MTU > 0 {
			return l.Attrs().MTU
		}
	}
	return defaultMTU
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}

// ensureBridge makes the bridge (with a fixed MAC, so that it does not
// change as ports come and go), sets its MTU and its one address, the
// gateway, and sets it up.
func ensureBridge(name string, n *nodeState) error {
	link, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		la := netlink.NewLinkAttrs()
		la.Name, la.MTU, la.HardwareAddr = name, n.MTU, bridgeMAC(name)
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		if link, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("bridge %s: %w", name, err)
		}
	case err != nil:
		return fmt.Errorf("bridge %s: %w", name, err)
	case link.Type() != "bridge":
		return errdefs.Field(errdefs.ErrFailedPrecondition, "bridge", fmt.Sprintf("%s exists and is a %s, not a bridge", name, link.Type()))
	}
	if link.Attrs().MTU != n.MTU {
		if err := netlink.LinkSetMTU(link, n.MTU); err != nil {
			return fmt.Errorf("bridge %s: set MTU %d: %w", name, n.MTU, err)
		}
	}
	want := &netlink.Addr{IPNet: &net.IPNet{IP: n.Gateway().AsSlice(), Mask: net.CIDRMask(n.PodCIDR.Bits(), 32)}}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("bridge %s: addresses: %w", name, err)
	}
	for _, a := range addrs {
		if a.IPNet.String() != want.IPNet.String() {
			if err := netlink.AddrDel(link, &a); err != nil {
				return fmt.Errorf("bridge %s: remove the old address %s: %w", name, a.IPNet, err)
			}
		}
	}
	if err := netlink.AddrReplace(link, want); err != nil {
		return fmt.Errorf("bridge %s: address %s: %w", name, want.IPNet, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bridge %s: set up: %w", name, err)
	}
	return nil
}

// bridgeMAC is a locally administered unicast MAC derived from the
// bridge's name.
func bridgeMAC(name string) net.HardwareAddr {
	h := sha256.Sum256([]byte("paddock-bridge\x00" + name))
	mac := net.HardwareAddr(h[:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}
