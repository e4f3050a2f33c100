package server_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/server"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

// Source addresses of the test's queries: all of 127/8 is loopback on
// Linux, so a client bound to one of these is a distinct source.
const (
	acmePod  = "127.0.0.2"
	otherPod = "127.0.0.3"
	noPod    = "127.0.0.4"
)

// The server process serves cluster DNS from what its informers see: a
// pod gets its own tenant's service address, another tenant's name does
// not exist for it, a source that is no pod is refused, and a pod that
// finished or is deleted stops being a source.
func TestClusterDNS(t *testing.T) {
	addrs := make(chan net.Addr, 1)
	cl := testcluster.Start(t, func(cfg *server.Config) {
		cfg.DNS = server.DNSConfig{
			Listen:    "127.0.0.1:0",
			Upstreams: []string{"127.0.0.1:9"}, // never asked: every query here is under the cluster domain
			Ready:     func(a net.Addr) { addrs <- a },
		}
	})
	var addr net.Addr
	select {
	case addr = <-addrs:
	default:
		t.Fatal("the server serves but DNSConfig.Ready was not called")
	}
	ctx := t.Context()
	admin := cl.Admin
	for _, tenant := range []string{"acme", "other"} {
		if _, err := admin.Create(ctx, &api.Tenant{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Tenant"}, Metadata: api.ObjectMeta{Name: tenant}}); err != nil {
			t.Fatalf("create tenant %s: %v", tenant, err)
		}
	}
	ips := map[string]string{"acme": "10.96.0.50", "other": "10.96.0.60"}
	for tenant, ip := range ips {
		svc := &api.Service{
			TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Service"},
			Metadata: api.ObjectMeta{Tenant: tenant, Name: "web"},
			Spec: api.ServiceSpec{
				Selector:  map[string]string{"app": "web"},
				ClusterIP: ip,
				Ports:     []api.ServicePort{{Name: "http", Port: 80}},
			},
		}
		out, err := admin.Create(ctx, svc)
		if err != nil {
			t.Fatalf("create service %s/web: %v", tenant, err)
		}
		ips[tenant] = out.(*api.Service).Spec.ClusterIP
	}
	pods := map[string]string{"acme": acmePod, "other": otherPod}
	for tenant, ip := range pods {
		setPodIP(t, admin, tenant, "client", ip)
	}

	// The informers list and watch: poll until the server knows the pod
	// and its service.
	const name = "web.acme.svc.cluster.local."
	eventually(t, "A "+name+" from acme's pod", func() (bool, string) {
		got := query(t, addr, acmePod, name, dns.TypeA)
		return got == "NOERROR A "+ips["acme"], got
	})
	for _, tc := range []struct {
		name, from, qname string
		qtype             uint16
		want              string
	}{
		{"own service", acmePod, name, dns.TypeA, "NOERROR A " + ips["acme"]},
		{"own service's SRV", acmePod, "_http._tcp." + name, dns.TypeSRV, "NOERROR SRV 0 100 80 " + name},
		{"other tenant's service", acmePod, "web.other.svc.cluster.local.", dns.TypeA, "NXDOMAIN"},
		{"missing service", acmePod, "nope.acme.svc.cluster.local.", dns.TypeA, "NXDOMAIN"},
		{"the other tenant's own pod", otherPod, "web.other.svc.cluster.local.", dns.TypeA, "NOERROR A " + ips["other"]},
		{"the other tenant's pod asking for acme's", otherPod, name, dns.TypeA, "NXDOMAIN"},
		{"no pod", noPod, name, dns.TypeA, "REFUSED"},
	} {
		if got := query(t, addr, tc.from, tc.qname, tc.qtype); got != tc.want {
			t.Errorf("%s: %s %s from %s = %q, want %q", tc.name, tc.qname, dns.TypeToString[tc.qtype], tc.from, got, tc.want)
		}
	}

	// A service created later is seen within the informers' delay.
	later := &api.Service{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Service"},
		Metadata: api.ObjectMeta{Tenant: "acme", Name: "later"},
		Spec:     api.ServiceSpec{ClusterIP: "10.96.0.70", Ports: []api.ServicePort{{Port: 8080}}},
	}
	if _, err := admin.Create(ctx, later); err != nil {
		t.Fatalf("create service acme/later: %v", err)
	}
	eventually(t, "A later.acme from acme's pod", func() (bool, string) {
		got := query(t, addr, acmePod, "later.acme.svc.cluster.local.", dns.TypeA)
		return got == "NOERROR A 10.96.0.70", got
	})

	// A pod that finished no longer holds its IP: its address is no
	// pod's.
	podKind, _ := api.KindFor("pods")
	o, err := admin.Get(ctx, podKind, "acme", "client")
	if err != nil {
		t.Fatal(err)
	}
	p := o.(*api.Pod)
	p.Status.Phase = api.PodSucceeded
	if _, err := admin.UpdateStatus(ctx, p); err != nil {
		t.Fatalf("finish pod acme/client: %v", err)
	}
	eventually(t, "acme's finished pod refused", func() (bool, string) {
		got := query(t, addr, acmePod, name, dns.TypeA)
		return got == "REFUSED", got
	})
	// A deleted pod neither.
	if _, err := admin.Delete(ctx, podKind, "other", "client"); err != nil {
		t.Fatalf("delete pod other/client: %v", err)
	}
	eventually(t, "other's deleted pod refused", func() (bool, string) {
		got := query(t, addr, otherPod, "web.other.svc.cluster.local.", dns.TypeA)
		return got == "REFUSED", got
	})
}

// setPodIP creates a pod named name in tenant and writes ip as its
// status.podIP, as a node agent would.
func setPodIP(t *testing.T, admin *client.Client, tenant, name, ip string) {
	t.Helper()
	pod := &api.Pod{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Pod"},
		Metadata: api.ObjectMeta{Tenant: tenant, Name: name},
		Spec:     api.PodSpec{Containers: []api.Container{{Name: "main", Image: "busybox"}}},
	}
	out, err := admin.Create(t.Context(), pod)
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", tenant, name, err)
	}
	pod = out.(*api.Pod)
	pod.Status.Phase, pod.Status.PodIP = api.PodRunning, ip
	if _, err := admin.UpdateStatus(t.Context(), pod); err != nil {
		t.Fatalf("write status.podIP of pod %s/%s: %v", tenant, name, err)
	}
}

// query asks the DNS server at addr from the address from and renders
// the answer as "RCODE TYPE RDATA, ..." (without the owner and TTL).
func query(t *testing.T, addr net.Addr, from, name string, qtype uint16) string {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(from)}}}
	r, _, err := c.Exchange(new(dns.Msg).SetQuestion(name, qtype), addr.String())
	if err != nil {
		return "error: " + err.Error()
	}
	parts := []string{dns.RcodeToString[r.Rcode]}
	for _, rr := range r.Answer {
		h := rr.Header()
		parts = append(parts, dns.TypeToString[h.Rrtype]+" "+strings.Join(strings.Fields(strings.TrimPrefix(rr.String(), h.String())), " "))
	}
	return strings.Join(parts, " ")
}

// eventually polls cond until it holds, for at most 20 seconds; cond's
// message says what was seen last.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s; last seen: %s", what, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Bad DNS settings stop the server at start with an error naming the
// flag.
func TestClusterDNSConfigErrors(t *testing.T) {
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		name string
		dns  server.DNSConfig
		want string
	}{
		{"upstream without port", server.DNSConfig{Listen: "127.0.0.1:0", Upstreams: []string{"192.0.2.53"}}, `--dns-upstream: dns: upstream "192.0.2.53": want IP:PORT`},
		{"bad domain", server.DNSConfig{Listen: "127.0.0.1:0", Domain: "a..b"}, `--cluster-domain: dns: cluster domain "a..b"`},
		{"address taken", server.DNSConfig{Listen: taken.LocalAddr().String()}, "--dns-listen: dns: listen on udp " + taken.LocalAddr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := testcluster.Launch(t.Context(), server.Config{DataDir: t.TempDir(), AuditLog: "off", DNS: tc.dns})
			if err == nil {
				cl.Stop()
				t.Fatalf("server started with DNS config %+v; want an error containing %q", tc.dns, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}
