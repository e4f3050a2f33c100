package dns

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzServeDNS feeds raw queries (seeds in testdata/fuzz/FuzzServeDNS)
// from a pod of tenant acme or from no pod, over UDP or TCP, into the
// query handling: a message that does not parse is answered FORMERR by
// the server before the handler (TestMalformed); every message that
// parses goes to the handler, also those the server's accept check would
// turn away, so that the handler copes with them on its own. The answer
// must be a well-formed response to the query that fits the transport and
// never carries another tenant's records. Forwarded names go to an
// upstream on loopback.
func FuzzServeDNS(f *testing.F) {
	up := startUpstream(f)
	h := &handler{
		zone: newZone("cluster.local.", testSource()),
		fwd:  &forwarder{upstreams: []string{up.addr.String()}, timeout: time.Second},
		log:  slog.New(slog.DiscardHandler),
	}
	f.Fuzz(func(t *testing.T, raw []byte, fromPod, tcp bool) {
		req := new(dns.Msg)
		if err := req.Unpack(raw); err != nil {
			return
		}
		src := netip.MustParseAddr(noPod)
		if fromPod {
			src = netip.MustParseAddr(acmePod)
		}
		m := h.reply(context.Background(), src, tcp, req)
		if req.Response {
			if m != nil {
				t.Fatalf("answered a response: %v", m)
			}
			return
		}
		if m == nil {
			t.Fatal("no answer to a query")
		}
		if !m.Response || m.Id != req.Id {
			t.Fatalf("answer: response=%v id=%d, want a response with the query's id %d", m.Response, m.Id, req.Id)
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatalf("answer does not pack: %v\n%v", err, m)
		}
		limit := dns.MaxMsgSize
		if !tcp {
			limit = dns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil {
				limit = max(limit, int(opt.UDPSize()))
			}
		}
		if len(b) > limit {
			t.Fatalf("answer of %d bytes over %s, want at most %d", len(b), map[bool]string{false: "udp", true: "tcp"}[tcp], limit)
		}
		for _, rr := range append(append([]dns.RR{}, m.Answer...), m.Extra...) {
			s := strings.ToLower(rr.String())
			if strings.Contains(s, "10.96.0.60") || strings.Contains(s, ".other.svc.cluster.local.") {
				t.Fatalf("a pod of acme got tenant other's record %s", rr)
			}
		}
		if !fromPod && len(req.Question) == 1 && dns.IsSubDomain("cluster.local.", dns.CanonicalName(req.Question[0].Name)) &&
			req.Opcode == dns.OpcodeQuery && m.Rcode != dns.RcodeRefused && m.Rcode != dns.RcodeBadVers {
			t.Fatalf("no pod asked for %s and got %s, want REFUSED", req.Question[0].Name, dns.RcodeToString[m.Rcode])
		}
	})
}
