package apiserver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/store"
)

// Cluster IPs and node ports are allocated with one ServiceAllocation
// object per address or port ("ip-10.96.0.7", "nodeport-tcp-30080"),
// created in the same etcd transaction as the service that takes it (or
// the update that adds it) and deleted in the one that deletes the
// service. Two API servers that pick the same address race on creating
// its allocation; the loser's transaction fails as a whole and it picks
// again. Allocations live in etcd, so they survive restarts, and the
// service objects need no scan to know what is taken.
//
// An allocation whose service no longer exists (the store restored from
// a backup, or written around the API server) is stale: the next service
// that picks it takes it over with compare-and-swap. Services stored
// before allocations existed hold none; their addresses are not
// protected until they are re-created.

var (
	serviceKind, _ = api.KindFor("services")
	allocKind, _   = api.KindFor("serviceallocations")
)

// maxAllocAttempts bounds how often a service write picks again after
// another writer took one of its picks.
const maxAllocAttempts = 32

// randomProbes is how many random picks are tried before an allocation
// scans the whole range.
const randomProbes = 16

// allocator allocates cluster IPs from the service CIDR and node ports
// from the node port range.
type allocator struct {
	st *store.Store
	// err is why the network configuration is unusable; every allocation
	// fails with it.
	err        error
	svc        netip.Prefix
	dns        netip.Addr
	portsFirst int32
	portsLast  int32
}

func newAllocator(st *store.Store, cfg api.NetworkConfig) *allocator {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return &allocator{st: st, err: fmt.Errorf("%w: the server's network configuration is invalid: %v", errdefs.ErrUnavailable, err)}
	}
	dns, _ := netip.AddrFromSlice(cfg.DNSServiceIP().To4())
	first, last := cfg.NodePorts()
	return &allocator{st: st, svc: cfg.ServicePrefix(), dns: dns, portsFirst: first, portsLast: last}
}

func ipAllocName(a netip.Addr) string { return "ip-" + a.String() }

func portAllocName(proto api.Protocol, port int32) string {
	return "nodeport-" + strings.ToLower(string(proto)) + "-" + strconv.Itoa(int(port))
}

// allocNames returns the allocations a stored service holds.
func allocNames(s *api.Service) []string {
	var names []string
	if a, err := netip.ParseAddr(s.Spec.ClusterIP); err == nil {
		names = append(names, ipAllocName(a))
	}
	for _, p := range s.Spec.Ports {
		if p.NodePort != 0 {
			names = append(names, portAllocName(p.Protocol, p.NodePort))
		}
	}
	return names
}

// serviceRef is what an allocation records about its holder.
func serviceRef(s *api.Service) api.ObjectReference {
	m := s.Metadata
	return api.ObjectReference{Kind: "Service", Tenant: m.Tenant, Name: m.Name, UID: m.UID}
}

// pool is a range of allocatable values: cluster IPs or node ports of one
// protocol. Value i of the range is first+i.
type pool struct {
	n     uint64
	name  func(i uint64) string
	skip  func(i uint64) bool
	where string // for the exhaustion message
	what  string
}

func (a *allocator) ipPool() *pool {
	size := uint64(1) << (32 - a.svc.Bits())
	dnsIndex := api.AddrIndex(a.svc, a.dns)
	return &pool{
		n:    size,
		name: func(i uint64) string { return ipAllocName(api.NthAddr(a.svc, i)) },
		// The network and broadcast addresses are no hosts'; the DNS
		// address is the cluster DNS service's.
		skip:  func(i uint64) bool { return i == 0 || i == size-1 || i == dnsIndex },
		where: fmt.Sprintf("the service CIDR %s (--service-cidr)", a.svc),
		what:  "cluster IPs",
	}
}

func (a *allocator) portPool(proto api.Protocol) *pool {
	return &pool{
		n:     uint64(a.portsLast-a.portsFirst) + 1,
		name:  func(i uint64) string { return portAllocName(proto, a.portsFirst+int32(i)) },
		skip:  func(uint64) bool { return false },
		where: fmt.Sprintf("the node port range %d-%d (--service-node-port-range)", a.portsFirst, a.portsLast),
		what:  strings.ToLower(string(proto)) + " node ports",
	}
}

// claim is the write that takes one allocation for a service: a create,
// or the takeover of a stale allocation.
type claim struct {
	op    store.Op
	taken bool   // held by another live service
	mine  bool   // already held by this service: nothing to write
	owner string // the holder, when taken
}

// claimFor reads allocation name and says how s can take it.
func (a *allocator) claimFor(ctx context.Context, name string, s *api.Service) (claim, error) {
	want := &api.ServiceAllocation{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: allocKind.Kind},
		Metadata: api.ObjectMeta{Name: name},
		Spec:     api.ServiceAllocationSpec{Service: serviceRef(s)},
	}
	o, err := a.st.Get(ctx, allocKind, "", name)
	if errdefs.IsNotFound(err) {
		return claim{op: store.OpCreate(want)}, nil
	}
	if err != nil {
		return claim{}, err
	}
	cur := o.(*api.ServiceAllocation)
	ref := cur.Spec.Service
	if ref.UID == s.Metadata.UID {
		return claim{mine: true}, nil
	}
	live, err := a.serviceLive(ctx, ref)
	if err != nil {
		return claim{}, err
	}
	if live {
		return claim{taken: true, owner: fmt.Sprintf("service %q in tenant %q", ref.Name, ref.Tenant)}, nil
	}
	cur.Spec = want.Spec
	return claim{op: store.OpUpdate(cur)}, nil
}

// serviceLive reports whether the service ref names still exists.
func (a *allocator) serviceLive(ctx context.Context, ref api.ObjectReference) (bool, error) {
	o, err := a.st.Get(ctx, serviceKind, ref.Tenant, ref.Name)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return o.GetObjectMeta().UID == ref.UID, nil
}

// pick takes a free value of p for s, avoiding those in picked: a few
// random tries, then a scan of the whole range from a random start. It
// fails with errdefs.ErrResourceExhausted when nothing is free.
func (a *allocator) pick(ctx context.Context, p *pool, s *api.Service, picked map[string]bool) (uint64, store.Op, error) {
	try := func(i uint64) (bool, store.Op, error) {
		name := p.name(i)
		if p.skip(i) || picked[name] {
			return false, store.Op{}, nil
		}
		c, err := a.claimFor(ctx, name, s)
		if err != nil || c.taken || c.mine {
			return false, store.Op{}, err
		}
		picked[name] = true
		return true, c.op, nil
	}
	for range randomProbes {
		i := rand.Uint64N(p.n)
		if ok, op, err := try(i); ok || err != nil {
			return i, op, err
		}
	}
	// Scan: what the allocations list shows as held by a live service
	// is skipped without a read each.
	held, err := a.heldByLive(ctx)
	if err != nil {
		return 0, store.Op{}, err
	}
	start := rand.Uint64N(p.n)
	for k := range p.n {
		i := (start + k) % p.n
		if held[p.name(i)] {
			continue
		}
		if ok, op, err := try(i); ok || err != nil {
			return i, op, err
		}
	}
	return 0, store.Op{}, errdefs.New(errdefs.ErrResourceExhausted,
		fmt.Sprintf("no free %s in %s: every one is allocated; delete services or widen the range", p.what, p.where))
}

// heldByLive returns the names of the allocations held by services that
// exist.
func (a *allocator) heldByLive(ctx context.Context) (map[string]bool, error) {
	allocs, err := a.st.List(ctx, allocKind, "", store.ListOptions{})
	if err != nil {
		return nil, err
	}
	svcs, err := a.st.List(ctx, serviceKind, "", store.ListOptions{})
	if err != nil {
		return nil, err
	}
	live := make(map[string]bool, len(svcs.Items))
	for _, o := range svcs.Items {
		live[o.GetObjectMeta().UID] = true
	}
	held := make(map[string]bool, len(allocs.Items))
	for _, o := range allocs.Items {
		if live[o.(*api.ServiceAllocation).Spec.Service.UID] {
			held[o.GetObjectMeta().Name] = true
		}
	}
	return held, nil
}

// assign fills in s's cluster IP and node ports where they are left to
// the server, checks those asked for, and returns the writes that take
// and release its allocations; cur is the stored service for an update,
// nil for a create. s must have its uid.
func (a *allocator) assign(ctx context.Context, u *User, s, cur *api.Service) ([]store.Op, error) {
	if a.err != nil {
		return nil, a.err
	}
	var ops []store.Op
	picked := map[string]bool{}
	had := map[string]bool{}
	if cur != nil {
		for _, n := range allocNames(cur) {
			had[n] = true
		}
	}
	take := func(field, name, value string) error {
		if had[name] {
			picked[name] = true
			return nil
		}
		if picked[name] {
			return errdefs.Field(errdefs.ErrInvalidArgument, field, fmt.Sprintf("%s is asked for twice", value))
		}
		c, err := a.claimFor(ctx, name, s)
		switch {
		case err != nil:
			return err
		case c.taken:
			return errdefs.Field(errdefs.ErrAlreadyExists, field, fmt.Sprintf("%s is already allocated to %s: leave the field empty to get a free one", value, c.owner))
		case !c.mine:
			ops = append(ops, c.op)
		}
		picked[name] = true
		return nil
	}

	switch ip := s.Spec.ClusterIP; ip {
	case "None":
	case "":
		p := a.ipPool()
		i, op, err := a.pick(ctx, p, s, picked)
		if err != nil {
			return nil, err
		}
		s.Spec.ClusterIP = api.NthAddr(a.svc, i).String()
		ops = append(ops, op)
	default:
		addr, err := a.checkClusterIP(u, ip)
		if err != nil {
			return nil, err
		}
		if err := take("spec.clusterIP", ipAllocName(addr), "cluster IP "+ip); err != nil {
			return nil, err
		}
	}

	if s.Spec.Type == api.ServiceNodePort {
		for i := range s.Spec.Ports {
			port := &s.Spec.Ports[i]
			field := fmt.Sprintf("spec.ports[%d].nodePort", i)
			if port.NodePort == 0 {
				p := a.portPool(port.Protocol)
				v, op, err := a.pick(ctx, p, s, picked)
				if err != nil {
					return nil, err
				}
				port.NodePort = a.portsFirst + int32(v)
				ops = append(ops, op)
				continue
			}
			if port.NodePort < a.portsFirst || port.NodePort > a.portsLast {
				return nil, errdefs.Field(errdefs.ErrInvalidArgument, field,
					fmt.Sprintf("node port %d is outside the node port range %d-%d (--service-node-port-range)", port.NodePort, a.portsFirst, a.portsLast))
			}
			if err := take(field, portAllocName(port.Protocol, port.NodePort), fmt.Sprintf("node port %d/%s", port.NodePort, port.Protocol)); err != nil {
				return nil, err
			}
		}
	}

	// What the service held and no longer uses is released.
	var unused []string
	for name := range had {
		if !picked[name] {
			unused = append(unused, name)
		}
	}
	rel, err := a.release(ctx, cur, unused)
	return append(ops, rel...), err
}

// checkClusterIP checks an asked-for cluster IP against the service CIDR.
// The cluster DNS address is for cluster admins only.
func (a *allocator) checkClusterIP(u *User, ip string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(ip)
	if err != nil || !a.svc.Contains(addr) {
		return addr, errdefs.Field(errdefs.ErrInvalidArgument, "spec.clusterIP",
			fmt.Sprintf("%s is not in the service CIDR %s (--service-cidr): pick an address inside it, or leave the field empty to get a free one", ip, a.svc))
	}
	i := api.AddrIndex(a.svc, addr)
	if i == 0 || i == (uint64(1)<<(32-a.svc.Bits()))-1 {
		return addr, errdefs.Field(errdefs.ErrInvalidArgument, "spec.clusterIP",
			fmt.Sprintf("%s is the network or broadcast address of the service CIDR %s", ip, a.svc))
	}
	if addr == a.dns && u.Role != api.RoleClusterAdmin {
		return addr, errdefs.Field(errdefs.ErrPermissionDenied, "spec.clusterIP",
			fmt.Sprintf("%s is reserved for the cluster DNS service", ip))
	}
	return addr, nil
}

// release returns the writes that free those of the allocations names
// that s holds.
func (a *allocator) release(ctx context.Context, s *api.Service, names []string) ([]store.Op, error) {
	var ops []store.Op
	for _, name := range names {
		o, err := a.st.Get(ctx, allocKind, "", name)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if o.(*api.ServiceAllocation).Spec.Service.UID != s.Metadata.UID {
			continue
		}
		rv, _ := store.ParseResourceVersion(o.GetObjectMeta().ResourceVersion)
		ops = append(ops, store.OpDelete(allocKind, "", name, rv))
	}
	return ops, nil
}

// createService stores a new service with its cluster IP and node ports,
// allocated in the same transaction.
func (s *Server) createService(ctx context.Context, u *User, svc *api.Service) (api.Object, error) {
	tenant := svc.Metadata.Tenant
	svc.Metadata.UID = store.NewUID() // the allocations name it
	for attempt := 0; ; attempt++ {
		next := api.Clone(svc)
		ops, err := s.alloc.assign(ctx, u, next, nil)
		if err != nil {
			return nil, err
		}
		out, err := s.store.Commit(ctx, append([]store.Op{store.OpCheckExists(tenantKind, "", tenant), store.OpCreate(next)}, ops...)...)
		if err == nil {
			return out[0], nil
		}
		if attempt < maxAllocAttempts && s.lostPick(ctx, err, svc) {
			continue
		}
		return nil, tenantNotFound(err, tenant)
	}
}

// lostPick reports whether a failed service create failed only because
// another writer took one of its allocations in between (the tenant is
// there and the name still free), so that picking again may succeed.
func (s *Server) lostPick(ctx context.Context, err error, svc *api.Service) bool {
	if !errdefs.IsAlreadyExists(err) && !errdefs.IsConflict(err) && !errdefs.IsNotFound(err) {
		return false
	}
	m := svc.Metadata
	if _, terr := s.store.Get(ctx, tenantKind, "", m.Tenant); terr != nil {
		return false
	}
	_, gerr := s.store.Get(ctx, serviceKind, m.Tenant, m.Name)
	return errdefs.IsNotFound(gerr)
}

// updateService stores a changed service with compare-and-swap, taking
// and releasing node ports in the same transaction. Its cluster IP does
// not change.
func (s *Server) updateService(ctx context.Context, u *User, req *Request, sent *api.Service) (api.Object, error) {
	wantRV := sent.Metadata.ResourceVersion
	api.Default(sent)
	for attempt := 0; ; attempt++ {
		o, err := s.store.Get(ctx, serviceKind, req.Tenant, req.Name)
		if err != nil {
			return nil, err
		}
		cur := o.(*api.Service)
		if wantRV != "" && wantRV != cur.Metadata.ResourceVersion {
			return nil, errdefs.New(errdefs.ErrConflict, fmt.Sprintf("service %q was changed by someone else (resourceVersion %s, you sent %s): read it again and retry",
				req.Name, cur.Metadata.ResourceVersion, wantRV))
		}
		n, err := s.merge(ctx, req, cur, sent)
		if err != nil {
			return nil, err
		}
		next := n.(*api.Service)
		next.Metadata.ResourceVersion = cur.Metadata.ResourceVersion
		ops, err := s.alloc.assign(ctx, u, next, cur)
		if err != nil {
			return nil, err
		}
		out, err := s.store.Commit(ctx, append([]store.Op{store.OpUpdate(next)}, ops...)...)
		if err == nil {
			return out[0], nil
		}
		if attempt < maxAllocAttempts && (errdefs.IsConflict(err) || errdefs.IsAlreadyExists(err) || errdefs.IsNotFound(err)) {
			continue // the service or an allocation changed: read again
		}
		return nil, err
	}
}

// deleteService deletes a service and releases its allocations in the
// same transaction.
func (s *Server) deleteService(ctx context.Context, req *Request, rv int64) (api.Object, error) {
	for attempt := 0; ; attempt++ {
		o, err := s.store.Get(ctx, serviceKind, req.Tenant, req.Name)
		if err != nil {
			return nil, err
		}
		cur := o.(*api.Service)
		srv, _ := store.ParseResourceVersion(cur.Metadata.ResourceVersion)
		if rv != 0 && rv != srv {
			return nil, errdefs.New(errdefs.ErrConflict, fmt.Sprintf("service %q was changed by someone else: read it again and retry", req.Name))
		}
		ops, err := s.alloc.release(ctx, cur, allocNames(cur))
		if err != nil {
			return nil, err
		}
		_, err = s.store.Commit(ctx, append([]store.Op{store.OpDelete(serviceKind, req.Tenant, req.Name, srv)}, ops...)...)
		if err == nil {
			return cur, nil
		}
		if attempt < maxAllocAttempts && (errdefs.IsConflict(err) || errdefs.IsNotFound(err)) {
			continue
		}
		return nil, err
	}
}

// tenantAllocations returns the writes that release the allocations of
// every service of tenant, for the tenant's deletion.
func (s *Server) tenantAllocations(ctx context.Context, tenant string) ([]store.Op, error) {
	fs, err := api.ParseFieldSelector("spec.service.tenant=" + tenant)
	if err != nil {
		return nil, err
	}
	l, err := s.store.List(ctx, allocKind, "", store.ListOptions{Fields: fs})
	if err != nil {
		return nil, err
	}
	ops := make([]store.Op, 0, len(l.Items))
	for _, o := range l.Items {
		rv, _ := store.ParseResourceVersion(o.GetObjectMeta().ResourceVersion)
		ops = append(ops, store.OpDelete(allocKind, "", o.GetObjectMeta().Name, rv))
	}
	return ops, nil
}
