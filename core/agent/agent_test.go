package agent

import (
	"slices"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// The node registers with what it offers and heartbeats; a pod bound to
// it runs, reports Running/Ready with its container's details and
// events; deleting it terminates it gracefully and leaves nothing in
// the runtime.
func TestPodLifecycle(t *testing.T) {
	h := newHarness(t)
	h.startAgent()
	ctx := t.Context()

	o, err := h.admin.Get(ctx, nodeKind, "", "n1")
	if err != nil {
		t.Fatal(err)
	}
	n := o.(*api.Node)
	if !slices.Contains(n.Status.RuntimeClasses, "runc") || slices.Contains(n.Status.RuntimeClasses, "gvisor") {
		t.Errorf("node offers %v, want runc and not gvisor (no runsc plugin)", n.Status.RuntimeClasses)
	}
	if q := n.Status.Allocatable[api.ResourcePods]; q.Value() != 110 {
		t.Errorf("allocatable pods = %v, want 110", q)
	}
	lo, err := h.admin.Get(ctx, leaseKind, "", api.NodeLeaseName("n1"))
	if err != nil {
		t.Fatalf("node lease: %v", err)
	}
	first := lo.(*api.Lease).Spec.RenewTime.Time
	deadline := time.Now().Add(10 * time.Second)
	for {
		lo, _ = h.admin.Get(ctx, leaseKind, "", api.NodeLeaseName("n1"))
		if lo.(*api.Lease).Spec.RenewTime.After(first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the node lease was not renewed within 10s (heartbeat 1s)")
		}
		time.Sleep(100 * time.Millisecond)
	}

	p := h.pod("web", "sh", "-c", "trap 'exit 0' TERM; echo hello; while true; do sleep 1; done")
	grace := int64(10)
	p.Spec.TerminationGracePeriodSeconds = &grace
	h.create(p)
	p = h.waitPod("web", "running and ready", 60*time.Second, func(p *api.Pod) bool {
		return running(p) && p.Status.ContainerStatuses[0].Ready
	})
	cs := p.Status.ContainerStatuses[0]
	if cs.ContainerID == "" || cs.RestartCount != 0 || p.Status.HostIP != "127.0.0.1" || p.Status.StartTime == nil {
		t.Errorf("status: containerID %q restarts %d hostIP %q startTime %v", cs.ContainerID, cs.RestartCount, p.Status.HostIP, p.Status.StartTime)
	}
	if c := h.container(cs.ContainerID); c.State != runtimev1.ContainerState_CONTAINER_RUNNING || c.Pid == 0 {
		t.Errorf("runtime says %v pid %d", c.State, c.Pid)
	}
	deadlineEv := time.Now().Add(10 * time.Second)
	for !(slices.Contains(h.events("web"), "Created") && slices.Contains(h.events("web"), "Started")) {
		if time.Now().After(deadlineEv) {
			t.Fatalf("events %v, want Created and Started", h.events("web"))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Graceful deletion: the container traps TERM and exits at once, well
	// within the grace period; then the pod is gone and so is its
	// sandbox.
	start := time.Now()
	if _, err := h.admin.Delete(ctx, podKind, h.tenant, "web"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, h, "web", 30*time.Second)
	if el := time.Since(start); el > 8*time.Second {
		t.Errorf("deletion took %v; the container exits on SIGTERM at once", el)
	}
	if sbs := h.sandboxes(); len(sbs) != 0 {
		t.Errorf("%d sandboxes left after the pod was deleted", len(sbs))
	}
}

func waitGone(t *testing.T, h *harness, name string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if _, err := h.admin.Get(t.Context(), podKind, h.tenant, name); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s still exists after %v", name, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
