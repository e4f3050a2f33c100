package api

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Defaults of NetworkConfig: the cluster network of a server started
// without network flags.
const (
	DefaultClusterCIDR      = "10.244.0.0/16"
	DefaultNodeCIDRMaskSize = 24
	DefaultServiceCIDR      = "10.96.0.0/16"
	DefaultNodePortRange    = "30000-32767"
)

// dnsServiceIPIndex is the position of the cluster DNS service's IP in
// the service CIDR: the 10th address (10.96.0.10 by default).
const dnsServiceIPIndex = 10

// NetworkConfig is the cluster's network layout, shared by the server
// (service IP and node port allocation, node pod CIDRs), the node agents
// and the CLI. Each field names the `paddock server` flag that sets it.
// Only IPv4 is supported.
type NetworkConfig struct {
	// ClusterCIDR is the range pod IPs come from (--cluster-cidr); each
	// node gets a NodeCIDRMaskSize slice of it.
	ClusterCIDR string
	// NodeCIDRMaskSize is the prefix length of each node's pod CIDR
	// (--node-cidr-mask-size).
	NodeCIDRMaskSize int
	// ServiceCIDR is the range services' cluster IPs come from
	// (--service-cidr).
	ServiceCIDR string
	// NodePortRange is the range of NodePort services' node ports, FIRST-LAST
	// (--service-node-port-range).
	NodePortRange string
}

// WithDefaults returns c with every empty field set to its default.
func (c NetworkConfig) WithDefaults() NetworkConfig {
	if c.ClusterCIDR == "" {
		c.ClusterCIDR = DefaultClusterCIDR
	}
	if c.NodeCIDRMaskSize == 0 {
		c.NodeCIDRMaskSize = DefaultNodeCIDRMaskSize
	}
	if c.ServiceCIDR == "" {
		c.ServiceCIDR = DefaultServiceCIDR
	}
	if c.NodePortRange == "" {
		c.NodePortRange = DefaultNodePortRange
	}
	return c
}

// Validate checks c (after WithDefaults); its errors name the flag.
func (c NetworkConfig) Validate() error {
	cluster, err := parseIPv4CIDR("--cluster-cidr", c.ClusterCIDR)
	if err != nil {
		return err
	}
	if m := c.NodeCIDRMaskSize; m < cluster.Bits() || m > 30 {
		return fmt.Errorf("--node-cidr-mask-size %d: want %d-30: a node's range must fit in --cluster-cidr %s and hold at least two pods", m, cluster.Bits(), cluster)
	}
	svc, err := parseIPv4CIDR("--service-cidr", c.ServiceCIDR)
	if err != nil {
		return err
	}
	if svc.Bits() > 28 {
		return fmt.Errorf("--service-cidr %s: too small: want a /28 or larger, which holds the cluster DNS address (the 10th) and more", svc)
	}
	if svc.Overlaps(cluster) {
		return fmt.Errorf("--service-cidr %s overlaps --cluster-cidr %s: service IPs and pod IPs must be apart", svc, cluster)
	}
	if _, _, err := ParsePortRange(c.NodePortRange); err != nil {
		return fmt.Errorf("--service-node-port-range %q: %w", c.NodePortRange, err)
	}
	return nil
}

// parseIPv4CIDR parses an IPv4 range given in canonical form (no host
// bits set).
func parseIPv4CIDR(flag, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s %q: want an IPv4 range such as 10.244.0.0/16", flag, s)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%s %q: only IPv4 ranges are supported", flag, s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%s %q: host bits are set: did you mean %s?", flag, s, p.Masked())
	}
	return p, nil
}

// ParsePortRange parses "FIRST-LAST" (ports 1-65535, FIRST <= LAST).
func ParsePortRange(s string) (first, last int32, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("want FIRST-LAST such as %s", DefaultNodePortRange)
	}
	f, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	l, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if err1 != nil || err2 != nil || f < 1 || l < f {
		return 0, 0, fmt.Errorf("want FIRST-LAST with 1 <= FIRST <= LAST <= 65535, such as %s", DefaultNodePortRange)
	}
	return int32(f), int32(l), nil
}

// ClusterPrefix returns the cluster CIDR. c must be valid.
func (c NetworkConfig) ClusterPrefix() netip.Prefix { return netip.MustParsePrefix(c.ClusterCIDR) }

// ServicePrefix returns the service CIDR. c must be valid.
func (c NetworkConfig) ServicePrefix() netip.Prefix { return netip.MustParsePrefix(c.ServiceCIDR) }

// NodePorts returns the node port range. c must be valid.
func (c NetworkConfig) NodePorts() (first, last int32) {
	first, last, _ = ParsePortRange(c.NodePortRange)
	return first, last
}

// DNSServiceIP returns the cluster DNS service's address: the 10th
// address of the service CIDR (10.96.0.10 by default). It is reserved:
// no Service is allocated it. c must be valid.
func (c NetworkConfig) DNSServiceIP() net.IP {
	return net.IP(NthAddr(c.ServicePrefix(), dnsServiceIPIndex).AsSlice())
}

// PrefixSize returns how many addresses an IPv4 range holds.
func PrefixSize(p netip.Prefix) uint64 { return 1 << (32 - p.Bits()) }

// NthAddr returns the n-th address of p, counting p's first address as 0.
// It does not check that the result is inside p.
func NthAddr(p netip.Prefix, n uint64) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
	v += n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// AddrIndex returns a's position in p (the inverse of NthAddr); a must be
// an IPv4 address inside p.
func AddrIndex(p netip.Prefix, a netip.Addr) uint64 {
	base, x := p.Masked().Addr().As4(), a.As4()
	u := func(b [4]byte) uint64 { return uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3]) }
	return u(x) - u(base)
}

// NodeCIDR returns the i-th subnet of size NodeCIDRMaskSize of the
// cluster CIDR, and whether there is one. c must be valid.
func (c NetworkConfig) NodeCIDR(i int) (netip.Prefix, bool) {
	cluster := c.ClusterPrefix()
	if i < 0 || i >= c.NodeCIDRCount() {
		return netip.Prefix{}, false
	}
	step := uint64(1) << (32 - c.NodeCIDRMaskSize)
	return netip.PrefixFrom(NthAddr(cluster, uint64(i)*step), c.NodeCIDRMaskSize), true
}

// NodeCIDRCount returns how many node pod CIDRs the cluster CIDR holds. c
// must be valid.
func (c NetworkConfig) NodeCIDRCount() int {
	return 1 << (c.NodeCIDRMaskSize - c.ClusterPrefix().Bits())
}

// NodeCIDRIndex returns the position of a node pod CIDR in the cluster
// CIDR (the inverse of NodeCIDR), and false when s is not one of them.
func (c NetworkConfig) NodeCIDRIndex(s string) (int, bool) {
	p, err := netip.ParsePrefix(s)
	cluster := c.ClusterPrefix()
	if err != nil || p.Bits() != c.NodeCIDRMaskSize || p.Masked() != p || !cluster.Contains(p.Addr()) {
		return 0, false
	}
	return int(AddrIndex(cluster, p.Addr()) >> (32 - c.NodeCIDRMaskSize)), true
}
