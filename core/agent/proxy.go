package agent

import (
	"net"
	"net/netip"
	"strconv"

	"github.com/paddock-dev/paddock/core/proxy"
)

// defaultDNSPort is the cluster DNS server's port when DNSTarget does not
// say (the server's --dns-listen default).
const defaultDNSPort = 1053

// startProxy runs the node's service proxy (core/proxy) once the node
// has its pod range: the cluster DNS rule needs an address pods can
// reach. It runs until the agent's context ends and leaves its rules in
// place, so that services keep answering while the agent restarts.
func (a *Agent) startProxy(podCIDR string) {
	if a.net == nil || a.cfg.ProxyTable == "off" || !a.net.proxyStarted.CompareAndSwap(false, true) {
		return
	}
	cfg := proxy.Config{
		Table:       a.cfg.ProxyTable,
		ClusterCIDR: a.cfg.ClusterNetwork.ClusterCIDR,
		Log:         a.log.With("component", "proxy"),
	}
	if target, ok := a.dnsTarget(podCIDR); ok {
		cfg.DNS = proxy.DNSConfig{ServiceIP: a.cfg.ClusterNetwork.DNSServiceIP().String(), Target: target}
	}
	p, err := proxy.New(cfg)
	if err != nil {
		a.log.Error("service proxy not started", "error", err)
		a.net.proxyStarted.Store(false)
		return
	}
	a.log.Info("service proxy started", "dns", cfg.DNS.Target)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := p.Run(a.ctx, a.c); err != nil && a.ctx.Err() == nil {
			a.log.Error("service proxy stopped", "error", err)
		}
	}()
}

// dnsTarget is where the proxy sends the cluster DNS service's queries:
// DNSTarget, with a loopback or empty host replaced by an address of this
// node that pods can reach — the node IP, or when that is loopback too,
// the first address of the node's pod range (the bridge's gateway).
func (a *Agent) dnsTarget(podCIDR string) (string, bool) {
	host, port := "", strconv.Itoa(defaultDNSPort)
	if a.cfg.DNSTarget != "" {
		h, p, err := net.SplitHostPort(a.cfg.DNSTarget)
		if err != nil {
			return "", false
		}
		host, port = h, p
	}
	if ip, err := netip.ParseAddr(host); err == nil && !ip.IsLoopback() && !ip.IsUnspecified() {
		return net.JoinHostPort(host, port), true
	}
	if ip, err := netip.ParseAddr(a.nodeIP); err == nil && ip.Is4() && !ip.IsLoopback() {
		return net.JoinHostPort(a.nodeIP, port), true
	}
	p, err := netip.ParsePrefix(podCIDR)
	if err != nil {
		return "", false
	}
	return net.JoinHostPort(p.Masked().Addr().Next().String(), port), true
}
