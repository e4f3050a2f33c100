package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
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

// runtimeClassYAML is a RuntimeClass manifest: name, plugin, isolation.
const runtimeClassYAML = `apiVersion: paddock.dev/v1
kind: RuntimeClass
metadata: {name: %s}
spec: {plugin: %s, isolation: %s}
`

// A runtime class that claims a sandbox but names the runc plugin is never
// offered: the node lists a class only when its plugin's handler isolates
// as strongly as the class says, so a sandboxed tenant's pod cannot land
// on the host kernel through a mislabelled class.
func TestMislabelledRuntimeClassNotOffered(t *testing.T) {
	u := clusterUp(t)
	// The mislabelled class first, then an honest one: once the node lists
	// the honest one, its status was computed with both present.
	mustPaddock(t, u.admin, fmt.Sprintf(runtimeClassYAML, "fake-sandbox", "runc", "userspace-kernel"), "apply", "-f", "-")
	mustPaddock(t, u.admin, fmt.Sprintf(runtimeClassYAML, "honest-sandbox", "runsc", "userspace-kernel"), "apply", "-f", "-")
	eventually(t, time.Minute, "node lists runtime class honest-sandbox", func() bool {
		return slices.Contains(node(t, u).Status.RuntimeClasses, "honest-sandbox")
	})
	if classes := node(t, u).Status.RuntimeClasses; slices.Contains(classes, "fake-sandbox") {
		t.Errorf("node offers fake-sandbox (plugin runc, claims userspace-kernel): its classes are %v", classes)
	}
	// A sandboxed tenant may name it (admission trusts the class's claim),
	// but no node runs it: the pod stays unscheduled, saying why.
	mustPaddock(t, u.admin, "", "tenant", "create", "acme", "--sandboxed")
	mustPaddock(t, u.admin, fmt.Sprintf(classPodYAML, "fake-sandbox"), "apply", "-f", "-")
	eventually(t, time.Minute, "pod acme/box's PodScheduled condition names the runtime class", func() bool {
		for _, c := range tenantPod(t, u, "acme", "box").Status.Conditions {
			if c.Type == "PodScheduled" && strings.Contains(c.Message, "no runtime class fake-sandbox") {
				return true
			}
		}
		return false
	})
	if p := tenantPod(t, u, "acme", "box"); p.Spec.NodeName != "" {
		t.Errorf("pod acme/box with class fake-sandbox was bound to node %q", p.Spec.NodeName)
	}
}

// classPodYAML is a pod of tenant acme on a runtime class.
const classPodYAML = `apiVersion: paddock.dev/v1
kind: Pod
metadata: {name: box, tenant: acme}
spec:
  runtimeClassName: %s
  containers:
  - {name: main, image: paddock.dev/test/busybox:latest, command: [sleep, "3600"]}
`
