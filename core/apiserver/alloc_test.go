package apiserver

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

func newService(tenant, name string, typ api.ServiceType, ports ...api.ServicePort) *api.Service {
	if len(ports) == 0 {
		ports = []api.ServicePort{{Port: 80}}
	}
	return &api.Service{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Service"},
		Metadata: api.ObjectMeta{Name: name, Tenant: tenant},
		Spec:     api.ServiceSpec{Type: typ, Selector: map[string]string{"app": name}, Ports: ports},
	}
}

// allocations lists the allocation names held, sorted.
func allocations(t *testing.T, admin *client.Client) []string {
	t.Helper()
	l, err := admin.ListAll(t.Context(), allocKind, "", client.ListOptions{})
	if err != nil {
		t.Fatalf("list serviceallocations: %v", err)
	}
	var names []string
	for _, o := range l.Items {
		names = append(names, o.GetObjectMeta().Name)
	}
	slices.Sort(names)
	return names
}

func wantFieldErr(t *testing.T, what string, err error, class error, field, msg string) {
	t.Helper()
	if !errors.Is(err, class) || errdefs.FieldOf(err) != field || !strings.Contains(err.Error(), msg) {
		t.Errorf("%s = %v (field %q), want %v on %s containing %q", what, err, errdefs.FieldOf(err), class, field, msg)
	}
}

func TestServiceClusterIP(t *testing.T) {
	admin, mk := testServer(t)
	ctx := t.Context()
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "acme"}})
	edit := mk(api.RoleEdit, "acme", "")
	svcCIDR := netip.MustParsePrefix(api.DefaultServiceCIDR)

	web := mustCreate(t, edit, newService("acme", "web", "")).(*api.Service)
	ip, err := netip.ParseAddr(web.Spec.ClusterIP)
	if err != nil || !svcCIDR.Contains(ip) || ip.String() == "10.96.0.10" || ip.String() == "10.96.0.0" || ip.String() == "10.96.255.255" {
		t.Fatalf("allocated cluster IP %q, want a host address of %s other than the DNS address 10.96.0.10", web.Spec.ClusterIP, svcCIDR)
	}
	if got := allocations(t, admin); !slices.Equal(got, []string{"ip-" + ip.String()}) {
		t.Errorf("allocations = %v, want [ip-%s]", got, ip)
	}

	asked := newService("acme", "asked", "")
	asked.Spec.ClusterIP = "10.96.5.5"
	if got := mustCreate(t, edit, asked).(*api.Service).Spec.ClusterIP; got != "10.96.5.5" {
		t.Errorf("requested cluster IP 10.96.5.5, got %q", got)
	}
	again := newService("acme", "again", "")
	again.Spec.ClusterIP = "10.96.5.5"
	_, err = edit.Create(ctx, again)
	wantFieldErr(t, "create with a taken cluster IP", err, errdefs.ErrAlreadyExists, "spec.clusterIP", `service "asked" in tenant "acme"`)
	again.Spec.ClusterIP = "10.97.0.1"
	_, err = edit.Create(ctx, again)
	wantFieldErr(t, "create with a cluster IP outside the CIDR", err, errdefs.ErrInvalidArgument, "spec.clusterIP", "10.96.0.0/16")
	again.Spec.ClusterIP = "10.96.0.10"
	_, err = edit.Create(ctx, again)
	wantFieldErr(t, "tenant asking for the DNS address", err, errdefs.ErrPermissionDenied, "spec.clusterIP", "cluster DNS")
	again.Spec.ClusterIP = "10.96.0.0"
	_, err = edit.Create(ctx, again)
	wantFieldErr(t, "create with the network address", err, errdefs.ErrInvalidArgument, "spec.clusterIP", "network or broadcast")
	if _, err := edit.Get(ctx, serviceKind, "acme", "again"); !errdefs.IsNotFound(err) {
		t.Errorf("refused service exists: %v", err)
	}

	headless := newService("acme", "headless", "")
	headless.Spec.ClusterIP = "None"
	if got := mustCreate(t, edit, headless).(*api.Service).Spec.ClusterIP; got != "None" {
		t.Errorf("headless service got cluster IP %q, want None", got)
	}
	if got := allocations(t, admin); len(got) != 2 {
		t.Errorf("allocations = %v, want the two services' IPs only", got)
	}

	// An update that leaves the cluster IP out keeps it; one that changes
	// it is refused.
	change := newService("acme", "web", "", api.ServicePort{Port: 8080})
	out, err := edit.Update(ctx, change)
	if err != nil || out.(*api.Service).Spec.ClusterIP != ip.String() {
		t.Fatalf("update without cluster IP = %v, %v; want IP %s kept", out, err, ip)
	}
	change.Spec.ClusterIP = "10.96.7.7"
	_, err = edit.Update(ctx, change)
	wantFieldErr(t, "update changing the cluster IP", err, errdefs.ErrInvalidArgument, "spec.clusterIP", "immutable")

	// Deleting a service frees its IP.
	if _, err := edit.Delete(ctx, serviceKind, "acme", "asked"); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(allocations(t, admin), "ip-10.96.5.5") {
		t.Error("deleted service's IP still allocated")
	}
	again.Spec.ClusterIP = "10.96.5.5"
	mustCreate(t, edit, again)

	// Allocations are the API server's: not even a cluster admin writes them.
	_, err = admin.Delete(ctx, allocKind, "", "ip-10.96.5.5")
	if !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("cluster admin deleting an allocation = %v, want permission denied", err)
	}
	// A cluster admin may give a service the DNS address.
	dns := newService("acme", "dns", "", api.ServicePort{Name: "dns", Port: 53, Protocol: api.ProtocolUDP})
	dns.Spec.ClusterIP = "10.96.0.10"
	mustCreate(t, admin, dns)
}

func TestServiceNodePorts(t *testing.T) {
	makers, _ := testServers(t, 1, func(c *Config) { c.Network = api.NetworkConfig{NodePortRange: "30000-30003"} })
	admin := makers[0](api.RoleClusterAdmin, "", "")
	ctx := t.Context()
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "acme"}})

	two := mustCreate(t, admin, newService("acme", "two", api.ServiceNodePort,
		api.ServicePort{Name: "http", Port: 80}, api.ServicePort{Name: "https", Port: 443})).(*api.Service)
	a, b := two.Spec.Ports[0].NodePort, two.Spec.Ports[1].NodePort
	if a == b || a < 30000 || a > 30003 || b < 30000 || b > 30003 {
		t.Fatalf("node ports %d and %d, want two different ports in 30000-30003", a, b)
	}
	// The same number over UDP is another port.
	udp := mustCreate(t, admin, newService("acme", "udp", api.ServiceNodePort, api.ServicePort{Port: 53, Protocol: api.ProtocolUDP, NodePort: a})).(*api.Service)
	if udp.Spec.Ports[0].NodePort != a {
		t.Errorf("UDP node port = %d, want the requested %d", udp.Spec.Ports[0].NodePort, a)
	}

	taken := newService("acme", "taken", api.ServiceNodePort, api.ServicePort{Name: "a", Port: 81}, api.ServicePort{Name: "b", Port: 82, NodePort: b})
	_, err := admin.Create(ctx, taken)
	wantFieldErr(t, "create with a taken node port", err, errdefs.ErrAlreadyExists, "spec.ports[1].nodePort", `service "two"`)
	taken.Spec.Ports[1].NodePort = 31000
	_, err = admin.Create(ctx, taken)
	wantFieldErr(t, "create with a node port outside the range", err, errdefs.ErrInvalidArgument, "spec.ports[1].nodePort", "30000-30003")

	// Two ports left: a service wanting three is refused whole, and takes
	// nothing.
	before := allocations(t, admin)
	_, err = admin.Create(ctx, newService("acme", "three", api.ServiceNodePort,
		api.ServicePort{Name: "a", Port: 1}, api.ServicePort{Name: "b", Port: 2}, api.ServicePort{Name: "c", Port: 3}))
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "30000-30003") {
		t.Errorf("create past the node port range = %v, want resource exhausted naming 30000-30003", err)
	}
	if after := allocations(t, admin); !slices.Equal(before, after) {
		t.Errorf("a refused create changed the allocations: %v → %v", before, after)
	}

	// Turning a NodePort service into a ClusterIP one frees its ports;
	// turning it back allocates again, keeping the cluster IP.
	cip := newService("acme", "two", api.ServiceClusterIP, api.ServicePort{Name: "http", Port: 80}, api.ServicePort{Name: "https", Port: 443})
	out, err := admin.Update(ctx, cip)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range out.(*api.Service).Spec.Ports {
		if p.NodePort != 0 {
			t.Errorf("ClusterIP service kept node port %d", p.NodePort)
		}
	}
	for _, n := range allocations(t, admin) {
		if n == portAllocName(api.ProtocolTCP, a) || n == portAllocName(api.ProtocolTCP, b) {
			t.Errorf("allocation %s kept after the service stopped being NodePort", n)
		}
	}
	mustCreate(t, admin, newService("acme", "four", api.ServiceNodePort,
		api.ServicePort{Name: "a", Port: 1}, api.ServicePort{Name: "b", Port: 2}, api.ServicePort{Name: "c", Port: 3}, api.ServicePort{Name: "d", Port: 4}))
	back := newService("acme", "two", api.ServiceNodePort, api.ServicePort{Name: "http", Port: 80})
	_, err = admin.Update(ctx, back)
	if !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("update needing a node port when none is free = %v, want resource exhausted", err)
	}
	if _, err := admin.Delete(ctx, serviceKind, "acme", "four"); err != nil {
		t.Fatal(err)
	}
	out, err = admin.Update(ctx, back)
	if err != nil || out.(*api.Service).Spec.Ports[0].NodePort == 0 || out.(*api.Service).Spec.ClusterIP != two.Spec.ClusterIP {
		t.Errorf("update back to NodePort = %v, %v; want a node port and cluster IP %s", out, err, two.Spec.ClusterIP)
	}
}

func TestServiceCIDRExhaustedAndTenantDeletion(t *testing.T) {
	// A /28 holds 16 addresses: 13 for services after the network and
	// broadcast addresses and the DNS address.
	makers, _ := testServers(t, 1, func(c *Config) { c.Network = api.NetworkConfig{ServiceCIDR: "10.100.0.0/28"} })
	admin := makers[0](api.RoleClusterAdmin, "", "")
	ctx := t.Context()
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "acme"}})
	seen := map[string]bool{}
	for i := range 13 {
		s := mustCreate(t, admin, newService("acme", fmt.Sprintf("s%d", i), "")).(*api.Service)
		if seen[s.Spec.ClusterIP] || s.Spec.ClusterIP == "10.100.0.10" {
			t.Fatalf("service %d got cluster IP %s, taken or reserved", i, s.Spec.ClusterIP)
		}
		seen[s.Spec.ClusterIP] = true
	}
	_, err := admin.Create(ctx, newService("acme", "one-too-many", ""))
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "10.100.0.0/28") || !strings.Contains(err.Error(), "--service-cidr") {
		t.Errorf("create past the service CIDR = %v, want resource exhausted naming 10.100.0.0/28 and --service-cidr", err)
	}
	// Deleting the tenant frees its services' addresses with them.
	if _, err := admin.Delete(ctx, tenantKind, "", "acme"); err != nil {
		t.Fatal(err)
	}
	if got := allocations(t, admin); len(got) != 0 {
		t.Errorf("allocations after the tenant's deletion = %v, want none", got)
	}
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "globex"}})
	mustCreate(t, admin, newService("globex", "s", ""))
}

// TestConcurrentServiceCreates creates services in parallel through two
// API servers on one etcd, with barely more addresses than services, so
// that picks collide: every service must get its own address.
func TestConcurrentServiceCreates(t *testing.T) {
	// A /27: 29 addresses for services.
	const services = 29
	makers, _ := testServers(t, 2, func(c *Config) { c.Network = api.NetworkConfig{ServiceCIDR: "10.100.0.0/27"} })
	admin := makers[0](api.RoleClusterAdmin, "", "")
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "acme"}})
	clients := []*client.Client{makers[0](api.RoleEdit, "acme", ""), makers[1](api.RoleEdit, "acme", "")}

	var wg sync.WaitGroup
	ips := make([]string, services)
	errs := make([]error, services)
	for i := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := clients[i%2].Create(t.Context(), newService("acme", fmt.Sprintf("s%d", i), ""))
			if err != nil {
				errs[i] = err
				return
			}
			ips[i] = o.(*api.Service).Spec.ClusterIP
		}()
	}
	wg.Wait()
	owner := map[string]int{}
	for i, ip := range ips {
		if errs[i] != nil {
			t.Errorf("create s%d: %v", i, errs[i])
			continue
		}
		if j, dup := owner[ip]; dup {
			t.Errorf("services s%d and s%d both got %s", j, i, ip)
		}
		owner[ip] = i
	}
	if got := allocations(t, admin); len(got) != services {
		t.Errorf("%d allocations, want %d", len(got), services)
	}
	_, err := clients[1].Create(t.Context(), newService("acme", "extra", ""))
	if !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("create once every address is taken = %v, want resource exhausted", err)
	}
}

func TestStaleAllocationIsTakenOver(t *testing.T) {
	makers, st := testServers(t, 1, func(c *Config) { c.Network = api.NetworkConfig{ServiceCIDR: "10.100.0.0/28"} })
	admin := makers[0](api.RoleClusterAdmin, "", "")
	ctx := t.Context()
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "acme"}})
	var ips []string
	for i := range 13 {
		ips = append(ips, mustCreate(t, admin, newService("acme", fmt.Sprintf("s%d", i), "")).(*api.Service).Spec.ClusterIP)
	}
	// A service removed behind the allocations' back (the store written
	// directly, as an older server or a restore might have) leaves its
	// allocation stale: with the range full, the next service takes it.
	if _, err := st.Delete(ctx, serviceKind, "acme", "s3", 0); err != nil {
		t.Fatal(err)
	}
	s := mustCreate(t, admin, newService("acme", "new", "")).(*api.Service)
	if s.Spec.ClusterIP != ips[3] {
		t.Errorf("new service got %s, want the stale %s", s.Spec.ClusterIP, ips[3])
	}
	o, err := st.Get(ctx, allocKind, "", "ip-"+ips[3])
	if err != nil {
		t.Fatal(err)
	}
	if ref := o.(*api.ServiceAllocation).Spec.Service; ref.Name != "new" || ref.UID != s.Metadata.UID {
		t.Errorf("taken-over allocation names %+v, want service new (%s)", ref, s.Metadata.UID)
	}
	// A live holder is never taken over.
	asked := newService("acme", "asked", "")
	asked.Spec.ClusterIP = ips[4]
	_, err = admin.Create(ctx, asked)
	wantFieldErr(t, "asking for a live service's IP", err, errdefs.ErrAlreadyExists, "spec.clusterIP", `"s4"`)
}
