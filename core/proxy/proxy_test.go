package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/proxy/proxytest"
	"github.com/paddock-dev/paddock/internal/testcluster"
	"github.com/paddock-dev/paddock/internal/testlock"
)

// requireNetAdmin skips (outside CI) unless the test can make network
// namespaces and has the ip and nft commands; it takes the machine lock.
func requireNetAdmin(t *testing.T) {
	t.Helper()
	var missing string
	if os.Geteuid() != 0 {
		missing = "network namespaces and nftables need root"
	}
	for _, bin := range []string{"ip", "nft", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil && missing == "" {
			missing = bin + " is not installed (Debian packages iproute2, nftables, util-linux)"
		}
	}
	if missing != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(missing)
		}
		t.Skip(missing)
	}
	testlock.Machine(t)
}

const dialTimeout = 3 * time.Second

// env is a topology with a proxy programming its node namespace.
type env struct {
	t     *testing.T
	topo  *proxytest.Topology
	p     *Proxy
	table string
}

func newEnv(t *testing.T, pods int, cfg Config) *env {
	requireNetAdmin(t)
	topo, err := proxytest.New(pods)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { topo.Close() })
	for _, pod := range topo.Pods {
		if err := topo.Serve(pod.NetNS, pod.Name, 8080); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Table, cfg.NetNS, cfg.ClusterCIDR = "paddock-proxy-test", topo.Node, proxytest.ClusterCIDR
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &env{t: t, topo: topo, p: p, table: cfg.Table}
}

// webService is service tenant/name on vip:80 with the given pods as
// endpoints on port 8080.
func webService(tenant, name, vip string, pods ...*proxytest.Pod) (*api.Service, *api.Endpoints) {
	svc := service(tenant, name, vip, api.ServicePort{Name: "http", Port: 80, TargetPort: 8080})
	ips := make([]string, len(pods))
	for i, p := range pods {
		ips[i] = p.IP.String()
	}
	ep := endpoints(tenant, name)
	if len(pods) > 0 {
		ep.Subsets = []api.EndpointSubset{{Addresses: addrs(ips...), Ports: []api.EndpointPort{{Name: "http", Port: 8080}}}}
	}
	return svc, ep
}

func (e *env) update(svc *api.Service, ep *api.Endpoints) {
	e.t.Helper()
	if err := e.p.Update(svc, ep); err != nil {
		e.t.Fatalf("Update(%s): %v", svc.Metadata.Name, err)
	}
}

// reached dials addr from ns n times and counts the answering pods.
func (e *env) reached(ns string, addr netip.AddrPort, n int) map[string]int {
	e.t.Helper()
	seen := map[string]int{}
	for range n {
		r, err := proxytest.DialTCP(ns, addr, dialTimeout)
		if err != nil {
			e.t.Fatalf("dial %s: %v", addr, err)
		}
		seen[r.Name]++
	}
	return seen
}

// handles returns, per chain of the table, the handles of its rules, as
// nft -j lists them (which also proves the nft command can read the
// table).
func (e *env) handles() map[string][]int {
	e.t.Helper()
	out, err := exec.Command("nsenter", "--net="+e.topo.Node, "nft", "-j", "list", "table", "ip", e.table).Output()
	if err != nil {
		e.t.Fatalf("nft -j list table: %v", err)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		e.t.Fatalf("nft -j output: %v", err)
	}
	h := map[string][]int{}
	for _, obj := range doc.Nftables {
		if raw, ok := obj["chain"]; ok {
			var c struct{ Name string }
			json.Unmarshal(raw, &c)
			if h[c.Name] == nil {
				h[c.Name] = []int{}
			}
		}
		if raw, ok := obj["rule"]; ok {
			var r struct {
				Chain  string
				Handle int
			}
			json.Unmarshal(raw, &r)
			h[r.Chain] = append(h[r.Chain], r.Handle)
		}
	}
	return h
}

func vip(s string) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(s), 80) }

// TestServices drives one proxy through the life of a few services in a
// node namespace, probing with real connections from a client namespace
// and from pods.
func TestServices(t *testing.T) {
	e := newEnv(t, 3, Config{})
	pods := e.topo.Pods
	client := e.topo.Client

	t.Run("cluster IP balances over every ready endpoint", func(t *testing.T) {
		svc, ep := webService("t1", "web", "10.96.0.20", pods...)
		ep.Subsets[0].NotReadyAddresses = addrs("10.244.9.9") // would time out
		e.update(svc, ep)
		seen := e.reached(client, vip("10.96.0.20"), 60)
		if len(seen) != 3 {
			t.Errorf("60 connections reached %v, want all 3 pods", seen)
		}
		r, err := proxytest.DialTCP(client, vip("10.96.0.20"), dialTimeout)
		if err != nil || r.Source != proxytest.ClientIP {
			t.Errorf("pod saw the client as %v (%v), want %v: cluster IP traffic keeps its source", r.Source, err, proxytest.ClientIP)
		}
	})

	t.Run("a removed endpoint gets no more traffic", func(t *testing.T) {
		svc, ep := webService("t1", "web", "10.96.0.20", pods[0], pods[1])
		e.update(svc, ep)
		seen := e.reached(client, vip("10.96.0.20"), 40)
		if seen[pods[2].Name] > 0 || len(seen) != 2 {
			t.Errorf("after removing %s, 40 connections reached %v", pods[2].Name, seen)
		}
	})

	t.Run("no endpoints: refused at once", func(t *testing.T) {
		svc, ep := webService("t1", "empty", "10.96.0.21")
		e.update(svc, ep)
		start := time.Now()
		_, err := proxytest.DialTCP(client, vip("10.96.0.21"), dialTimeout)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial a service without endpoints = %v, want connection refused", err)
		}
		udp := service("t1", "empty-udp", "10.96.0.22", api.ServicePort{Port: 53, Protocol: api.ProtocolUDP})
		e.update(udp, nil)
		_, err = proxytest.ExchangeUDP(client, netip.MustParseAddrPort("10.96.0.22:53"), dialTimeout)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("UDP to a service without endpoints = %v, want connection refused (ICMP port unreachable)", err)
		}
		if d := time.Since(start); d > dialTimeout {
			t.Errorf("failing took %v, want well under the %v timeout", d, dialTimeout)
		}
	})

	t.Run("UDP service", func(t *testing.T) {
		svc := service("t1", "udp", "10.96.0.23", api.ServicePort{Port: 53, TargetPort: 8080, Protocol: api.ProtocolUDP})
		ep := endpoints("t1", "udp", api.EndpointSubset{Addresses: addrs(pods[1].IP.String()), Ports: []api.EndpointPort{{Port: 8080, Protocol: api.ProtocolUDP}}})
		e.update(svc, ep)
		r, err := proxytest.ExchangeUDP(client, netip.MustParseAddrPort("10.96.0.23:53"), dialTimeout)
		if err != nil || r.Name != pods[1].Name {
			t.Errorf("UDP exchange = %+v, %v; want an answer from %s", r, err, pods[1].Name)
		}
	})

	t.Run("node port answers on the node's address, masqueraded", func(t *testing.T) {
		svc, ep := webService("t1", "np", "10.96.0.24", pods[2])
		svc.Spec.Type = api.ServiceNodePort
		svc.Spec.Ports[0].NodePort = 30080
		e.update(svc, ep)
		r, err := proxytest.DialTCP(client, netip.AddrPortFrom(proxytest.NodeIP, 30080), dialTimeout)
		if err != nil || r.Name != pods[2].Name {
			t.Fatalf("dial the node port = %+v, %v; want %s", r, err, pods[2].Name)
		}
		if r.Source == proxytest.ClientIP {
			t.Errorf("pod saw node-port traffic from outside the cluster with the client's source %v, want it masqueraded", r.Source)
		}
		if _, err := proxytest.DialTCP(client, netip.AddrPortFrom(proxytest.NodeIP, 30081), time.Second); err == nil {
			t.Error("a port that is no node port answered")
		}
	})

	t.Run("hairpin: a pod reaches itself through its service", func(t *testing.T) {
		svc, ep := webService("t1", "self", "10.96.0.25", pods[0])
		e.update(svc, ep)
		r, err := proxytest.DialTCP(pods[0].NetNS, vip("10.96.0.25"), dialTimeout)
		if err != nil || r.Name != pods[0].Name {
			t.Errorf("pod0 → its own service = %+v, %v; want an answer from itself", r, err)
		}
		// A pod reaching another pod keeps its source.
		svc, ep = webService("t1", "other", "10.96.0.26", pods[1])
		e.update(svc, ep)
		r, err = proxytest.DialTCP(pods[0].NetNS, vip("10.96.0.26"), dialTimeout)
		if err != nil || r.Source != pods[0].IP {
			t.Errorf("pod0 → pod1's service = %+v, %v; want pod1 to see %v", r, err, pods[0].IP)
		}
	})

	t.Run("an update touches only its own service's rules", func(t *testing.T) {
		before := e.handles()
		web := chainName("svc-", "t1/web/tcp/http")
		other := chainName("svc-", "t1/other/tcp/http")
		if len(before[web]) != 2 || len(before[other]) != 2 {
			t.Fatalf("chains %s and %s hold rules %v and %v, want two each (balance, fallback)", web, other, before[web], before[other])
		}
		svc, ep := webService("t1", "web", "10.96.0.20", pods[2])
		e.update(svc, ep)
		after := e.handles()
		for chain, hs := range before {
			if chain == web {
				continue
			}
			if !slices.Equal(after[chain], hs) {
				t.Errorf("chain %s: rule handles %v became %v after an update of another service", chain, hs, after[chain])
			}
		}
		if slices.Equal(after[web], before[web]) {
			t.Errorf("chain %s kept rule handles %v across its update", web, before[web])
		}
		if seen := e.reached(client, vip("10.96.0.20"), 10); seen[pods[2].Name] != 10 {
			t.Errorf("after the update, 10 connections reached %v, want only %s", seen, pods[2].Name)
		}
		// The same objects again change nothing.
		e.update(svc, ep)
		if again := e.handles(); !slices.Equal(again[web], after[web]) {
			t.Errorf("a repeated update rewrote chain %s: %v → %v", web, after[web], again[web])
		}
	})

	t.Run("delete and headless", func(t *testing.T) {
		if err := e.p.Delete("t1", "other"); err != nil {
			t.Fatal(err)
		}
		if _, ok := e.handles()[chainName("svc-", "t1/other/tcp/http")]; ok {
			t.Error("the deleted service's chain is still there")
		}
		if _, err := proxytest.DialTCP(pods[0].NetNS, vip("10.96.0.26"), time.Second); err == nil {
			t.Error("a deleted service still answers")
		}
		if err := e.p.Delete("t1", "never-was"); err != nil {
			t.Errorf("Delete of an unknown service = %v, want nil", err)
		}
		svc, ep := webService("t1", "self", "None", pods[0])
		e.update(svc, ep)
		if _, ok := e.handles()[chainName("svc-", "t1/self/tcp/http")]; ok {
			t.Error("a service that became headless kept its chain")
		}
	})

	t.Run("bad input names the field and changes nothing", func(t *testing.T) {
		svc, ep := webService("t1", "web", "10.96.0.20", pods[0])
		ep.Subsets[0].Addresses[0].IP = "10.244.0"
		err := e.p.Update(svc, ep)
		if err == nil || !strings.Contains(err.Error(), "subsets[0].addresses[0].ip") {
			t.Errorf("Update with a bad address = %v, want an error naming subsets[0].addresses[0].ip", err)
		}
		if seen := e.reached(client, vip("10.96.0.20"), 5); seen[pods[2].Name] != 5 {
			t.Errorf("after a refused update, connections reached %v, want %s as before", seen, pods[2].Name)
		}
	})
}

// TestClusterDNS checks the fixed DNS rule: the DNS service's port 53,
// udp and tcp, reaches the target with the asking pod's own source.
func TestClusterDNS(t *testing.T) {
	requireNetAdmin(t)
	// The DNS server runs in pod 1 on port 5353; its address is known only
	// once the topology exists, so the proxy is made here.
	topo, err := proxytest.New(2)
	if err != nil {
		t.Fatal(err)
	}
	defer topo.Close()
	server := topo.Pods[1]
	if err := topo.Serve(server.NetNS, "dns", 5353); err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Table: "paddock-proxy-test", NetNS: topo.Node, ClusterCIDR: proxytest.ClusterCIDR,
		DNS: DNSConfig{ServiceIP: "10.96.0.10", Target: netip.AddrPortFrom(server.IP, 5353).String()}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	asker := topo.Pods[0]
	dns := netip.MustParseAddrPort("10.96.0.10:53")
	r, err := proxytest.ExchangeUDP(asker.NetNS, dns, dialTimeout)
	if err != nil || r.Name != "dns" || r.Source != asker.IP {
		t.Errorf("UDP to the DNS service = %+v, %v; want the server to answer, seeing %v", r, err, asker.IP)
	}
	r, err = proxytest.DialTCP(asker.NetNS, dns, dialTimeout)
	if err != nil || r.Name != "dns" || r.Source != asker.IP {
		t.Errorf("TCP to the DNS service = %+v, %v; want the server to answer, seeing %v", r, err, asker.IP)
	}
	for _, bad := range []DNSConfig{{ServiceIP: "10.96.0.10"}, {ServiceIP: "x", Target: "10.0.0.1:53"}, {ServiceIP: "10.96.0.10", Target: "127.0.0.1:53"}} {
		if _, err := New(Config{Table: "paddock-proxy-bad", NetNS: topo.Node, DNS: bad}); err == nil || !strings.Contains(err.Error(), "DNS") {
			t.Errorf("New with DNS %+v = %v, want an error naming the DNS field", bad, err)
		}
	}
}

// TestRestart replaces a running proxy, as an agent restart does: the
// services keep answering throughout, the new proxy takes over what the
// old one made, and its first Sync removes what is no longer wanted.
func TestRestart(t *testing.T) {
	e := newEnv(t, 2, Config{})
	pods := e.topo.Pods
	keep, keepEP := webService("t1", "keep", "10.96.0.30", pods[0])
	gone, goneEP := webService("t1", "gone", "10.96.0.31", pods[1])
	np, npEP := webService("t1", "np", "10.96.0.32", pods[1])
	np.Spec.Type = api.ServiceNodePort
	np.Spec.Ports[0].NodePort = 30090
	for _, s := range []struct {
		svc *api.Service
		ep  *api.Endpoints
	}{{keep, keepEP}, {gone, goneEP}, {np, npEP}} {
		e.update(s.svc, s.ep)
	}
	// The old proxy goes away without Close: its rules stay.
	e.p.conn.CloseLasting()

	// Probe the kept service all along.
	var failures, probes atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := proxytest.DialTCP(e.topo.Client, vip("10.96.0.30"), dialTimeout); err != nil {
				failures.Add(1)
			}
			probes.Add(1)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for probes.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	p2, err := New(Config{Table: e.table, NetNS: e.topo.Node, ClusterCIDR: proxytest.ClusterCIDR})
	if err != nil {
		t.Fatal(err)
	}
	e.p = p2 // closed by the cleanup
	keepKey := string(serviceIPKey(netip.MustParseAddr("10.96.0.30"), syscall.IPPROTO_TCP, 80))
	if got, want := p2.stale.ips[keepKey], chainName("svc-", "t1/keep/tcp/http"); got != want {
		t.Errorf("the new proxy read the kept service's element as going to %q, want %q", got, want)
	}
	for _, addr := range []netip.AddrPort{vip("10.96.0.31"), netip.AddrPortFrom(proxytest.NodeIP, 30090)} {
		if r, err := proxytest.DialTCP(e.topo.Client, addr, dialTimeout); err != nil || r.Name != pods[1].Name {
			t.Errorf("before the first sync, %s = %+v, %v; want the earlier run's rules to answer", addr, r, err)
		}
	}
	// The node port moves to another port; "gone" is gone.
	np.Spec.Ports[0].NodePort = 30091
	if err := p2.Sync([]*api.Service{keep, np}, []*api.Endpoints{keepEP, npEP}); err != nil {
		t.Fatal(err)
	}
	n := probes.Load()
	for probes.Load() < n+5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if f := failures.Load(); f > 0 {
		t.Errorf("%d of %d connections to the kept service failed across the restart", f, probes.Load())
	}
	h := e.handles()
	if name := chainName("svc-", "t1/gone/tcp/http"); h[name] != nil {
		t.Errorf("chain %s survived the first sync", name)
	}
	if _, ok := h[chainName("ext-", "t1/np/tcp/http")]; !ok {
		t.Error("the node-port service's chain is missing after the sync")
	}
	if _, err := proxytest.DialTCP(e.topo.Client, vip("10.96.0.31"), time.Second); err == nil {
		t.Error("the removed service still answers after the first sync")
	}
	if _, err := proxytest.DialTCP(e.topo.Client, netip.AddrPortFrom(proxytest.NodeIP, 30090), time.Second); err == nil {
		t.Error("the old node port still answers after the first sync")
	}
	if r, err := proxytest.DialTCP(e.topo.Client, netip.AddrPortFrom(proxytest.NodeIP, 30091), dialTimeout); err != nil || r.Name != pods[1].Name {
		t.Errorf("the new node port = %+v, %v", r, err)
	}
	if got := p2.Services(); !slices.Equal(got, []string{"t1/keep", "t1/np"}) {
		t.Errorf("Services() = %v", got)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nsenter", "--net="+e.topo.Node, "nft", "list", "table", "ip", e.table).CombinedOutput(); err == nil {
		t.Errorf("the table is still there after Close:\n%s", out)
	}
}

// TestRun runs the proxy against a real API server: it programs what the
// API holds, follows changes to endpoints and services as they are made,
// and leaves its rules in place when it stops.
func TestRun(t *testing.T) {
	e := newEnv(t, 2, Config{})
	pods := e.topo.Pods
	cp := testcluster.Start(t)
	admin := cp.Admin
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if _, err := admin.Create(ctx, &api.Tenant{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Tenant"}, Metadata: api.ObjectMeta{Name: "t1"}}); err != nil {
		t.Fatal(err)
	}
	svc, ep := webService("t1", "web", "10.96.0.40", pods[0])
	svc.TypeMeta = api.TypeMeta{APIVersion: api.Version, Kind: "Service"}
	ep.TypeMeta = api.TypeMeta{APIVersion: api.Version, Kind: "Endpoints"}
	if _, err := admin.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	o, err := admin.Create(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.p.Run(ctx, admin) }()

	// waitFor dials the service until want reports true.
	waitFor := func(what string, want func(proxytest.Reply, error) bool) {
		t.Helper()
		waitForAt(t, e.topo.Client, vip("10.96.0.40"), what, want)
	}
	waitFor("the API's service reaches pod0", func(r proxytest.Reply, err error) bool { return err == nil && r.Name == pods[0].Name })

	cur := o.(*api.Endpoints)
	cur.Subsets[0].Addresses = addrs(pods[1].IP.String())
	if _, err := admin.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	waitFor("after the endpoints moved to pod1", func(r proxytest.Reply, err error) bool { return err == nil && r.Name == pods[1].Name })
	if seen := e.reached(e.topo.Client, vip("10.96.0.40"), 10); seen[pods[1].Name] != 10 {
		t.Errorf("after the endpoints moved, 10 connections reached %v, want only %s", seen, pods[1].Name)
	}

	if _, err := admin.Delete(ctx, serviceKind, "t1", "web"); err != nil {
		t.Fatal(err)
	}
	waitFor("after the service was deleted", func(_ proxytest.Reply, err error) bool { return err != nil })
	if _, ok := e.handles()[chainName("svc-", "t1/web/tcp/http")]; ok {
		t.Error("the deleted service's chain is still there")
	}

	// Another service, then stop: its rules stay.
	svc2, ep2 := webService("t1", "web2", "10.96.0.41", pods[0])
	svc2.TypeMeta, ep2.TypeMeta = svc.TypeMeta, ep.TypeMeta
	if _, err := admin.Create(ctx, svc2); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Create(ctx, ep2); err != nil {
		t.Fatal(err)
	}
	waitForAt(t, e.topo.Client, vip("10.96.0.41"), "a service created through the API",
		func(r proxytest.Reply, err error) bool { return err == nil && r.Name == pods[0].Name })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil when its context ends", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if r, err := proxytest.DialTCP(e.topo.Client, vip("10.96.0.41"), dialTimeout); err != nil || r.Name != pods[0].Name {
		t.Errorf("after Run returned, the service = %+v, %v; want its rules kept", r, err)
	}
}

// waitForAt dials addr from ns until want reports true.
func waitForAt(t *testing.T, ns string, addr netip.AddrPort, what string, want func(proxytest.Reply, error) bool) {
	t.Helper()
	var r proxytest.Reply
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if r, err = proxytest.DialTCP(ns, addr, time.Second); want(r, err) {
			return
		}
	}
	t.Fatalf("%s: last dial of %s: %+v, %v", what, addr, r, err)
}
