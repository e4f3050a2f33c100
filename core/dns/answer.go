package dns

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/paddock-dev/paddock/core/api"
)

// ednsSize is the UDP payload size the server offers in its EDNS answers
// (the DNS flag day 2020 recommendation).
const ednsSize = 1232

// handler answers one query at a time; it is safe for concurrent use.
type handler struct {
	zone *zone
	fwd  *forwarder
	log  *slog.Logger
}

// serve answers req from w's remote address.
func (h *handler) serve(ctx context.Context, w dns.ResponseWriter, req *dns.Msg) {
	_, tcp := w.LocalAddr().(*net.TCPAddr)
	reply := h.reply(ctx, sourceIP(w.RemoteAddr()), tcp, req)
	if reply == nil {
		return
	}
	if err := w.WriteMsg(reply); err != nil {
		h.log.Debug("DNS answer not sent", "client", w.RemoteAddr().String(), "error", err)
	}
}

// sourceIP returns a query's source address (IPv4 as such, also when it
// arrived on a dual-stack socket); the zero Addr when there is none.
func sourceIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// reply returns the answer to req, asked by src over TCP or UDP, sized for
// the client; nil when req gets no answer (it is itself a response).
func (h *handler) reply(ctx context.Context, src netip.Addr, tcp bool, req *dns.Msg) *dns.Msg {
	if req.Response {
		return nil
	}
	var m *dns.Msg
	switch {
	case req.Opcode != dns.OpcodeQuery:
		m = new(dns.Msg).SetRcode(req, dns.RcodeNotImplemented)
	case len(req.Question) != 1:
		m = new(dns.Msg).SetRcodeFormatError(req)
	case req.IsEdns0() != nil && req.IsEdns0().Version() != 0:
		m = new(dns.Msg).SetRcode(req, dns.RcodeBadVers)
	case !dns.IsSubDomain(h.zone.domain, dns.CanonicalName(req.Question[0].Name)):
		m = h.fwd.forward(ctx, req, tcp)
	default:
		m = h.zone.answer(src, req)
	}
	m.RecursionAvailable = true
	fit(m, req, tcp)
	return m
}

// fit gives the answer the server's own EDNS record when the query had
// one (an upstream's, with its options, is not passed on) and, over UDP,
// truncates it to what the client can take (setting TC, so that the client
// asks again over TCP).
func fit(m, req *dns.Msg, tcp bool) {
	m.Compress = true
	m.Extra = slices.DeleteFunc(m.Extra, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT })
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
		m.SetEdns0(ednsSize, opt.Do())
	} else if m.Rcode > 0xF {
		// An extended code needs EDNS, which the client cannot read.
		m.Rcode = dns.RcodeServerFailure
	}
	if tcp {
		size = dns.MaxMsgSize
	}
	m.Truncate(size)
}

// zone answers the names under the cluster domain.
type zone struct {
	domain string // canonical: "cluster.local."
	src    Source
	soa    *dns.SOA
}

func newZone(domain string, src Source) *zone {
	return &zone{
		domain: domain,
		src:    src,
		soa: &dns.SOA{
			Hdr:     dns.RR_Header{Name: domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: TTL},
			Ns:      "ns.dns." + domain,
			Mbox:    "hostmaster." + domain,
			Serial:  1,
			Refresh: 7200,
			Retry:   1800,
			Expire:  86400,
			Minttl:  TTL, // negative answers are cached this long
		},
	}
}

// answer answers a question under the domain from src.
func (z *zone) answer(src netip.Addr, req *dns.Msg) *dns.Msg {
	m := new(dns.Msg).SetReply(req)
	m.Authoritative = true
	q := req.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return m
	}
	tenant, ok := z.src.TenantOf(src)
	if !ok {
		m.Rcode = dns.RcodeRefused
		return m
	}
	rrs, extra, exists := z.lookup(tenant, dns.CanonicalName(q.Name), q.Name, q.Qtype)
	switch {
	case !exists:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{z.soa}
	case len(rrs) == 0:
		m.Ns = []dns.RR{z.soa} // the name exists, without records of this type
	default:
		m.Answer, m.Extra = rrs, extra
	}
	return m
}

// lookup returns the records of type qtype that a pod of tenant sees at
// name (canonical; owner is the name as asked, for the answers' owner),
// and whether the name exists for it at all. A name of another tenant
// does not exist for it, whether or not it exists for that tenant.
func (z *zone) lookup(tenant, name, owner string, qtype uint16) (rrs, extra []dns.RR, exists bool) {
	labels := dns.SplitDomainName(strings.TrimSuffix(name, z.domain))
	n := len(labels)
	switch {
	case n == 0:
		if qtype == dns.TypeSOA || qtype == dns.TypeANY {
			return []dns.RR{z.soa}, nil, true
		}
		return nil, nil, true
	case labels[n-1] != "svc":
		return nil, nil, false
	case n == 1: // svc.DOMAIN
		return nil, nil, true
	case labels[n-2] != tenant:
		return nil, nil, false
	case n == 2: // TENANT.svc.DOMAIN
		return nil, nil, true
	}
	svc, ok := z.src.Service(tenant, labels[n-3])
	if !ok {
		return nil, nil, false
	}
	target := strings.Join(labels[n-3:], ".") + "." + z.domain
	switch n {
	case 3: // SVC.TENANT.svc.DOMAIN
		switch qtype {
		case dns.TypeSRV:
			for _, p := range svc.Spec.Ports {
				rrs = append(rrs, srv(owner, target, p))
			}
			return rrs, z.addresses(target, svc, dns.TypeANY), true
		default:
			return z.addresses(owner, svc, qtype), nil, true
		}
	case 4: // _PROTO.SVC.TENANT.svc.DOMAIN: exists when a named port has that protocol
		return nil, nil, slices.ContainsFunc(svc.Spec.Ports, func(p api.ServicePort) bool {
			return p.Name != "" && "_"+protocol(p) == labels[0]
		})
	case 5: // _PORT._PROTO.SVC.TENANT.svc.DOMAIN
		i := slices.IndexFunc(svc.Spec.Ports, func(p api.ServicePort) bool {
			return p.Name != "" && "_"+strings.ToLower(p.Name) == labels[0] && "_"+protocol(p) == labels[1]
		})
		if i < 0 {
			return nil, nil, false
		}
		if qtype != dns.TypeSRV && qtype != dns.TypeANY {
			return nil, nil, true
		}
		return []dns.RR{srv(owner, target, svc.Spec.Ports[i])}, z.addresses(target, svc, dns.TypeANY), true
	}
	return nil, nil, false
}

// addresses returns svc's A or AAAA records (qtype ANY: both) at owner:
// its cluster IP, or the ready endpoint IPs of a headless service.
func (z *zone) addresses(owner string, svc *api.Service, qtype uint16) []dns.RR {
	if qtype != dns.TypeA && qtype != dns.TypeAAAA && qtype != dns.TypeANY {
		return nil
	}
	var ips []netip.Addr
	if svc.Spec.ClusterIP == "None" {
		if ep, ok := z.src.Endpoints(svc.Metadata.Tenant, svc.Metadata.Name); ok {
			for _, s := range ep.Subsets {
				for _, a := range s.Addresses {
					if ip, err := netip.ParseAddr(a.IP); err == nil && !slices.Contains(ips, ip.Unmap()) {
						ips = append(ips, ip.Unmap())
					}
				}
			}
		}
	} else if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil {
		ips = append(ips, ip.Unmap())
	}
	var rrs []dns.RR
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: owner, Rrtype: t, Class: dns.ClassINET, Ttl: TTL}
	}
	for _, ip := range ips {
		switch {
		case ip.Is4() && qtype != dns.TypeAAAA:
			rrs = append(rrs, &dns.A{Hdr: hdr(dns.TypeA), A: ip.AsSlice()})
		case ip.Is6() && qtype != dns.TypeA:
			rrs = append(rrs, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: ip.AsSlice()})
		}
	}
	return rrs
}

// srv is the SRV record of port p of the service named target.
func srv(owner, target string, p api.ServicePort) dns.RR {
	return &dns.SRV{
		Hdr:      dns.RR_Header{Name: owner, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: TTL},
		Priority: 0, Weight: 100, Port: uint16(p.Port), Target: target,
	}
}

// protocol is p's protocol as an SRV label has it ("tcp", "udp").
func protocol(p api.ServicePort) string {
	if p.Protocol == "" {
		return "tcp"
	}
	return strings.ToLower(string(p.Protocol))
}
