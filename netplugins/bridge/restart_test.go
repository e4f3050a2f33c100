package bridge

import (
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/internal/testbin"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
)

// TestRestart runs the plugin binary under the plugin host, kills it
// (SIGKILL) after an Attach, and checks that isolation holds while it is
// down (the dataplane is kernel state) and that the restarted process,
// from its state directory alone (no new SetupNode), checks and detaches
// the old attachment and makes a new one.
func TestRestart(t *testing.T) {
	e := newNames(t, 24)
	bin := testbin.Binary(t, "paddock-net-bridge")
	host, err := pluginhost.New(pluginhost.Config{StateDir: filepath.Join(t.TempDir(), "h"), Backoff: pluginhost.Backoff{Initial: 50 * time.Millisecond, Max: time.Second, ResetAfter: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	inst, err := host.Launch(t.Context(), pluginhost.NetworkKind, "bridge", bin, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Detach what is left while the plugin runs, then stop it.
		if c, err := inst.Network(); err == nil {
			_, _ = c.GC(t.Context(), &networkv1.GCRequest{})
		}
		_ = inst.Kill(t.Context())
	})
	c, err := inst.Network()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := c.SetupNode(ctx, e.setupRequest()); err != nil {
		t.Fatal(err)
	}
	attach := func(c *networkv1.Client, id, tenant string) *pod {
		t.Helper()
		ns := e.netns(id)
		resp, err := c.Attach(ctx, &networkv1.AttachRequest{SandboxId: id, Tenant: tenant, NetnsPath: ns, Ifname: "eth0"})
		if err != nil {
			t.Fatalf("Attach(%s): %v", id, err)
		}
		return &pod{id: id, tenant: tenant, ns: ns, ip: netip.MustParsePrefix(resp.Ips[0].Address).Addr(), resp: resp}
	}
	a, b := attach(c, "a", "ta"), attach(c, "b", "tb")
	listen(t, a.ns, 8080)

	if err := syscall.Kill(inst.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// While the plugin is down (or restarting), isolation holds.
	if got := dial(t, b.ns, netip.AddrPortFrom(a.ip, 8080)); got != "dropped" {
		t.Errorf("b (tb) → a (ta) around the plugin's death: %s, want dropped", got)
	}
	deadline := time.Now().Add(20 * time.Second)
	for inst.Restarts() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the plugin was not restarted within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := inst.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	c, err = inst.Network()
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx, &networkv1.StatusRequest{})
	if err != nil || !st.Ready || st.Ipam.GetAllocated() != 2 {
		t.Errorf("Status after the restart = %v, %v, want ready with 2 allocated", st, err)
	}
	if _, err := c.Check(ctx, &networkv1.CheckRequest{SandboxId: "a", NetnsPath: a.ns, Ifname: "eth0"}); err != nil {
		t.Errorf("Check(a) after the restart: %v", err)
	}
	if got := dial(t, b.ns, netip.AddrPortFrom(a.ip, 8080)); got != "dropped" {
		t.Errorf("b (tb) → a (ta) after the restart: %s, want dropped", got)
	}
	if _, err := c.Detach(ctx, &networkv1.DetachRequest{SandboxId: "b", NetnsPath: b.ns, Ifname: "eth0"}); err != nil {
		t.Errorf("Detach(b) after the restart: %v", err)
	}
	a2 := attach(c, "a2", "ta")
	if got := dial(t, a2.ns, netip.AddrPortFrom(a.ip, 8080)); got != "ok" {
		t.Errorf("a2 (ta, attached after the restart) → a (ta): %s, want ok", got)
	}
	resp, err := c.GC(ctx, &networkv1.GCRequest{Valid: []*networkv1.Attachment{{SandboxId: "a2", Ifname: "eth0"}}})
	if err != nil || len(resp.Released) != 1 || resp.Released[0].SandboxId != "a" {
		t.Errorf("GC(valid a2) = %v, %v, want a released", resp, err)
	}
}
