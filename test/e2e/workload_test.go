package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
)

// The end-to-end story through the real binaries on `paddock up`:
// a Deployment of 3 replicas runs; logs and exec work with exit codes; a
// crashing container's restartCount rises; scaling to 5 and back works;
// restarting paddock up leaves the containers' pids unchanged; an
// unschedulable pod explains why; deleting the Deployment leaves no
// container processes behind.
func TestDeploymentEndToEnd(t *testing.T) {
	u := clusterUp(t)
	cfg := u.admin
	mustPaddock(t, cfg, "", "tenant", "create", "demo")
	const marker = "sleep 3602"
	mustPaddock(t, cfg, "", "run", "web", "-t", "demo", "--image", "paddock.dev/test/busybox:latest", "--replicas", "3",
		"--", "sh", "-c", "echo started on $(hostname); exec sleep 3602")
	mustPaddock(t, cfg, "", "rollout", "status", "deployment/web", "-t", "demo", "--timeout", "2m")
	pods := runningPods(t, u, "app=web", 3)

	r := mustPaddock(t, cfg, "", "logs", pods[0], "-t", "demo")
	if !strings.Contains(r.stdout, "started on "+pods[0]) {
		t.Errorf("logs of %s = %q, want its start line", pods[0], r.stdout)
	}
	r = paddock(t, cfg, "", "exec", "--tenant", "demo", pods[1], "--", "sh", "-c", "echo in $(hostname); exit 5")
	if r.code != 5 || !strings.Contains(r.stdout, "in "+pods[1]) {
		t.Errorf("exec: %s, want exit 5 and the pod's hostname", r)
	}

	mustPaddock(t, cfg, "", "run", "crash", "-t", "demo", "--image", "paddock.dev/test/busybox:latest", "--", "sh", "-c", "sleep 1; exit 1")
	deadline := time.Now().Add(90 * time.Second)
	for restarts(t, u, "app=crash") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the crashing container did not restart twice within 90s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	mustPaddock(t, cfg, "", "delete", "deployment", "crash", "-t", "demo")

	mustPaddock(t, cfg, "", "scale", "deployment", "web", "-t", "demo", "--replicas", "5")
	mustPaddock(t, cfg, "", "rollout", "status", "deployment/web", "-t", "demo", "--timeout", "2m")
	runningPods(t, u, "app=web", 5)
	mustPaddock(t, cfg, "", "scale", "deployment", "web", "-t", "demo", "--replicas", "3")
	mustPaddock(t, cfg, "", "rollout", "status", "deployment/web", "-t", "demo", "--timeout", "2m")
	pods = runningPods(t, u, "app=web", 3)
	waitProcesses(t, marker, 3)

	// Restarting paddock up leaves the containers alone.
	before := hostPIDs(marker)
	u.stop(t)
	u = startUp(t, u.dataDir)
	after := runningPods(t, u, "app=web", 3)
	if !slices.Equal(pods, after) || !slices.Equal(before, hostPIDs(marker)) {
		t.Errorf("after restarting paddock up: pods %v pids %v, want %v and %v", after, hostPIDs(marker), pods, before)
	}

	// A pod no node can take says why.
	big := `apiVersion: paddock.dev/v1
kind: Pod
metadata: {name: big, tenant: demo}
spec:
  containers:
  - name: big
    image: paddock.dev/test/busybox:latest
    resources: {requests: {cpu: "1000"}}
`
	mustPaddock(t, cfg, big, "apply", "-f", "-")
	deadline = time.Now().Add(30 * time.Second)
	for {
		r := mustPaddock(t, cfg, "", "describe", "pod", "big", "-t", "demo")
		if strings.Contains(r.stdout, "0/1 nodes are available: 1 insufficient cpu") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("describe of an unschedulable pod does not say why:\n%s", r.stdout)
		}
		time.Sleep(200 * time.Millisecond)
	}

	mustPaddock(t, cfg, "", "delete", "deployment", "web", "-t", "demo")
	deadline = time.Now().Add(60 * time.Second)
	for len(hostPIDs(marker)) > 0 || len(podNames(t, u, "app=web")) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after deleting the deployment: pods %v, processes %v", podNames(t, u, "app=web"), hostPIDs(marker))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// podList returns the tenant demo's pods matching selector.
func podList(t *testing.T, u *up, selector string) []api.Pod {
	t.Helper()
	return tenantPods(t, u, "demo", selector)
}

// tenantPods returns the tenant's pods matching selector.
func tenantPods(t *testing.T, u *up, tenant, selector string) []api.Pod {
	t.Helper()
	r := mustPaddock(t, u.admin, "", "get", "pods", "-t", tenant, "-l", selector, "-o", "json")
	var list struct {
		Items []api.Pod `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("get pods -o json: %v\n%s", err, r.stdout)
	}
	return list.Items
}

func podNames(t *testing.T, u *up, selector string) []string {
	var names []string
	for _, p := range podList(t, u, selector) {
		names = append(names, p.Metadata.Name)
	}
	return names
}

// runningPods waits until exactly n pods match selector, all running and
// ready, and returns their names, sorted.
func runningPods(t *testing.T, u *up, selector string, n int) []string {
	t.Helper()
	return runningIn(t, u, "demo", selector, n)
}

// runningIn is runningPods in tenant.
func runningIn(t *testing.T, u *up, tenant, selector string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var names []string
		pods := tenantPods(t, u, tenant, selector)
		for _, p := range pods {
			if p.Status.Phase == api.PodRunning && p.Metadata.DeletionTimestamp == nil && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready {
				names = append(names, p.Metadata.Name)
			}
		}
		if len(names) == n && len(pods) == n {
			slices.Sort(names)
			return names
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d pods %s running, want %d\nup logs:\n%s", len(names), len(pods), selector, n, u.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// restarts is the highest restartCount among selector's pods.
func restarts(t *testing.T, u *up, selector string) int32 {
	var most int32
	for _, p := range podList(t, u, selector) {
		for _, c := range p.Status.ContainerStatuses {
			most = max(most, c.RestartCount)
		}
	}
	return most
}

// hostPIDs lists, sorted, the host processes whose command line is
// exactly cmdline.
func hostPIDs(cmdline string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ") == cmdline {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	return out
}

// waitProcesses waits until exactly n host processes run cmdline.
func waitProcesses(t *testing.T, cmdline string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(hostPIDs(cmdline)) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d processes %q, want %d", len(hostPIDs(cmdline)), cmdline, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
