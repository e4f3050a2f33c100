package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/paddock-dev/paddock/core/api"
)

// Pod IPs of the tests: all of 127/8 is loopback on Linux, so a client
// bound to one of these is a distinct source the server sees.
const (
	acmePod  = "127.0.0.2" // a pod of tenant acme
	otherPod = "127.0.0.3" // a pod of tenant other
	noPod    = "127.0.0.4" // no pod's address
)

// memSource is an in-memory Source.
type memSource struct {
	services  map[string]*api.Service   // tenant/name
	endpoints map[string]*api.Endpoints // tenant/name
	pods      map[netip.Addr]string     // IP → tenant
}

func (s *memSource) Service(tenant, name string) (*api.Service, bool) {
	o, ok := s.services[tenant+"/"+name]
	return o, ok
}

func (s *memSource) Endpoints(tenant, name string) (*api.Endpoints, bool) {
	o, ok := s.endpoints[tenant+"/"+name]
	return o, ok
}

func (s *memSource) TenantOf(ip netip.Addr) (string, bool) {
	t, ok := s.pods[ip]
	return t, ok
}

func service(tenant, name, clusterIP string, ports ...api.ServicePort) *api.Service {
	return &api.Service{
		Metadata: api.ObjectMeta{Tenant: tenant, Name: name},
		Spec:     api.ServiceSpec{Type: api.ServiceClusterIP, ClusterIP: clusterIP, Ports: ports},
	}
}

func endpoints(tenant, name string, ready, notReady []string) *api.Endpoints {
	addrs := func(ips []string) (out []api.EndpointAddress) {
		for _, ip := range ips {
			out = append(out, api.EndpointAddress{IP: ip})
		}
		return out
	}
	return &api.Endpoints{
		Metadata: api.ObjectMeta{Tenant: tenant, Name: name},
		Subsets:  []api.EndpointSubset{{Addresses: addrs(ready), NotReadyAddresses: addrs(notReady)}},
	}
}

// testSource is the cluster the tests ask about: tenant acme has a
// service web (two named ports), a headless db with two ready endpoints and
// one not ready, and a headless big with many endpoints; tenant other
// has a service web of its own.
func testSource() *memSource {
	var many []string
	for i := range 100 {
		many = append(many, fmt.Sprintf("10.244.1.%d", i+1))
	}
	src := &memSource{
		services:  map[string]*api.Service{},
		endpoints: map[string]*api.Endpoints{},
		pods: map[netip.Addr]string{
			netip.MustParseAddr(acmePod):  "acme",
			netip.MustParseAddr(otherPod): "other",
		},
	}
	for _, s := range []*api.Service{
		service("acme", "web", "10.96.0.50",
			api.ServicePort{Name: "http", Protocol: api.ProtocolTCP, Port: 80},
			api.ServicePort{Name: "dns", Protocol: api.ProtocolUDP, Port: 53}),
		service("acme", "db", "None", api.ServicePort{Name: "pg", Protocol: api.ProtocolTCP, Port: 5432}),
		service("acme", "big", "None", api.ServicePort{Port: 80}),
		service("other", "web", "10.96.0.60", api.ServicePort{Name: "http", Protocol: api.ProtocolTCP, Port: 80}),
	} {
		src.services[s.Metadata.Tenant+"/"+s.Metadata.Name] = s
	}
	for _, e := range []*api.Endpoints{
		endpoints("acme", "db", []string{"10.244.0.5", "10.244.0.6"}, []string{"10.244.0.7"}),
		endpoints("acme", "big", many, nil),
	} {
		src.endpoints[e.Metadata.Tenant+"/"+e.Metadata.Name] = e
	}
	return src
}

// startServer runs a Server with cfg on 127.0.0.1 (a port of its own)
// until the test ends, and checks that Run returns cleanly then.
func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	if cfg.Source == nil {
		cfg.Source = testSource()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(run(t, s))
	return s
}

// run runs s and returns the function that stops it: it ends Run's
// context and checks that Run returns nil within ten seconds.
func run(t *testing.T, s *Server) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil after its context ended", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of its context's end")
		}
	}
}

// ask sends one query for name and qtype from the address from to server
// over network ("udp" or "tcp") and returns the answer.
func ask(t *testing.T, server net.Addr, from, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	r, err := exchange(server, from, network, new(dns.Msg).SetQuestion(name, qtype))
	if err != nil {
		t.Fatalf("query %s %s from %s over %s: %v", name, dns.TypeToString[qtype], from, network, err)
	}
	return r
}

func exchange(server net.Addr, from, network string, q *dns.Msg) (*dns.Msg, error) {
	ip := net.ParseIP(from)
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.UDPAddr{IP: ip}}
	if network == "tcp" {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	c := &dns.Client{Net: network, Dialer: d, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(q, server.String())
	return r, err
}

// summary renders an answer's code and records compactly for comparison:
// "NOERROR aa | A 10.96.0.50 | ns: SOA | extra: ...".
func summary(m *dns.Msg) string {
	var b strings.Builder
	b.WriteString(dns.RcodeToString[m.Rcode])
	if m.Authoritative {
		b.WriteString(" aa")
	}
	if m.Truncated {
		b.WriteString(" tc")
	}
	section := func(label string, rrs []dns.RR) {
		var parts []string
		for _, rr := range rrs {
			if rr.Header().Rrtype == dns.TypeOPT {
				continue
			}
			h := rr.Header()
			part := dns.TypeToString[h.Rrtype]
			if h.Rrtype != dns.TypeSOA {
				part += " " + strings.Join(strings.Fields(strings.TrimPrefix(rr.String(), h.String())), " ")
			}
			parts = append(parts, part)
		}
		sort.Strings(parts)
		if len(parts) > 0 {
			b.WriteString(" | " + label + strings.Join(parts, ", "))
		}
	}
	section("", m.Answer)
	section("ns: ", m.Ns)
	section("extra: ", m.Extra)
	return b.String()
}

func TestClusterNames(t *testing.T) {
	s := startServer(t, Config{})
	for _, tc := range []struct {
		name, from, qname string
		qtype             uint16
		want              string
	}{
		{"A", acmePod, "web.acme.svc.cluster.local.", dns.TypeA, "NOERROR aa | A 10.96.0.50"},
		{"A any case", acmePod, "WEB.Acme.svc.Cluster.Local.", dns.TypeA, "NOERROR aa | A 10.96.0.50"},
		{"AAAA of a known name", acmePod, "web.acme.svc.cluster.local.", dns.TypeAAAA, "NOERROR aa | ns: SOA"},
		{"TXT of a known name", acmePod, "web.acme.svc.cluster.local.", dns.TypeTXT, "NOERROR aa | ns: SOA"},
		{"SRV of a named port", acmePod, "_http._tcp.web.acme.svc.cluster.local.", dns.TypeSRV,
			"NOERROR aa | SRV 0 100 80 web.acme.svc.cluster.local. | extra: A 10.96.0.50"},
		{"SRV of a UDP port", acmePod, "_dns._udp.web.acme.svc.cluster.local.", dns.TypeSRV,
			"NOERROR aa | SRV 0 100 53 web.acme.svc.cluster.local. | extra: A 10.96.0.50"},
		{"SRV of the service", acmePod, "web.acme.svc.cluster.local.", dns.TypeSRV,
			"NOERROR aa | SRV 0 100 53 web.acme.svc.cluster.local., SRV 0 100 80 web.acme.svc.cluster.local. | extra: A 10.96.0.50"},
		{"SRV with the wrong protocol", acmePod, "_http._udp.web.acme.svc.cluster.local.", dns.TypeSRV, "NXDOMAIN aa | ns: SOA"},
		{"SRV of an unknown port", acmePod, "_ftp._tcp.web.acme.svc.cluster.local.", dns.TypeSRV, "NXDOMAIN aa | ns: SOA"},
		{"a protocol's name", acmePod, "_tcp.web.acme.svc.cluster.local.", dns.TypeA, "NOERROR aa | ns: SOA"},
		{"a protocol without named ports", acmePod, "_sctp.web.acme.svc.cluster.local.", dns.TypeA, "NXDOMAIN aa | ns: SOA"},
		{"A of a port name", acmePod, "_http._tcp.web.acme.svc.cluster.local.", dns.TypeA, "NOERROR aa | ns: SOA"},
		{"headless: ready endpoints only", acmePod, "db.acme.svc.cluster.local.", dns.TypeA, "NOERROR aa | A 10.244.0.5, A 10.244.0.6"},
		{"headless SRV", acmePod, "_pg._tcp.db.acme.svc.cluster.local.", dns.TypeSRV,
			"NOERROR aa | SRV 0 100 5432 db.acme.svc.cluster.local. | extra: A 10.244.0.5, A 10.244.0.6"},
		{"missing service", acmePod, "nope.acme.svc.cluster.local.", dns.TypeA, "NXDOMAIN aa | ns: SOA"},
		{"below a service", acmePod, "x.y.z.web.acme.svc.cluster.local.", dns.TypeA, "NXDOMAIN aa | ns: SOA"},
		{"not svc", acmePod, "web.acme.pod.cluster.local.", dns.TypeA, "NXDOMAIN aa | ns: SOA"},
		{"own tenant's zone", acmePod, "acme.svc.cluster.local.", dns.TypeA, "NOERROR aa | ns: SOA"},
		{"the domain's SOA", acmePod, "cluster.local.", dns.TypeSOA, "NOERROR aa | SOA"},
		{"another tenant's service", acmePod, "web.other.svc.cluster.local.", dns.TypeA, "NXDOMAIN aa | ns: SOA"},
		{"another tenant's SRV", acmePod, "_http._tcp.web.other.svc.cluster.local.", dns.TypeSRV, "NXDOMAIN aa | ns: SOA"},
		{"another tenant's zone", acmePod, "other.svc.cluster.local.", dns.TypeA, "NXDOMAIN aa | ns: SOA"},
		{"that tenant's own pod", otherPod, "web.other.svc.cluster.local.", dns.TypeA, "NOERROR aa | A 10.96.0.60"},
		{"no pod", noPod, "web.acme.svc.cluster.local.", dns.TypeA, "REFUSED aa"},
		{"no pod, missing name", noPod, "nope.acme.svc.cluster.local.", dns.TypeA, "REFUSED aa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, network := range []string{"udp", "tcp"} {
				m := ask(t, s.Addr(), tc.from, network, tc.qname, tc.qtype)
				if got := summary(m); got != tc.want {
					t.Errorf("%s %s from %s over %s = %q, want %q", tc.qname, dns.TypeToString[tc.qtype], tc.from, network, got, tc.want)
				}
				for _, rr := range append(append(slices.Clone(m.Answer), m.Ns...), m.Extra...) {
					if h := rr.Header(); h.Rrtype != dns.TypeOPT && h.Ttl != TTL {
						t.Errorf("%s: TTL %d, want %d", rr, h.Ttl, TTL)
					}
				}
			}
		})
	}
}

// A name of another tenant gets exactly the answer of a name that does
// not exist: nothing tells a pod that it exists.
func TestCrossTenantLooksMissing(t *testing.T) {
	s := startServer(t, Config{})
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeANY} {
		exists := ask(t, s.Addr(), acmePod, "udp", "web.other.svc.cluster.local.", qtype)
		missing := ask(t, s.Addr(), acmePod, "udp", "zzz.other.svc.cluster.local.", qtype)
		exists.Id, exists.Question = missing.Id, missing.Question
		if exists.String() != missing.String() {
			t.Errorf("%s: the answer for another tenant's service\n%s\ndiffers from that for a missing one\n%s", dns.TypeToString[qtype], exists, missing)
		}
		if exists.Rcode != dns.RcodeNameError {
			t.Errorf("%s of another tenant's service: %s, want NXDOMAIN", dns.TypeToString[qtype], dns.RcodeToString[exists.Rcode])
		}
	}
}

// An answer too big for UDP is truncated (TC), and complete over TCP.
func TestTruncation(t *testing.T) {
	s := startServer(t, Config{})
	const name = "big.acme.svc.cluster.local."
	udp := ask(t, s.Addr(), acmePod, "udp", name, dns.TypeA)
	if !udp.Truncated || len(udp.Answer) >= 100 {
		t.Errorf("over UDP without EDNS: tc=%v with %d answers, want tc with fewer than 100", udp.Truncated, len(udp.Answer))
	}
	udp.Compress = true
	if b, _ := udp.Pack(); len(b) > dns.MinMsgSize {
		t.Errorf("over UDP without EDNS: %d bytes, want at most %d", len(b), dns.MinMsgSize)
	}
	edns := new(dns.Msg).SetQuestion(name, dns.TypeA).SetEdns0(4096, false)
	big, err := exchange(s.Addr(), acmePod, "udp", edns)
	if err != nil {
		t.Fatal(err)
	}
	if big.Truncated || len(big.Answer) != 100 || big.IsEdns0() == nil {
		t.Errorf("over UDP with EDNS 4096: tc=%v with %d answers, edns %v; want all 100 with EDNS", big.Truncated, len(big.Answer), big.IsEdns0())
	}
	tcp := ask(t, s.Addr(), acmePod, "tcp", name, dns.TypeA)
	if tcp.Truncated || len(tcp.Answer) != 100 {
		t.Errorf("over TCP: tc=%v with %d answers, want all 100", tcp.Truncated, len(tcp.Answer))
	}
}

// Malformed queries get FORMERR (or NOTIMP for other opcodes), and the
// server goes on answering.
func TestMalformed(t *testing.T) {
	s := startServer(t, Config{})
	valid, err := new(dns.Msg).SetQuestion("web.acme.svc.cluster.local.", dns.TypeA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	header := func(id uint16, bits uint16, qd, an, ns, ar uint16) []byte {
		return []byte{byte(id >> 8), byte(id), byte(bits >> 8), byte(bits), 0, byte(qd), 0, byte(an), 0, byte(ns), 0, byte(ar)}
	}
	for _, tc := range []struct {
		name  string
		query []byte
		want  int // rcode
	}{
		{"question cut short", append(header(0x1234, 0x0100, 1, 0, 0, 0), 3, 'w', 'e'), dns.RcodeFormatError},
		{"no question", header(0x1235, 0x0100, 0, 0, 0, 0), dns.RcodeFormatError},
		{"two questions", append(header(0x1236, 0x0100, 2, 0, 0, 0), valid[12:]...), dns.RcodeFormatError},
		{"answers in a query", append(header(0x1237, 0x0100, 1, 3, 0, 0), valid[12:]...), dns.RcodeFormatError},
		{"bad label length", append(header(0x1238, 0x0100, 1, 0, 0, 0), 0xbf, 'x', 0, 0, 1, 0, 1), dns.RcodeFormatError},
		{"compression loop", append(header(0x1239, 0x0100, 1, 0, 0, 0), 0xc0, 12, 0, 1, 0, 1), dns.RcodeFormatError},
		{"opcode UPDATE", append(header(0x123a, 0x2800, 1, 0, 0, 0), valid[12:]...), dns.RcodeNotImplemented},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, from := range []string{acmePod, noPod} {
				conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)}, s.Addr().(*net.UDPAddr))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if _, err := conn.Write(tc.query); err != nil {
					t.Fatal(err)
				}
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 512)
				n, err := conn.Read(buf)
				if err != nil {
					t.Fatalf("no answer from %s: %v", from, err)
				}
				var r dns.Msg
				if err := r.Unpack(buf[:n]); err != nil {
					t.Fatalf("answer does not parse: %v", err)
				}
				if !r.Response || r.Id != uint16(tc.query[0])<<8|uint16(tc.query[1]) || r.Rcode != tc.want {
					t.Errorf("from %s: response=%v id=%#x rcode=%s; want a response with the query's id %#x and %s",
						from, r.Response, r.Id, dns.RcodeToString[r.Rcode], uint16(tc.query[0])<<8|uint16(tc.query[1]), dns.RcodeToString[tc.want])
				}
			}
		})
	}
	if got := summary(ask(t, s.Addr(), acmePod, "udp", "web.acme.svc.cluster.local.", dns.TypeA)); got != "NOERROR aa | A 10.96.0.50" {
		t.Errorf("after the malformed queries: %q, want the service's A record", got)
	}
}

// upstream is a DNS server on loopback standing in for the host's
// resolver: example.org. has an A record; big.example.org. answers over
// UDP only with TC set and in full over TCP. It records the network of
// every query it gets.
type upstream struct {
	addr net.Addr
	mu   sync.Mutex
	seen []string // "udp big.example.org."
}

func startUpstream(t testing.TB) *upstream {
	t.Helper()
	pc, ln, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{addr: pc.LocalAddr()}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		_, tcp := w.LocalAddr().(*net.TCPAddr)
		network := map[bool]string{false: "udp", true: "tcp"}[tcp]
		q := req.Question[0]
		u.mu.Lock()
		u.seen = append(u.seen, network+" "+q.Name)
		u.mu.Unlock()
		m := new(dns.Msg).SetReply(req)
		m.RecursionAvailable = true
		a := func(ip string) dns.RR {
			return &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip)}
		}
		switch {
		case q.Name == "example.org." && q.Qtype == dns.TypeA:
			m.Answer = []dns.RR{a("192.0.2.1")}
		case q.Name == "big.example.org." && !tcp:
			m.Truncated = true
		case q.Name == "big.example.org.":
			m.Answer = []dns.RR{a("192.0.2.2")}
		case q.Name == "fail.example.org.":
			m.Rcode = dns.RcodeServerFailure
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

func (u *upstream) queries() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.seen)
}

// deadAddr returns a loopback UDP address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func TestForward(t *testing.T) {
	up := startUpstream(t)
	dead := deadAddr(t)
	for _, tc := range []struct {
		name      string
		upstreams []string
		from      string
		network   string
		qname     string
		want      string
		seen      []string // queries the upstream got
	}{
		{"from a pod", []string{up.addr.String()}, acmePod, "udp", "example.org.", "NOERROR | A 192.0.2.1", []string{"udp example.org."}},
		{"from no pod", []string{up.addr.String()}, noPod, "udp", "example.org.", "NOERROR | A 192.0.2.1", []string{"udp example.org."}},
		{"over TCP", []string{up.addr.String()}, acmePod, "tcp", "example.org.", "NOERROR | A 192.0.2.1", []string{"tcp example.org."}},
		{"upstream's NXDOMAIN", []string{up.addr.String()}, acmePod, "udp", "nope.example.org.", "NXDOMAIN", []string{"udp nope.example.org."}},
		{"TCP after truncation", []string{up.addr.String()}, acmePod, "udp", "big.example.org.", "NOERROR | A 192.0.2.2",
			[]string{"udp big.example.org.", "tcp big.example.org."}},
		{"first upstream dead", []string{dead, up.addr.String()}, acmePod, "udp", "example.org.", "NOERROR | A 192.0.2.1", []string{"udp example.org."}},
		{"every upstream dead", []string{dead}, acmePod, "udp", "example.org.", "SERVFAIL", nil},
		{"upstream fails", []string{up.addr.String()}, acmePod, "udp", "fail.example.org.", "SERVFAIL", []string{"udp fail.example.org."}},
		{"no upstreams", nil, acmePod, "udp", "example.org.", "SERVFAIL", nil},
		{"a name that only ends like the domain", []string{up.addr.String()}, acmePod, "udp", "notcluster.local.", "NXDOMAIN", []string{"udp notcluster.local."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{Upstreams: tc.upstreams, Timeout: time.Second})
			before := len(up.queries())
			m := ask(t, s.Addr(), tc.from, tc.network, tc.qname, dns.TypeA)
			if got := summary(m); got != tc.want {
				t.Errorf("%s from %s over %s = %q, want %q", tc.qname, tc.from, tc.network, got, tc.want)
			}
			if !m.RecursionAvailable {
				t.Errorf("ra not set")
			}
			if got := up.queries()[before:]; !slices.Equal(got, tc.seen) {
				t.Errorf("upstream got %q, want %q", got, tc.seen)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	src := testSource()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no source", Config{Listen: "127.0.0.1:0"}, "Source: required"},
		{"bad listen", Config{Listen: "1053", Source: src}, `listen address "1053": want HOST:PORT`},
		{"bad domain", Config{Listen: "127.0.0.1:0", Source: src, Domain: "a..b"}, `cluster domain "a..b"`},
		{"root domain", Config{Listen: "127.0.0.1:0", Source: src, Domain: "."}, `cluster domain "."`},
		{"upstream without port", Config{Listen: "127.0.0.1:0", Source: src, Upstreams: []string{"192.0.2.53"}}, `upstream "192.0.2.53": want IP:PORT`},
		{"upstream by name", Config{Listen: "127.0.0.1:0", Source: src, Upstreams: []string{"ns.example:53"}}, `upstream "ns.example:53": want IP:PORT`},
		{"negative timeout", Config{Listen: "127.0.0.1:0", Source: src, Timeout: -time.Second}, "timeout -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.cfg)
			if err == nil {
				s.Close()
				t.Fatalf("New(%+v) = nil error, want one containing %q", tc.cfg, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCustomDomain(t *testing.T) {
	s := startServer(t, Config{Domain: "Corp.Example"})
	if got := summary(ask(t, s.Addr(), acmePod, "udp", "web.acme.svc.corp.example.", dns.TypeA)); got != "NOERROR aa | A 10.96.0.50" {
		t.Errorf("under corp.example: %q, want the service's A record", got)
	}
	if got := summary(ask(t, s.Addr(), acmePod, "udp", "web.acme.svc.cluster.local.", dns.TypeA)); got != "SERVFAIL" {
		t.Errorf("cluster.local with domain corp.example and no upstreams: %q, want SERVFAIL (forwarded)", got)
	}
}

// Run ends when its context does, also right after it started, and
// releases the port.
func TestRunStops(t *testing.T) {
	for _, wait := range []bool{false, true} {
		s, err := New(Config{Listen: "127.0.0.1:0", Source: testSource()})
		if err != nil {
			t.Fatal(err)
		}
		stop := run(t, s)
		if wait {
			ask(t, s.Addr(), acmePod, "udp", "web.acme.svc.cluster.local.", dns.TypeA)
		}
		stop()
		addr := s.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatalf("after Run: %s still taken: %v", addr, err)
		}
		pc.Close()
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("after Run: tcp %s still taken: %v", addr, err)
		}
		ln.Close()
	}
}

func TestDefaultUpstreams(t *testing.T) {
	conf := t.TempDir() + "/resolv.conf"
	if err := os.WriteFile(conf, []byte("# comment\nsearch example\nnameserver 127.0.0.1\nnameserver 192.0.2.53\nnameserver ::1\nnameserver bogus\noptions ndots:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		self string
		want []string
	}{
		{"127.0.0.1:53", []string{"192.0.2.53:53", "[::1]:53"}},
		{"127.0.0.1:1053", []string{"127.0.0.1:53", "192.0.2.53:53", "[::1]:53"}},
		{"[::]:53", []string{"192.0.2.53:53"}},
		{"0.0.0.0:1053", []string{"127.0.0.1:53", "192.0.2.53:53", "[::1]:53"}},
		{":53", []string{"192.0.2.53:53"}},
		{"127.0.0.1:0", []string{"127.0.0.1:53", "192.0.2.53:53", "[::1]:53"}},
	} {
		got, err := DefaultUpstreams(conf, tc.self)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("DefaultUpstreams(self %s) = %q, want %q", tc.self, got, tc.want)
		}
	}
	if _, err := DefaultUpstreams(t.TempDir()+"/missing", ":1053"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("DefaultUpstreams(missing file) = %v, want an error naming the file", err)
	}
}
