package networktest

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/internal/netns"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"github.com/vishvananda/netlink"
)

// The tenants the cases attach pods of.
const (
	tenantA = "conformance-a"
	tenantB = "conformance-b"
)

// Cases returns the network conformance cases, in id order. Ids follow
// the conformance catalogue; docs/plugin-authors.md lists where a case
// refines it.
func Cases() []Case {
	cases := []Case{
		{ID: "NP-VR-001", Name: "Version negotiation", Level: "MUST", Anchor: "CNI VERSION", Run: versions},
		{ID: "NP-AT-001", Name: "Attach result schema", Level: "MUST", Anchor: "CNI ADD result", Run: attachSchema},
		{ID: "NP-AT-002", Name: "Interface name collision", Level: "MUST", Anchor: "CNI ADD: MUST return with an error", Run: attachCollision},
		{ID: "NP-AT-003", Name: "Multiple attachments", Level: "MUST", Capability: "multiple_interfaces", Anchor: "Multus secondary interfaces", Run: multipleInterfaces},
		{ID: "NP-DT-001", Name: "Detach idempotent", Level: "MUST", Anchor: "CNI DEL idempotence", Run: detachIdempotent},
		{ID: "NP-DT-002", Name: "Detach with the network namespace gone", Level: "MUST", Anchor: "CNI DEL best-effort, k8s#43488", Run: detachNetnsGone},
		{ID: "NP-CK-001", Name: "Check detects drift", Level: "MUST", Anchor: "CNI CHECK", Run: checkDrift},
		{ID: "NP-GC-001", Name: "GC removes stale, keeps valid", Level: "MUST", Anchor: "CNI GC", Run: gcStale},
		{ID: "NP-ST-001", Name: "Status semantics", Level: "MUST", Anchor: "CNI STATUS", Run: statusSemantics},
		{ID: "NP-CC-001", Name: "Concurrency across sandboxes", Level: "MUST", Anchor: "CNI: must implement locking on shared resources", Run: concurrency},
		{ID: "NP-IP-001", Name: "IPAM exhaustion is clean", Level: "MUST", Anchor: "CNI host-local IPAM", Run: exhaustion},
		{ID: "NP-MT-001", Name: "Tenant isolation truth table", Level: "MUST", Capability: "tenant_isolation", Anchor: "KEP-1611 / Cyclonus", Run: isolation},
		{ID: "NP-MT-002", Name: "Anti-spoofing", Level: "MUST", Capability: "anti_spoofing", Anchor: "Calico felix FV spoof workloads", Run: antiSpoofing},
		{ID: "NP-NP-001", Name: "NetworkPolicy ingress", Level: "MUST", Capability: "network_policy", Anchor: "Kubernetes NetworkPolicy e2e", Run: policy},
		{ID: "NP-RS-001", Name: "Dataplane survives plugin restart", Level: "MUST", Anchor: "Calico felix restart FV", Run: restart},
		{ID: "NP-SN-001", Name: "Node setup is idempotent and guards the pod range", Level: "MUST", Anchor: "network.proto SetupNode", Run: nodeSetup},
	}
	slices.SortStableFunc(cases, func(a, b Case) int { return strings.Compare(a.ID, b.ID) })
	return cases
}

// WantClass fails unless err is of class want.
func (t *T) WantClass(what string, err, want error) bool {
	if !errors.Is(err, want) {
		t.Errorf("%s = %v, want an error of class %v", what, err, want)
		return false
	}
	return true
}

func versions(t *T) {
	info, err := t.Client().Info(t.Context(), &networkv1.InfoRequest{})
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Name == "" {
		t.Errorf("Info.name is empty")
	}
	if !slices.Contains(info.ApiVersions, networkv1.APIVersion) {
		t.Errorf("Info.api_versions = %v, want it to contain %s", info.ApiVersions, networkv1.APIVersion)
	}
	_, err = t.Client().SetConfig(t.Context(), &networkv1.SetConfigRequest{ApiVersion: "v999", Config: t.env.cfg.Target.Config()})
	if t.WantClass("SetConfig(api_version v999)", err, errdefs.ErrFailedPrecondition) && !strings.Contains(err.Error(), networkv1.APIVersion) {
		t.Errorf("SetConfig(api_version v999) = %q: want the message to name the versions the plugin speaks (%s)", err, networkv1.APIVersion)
	}
	_, err = t.Client().SetConfig(t.Context(), &networkv1.SetConfigRequest{ApiVersion: networkv1.APIVersion, Config: []byte(`{not json`)})
	t.WantClass("SetConfig(malformed JSON)", err, errdefs.ErrInvalidArgument)
	// The old configuration is still in force: the plugin attaches.
	a := t.Pod(tenantA)
	t.Detach(a)
}

func nodeSetup(t *T) {
	a := t.Pod(tenantA)
	if err := t.env.setupNode(t.Context(), t.env.podCIDR); err != nil {
		t.Errorf("SetupNode again with the same ranges while %s is attached: %v", a, err)
	}
	if err := t.Check(a); err != nil {
		t.Errorf("Check after the repeated SetupNode: %v", err)
	}
	orig, other := t.env.podCIDR, netip.PrefixFrom(netip.MustParsePrefix(t.env.cfg.PodCIDR).Addr(), 29).String()
	err := t.env.setupNode(t.Context(), other)
	if err == nil {
		// Put the range back for the cases that follow.
		if err := t.env.setupNode(t.Context(), orig); err != nil {
			t.Errorf("SetupNode(pod_cidr %s) back: %v", orig, err)
		}
	}
	t.WantClass(fmt.Sprintf("SetupNode(pod_cidr %s) while %s is attached", other, a), err, errdefs.ErrFailedPrecondition)
	if st := t.Status(); st.Ipam == nil || st.Ipam.Range != t.env.podCIDR {
		t.Errorf("Status.ipam after the refused SetupNode = %v, want range %s", st.Ipam, t.env.podCIDR)
	}
}

func attachSchema(t *T) {
	a := t.Pod(tenantA)
	t.Logf("Attach answered %v", a.resp)
	pod := netip.MustParsePrefix(t.env.podCIDR)
	sb := a.resp.Interfaces[slices.IndexFunc(a.resp.Interfaces, func(i *networkv1.Interface) bool { return i.Sandbox == a.netns() })]
	if sb.Mac == "" || sb.Mtu == 0 {
		t.Errorf("sandbox interface %v: want its mac and mtu", sb)
	}
	if !pod.Contains(a.ip()) || a.addr.Bits() != pod.Bits() {
		t.Errorf("address %s: want one of the pod range %s, with its prefix length", a.addr, pod)
	}
	if !pod.Contains(a.gw) || a.gw == a.ip() {
		t.Errorf("gateway %s: want another address of the pod range %s", a.gw, pod)
	}
	if !slices.ContainsFunc(a.resp.Routes, func(r *networkv1.Route) bool { return r.Dst == "0.0.0.0/0" }) {
		t.Errorf("routes %v: want a default route (dst 0.0.0.0/0)", a.resp.Routes)
	}
	switch exists, err := hostLinkExists(a.hostIf); {
	case a.hostIf == "":
		t.Errorf("interfaces %v: want the host side (an interface with an empty sandbox)", a.resp.Interfaces)
	case err != nil:
		t.Errorf("host interface %s: %v", a.hostIf, err)
	case !exists:
		t.Errorf("host interface %s: the host has no such interface", a.hostIf)
	}
	st, err := inspect(a.netns(), a.req.Ifname)
	if err != nil {
		t.Fatalf("interface %s in %s: %v", a.req.Ifname, a.netns(), err)
	}
	if !strings.EqualFold(st.mac, sb.Mac) || st.mtu != int(sb.Mtu) || !st.up {
		t.Errorf("interface %s in the namespace: mac %s mtu %d up %v; want mac %s mtu %d, up", a.req.Ifname, st.mac, st.mtu, st.up, sb.Mac, sb.Mtu)
	}
	if !slices.Contains(st.addrs, a.addr) {
		t.Errorf("interface %s in the namespace has addresses %v, want %s", a.req.Ifname, st.addrs, a.addr)
	}
	if st.gateway != a.gw {
		t.Errorf("default route in the namespace via %v, want via %s", st.gateway, a.gw)
	}
}

func attachCollision(t *T) {
	a := t.Pod(tenantA)
	before, err := inspect(a.netns(), a.req.Ifname)
	if err != nil {
		t.Fatalf("interface %s in %s: %v", a.req.Ifname, a.netns(), err)
	}
	allocated := t.Allocated()
	_, err = t.Client().Attach(t.Context(), a.req)
	t.WantClass(fmt.Sprintf("second Attach(%s)", a.key()), err, errdefs.ErrAlreadyExists)
	after, err := inspect(a.netns(), a.req.Ifname)
	switch {
	case err != nil:
		t.Errorf("interface %s after the second Attach: %v", a.req.Ifname, err)
	case after.index != before.index || after.mac != before.mac || after.mtu != before.mtu || !slices.Equal(after.addrs, before.addrs) || after.gateway != before.gateway:
		t.Errorf("the second Attach changed the interface: %+v, was %+v", *after, *before)
	}
	if got := t.Allocated(); got != allocated {
		t.Errorf("the second Attach changed ipam.allocated to %d, was %d", got, allocated)
	}
	if err := t.Check(a); err != nil {
		t.Errorf("Check after the refused Attach: %v", err)
	}
}

func multipleInterfaces(t *T) {
	a := t.Pod(tenantA)
	req := t.attachRequest(tenantA, a.netns(), "net1")
	req.SandboxId, req.PodName, req.Labels = a.req.SandboxId, a.req.PodName, a.req.Labels
	b := t.Attach(req)
	if a.ip() == b.ip() || a.hostIf == b.hostIf {
		t.Errorf("eth0 (%s, host side %s) and net1 (%s, host side %s): want distinct addresses and host sides", a.ip(), a.hostIf, b.ip(), b.hostIf)
	}
	for _, x := range []*attachment{a, b} {
		if st, err := inspect(x.netns(), x.req.Ifname); err != nil || !slices.Contains(st.addrs, x.addr) {
			t.Errorf("interface %s in the namespace: %+v, %v; want it with %s", x.req.Ifname, st, err, x.addr)
		}
	}
	peer := t.Pod(tenantA)
	t.Serve(a, 80)
	t.Detach(b)
	if _, err := inspect(b.netns(), "net1"); !errors.Is(err, errNoLink) {
		t.Errorf("net1 after its Detach: %v, want it gone", err)
	}
	if err := t.Check(a); err != nil {
		t.Errorf("Check(eth0) after net1's Detach: %v", err)
	}
	t.Expect(peer, a, tcp80, reached)
}

func detachIdempotent(t *T) {
	base := t.Allocated()
	a := t.Pod(tenantA)
	if got := t.Allocated(); got != base+1 {
		t.Errorf("ipam.allocated after Attach = %d, want %d", got, base+1)
	}
	for i := 1; i <= 3; i++ {
		if err := t.TryDetach(a); err != nil {
			t.Errorf("Detach #%d: %v", i, err)
		}
		if i > 1 {
			continue
		}
		if got := t.Allocated(); got != base {
			t.Errorf("ipam.allocated after Detach = %d, want %d: the address is not released", got, base)
		}
		if exists, err := hostLinkExists(a.hostIf); a.hostIf != "" && (exists || err != nil) {
			t.Errorf("host side %s after Detach: exists %v (%v), want it gone", a.hostIf, exists, err)
		}
		if _, err := inspect(a.netns(), a.req.Ifname); !errors.Is(err, errNoLink) {
			t.Errorf("%s in the namespace after Detach: %v, want it gone", a.req.Ifname, err)
		}
	}
	// The same sandbox and interface can be attached again.
	t.Attach(a.req)
}

func detachNetnsGone(t *T) {
	base := t.Allocated()
	a := t.Pod(tenantA)
	if err := netns.Remove(a.netns()); err != nil {
		t.Fatalf("remove the namespace: %v", err)
	}
	if err := t.TryDetach(a); err != nil {
		t.Errorf("Detach with the namespace gone: %v", err)
	}
	if got := t.Allocated(); got != base {
		t.Errorf("ipam.allocated after Detach = %d, want %d: the reservation is not released", got, base)
	}
	if a.hostIf != "" {
		t.Eventually(5*time.Second, "host side "+a.hostIf+" gone", func() bool {
			exists, err := hostLinkExists(a.hostIf)
			return err == nil && !exists
		})
	}
}

func checkDrift(t *T) {
	a := t.Pod(tenantA)
	t.WaitCheck(a)
	t.mutate(a.netns(), a.req.Ifname, "delete the address", func(h *netlink.Handle, l netlink.Link) error {
		return h.AddrDel(l, &netlink.Addr{IPNet: ipNet(a.addr)})
	})
	err := t.Check(a)
	if t.WantClass("Check with the address deleted", err, errdefs.ErrFailedPrecondition) && !strings.Contains(err.Error(), a.ip().String()) {
		t.Errorf("Check with the address deleted = %q: want the message to name %s", err, a.ip())
	}

	b := t.Pod(tenantA)
	t.WaitCheck(b)
	t.mutate(b.netns(), b.req.Ifname, "delete the default route", func(h *netlink.Handle, l netlink.Link) error {
		routes, err := h.RouteList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if isDefault(r) {
				return h.RouteDel(&r)
			}
		}
		return errors.New("no default route to delete")
	})
	err = t.Check(b)
	if t.WantClass("Check with the default route deleted", err, errdefs.ErrFailedPrecondition) && !strings.Contains(strings.ToLower(err.Error()), "route") {
		t.Errorf("Check with the default route deleted = %q: want the message to name the route", err)
	}
}

// WaitCheck waits up to 5 s (convergence) for Check of a to succeed.
func (t *T) WaitCheck(a *attachment) {
	var err error
	t.Eventually(5*time.Second, "Check after Attach succeeds", func() bool {
		err = t.Check(a)
		return err == nil
	})
}

func gcStale(t *T) {
	base := t.Allocated()
	var pods []*attachment
	for range 10 {
		pods = append(pods, t.Pod(tenantA))
	}
	stale, valid := pods[:4], pods[4:]
	for _, p := range stale {
		if err := netns.Remove(p.netns()); err != nil {
			t.Fatalf("remove the namespace of %s: %v", p, err)
		}
	}
	req := &networkv1.GCRequest{}
	for _, p := range valid {
		t.Serve(p, 80)
		req.Valid = append(req.Valid, &networkv1.Attachment{SandboxId: p.req.SandboxId, Ifname: p.req.Ifname})
	}
	resp, err := t.Client().GC(t.Context(), req)
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	for _, e := range resp.Errors {
		t.Logf("GC reported: %s", e)
	}
	var released, want []string
	for _, r := range resp.Released {
		released = append(released, r.SandboxId+"/"+r.Ifname)
	}
	for _, p := range stale {
		want = append(want, p.key())
		if slices.Contains(released, p.key()) {
			p.detached.Store(true)
		}
	}
	slices.Sort(released)
	slices.Sort(want)
	if !slices.Equal(released, want) {
		t.Errorf("GC released %v, want exactly the forgotten %v", released, want)
	}
	if got := t.Allocated(); got != base+uint32(len(valid)) {
		t.Errorf("ipam.allocated after GC = %d, want %d", got, base+uint32(len(valid)))
	}
	for _, p := range valid {
		if err := t.Check(p); err != nil {
			t.Errorf("Check(%s) after GC: %v", p, err)
		}
	}
	for i, p := range valid {
		t.Expect(p, valid[(i+1)%len(valid)], tcp80, reached)
	}
}

// SmallPool sets the node up with the first /29 of the pod range until
// the case ends, and returns how many addresses Status says it can give.
// Call it with nothing attached.
func (t *T) SmallPool() uint32 {
	orig := t.env.podCIDR
	small := netip.PrefixFrom(netip.MustParsePrefix(t.env.cfg.PodCIDR).Addr(), 29)
	if err := t.env.setupNode(t.Context(), small.String()); err != nil {
		t.Fatalf("SetupNode(pod_cidr %s) with nothing attached: %v", small, err)
	}
	t.Cleanup(func() {
		ctx, cancel := t.cleanupContext()
		defer cancel()
		if err := t.env.setupNode(ctx, orig); err != nil {
			t.Errorf("cleanup SetupNode(pod_cidr %s): %v", orig, err)
		}
	})
	st := t.Status()
	switch {
	case st.Ipam == nil:
		t.Fatalf("Status has no ipam")
	case st.Ipam.Range != small.String():
		t.Fatalf("Status.ipam.range = %q after SetupNode(pod_cidr %s), want %s", st.Ipam.Range, small, small)
	case st.Ipam.Capacity == 0 || st.Ipam.Capacity > 8:
		t.Fatalf("Status.ipam.capacity = %d for %s, want 1 to 8", st.Ipam.Capacity, small)
	case st.Ipam.Allocated != 0:
		t.Fatalf("Status.ipam.allocated = %d with nothing attached", st.Ipam.Allocated)
	}
	return st.Ipam.Capacity
}

// failedAttach tries to attach a fresh sandbox in a fresh namespace in
// an exhausted pool, wants RESOURCE_EXHAUSTED and nothing left behind,
// and returns the request.
func (t *T) failedAttach() *networkv1.AttachRequest {
	vethsBefore, err := links("", "veth")
	if err != nil {
		t.Fatalf("host interfaces: %v", err)
	}
	req := t.attachRequest(tenantA, t.Netns(), "eth0")
	_, err = t.TryAttach(req)
	t.WantClass("Attach with no address left", err, errdefs.ErrResourceExhausted)
	if l, err := links(req.NetnsPath, ""); err != nil || len(l) > 0 {
		t.Errorf("the namespace of the refused Attach has interfaces %v (%v), want none but lo", l, err)
	}
	if after, err := links("", "veth"); err != nil || !slices.Equal(after, vethsBefore) {
		t.Errorf("the refused Attach changed the host's veths: %v, was %v (%v)", after, vethsBefore, err)
	}
	return req
}

func statusSemantics(t *T) {
	st := t.Status()
	if !st.Ready || st.Code != networkv1.StatusOK {
		t.Errorf("Status of a healthy plugin = ready %v code %d (%q), want ready, code 0", st.Ready, st.Code, st.Message)
	}
	if st.Ipam == nil || st.Ipam.Range != t.env.podCIDR || st.Ipam.Capacity == 0 {
		t.Errorf("Status.ipam = %v, want range %s and its capacity", st.Ipam, t.env.podCIDR)
	}
	capacity := t.SmallPool()
	var pods []*attachment
	for range capacity {
		pods = append(pods, t.Pod(tenantA))
	}
	st = t.Status()
	if st.Ready || st.Code != networkv1.StatusIPAMExhausted || st.Message == "" {
		t.Errorf("Status with no address left = ready %v code %d (%q), want not ready, code %d and a message", st.Ready, st.Code, st.Message, networkv1.StatusIPAMExhausted)
	}
	t.failedAttach()
	t.Detach(pods[0])
	if st = t.Status(); !st.Ready || st.Code != networkv1.StatusOK {
		t.Errorf("Status after an address was freed = ready %v code %d (%q), want ready, code 0", st.Ready, st.Code, st.Message)
	}
	if t.Caps().ControlDaemon {
		t.Logf("the plugin advertises control_daemon: the suite cannot stop a plugin's daemon black-box on one node, so code 51 is not checked")
	}
}

func exhaustion(t *T) {
	capacity := t.SmallPool()
	var pods []*attachment
	for range capacity {
		pods = append(pods, t.Pod(tenantA))
	}
	req := t.failedAttach()
	if got := t.Allocated(); got != capacity {
		t.Errorf("ipam.allocated after the refused Attach = %d, want %d", got, capacity)
	}
	t.Detach(pods[0])
	a := t.Attach(req)
	if small := netip.PrefixFrom(netip.MustParsePrefix(t.env.cfg.PodCIDR).Addr(), 29); !small.Contains(a.ip()) {
		t.Errorf("address %s after a Detach freed one: want one of %s", a.ip(), small)
	}
}

func concurrency(t *T) {
	const n = 100
	base := t.Allocated()
	if st := t.Status(); st.Ipam.Capacity-base < n+n/2 {
		t.Fatalf("the pod range %s has %d free addresses, the case needs %d: give a larger pod CIDR", t.env.podCIDR, st.Ipam.Capacity-base, n+n/2)
	}
	reqs := make([]*networkv1.AttachRequest, n+n/2)
	for i := range reqs {
		reqs[i] = t.attachRequest(tenantA, t.Netns(), "eth0")
	}
	var mu sync.Mutex
	var errs []string
	live := map[string]*attachment{}
	var wg sync.WaitGroup
	attach := func(req *networkv1.AttachRequest) {
		defer wg.Done()
		a, err := t.TryAttach(req)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Sprintf("Attach(%s): %v", req.SandboxId, err))
			return
		}
		live[a.key()] = a
	}
	detach := func(a *attachment) {
		defer wg.Done()
		err := t.TryDetach(a)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Sprintf("Detach(%s): %v", a.key(), err))
		}
		delete(live, a.key())
	}
	check := func(phase string, want int) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) > 0 {
			t.Errorf("%s: %d call(s) failed:\n%s", phase, len(errs), strings.Join(errs, "\n"))
			errs = nil
		}
		byIP := map[netip.Addr]string{}
		for k, a := range live {
			if other, dup := byIP[a.ip()]; dup {
				t.Errorf("%s: %s and %s both got %s", phase, other, k, a.ip())
			}
			byIP[a.ip()] = k
		}
		if got := t.Allocated(); got != base+uint32(want) {
			t.Errorf("%s: ipam.allocated = %d, want %d", phase, got, base+uint32(want))
		}
	}
	for _, r := range reqs[:n] {
		wg.Add(1)
		go attach(r)
	}
	wg.Wait()
	check(fmt.Sprintf("%d concurrent Attach calls", n), n)

	var first []*attachment
	for _, r := range reqs[:n/2] {
		if a := live[r.SandboxId+"/"+r.Ifname]; a != nil {
			first = append(first, a)
		}
	}
	for i := range n / 2 {
		if i < len(first) {
			wg.Add(1)
			go detach(first[i])
		}
		wg.Add(1)
		go attach(reqs[n+i])
	}
	wg.Wait()
	check(fmt.Sprintf("%d concurrent Detach and Attach calls", n), n)
	for _, a := range live {
		if st, err := inspect(a.netns(), a.req.Ifname); err != nil || !slices.Contains(st.addrs, a.addr) {
			t.Errorf("%s: the namespace's %s has %+v (%v), want %s", a, a.req.Ifname, st, err, a.addr)
		}
	}

	rest := make([]*attachment, 0, len(live))
	for _, a := range live {
		rest = append(rest, a)
	}
	for _, a := range rest {
		wg.Add(1)
		go detach(a)
	}
	wg.Wait()
	check(fmt.Sprintf("%d concurrent Detach calls", len(rest)), 0)
}
