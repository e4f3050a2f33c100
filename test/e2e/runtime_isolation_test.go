package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
)

// podPidsLimit is the --pod-pids-limit of the `paddock up` under test: low,
// so that a fork bomb reaches it at once.
const podPidsLimit = 128

// isolated is a runtime class under test and the tenant whose pods get it.
type isolated struct {
	class, tenant string
	// neighbour is the other tenant, whose pod must keep running.
	neighbour string
	// podCgroupHoldsPods says the pod cgroup on the host holds the pod's
	// processes themselves, so that its pids.max is the pod's pids limit
	// (runc). A gVisor sandbox holds its pod to the limit inside, and its
	// pod cgroup counts the sandbox's own host tasks, with room for them.
	podCgroupHoldsPods bool
}

var isolatedRuntimes = []isolated{
	{class: "runc", tenant: "plain", neighbour: "sealed", podCgroupHoldsPods: true},
	{class: "gvisor", tenant: "sealed", neighbour: "plain"},
}

// idlePod is a pod that sleeps: the subject of the visibility checks and
// the neighbour that must keep running while another pod hogs memory or
// forks without end.
const idlePod = `apiVersion: paddock.dev/v1
kind: Pod
metadata: {name: idle, tenant: %s, labels: {app: idle}}
spec:
  containers:
  - {name: main, image: paddock.dev/test/busybox:latest, command: [sleep, "3600"]}
`

// The runtime and resource isolation through the real binaries on
// one `paddock up` (runc and gVisor, --pod-pids-limit 128): a pod sees no
// host processes, files or Paddock sockets; a memory hog is OOM-killed
// inside its own limit and reported OOMKilled; a fork bomb stops at the
// pids limit while the node, the agent and the other tenant's pod carry
// on, and deleting it leaves nothing behind. Tenant plain is shared (runc),
// tenant sealed is sandboxed (gVisor).
func TestRuntimeIsolation(t *testing.T) {
	u := clusterUp(t, "--pod-pids-limit", strconv.Itoa(podPidsLimit))
	mustPaddock(t, u.admin, "", "tenant", "create", "plain")
	mustPaddock(t, u.admin, "", "tenant", "create", "sealed", "--sandboxed")
	for _, rt := range isolatedRuntimes {
		mustPaddock(t, u.admin, fmt.Sprintf(idlePod, rt.tenant), "apply", "-f", "-")
	}
	for _, rt := range isolatedRuntimes {
		runningIn(t, u, rt.tenant, "app=idle", 1)
		if got := tenantPod(t, u, rt.tenant, "idle").Spec.RuntimeClassName; got != rt.class {
			t.Fatalf("pod %s/idle has runtime class %q, want %s", rt.tenant, got, rt.class)
		}
	}

	for _, rt := range isolatedRuntimes {
		t.Run(rt.class+"/sees no host processes files or sockets", func(t *testing.T) {
			seesNoHostProcesses(t, u, rt.tenant)
			seesNoHostFiles(t, u, rt.tenant)
			seesNoHostSockets(t, u, rt.tenant)
		})
	}
	for _, rt := range isolatedRuntimes {
		t.Run(rt.class+"/memory hog is OOMKilled", func(t *testing.T) { memoryHog(t, u, rt) })
		t.Run(rt.class+"/memory hog restarts under restartPolicy Always", func(t *testing.T) { memoryHogRestarts(t, u, rt) })
	}
	for _, rt := range isolatedRuntimes {
		t.Run(rt.class+"/fork bomb stops at the pids limit", func(t *testing.T) { forkBomb(t, u, rt) })
	}
}

// seesNoHostProcesses: a host process the test starts is not among the
// pod's processes, which are its own few.
func seesNoHostProcesses(t *testing.T, u *up, tenant string) {
	marker := strconv.Itoa(1_000_000 + os.Getpid())
	host := exec.Command("sleep", marker)
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Process.Kill(); _ = host.Wait() })
	if pid := hostPID(t, "sleep "+marker); pid != host.Process.Pid {
		t.Fatalf("host process sleep %s: found pid %d, started %d", marker, pid, host.Process.Pid)
	}
	r := execIn(t, u, tenant, "idle", "ps -o pid,args; echo --; ls -d /proc/[0-9]* | wc -l")
	if r.code != 0 {
		t.Fatalf("ps in %s/idle: %s", tenant, r)
	}
	ps, count, _ := strings.Cut(r.stdout, "--\n")
	if !strings.Contains(ps, "sleep 3600") {
		t.Errorf("ps in %s/idle does not list the pod's own sleep 3600:\n%s", tenant, ps)
	}
	if strings.Contains(ps, marker) {
		t.Errorf("ps in %s/idle lists the host's sleep %s:\n%s", tenant, marker, ps)
	}
	if n, err := strconv.Atoi(strings.TrimSpace(count)); err != nil || n > 5 {
		t.Errorf("%s/idle sees %q processes in /proc, want its own few (sleep, the exec'd shell, ps and ls)", tenant, strings.TrimSpace(count))
	}
}

// seesNoHostFiles: marker files the test writes on the host (in /tmp and
// in the data directory) are nowhere in the pod, a file the pod writes is
// found by the same search, and the pod's /etc/hostname is its own.
func seesNoHostFiles(t *testing.T, u *up, tenant string) {
	name := fmt.Sprintf("rtiso-marker-%d", os.Getpid())
	for _, dir := range []string{os.TempDir(), u.dataDir} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("host secret\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(path) })
	}
	script := fmt.Sprintf(`touch /tmp/%[1]s-inside
find / \( -path /proc -o -path /sys \) -prune -o -name '%[1]s*' -print
cat %[2]s/%[1]s %[3]s/%[1]s 2>/dev/null
true`, name, os.TempDir(), u.dataDir)
	r := execIn(t, u, tenant, "idle", script)
	if got, want := strings.TrimSpace(r.stdout), "/tmp/"+name+"-inside"; r.code != 0 || got != want {
		t.Errorf("searching %s/idle for %s*: %s\nwant only the pod's own %s", tenant, name, r, want)
	}
	host, err := os.ReadFile("/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	r = execIn(t, u, tenant, "idle", "cat /etc/hostname")
	if got := strings.TrimSpace(r.stdout); r.code != 0 || got != "idle" || got == strings.TrimSpace(string(host)) {
		t.Errorf("/etc/hostname in %s/idle: %s, want the pod's name, not the host's %q", tenant, r, strings.TrimSpace(string(host)))
	}
}

// seesNoHostSockets: none of the unix sockets of paddock up and its
// plugins (the plugin host's go-plugin sockets, the runtime's own, etcd's)
// exists in the pod or is listed in its /proc/net/unix.
func seesNoHostSockets(t *testing.T, u *up, tenant string) {
	sockets := paddockSockets(t, u)
	t.Logf("sockets of paddock up and its plugins: %v", sockets)
	plugin := false
	for _, s := range sockets {
		plugin = plugin || strings.HasPrefix(s, filepath.Join(u.dataDir, "agent", "plugins")+"/")
	}
	if !plugin {
		t.Fatalf("found no plugin socket under %s among paddock up's sockets %v", filepath.Join(u.dataDir, "agent", "plugins"), sockets)
	}
	var script strings.Builder
	for _, s := range sockets {
		if strings.HasPrefix(s, "/") {
			fmt.Fprintf(&script, "[ -e '%s' ] && echo 'present %s'; ", s, s)
			fmt.Fprintf(&script, "[ -e '%s' ] && echo 'present %s'; ", filepath.Dir(s), filepath.Dir(s))
		}
	}
	script.WriteString("echo --; cat /proc/net/unix")
	r := execIn(t, u, tenant, "idle", script.String())
	if r.code != 0 {
		t.Fatalf("looking for sockets in %s/idle: %s", tenant, r)
	}
	present, unix, _ := strings.Cut(r.stdout, "--\n")
	if strings.TrimSpace(present) != "" {
		t.Errorf("%s/idle sees paddock's sockets or their directories:\n%s", tenant, present)
	}
	for _, s := range sockets {
		if strings.Contains(unix, s) {
			t.Errorf("%s/idle lists paddock's socket %s in /proc/net/unix:\n%s", tenant, s, unix)
		}
	}
}

// paddockSockets lists the unix sockets (paths, and abstract names with
// their leading @) held open by paddock up and its descendants (the agent,
// the plugins, their shims and runtimes, gVisor's sandbox processes), and
// every socket bound under the data directory (such as runsc's control
// sockets). Each network namespace among them lists its own sockets.
func paddockSockets(t *testing.T, u *up) []string {
	t.Helper()
	pids := descendants(u.cmd.Process.Pid)
	inodes := map[string]bool{}
	netns := map[string]int{} // netns → a pid in it
	for _, pid := range pids {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil {
			netns[ns] = pid
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if ino, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
				inodes[strings.TrimSuffix(ino, "]")] = true
			}
		}
	}
	var out []string
	for _, pid := range netns {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/unix", pid))
		if err != nil {
			continue // the process is gone
		}
		for _, line := range strings.Split(string(b), "\n") {
			// Num RefCount Protocol Flags Type St Inode Path
			fields := strings.Fields(line)
			if len(fields) == 8 && (inodes[fields[6]] || strings.HasPrefix(fields[7], u.dataDir+"/")) && !slices.Contains(out, fields[7]) {
				out = append(out, fields[7])
			}
		}
	}
	slices.Sort(out)
	return out
}

// descendants returns pid and every process below it.
func descendants(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", out[i]))
		for _, task := range tasks {
			b, _ := os.ReadFile(task)
			for _, f := range strings.Fields(string(b)) {
				if child, err := strconv.Atoi(f); err == nil {
					out = append(out, child)
				}
			}
		}
	}
	return out
}

// startHog creates pod NAME of tenant, limited to 32Mi, whose container
// grows without bound (busybox tail buffers a line that never ends), and
// deletes it when the test ends.
func startHog(t *testing.T, u *up, tenant, name string, policy api.RestartPolicy) {
	hog := fmt.Sprintf(`apiVersion: paddock.dev/v1
kind: Pod
metadata: {name: %s, tenant: %s}
spec:
  restartPolicy: %s
  containers:
  - name: main
    image: paddock.dev/test/busybox:latest
    command: [tail, /dev/zero]
    resources: {limits: {memory: 32Mi}}
`, name, tenant, policy)
	mustPaddock(t, u.admin, hog, "apply", "-f", "-")
	t.Cleanup(func() { paddock(t, u.admin, "", "delete", "pod", name, "-t", tenant, "--grace-period", "0") })
}

// memoryHog: a pod limited to 32Mi that grows without bound is OOM-killed
// inside its pod cgroup, whose limit is 32Mi, and its container reports
// OOMKilled; the node and the other tenant's pod carry on.
func memoryHog(t *testing.T, u *up, rt isolated) {
	const limit = 32 << 20
	startHog(t, u, rt.tenant, "hog", api.RestartNever)
	var p *api.Pod
	deadline := time.Now().Add(90 * time.Second)
	for p = tenantPod(t, u, rt.tenant, "hog"); p.Status.Phase != api.PodFailed && p.Status.Phase != api.PodSucceeded; p = tenantPod(t, u, rt.tenant, "hog") {
		if time.Now().After(deadline) {
			b, _ := json.Marshal(p.Status)
			t.Fatalf("%s/hog has not ended within 90s: status %s", rt.tenant, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var term *api.ContainerStateTerminated
	if len(p.Status.ContainerStatuses) == 1 {
		term = p.Status.ContainerStatuses[0].State.Terminated
	}
	if term == nil || term.Reason != "OOMKilled" || term.ExitCode != 137 {
		t.Errorf("%s/hog ended in phase %s with %+v, want OOMKilled, exit 137\nup logs:\n%s", rt.tenant, p.Status.Phase, term, u.logs)
	}
	// The kill happened at the pod's own limit.
	sb := sandboxID(t, u, p)
	if got := readCgroupInt(t, sb, "memory", "memory.limit_in_bytes", "memory.max"); got != limit {
		t.Errorf("%s/hog's pod cgroup memory limit = %d, want %d", rt.tenant, got, limit)
	}
	stillFine(t, u, rt.neighbour)
	stillFine(t, u, rt.tenant)
}

// memoryHogRestarts: under restartPolicy Always an OOM-killed container
// runs again — under gVisor, whose OOM ends the whole sandbox, in a new
// one — with its restart counted and its OOM kill as its last state.
func memoryHogRestarts(t *testing.T, u *up, rt isolated) {
	startHog(t, u, rt.tenant, "hog-again", api.RestartAlways)
	var cs api.ContainerStatus
	eventually(t, 90*time.Second, rt.tenant+"/hog-again restarted after an OOM kill", func() bool {
		p := tenantPod(t, u, rt.tenant, "hog-again")
		if len(p.Status.ContainerStatuses) != 1 {
			return false
		}
		cs = p.Status.ContainerStatuses[0]
		return cs.RestartCount >= 1 && cs.LastTerminationState.Terminated != nil
	})
	if last := cs.LastTerminationState.Terminated; last.Reason != "OOMKilled" || last.ExitCode != 137 {
		t.Errorf("%s/hog-again's last state = %+v, want OOMKilled, exit 137", rt.tenant, last)
	}
	stillFine(t, u, rt.neighbour)
}

// forkBomb: a pod forking without end stays at the pids limit of its pod
// cgroup, which it reaches, while the node stays Ready, the agent answers
// and the other tenant's pod answers exec; deleting it leaves no process
// behind: none of the bomb's command lines, and the pod cgroup is gone
// (the kernel removes a cgroup only once no process is left in it).
func forkBomb(t *testing.T, u *up, rt isolated) {
	const bombCmd = "f(){ f|f& }; f; exec sleep 3605"
	bomb := fmt.Sprintf(`apiVersion: paddock.dev/v1
kind: Pod
metadata: {name: bomb, tenant: %s, labels: {app: bomb}}
spec:
  containers:
  - {name: main, image: paddock.dev/test/busybox:latest, command: [sh, -c, %q]}
`, rt.tenant, bombCmd)
	mustPaddock(t, u.admin, bomb, "apply", "-f", "-")
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			paddock(t, u.admin, "", "delete", "pod", "bomb", "-t", rt.tenant, "--grace-period", "0")
		}
	})
	var p *api.Pod
	eventually(t, 90*time.Second, rt.tenant+"/bomb runs", func() bool {
		p = tenantPod(t, u, rt.tenant, "bomb")
		return p.Status.Phase == api.PodRunning
	})
	sb := sandboxID(t, u, p)
	hostMax := readCgroupInt(t, sb, "pids", "pids.max", "pids.max")
	if rt.podCgroupHoldsPods && hostMax != podPidsLimit {
		t.Fatalf("%s/bomb's pod cgroup pids.max = %d, want --pod-pids-limit %d", rt.tenant, hostMax, podPidsLimit)
	}
	// While it forks: the pod's host tasks stay within its cgroup's
	// limit; the node, the agent and the neighbour answer.
	most := 0
	end := time.Now().Add(15 * time.Second)
	for time.Now().Before(end) {
		n := readCgroupInt(t, sb, "pids", "pids.current", "pids.current")
		if n > hostMax {
			t.Fatalf("%s/bomb's pod cgroup holds %d pids, over its limit %d", rt.tenant, n, hostMax)
		}
		most = max(most, n)
		stillFine(t, u, rt.neighbour)
	}
	// The bomb met the limit: its shell says so, and for runc the pod
	// cgroup counted the refused forks.
	logs := paddock(t, u.admin, "", "logs", "bomb", "-t", rt.tenant).stdout
	hits := forksRefused(t, sb)
	t.Logf("%s/bomb: pod cgroup pids.max %d, at most %d pids seen, %d forks refused there; %d \"can't fork\" lines in its log", rt.tenant, hostMax, most, hits, strings.Count(logs, "can't fork"))
	if !strings.Contains(logs, "can't fork") || (rt.podCgroupHoldsPods && hits == 0) {
		t.Errorf("%s/bomb never met its pids limit %d (at most %d pids seen, %d forks refused by the pod cgroup); its log:\n%.2000s", rt.tenant, podPidsLimit, most, hits, logs)
	}

	mustPaddock(t, u.admin, "", "delete", "pod", "bomb", "-t", rt.tenant, "--grace-period", "0")
	deleted = true
	eventually(t, 60*time.Second, rt.tenant+"/bomb is gone", func() bool {
		return paddock(t, u.admin, "", "get", "pod", "bomb", "-t", rt.tenant).code != 0
	})
	eventually(t, 30*time.Second, rt.tenant+"/bomb's processes and pod cgroup are gone", func() bool {
		_, err := os.Stat(cgroupDir(sb, "pids"))
		return len(hostPIDs("sh -c "+bombCmd)) == 0 && len(hostPIDs("sleep 3605")) == 0 && os.IsNotExist(err)
	})
	stillFine(t, u, rt.neighbour)
}

// stillFine checks that the node is Ready and the tenant's idle pod runs
// unrestarted and answers exec.
func stillFine(t *testing.T, u *up, tenant string) {
	t.Helper()
	ready := false
	for _, c := range node(t, u).Status.Conditions {
		ready = ready || (c.Type == "Ready" && c.Status == "True")
	}
	if !ready {
		t.Errorf("node %s is not Ready: %+v", u.node, node(t, u).Status.Conditions)
	}
	p := tenantPod(t, u, tenant, "idle")
	if p.Status.Phase != api.PodRunning || len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("%s/idle: phase %s, statuses %+v; want running, never restarted", tenant, p.Status.Phase, p.Status.ContainerStatuses)
	}
	if r := execIn(t, u, tenant, "idle", "echo alive"); r.code != 0 || strings.TrimSpace(r.stdout) != "alive" {
		t.Errorf("exec in %s/idle: %s", tenant, r)
	}
}

// sandboxID is the runtime's sandbox of the pod, from the agent's record.
func sandboxID(t *testing.T, u *up, p *api.Pod) string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(u.dataDir, "agent", "sandboxes", "*.json"))
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var rec struct{ ID, UID string }
		if json.Unmarshal(b, &rec) == nil && rec.UID == p.Metadata.UID {
			return rec.ID
		}
	}
	t.Fatalf("no sandbox record of pod %s/%s (uid %s) among %v", p.Metadata.Tenant, p.Metadata.Name, p.Metadata.UID, paths)
	return ""
}

// unifiedCgroups reports whether the host runs cgroup v2 only.
func unifiedCgroups() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// cgroupDir is the pod cgroup of sandbox sb in controller ctrl's
// hierarchy (the runtime plugins put pods under /paddock).
func cgroupDir(sb, ctrl string) string {
	if unifiedCgroups() {
		return filepath.Join("/sys/fs/cgroup/paddock", sb)
	}
	return filepath.Join("/sys/fs/cgroup", ctrl, "paddock", sb)
}

// readCgroupInt reads a number from the pod cgroup: file v1 under cgroup
// v1, file v2 under v2.
func readCgroupInt(t *testing.T, sb, ctrl, v1, v2 string) int {
	t.Helper()
	file := v1
	if unifiedCgroups() {
		file = v2
	}
	path := filepath.Join(cgroupDir(sb, ctrl), file)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %q is not a number", path, b)
	}
	return n
}

// forksRefused is how many forks the pids limit refused in the pod cgroup
// of sb, summed over it and the cgroups below it (older kernels count the
// event in the forking task's cgroup, not in the one whose limit held).
func forksRefused(t *testing.T, sb string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(cgroupDir(sb, "pids"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.Name() != "pids.events" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "max "); ok {
				k, _ := strconv.Atoi(strings.TrimSpace(v))
				n += k
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
