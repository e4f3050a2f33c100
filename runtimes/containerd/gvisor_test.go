package containerd_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/internal/netns"
	"github.com/paddock-dev/paddock/internal/testbin"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// gvisorEnv is a private containerd that finds bin/containerd-shim-runsc-v1
// in its PATH, with the plugin offering handler runsc on bin/runsc. Both
// come from make build; without them the test is skipped outside CI and
// fails under CI=true.
func gvisorEnv(t *testing.T) *env {
	t.Helper()
	bin := filepath.Join(testbin.Root(t), "bin")
	for _, name := range []string{"runsc", "containerd-shim-runsc-v1"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("this test runs gVisor through containerd and needs bin/%s (make build), and CI=true", name)
			}
			t.Skipf("skipping: this test runs gVisor through containerd and needs bin/%s (make build)", name)
		}
	}
	return newEnvWith(t, map[string]any{
		"runtimes":  map[string]string{"runc": "io.containerd.runc.v2", "runsc": "io.containerd.runsc.v1"},
		"runscPath": filepath.Join(bin, "runsc"),
	}, bin)
}

// vethPair joins the network namespaces a (address 10.211.0.1/24) and b
// (10.211.0.2/24) with a veth pair.
func vethPair(t *testing.T, a, b string) {
	t.Helper()
	name := fmt.Sprintf("pdgv%d", os.Getpid()%100000)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name + "a"}, PeerName: name + "b"}); err != nil {
		t.Fatalf("veth: %v", err)
	}
	for i, end := range []struct{ ns, link, addr string }{{a, name + "a", "10.211.0.1/24"}, {b, name + "b", "10.211.0.2/24"}} {
		f, err := os.Open(end.ns)
		if err != nil {
			t.Fatal(err)
		}
		l, err := netlink.LinkByName(end.link)
		if err == nil {
			err = netlink.LinkSetNsFd(l, int(f.Fd()))
		}
		f.Close()
		if err != nil {
			if i == 0 {
				netlink.LinkDel(l)
			}
			t.Fatalf("move %s to %s: %v", end.link, end.ns, err)
		}
		if err := netns.Do(end.ns, func() error {
			l, err := netlink.LinkByName(end.link)
			if err != nil {
				return err
			}
			addr, err := netlink.ParseAddr(end.addr)
			if err != nil {
				return err
			}
			if err := netlink.AddrAdd(l, addr); err != nil {
				return err
			}
			return netlink.LinkSetUp(l)
		}); err != nil {
			t.Fatalf("set up %s in %s: %v", end.link, end.ns, err)
		}
	}
}

// TestGVisorPod runs a pod on handler runsc: its two containers share one
// gVisor sandbox (they reach each other on 127.0.0.1, which a second
// sandbox's network stack would not give them) whose kernel is gVisor's
// and whose network stack took over the pod's network namespace (a
// listener beyond the veth there answers). Logs, exec, stop and removal
// work, and the removed pod leaves no mounts in the state directory and
// no pod cgroup.
func TestGVisorPod(t *testing.T) {
	e := gvisorEnv(t)
	caps, err := e.client.Capabilities(t.Context(), &runtimev1.CapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := caps.Isolation("runsc"); !ok || got != runtimev1.IsolationClass_ISOLATION_CLASS_USERSPACE_KERNEL {
		t.Errorf("Capabilities().Isolation(runsc) = %v %v, want userspace-kernel", got, ok)
	}
	if got, _ := caps.Isolation("runc"); got != runtimev1.IsolationClass_ISOLATION_CLASS_NAMESPACE {
		t.Errorf("Capabilities().Isolation(runc) = %v, want namespace", got)
	}

	podNS, peerNS := filepath.Join(t.TempDir(), "pod"), filepath.Join(t.TempDir(), "peer")
	for _, ns := range []string{podNS, peerNS} {
		if err := netns.Create(ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { netns.Remove(ns) })
	}
	vethPair(t, podNS, peerNS)
	var l net.Listener
	if err := netns.Do(peerNS, func() (err error) { l, err = net.Listen("tcp", "10.211.0.2:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "peer")
			c.Close()
		}
	}()

	sb := e.sandboxOn("runsc", "acme", "gv", podNS)
	server := e.run(sb, "server", "sh", "-c", "echo listening; nc -l -p 8080 -e echo pong; echo done >&2")
	client := e.run(sb, "client", "sleep", "600")
	e.waitRunning(server.Id)
	e.waitRunning(client.Id)

	poll(t, "the client container reaching the server on 127.0.0.1:8080", func() bool {
		return strings.TrimSpace(string(e.exec(client.Id, "nc", "127.0.0.1", "8080").Stdout)) == "pong"
	})
	if st := e.wait(server.Id); st.ExitCode != 0 || st.Reason != "Completed" {
		t.Errorf("server exit = %d %q, want 0 Completed", st.ExitCode, st.Reason)
	}
	var got []string
	for _, l := range e.logs(server.Id, true, 0) {
		got = append(got, l.Stream+":"+string(l.Line))
	}
	if want := "stdout:listening,stderr:done"; strings.Join(got, ",") != want {
		t.Errorf("server log = %q, want %q", strings.Join(got, ","), want)
	}

	var host unix.Utsname
	unix.Uname(&host)
	if r := e.exec(client.Id, "uname", "-r"); !strings.HasSuffix(strings.TrimSpace(string(r.Stdout)), "gvisor") ||
		strings.TrimSpace(string(r.Stdout)) == unix.ByteSliceToString(host.Release[:]) {
		t.Errorf("uname -r in the pod = %q (exit %d, %q), want gVisor's kernel", r.Stdout, r.ExitCode, r.Stderr)
	}
	port := l.Addr().(*net.TCPAddr).Port
	poll(t, "the pod reaching the peer namespace through its veth", func() bool {
		return strings.TrimSpace(string(e.exec(client.Id, "nc", "10.211.0.2", fmt.Sprint(port)).Stdout)) == "peer"
	})
	r := e.exec(client.Id, "sh", "-c", "echo out; echo err >&2; exit 43")
	if string(r.Stdout) != "out\n" || string(r.Stderr) != "err\n" || r.ExitCode != 43 {
		t.Errorf("ExecSync = %q %q %d, want \"out\\n\" \"err\\n\" 43", r.Stdout, r.Stderr, r.ExitCode)
	}

	if _, err := e.client.StopContainer(t.Context(), &runtimev1.StopContainerRequest{Id: client.Id, TimeoutSeconds: 1}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if st := e.inspect(client.Id); st.State != runtimev1.ContainerState_CONTAINER_EXITED {
		t.Errorf("after StopContainer the client is %v, want exited", st.State)
	}
	for _, id := range []string{server.Id, client.Id} {
		if _, err := e.client.RemoveContainer(t.Context(), &runtimev1.RemoveContainerRequest{Id: id}); err != nil {
			t.Errorf("RemoveContainer(%s): %v", id, err)
		}
	}
	if _, err := e.client.StopSandbox(t.Context(), &runtimev1.StopSandboxRequest{Id: sb.Id}); err != nil {
		t.Fatalf("StopSandbox: %v", err)
	}
	if _, err := e.client.RemoveSandbox(t.Context(), &runtimev1.RemoveSandboxRequest{Id: sb.Id}); err != nil {
		t.Fatalf("RemoveSandbox: %v", err)
	}
	if m := mountsUnder(t, e.stateDir); len(m) > 0 {
		t.Errorf("mounts left in the state directory after RemoveSandbox: %v", m)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory/paddock-containerd", sb.Id)); err == nil {
		t.Errorf("the pod cgroup of %s is left after RemoveSandbox", sb.Id)
	}
}

// poll calls cond until it holds, failing the test after 30 s.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

// podCgroupFile reads a file of sandbox id's pod cgroup: the v1
// controller's or, on a v2 host, the unified one's.
func podCgroupFile(t *testing.T, id, v1ctrl, v1file, v2file string) string {
	t.Helper()
	path := filepath.Join("/sys/fs/cgroup", v1ctrl, "paddock-containerd", id, v1file)
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		path = filepath.Join("/sys/fs/cgroup/paddock-containerd", id, v2file)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// podMemoryLimit is the memory limit of sandbox id's pod cgroup; 0 for
// none.
func podMemoryLimit(t *testing.T, id string) int64 {
	t.Helper()
	s := podCgroupFile(t, id, "memory", "memory.limit_in_bytes", "memory.max")
	n, err := strconv.ParseInt(s, 10, 64)
	if s == "max" || n >= 1<<62 {
		return 0
	} else if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestGVisorLimits: under gVisor a pod without limits of its own gets
// the sum of its containers' memory and CPU limits in its pod cgroup (the
// cgroup that holds the sandbox), also after UpdateResources changes one,
// and none once a container without a limit joins; Stats reports the
// limit in force. A memory hog goes over its pod's limit and is reported
// OOM-killed with exit 137 (signal 9).
func TestGVisorLimits(t *testing.T) {
	e := gvisorEnv(t)
	sb := e.sandboxOn("runsc", "acme", "limits", "")
	create := func(name string, r *runtimev1.Resources, cmd ...string) *runtimev1.Container {
		resp, err := e.client.CreateContainer(t.Context(), &runtimev1.CreateContainerRequest{SandboxId: sb.Id,
			Config: &runtimev1.ContainerConfig{Name: name, Image: testImage, Command: cmd, Resources: r}})
		if err != nil {
			t.Fatalf("CreateContainer(%s): %v", name, err)
		}
		if _, err := e.client.StartContainer(t.Context(), &runtimev1.StartContainerRequest{Id: resp.Container.Id}); err != nil {
			t.Fatalf("StartContainer(%s): %v", name, err)
		}
		e.waitRunning(resp.Container.Id)
		return resp.Container
	}
	a := create("a", &runtimev1.Resources{MemoryBytes: 64 << 20, CpuMillis: 500}, "sleep", "600")
	if got := podMemoryLimit(t, sb.Id); got != 64<<20 {
		t.Errorf("pod memory limit with one container of 64Mi = %d, want %d", got, 64<<20)
	}
	if got := podCgroupFile(t, sb.Id, "cpu", "cpu.cfs_quota_us", "cpu.max"); got != "50000" && got != "50000 100000" {
		t.Errorf("pod CPU quota with one container of 500m = %q, want 50000 per 100000", got)
	}
	create("b", &runtimev1.Resources{MemoryBytes: 32 << 20, CpuMillis: 250}, "sleep", "600")
	if got := podMemoryLimit(t, sb.Id); got != 96<<20 {
		t.Errorf("pod memory limit with containers of 64Mi and 32Mi = %d, want %d", got, 96<<20)
	}
	if _, err := e.client.UpdateResources(t.Context(), &runtimev1.UpdateResourcesRequest{Id: a.Id,
		Resources: &runtimev1.Resources{MemoryBytes: 128 << 20, CpuMillis: 500}}); err != nil {
		t.Fatalf("UpdateResources: %v", err)
	}
	if got := podMemoryLimit(t, sb.Id); got != 160<<20 {
		t.Errorf("pod memory limit after a 64Mi container went to 128Mi = %d, want %d", got, 160<<20)
	}
	st, err := e.client.Stats(t.Context(), &runtimev1.StatsRequest{Id: a.Id})
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.MemoryLimitBytes != 160<<20 {
		t.Errorf("Stats().MemoryLimitBytes = %d, want the pod's %d", st.MemoryLimitBytes, 160<<20)
	}
	if got := e.inspect(a.Id).Config.GetResources().GetMemoryBytes(); got != 128<<20 {
		t.Errorf("inspected memory limit after the update = %d, want %d", got, 128<<20)
	}
	create("c", nil, "sleep", "600")
	if got := podMemoryLimit(t, sb.Id); got != 0 {
		t.Errorf("pod memory limit with a container without a limit = %d, want none", got)
	}

	oomSB := e.sandboxOn("runsc", "acme", "oom", "")
	resp, err := e.client.CreateContainer(t.Context(), &runtimev1.CreateContainerRequest{SandboxId: oomSB.Id,
		Config: &runtimev1.ContainerConfig{Name: "hog", Image: testImage, Command: []string{"sh", "-c", "x=a; while true; do x=$x$x; done"},
			Resources: &runtimev1.Resources{MemoryBytes: 32 << 20}}})
	if err != nil {
		t.Fatalf("CreateContainer(hog): %v", err)
	}
	if _, err := e.client.StartContainer(t.Context(), &runtimev1.StartContainerRequest{Id: resp.Container.Id}); err != nil {
		t.Fatalf("StartContainer(hog): %v", err)
	}
	if ex := e.wait(resp.Container.Id); !ex.OomKilled || ex.ExitCode != 137 || ex.Signal != 9 || ex.Reason != "OOMKilled" {
		t.Errorf("memory hog under 32Mi ended with exit %d signal %d oom_killed %v reason %q, want 137, 9, true, OOMKilled",
			ex.ExitCode, ex.Signal, ex.OomKilled, ex.Reason)
	}
	// The OOM kill ended the hog's whole sandbox, which says so; the other
	// pod ran on.
	if s, err := e.client.InspectSandbox(t.Context(), &runtimev1.InspectSandboxRequest{Id: oomSB.Id}); err != nil || s.State != runtimev1.SandboxState_SANDBOX_NOTREADY {
		t.Errorf("InspectSandbox of the OOM-killed pod = %v, %v; want not ready", s.GetState(), err)
	}
	if s, err := e.client.InspectSandbox(t.Context(), &runtimev1.InspectSandboxRequest{Id: sb.Id}); err != nil || s.State != runtimev1.SandboxState_SANDBOX_READY {
		t.Errorf("InspectSandbox of the other pod = %v, %v; want ready", s.GetState(), err)
	}
	if c := e.inspect(a.Id); c.State != runtimev1.ContainerState_CONTAINER_RUNNING {
		t.Errorf("a container of another pod is %v after the OOM kill, want running", c.State)
	}
}

// TestGVisorKillExit kills containers of a gVisor pod with SIGKILL and
// reads their state as soon as it says exited: each reports exit 137,
// signal 9, never the 0 that gVisor's shim reports for a stopped task
// whose exit it has not collected yet.
func TestGVisorKillExit(t *testing.T) {
	e := gvisorEnv(t)
	sb := e.sandboxOn("runsc", "acme", "kill", "")
	for i := range 5 {
		c := e.run(sb, fmt.Sprintf("sleep-%d", i), "sleep", "600")
		e.waitRunning(c.Id)
		if _, err := e.client.SignalContainer(t.Context(), &runtimev1.SignalContainerRequest{Id: c.Id, Signal: "KILL"}); err != nil {
			t.Fatalf("SignalContainer(KILL): %v", err)
		}
		var got *runtimev1.Container
		poll(t, "the killed container to exit", func() bool {
			got = e.inspect(c.Id)
			return got.State == runtimev1.ContainerState_CONTAINER_EXITED
		})
		if ex := got.Exit; ex.GetExitCode() != 137 || ex.GetSignal() != 9 || ex.GetOomKilled() {
			t.Errorf("container %d killed with SIGKILL: exit %d signal %d oom_killed %v, want 137, 9, false", i, ex.GetExitCode(), ex.GetSignal(), ex.GetOomKilled())
		}
	}
}
