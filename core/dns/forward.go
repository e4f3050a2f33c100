package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/miekg/dns"
)

// forwarder sends the queries for names outside the cluster domain to the
// upstream servers.
type forwarder struct {
	upstreams []string // IP:PORT
	timeout   time.Duration
}

// forward asks the upstreams in turn, over TCP when the client asked over
// TCP and otherwise over UDP, again over TCP when a UDP answer was
// truncated. An upstream that cannot be reached, does not answer in time,
// fails (SERVFAIL) or refuses is skipped; when all are, the answer is
// SERVFAIL. The answer carries req's ID.
func (f *forwarder) forward(ctx context.Context, req *dns.Msg, tcp bool) *dns.Msg {
	q := req.Copy()
	for _, up := range f.upstreams {
		q.Id = dns.Id() // each upstream sees an ID of its own, never the client's
		r, err := f.exchange(ctx, q, up, tcp)
		if err != nil || r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused {
			continue
		}
		r.Id = req.Id
		return r
	}
	return new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
}

func (f *forwarder) exchange(ctx context.Context, q *dns.Msg, upstream string, tcp bool) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp", Timeout: f.timeout}
	if tcp {
		c.Net = "tcp"
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	r, _, err := c.ExchangeContext(ctx, q, upstream)
	if err == nil && r.Truncated && !tcp {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, q, upstream)
	}
	return r, err
}

// CheckUpstreams checks upstream addresses: each must be IP:PORT. It
// returns them in canonical form.
func CheckUpstreams(upstreams []string) ([]string, error) {
	out := make([]string, 0, len(upstreams))
	for _, u := range upstreams {
		ap, err := netip.ParseAddrPort(u)
		if err != nil || ap.Port() == 0 {
			return nil, fmt.Errorf("dns: upstream %q: want IP:PORT, e.g. 192.0.2.53:53 or [2001:db8::53]:53", u)
		}
		out = append(out, ap.String())
	}
	return out, nil
}

// DefaultUpstreams returns the name servers of a resolv.conf file (the
// host's is /etc/resolv.conf) as IP:PORT, leaving out the cluster DNS
// server's own listen address, HOST:PORT (so that it never forwards to
// itself).
func DefaultUpstreams(resolvConf, listen string) ([]string, error) {
	conf, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("dns: upstreams from %s: %w", resolvConf, err)
	}
	port, err := strconv.ParseUint(conf.Port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("dns: upstreams from %s: port %q: %w", resolvConf, conf.Port, err)
	}
	var out []string
	for _, s := range conf.Servers {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			continue // resolv.conf names servers by IP; anything else is not usable
		}
		ap := netip.AddrPortFrom(ip.Unmap(), uint16(port))
		if !isSelf(ap, listen) {
			out = append(out, ap.String())
		}
	}
	return out, nil
}

// isSelf reports whether up is listen, HOST:PORT: the same port and the
// same IP or, when listen has every address (no host, 0.0.0.0 or ::), one
// of this host's.
func isSelf(up netip.AddrPort, listen string) bool {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port != strconv.Itoa(int(up.Port())) {
		return false
	}
	if host != "" {
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return false
		}
		if !ip.IsUnspecified() {
			return ip.Unmap() == up.Addr().WithZone("")
		}
	}
	if up.Addr().IsLoopback() || up.Addr().IsUnspecified() {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == up.Addr().WithZone("") {
			return true
		}
	}
	return false
}
