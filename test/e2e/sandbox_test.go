package e2e

import (
	"strings"
	"testing"
)

// A sandboxed tenant's pod runs under gVisor without asking: `paddock up`
// offers the gvisor runtime class (make build puts the runsc plugin and
// runsc in bin/), admission gives the tenant's pods that class, and the
// kernel the pod sees is gVisor's.
func TestSandboxedTenantRunsUnderGVisor(t *testing.T) {
	u := clusterUp(t)
	cfg := u.admin
	if r := mustPaddock(t, cfg, "", "get", "node", u.node, "-o", "json"); !strings.Contains(r.stdout, `"gvisor"`) {
		t.Fatalf("node %s does not offer the gvisor runtime class:\n%s", u.node, r.stdout)
	}
	mustPaddock(t, cfg, "", "tenant", "create", "acme", "--sandboxed")
	mustPaddock(t, cfg, "", "run", "box", "-t", "acme", "--image", "paddock.dev/test/busybox:latest", "--", "sleep", "3600")
	pods := runningIn(t, u, "acme", "app=box", 1)
	if p := tenantPod(t, u, "acme", pods[0]); p.Spec.RuntimeClassName != "gvisor" {
		t.Errorf("pod %s has runtime class %q, want gvisor", pods[0], p.Spec.RuntimeClassName)
	}
	r := execIn(t, u, "acme", pods[0], "uname -a")
	if r.code != 0 || !strings.Contains(strings.ToLower(r.stdout), "gvisor") {
		t.Errorf("uname -a in a sandboxed tenant's pod: %s, want gVisor's kernel", r)
	}
}
