package proxy

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/api"
)

func service(tenant, name, ip string, ports ...api.ServicePort) *api.Service {
	return &api.Service{
		Metadata: api.ObjectMeta{Tenant: tenant, Name: name},
		Spec:     api.ServiceSpec{Type: api.ServiceClusterIP, ClusterIP: ip, Ports: ports},
	}
}

func endpoints(tenant, name string, subsets ...api.EndpointSubset) *api.Endpoints {
	return &api.Endpoints{Metadata: api.ObjectMeta{Tenant: tenant, Name: name}, Subsets: subsets}
}

func addrs(ips ...string) []api.EndpointAddress {
	out := make([]api.EndpointAddress, len(ips))
	for i, ip := range ips {
		out[i] = api.EndpointAddress{IP: ip}
	}
	return out
}

func TestDesiredPorts(t *testing.T) {
	web := api.ServicePort{Name: "web", Port: 80, TargetPort: 8080}
	dns := api.ServicePort{Name: "dns", Protocol: api.ProtocolUDP, Port: 53}
	for _, tc := range []struct {
		name string
		svc  *api.Service
		ep   *api.Endpoints
		want map[string]string // id → "vip:port nodePort endpoints"
		err  string
	}{
		{
			name: "one port takes the subset's only port whatever its name",
			svc:  service("t1", "s", "10.96.0.5", api.ServicePort{Port: 80}),
			ep: endpoints("t1", "s", api.EndpointSubset{
				Addresses:         addrs("10.244.0.3", "10.244.0.2", "10.244.0.3"),
				NotReadyAddresses: addrs("10.244.0.9"),
				Ports:             []api.EndpointPort{{Name: "other", Port: 8080}},
			}),
			want: map[string]string{"t1/s/tcp/80": "10.96.0.5:80 0 [10.244.0.2:8080 10.244.0.3:8080]"},
		},
		{
			name: "ports match by name and protocol",
			svc:  service("t1", "s", "10.96.0.5", web, dns),
			ep: endpoints("t1", "s",
				api.EndpointSubset{Addresses: addrs("10.244.0.2"), Ports: []api.EndpointPort{{Name: "web", Port: 8080}, {Name: "dns", Port: 5353, Protocol: api.ProtocolUDP}}},
				api.EndpointSubset{Addresses: addrs("10.244.1.2"), Ports: []api.EndpointPort{{Name: "dns", Port: 53, Protocol: api.ProtocolTCP}}},
			),
			want: map[string]string{
				"t1/s/tcp/web": "10.96.0.5:80 0 [10.244.0.2:8080]",
				"t1/s/udp/dns": "10.96.0.5:53 0 [10.244.0.2:5353]",
			},
		},
		{
			name: "no endpoints object: ports without endpoints",
			svc:  service("t1", "s", "10.96.0.5", web),
			want: map[string]string{"t1/s/tcp/web": "10.96.0.5:80 0 []"},
		},
		{
			name: "node port",
			svc: func() *api.Service {
				s := service("t1", "s", "10.96.0.5", api.ServicePort{Port: 80, NodePort: 30080})
				s.Spec.Type = api.ServiceNodePort
				return s
			}(),
			want: map[string]string{"t1/s/tcp/80": "10.96.0.5:80 30080 []"},
		},
		{name: "headless", svc: service("t1", "s", "None", web), want: map[string]string{}},
		{name: "no cluster IP yet", svc: service("t1", "s", "", web), want: map[string]string{}},
		{name: "bad cluster IP", svc: service("t1", "s", "10.96.0", web), err: "spec.clusterIP"},
		{name: "IPv6 cluster IP", svc: service("t1", "s", "fd00::1", web), err: "spec.clusterIP"},
		{name: "bad protocol", svc: service("t1", "s", "10.96.0.5", api.ServicePort{Port: 80, Protocol: "SCTP"}), err: "spec.ports[0].protocol"},
		{name: "bad port", svc: service("t1", "s", "10.96.0.5", api.ServicePort{Port: 70000}), err: "spec.ports[0].port"},
		{name: "no name", svc: service("", "s", "10.96.0.5", web), err: "metadata.tenant"},
		{
			name: "bad endpoint address",
			svc:  service("t1", "s", "10.96.0.5", web),
			ep:   endpoints("t1", "s", api.EndpointSubset{Addresses: addrs("10.244.0.2", "nope"), Ports: []api.EndpointPort{{Name: "web", Port: 8080}}}),
			err:  "subsets[0].addresses[1].ip",
		},
		{
			name: "endpoints of another service",
			svc:  service("t1", "s", "10.96.0.5", web),
			ep:   endpoints("t2", "s"),
			err:  "another service",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := desiredPorts(tc.svc, tc.ep)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("desiredPorts = %v, want an error naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("desiredPorts: %v", err)
			}
			gotS := map[string]string{}
			for id, sp := range got {
				if id != sp.id {
					t.Errorf("port filed under %q has id %q", id, sp.id)
				}
				gotS[id] = netip.AddrPortFrom(sp.clusterIP, sp.port).String() + " " + strconv.Itoa(int(sp.nodePort)) + " " + fmtEndpoints(sp.endpoints)
			}
			if !mapsEqual(gotS, tc.want) {
				t.Errorf("desiredPorts = %v, want %v", gotS, tc.want)
			}
		})
	}
}

func fmtEndpoints(e []netip.AddrPort) string {
	s := make([]string, len(e))
	for i, a := range e {
		s[i] = a.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestChainName(t *testing.T) {
	a := chainName("svc-", "t1/web/tcp/http")
	if a != chainName("svc-", "t1/web/tcp/http") {
		t.Error("chainName is not stable")
	}
	if !strings.HasPrefix(a, "svc-") || !strings.HasSuffix(a, "-t1/web/tcp/http") {
		t.Errorf("chainName = %q, want svc-HASH-t1/web/tcp/http", a)
	}
	long1 := chainName("svc-", strings.Repeat("a", 63)+"/"+strings.Repeat("b", 63)+"/tcp/"+strings.Repeat("c", 15)+"1")
	long2 := chainName("svc-", strings.Repeat("a", 63)+"/"+strings.Repeat("b", 63)+"/tcp/"+strings.Repeat("c", 15)+"2")
	if len(long1) > maxChainName || long1 == long2 {
		t.Errorf("long names %q and %q: want at most %d characters and different", long1, long2, maxChainName)
	}
	names := []string{a, chainName("svc-", "t1/web/udp/http"), chainName("svc-", "t2/web/tcp/http"), chainName("ext-", "t1/web/tcp/http")}
	slices.Sort(names)
	if len(slices.Compact(names)) != 4 {
		t.Errorf("names collide: %v", names)
	}
}

func TestKeys(t *testing.T) {
	ip := netip.MustParseAddr("10.96.0.10")
	if got, want := serviceIPKey(ip, 17, 53), []byte{10, 96, 0, 10, 17, 0, 0, 0, 0, 53, 0, 0}; !slices.Equal(got, want) {
		t.Errorf("serviceIPKey = %v, want %v", got, want)
	}
	if got, want := nodePortKey(6, 30080), []byte{6, 0, 0, 0, 0x75, 0x80, 0, 0}; !slices.Equal(got, want) {
		t.Errorf("nodePortKey = %v, want %v", got, want)
	}
}
