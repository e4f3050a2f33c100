package bridge

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"github.com/vishvananda/netlink"
)

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		in, field string
		want      settings
	}{
		{in: ``, want: settings{Bridge: "paddock0", Table: "paddock-bridge", Hairpin: true, Masquerade: true}},
		{in: `{"bridge":"br9","table":"t9","mtu":1400,"hairpin":false,"masquerade":false}`, want: settings{Bridge: "br9", Table: "t9", MTU: 1400}},
		{in: `{"bridge":"this-name-is-too-long"}`, field: "bridge"},
		{in: `{"table":"a b"}`, field: "table"},
		{in: `{"mtu":100}`, field: "mtu"},
		{in: `{"mtu":70000}`, field: "mtu"},
		{in: `{"brigde":"x"}`},
		{in: `{} {}`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseConfig([]byte(tc.in))
			if tc.want.Bridge != "" {
				if err != nil || got != tc.want {
					t.Errorf("parseConfig(%s) = %+v, %v, want %+v", tc.in, got, err, tc.want)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != tc.field {
				t.Errorf("parseConfig(%s) = %v (field %q), want ErrInvalidArgument about %q", tc.in, err, errdefs.FieldOf(err), tc.field)
			}
		})
	}
}

// TestBeforeSetup: before SetupNode, Status is not ready with a code of
// the plugin's own and Attach is FailedPrecondition; bad SetupNode input
// names the field.
func TestBeforeSetup(t *testing.T) {
	needRoot(t)
	p := New(Options{})
	st, err := p.Status(t.Context(), &networkv1.StatusRequest{})
	if err != nil || st.Ready || st.Code < 100 {
		t.Errorf("Status before SetConfig = %v, %v, want not ready, code >= 100", st, err)
	}
	if _, err := p.SetConfig(t.Context(), &networkv1.SetConfigRequest{ApiVersion: "v9", StateDir: t.TempDir()}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("SetConfig(v9) = %v, want FailedPrecondition", err)
	}
	if _, err := p.SetConfig(t.Context(), &networkv1.SetConfigRequest{ApiVersion: "v1", StateDir: t.TempDir(), Config: []byte(`{"mtu":1}`)}); errdefs.FieldOf(err) != "mtu" {
		t.Errorf("SetConfig(mtu 1) = %v, want an error about mtu", err)
	}
	if _, err := p.SetConfig(t.Context(), &networkv1.SetConfigRequest{ApiVersion: "v1", StateDir: t.TempDir(), Config: []byte(`{"bridge":"pdtbnone","table":"paddock-test-none"}`)}); err != nil {
		t.Fatal(err)
	}
	st, err = p.Status(t.Context(), &networkv1.StatusRequest{})
	if err != nil || st.Ready || st.Code < 100 || !strings.Contains(st.Message, "SetupNode") {
		t.Errorf("Status before SetupNode = %v, %v, want not ready, code >= 100, a message naming SetupNode", st, err)
	}
	if _, err := p.Attach(t.Context(), &networkv1.AttachRequest{SandboxId: "x", Tenant: "t", NetnsPath: "/proc/self/ns/net", Ifname: "eth0"}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Attach before SetupNode = %v, want FailedPrecondition", err)
	}
	for _, tc := range []struct {
		req   *networkv1.SetupNodeRequest
		field string
	}{
		{&networkv1.SetupNodeRequest{}, "pod_cidr"},
		{&networkv1.SetupNodeRequest{PodCidr: "10.251.0.5/24"}, "pod_cidr"},
		{&networkv1.SetupNodeRequest{PodCidr: "10.251.0.0/31"}, "pod_cidr"},
		{&networkv1.SetupNodeRequest{PodCidr: "10.251.0.0/24", ClusterCidr: "10.252.0.0/16"}, "cluster_cidr"},
		{&networkv1.SetupNodeRequest{PodCidr: "10.251.0.0/24", ServiceCidr: "10.251.0.0/28"}, "service_cidr"},
		{&networkv1.SetupNodeRequest{PodCidr: "10.251.0.0/24", Mtu: 80}, "mtu"},
	} {
		if _, err := p.SetupNode(t.Context(), tc.req); !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != tc.field {
			t.Errorf("SetupNode(%v) = %v, want ErrInvalidArgument about %s", tc.req, err, tc.field)
		}
	}
}

// TestPodCIDRChange: SetupNode is idempotent, and a new pod range is
// refused while attachments exist and taken once they are gone.
func TestPodCIDRChange(t *testing.T) {
	e := newEnv(t, 24)
	if _, err := e.p.SetupNode(t.Context(), e.setupRequest()); err != nil {
		t.Fatalf("SetupNode again: %v", err)
	}
	a := e.attach("sb-a", "t1")
	req := e.setupRequest()
	req.PodCidr = "10.251.200.0/24"
	if _, err := e.p.SetupNode(t.Context(), req); !errors.Is(err, errdefs.ErrFailedPrecondition) || errdefs.FieldOf(err) != "pod_cidr" {
		t.Fatalf("SetupNode with another pod range while attached = %v, want FailedPrecondition about pod_cidr", err)
	}
	if err := e.detach(a.id, a.ns, "eth0"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.SetupNode(t.Context(), req); err != nil {
		t.Fatalf("SetupNode with another pod range, nothing attached: %v", err)
	}
	b := e.attach("sb-b", "t1")
	if !netip.MustParsePrefix(req.PodCidr).Contains(b.ip) {
		t.Errorf("address %s after the change, want one of %s", b.ip, req.PodCidr)
	}
	br, _ := netlink.LinkByName(e.bridge)
	addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.251.200.1/24" {
		t.Errorf("bridge addresses = %v, want only 10.251.200.1/24", addrs)
	}
}

// TestOutdatedTables: tables of another layout under the configured name
// (an older plugin's) are replaced by SetupNode.
func TestOutdatedTables(t *testing.T) {
	e := newNames(t, 24)
	run(t, "nft", "add", "table", "inet", e.table)
	run(t, "nft", "add", "map", "inet", e.table, setTenantOf, "{ type ipv4_addr : mark; }")
	run(t, "nft", "add", "set", "inet", e.table, "pod_tenant", "{ type ipv4_addr . mark; }")
	e.p = e.start()
	if _, err := e.p.SetupNode(t.Context(), e.setupRequest()); err != nil {
		t.Fatalf("SetupNode over tables of another layout: %v", err)
	}
	a := e.attach("sb-a", "t1")
	if err := e.check(a.id, a.ns, "eth0"); err != nil {
		t.Errorf("Check: %v", err)
	}
	if out := run(t, "nft", "list", "table", "inet", e.table); strings.Contains(out, "pod_tenant") {
		t.Errorf("the old set is still there:\n%s", out)
	}
}

// TestGC: of 10 attachments, 4 lose their netns without a Detach; GC with
// the 6 others valid releases exactly the 4, and the 6 stay whole.
func TestGC(t *testing.T) {
	e := newEnv(t, 24)
	var pods []*pod
	for i := range 10 {
		pods = append(pods, e.attach(fmt.Sprintf("sb-%d", i), "t1"))
	}
	var valid []*networkv1.Attachment
	for i, p := range pods {
		if i < 4 {
			run(t, "umount", p.ns)
			continue
		}
		valid = append(valid, &networkv1.Attachment{SandboxId: p.id, Ifname: "eth0"})
	}
	resp, err := e.p.GC(t.Context(), &networkv1.GCRequest{Valid: valid})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Released) != 4 || len(resp.Errors) != 0 {
		t.Fatalf("GC = %v, want 4 released, no errors", resp)
	}
	for i, r := range resp.Released {
		if r.SandboxId != fmt.Sprintf("sb-%d", i) {
			t.Errorf("released[%d] = %v, want sb-%d", i, r, i)
		}
	}
	if st, _ := e.p.Status(t.Context(), &networkv1.StatusRequest{}); st.Ipam.Allocated != 6 {
		t.Errorf("allocated after GC = %d, want 6", st.Ipam.Allocated)
	}
	for _, p := range pods[4:] {
		if err := e.check(p.id, p.ns, "eth0"); err != nil {
			t.Errorf("Check(%s) after GC: %v", p.id, err)
		}
	}
	if got := hostSides(t, e.bridge); len(got) != 6 {
		t.Errorf("%d host sides on the bridge after GC, want 6", len(got))
	}
}

// TestExhaustion: a /29 gives 5 addresses; the 6th Attach is
// RESOURCE_EXHAUSTED and leaves nothing behind; Status says code 50; a
// Detach makes room again.
func TestExhaustion(t *testing.T) {
	e := newEnv(t, 29)
	var pods []*pod
	for i := range 5 {
		pods = append(pods, e.attach(fmt.Sprintf("sb-%d", i), "t1"))
	}
	ns := e.netns("sb-5")
	_, err := e.p.Attach(t.Context(), &networkv1.AttachRequest{SandboxId: "sb-5", Tenant: "t1", NetnsPath: ns, Ifname: "eth0"})
	want := fmt.Sprintf("no address left in %s: 5 of 5 in use", e.podCIDR)
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Attach #6 = %v, want ErrResourceExhausted %q", err, want)
	}
	inNS(t, ns, func(h *netlink.Handle) error {
		if _, err := h.LinkByName("eth0"); err == nil {
			t.Error("the failed Attach left eth0 in the netns")
		}
		return nil
	})
	if _, err := netlink.LinkByName(hostVeth(e.bridge, key{"sb-5", "eth0"})); err == nil {
		t.Error("the failed Attach left its host side")
	}
	st, _ := e.p.Status(t.Context(), &networkv1.StatusRequest{})
	if st.Ready || st.Code != networkv1.StatusIPAMExhausted || st.Ipam.Allocated != 5 || st.Ipam.Capacity != 5 {
		t.Errorf("Status = %v, want not ready, code 50, 5 of 5", st)
	}
	if err := e.detach(pods[2].id, pods[2].ns, "eth0"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Attach(t.Context(), &networkv1.AttachRequest{SandboxId: "sb-5", Tenant: "t1", NetnsPath: ns, Ifname: "eth0"}); err != nil {
		t.Errorf("Attach after a Detach: %v", err)
	}
	if st, _ := e.p.Status(t.Context(), &networkv1.StatusRequest{}); st.Code != networkv1.StatusIPAMExhausted {
		t.Errorf("Status code = %d with the range full again, want 50", st.Code)
	}
}

// TestConcurrentAttachDetach: 100 concurrent Attach calls give 100
// distinct addresses; 100 concurrent Detach calls leave nothing.
func TestConcurrentAttachDetach(t *testing.T) {
	e := newEnv(t, 24)
	const n = 100
	nss := make([]string, n)
	for i := range n {
		nss[i] = e.netns(fmt.Sprintf("sb-%d", i))
	}
	ips := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := e.p.Attach(t.Context(), &networkv1.AttachRequest{SandboxId: fmt.Sprintf("sb-%d", i), Tenant: fmt.Sprintf("t%d", i%3), NetnsPath: nss[i], Ifname: "eth0"})
			if err != nil {
				t.Errorf("Attach sb-%d: %v", i, err)
				return
			}
			ips[i] = resp.Ips[0].Address
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for i, ip := range ips {
		if j, dup := seen[ip]; dup && ip != "" {
			t.Errorf("sb-%d and sb-%d both have %s", j, i, ip)
		}
		seen[ip] = i
	}
	if st, _ := e.p.Status(t.Context(), &networkv1.StatusRequest{}); st.Ipam.Allocated != n {
		t.Errorf("allocated = %d, want %d", st.Ipam.Allocated, n)
	}
	for i := range n {
		if err := e.check(fmt.Sprintf("sb-%d", i), nss[i], "eth0"); err != nil {
			t.Errorf("Check sb-%d: %v", i, err)
		}
	}
	for i := range n {
		wg.Go(func() {
			if err := e.detach(fmt.Sprintf("sb-%d", i), nss[i], "eth0"); err != nil {
				t.Errorf("Detach sb-%d: %v", i, err)
			}
		})
	}
	wg.Wait()
	st, _ := e.p.Status(t.Context(), &networkv1.StatusRequest{})
	if st.Ipam.Allocated != 0 {
		t.Errorf("allocated after detaching all = %d, want 0", st.Ipam.Allocated)
	}
	if got := hostSides(t, e.bridge); len(got) != 0 {
		t.Errorf("host sides left: %v", got)
	}
	if out := run(t, "nft", "list", "table", "inet", e.table); strings.Contains(out, "elements") {
		t.Errorf("elements left in the table:\n%s", out)
	}
}
