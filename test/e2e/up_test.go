package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/internal/testbin"
	"github.com/paddock-dev/paddock/internal/testlock"
)

// up is a running `paddock up`.
type up struct {
	server
	node string
	t    *testing.T
}

// clusterUp is the start of every test on a real cluster: it needs root,
// holds the machine lock, runs `paddock up` on a fresh data dir with extra
// flags if any, and brings it down (`paddock down`) when the test ends.
func clusterUp(t *testing.T, extra ...string) *up {
	t.Helper()
	requireRoot(t)
	testlock.Machine(t)
	u := startUp(t, "", extra...)
	t.Cleanup(func() { u.down(t) })
	return u
}

// startUp runs `paddock up` on dataDir (a fresh one when empty), with
// extra flags if any, and waits until its node is Ready.
func startUp(t *testing.T, dataDir string, extra ...string) *up {
	t.Helper()
	if dataDir == "" {
		var err error
		// Short: plugin socket paths live under it.
		if dataDir, err = os.MkdirTemp("", "pdk-up-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dataDir) })
		if err := os.MkdirAll(filepath.Join(dataDir, "agent", "import"), 0o700); err != nil {
			t.Fatal(err)
		}
		for _, image := range []string{"busybox", "server"} {
			if err := os.Symlink(testbin.Image(t, image), filepath.Join(dataDir, "agent", "import", image+".tar")); err != nil {
				t.Fatal(err)
			}
		}
	}
	u := &up{server: server{dataDir: dataDir, addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), admin: filepath.Join(dataDir, "admin.conf")}, node: "e2e-node", t: t}
	args := []string{"--data-dir", dataDir, "--listen", u.addr, "--node-name", u.node, "--node-ip", "127.0.0.1", "--streams-listen", fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	u.start(t, "up", append(args, extra...), u.nodeReady)
	return u
}

// nodeReady reports whether the node is registered and Ready.
func (u *up) nodeReady() bool {
	if !u.ready() {
		return false
	}
	r := paddock(u.t, u.admin, "", "get", "node", u.node, "-o", "json")
	if r.code != 0 {
		return false
	}
	var n api.Node
	if json.Unmarshal([]byte(r.stdout), &n) != nil {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" && c.Status == "True" {
			return strings.Contains(u.logs.String(), "ready with runtimes")
		}
	}
	return false
}

// kill sends SIGKILL to the paddock up process only (not its plugins).
func (u *up) kill(t *testing.T) {
	t.Helper()
	if err := u.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-u.exited
}

// pluginPID is the runc plugin's pid from the plugin host's record.
func (u *up) pluginPID(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(u.dataDir, "agent", "plugins", "records", "runc.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	return rec.PID
}

// hostPID is the pid of the host process whose command line is exactly
// cmdline, or 0.
func hostPID(t *testing.T, cmdline string) int {
	t.Helper()
	pids := hostPIDs(cmdline)
	if len(pids) != 1 {
		return 0
	}
	return pids[0]
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("paddock up runs containers and needs root; CI runs as root")
		}
		t.Skip("skipping: paddock up runs containers and needs root")
	}
}

// paddock up survives being killed, and so do its pods: SIGKILL of the
// up process leaves the containers running with the same pids, and the
// next up reattaches to the same plugin process; SIGKILL of the plugin
// leaves them running too and the restarted plugin recovers them; SIGTERM
// of up leaves them running; paddock down stops them.
func TestUpKeepsPodsAcrossRestarts(t *testing.T) {
	u := clusterUp(t)
	mustPaddock(t, u.admin, "", "tenant", "create", "demo")
	const marker = "sleep 3601"
	pod := `apiVersion: paddock.dev/v1
kind: Pod
metadata: {name: keep, tenant: demo}
spec:
  nodeName: e2e-node
  containers:
  - {name: main, image: paddock.dev/test/busybox:latest, command: [sleep, "3601"]}
`
	mustPaddock(t, u.admin, pod, "apply", "-f", "-")
	id := waitRunning(t, u, "keep")
	pid := hostPID(t, marker)
	plugin := u.pluginPID(t)
	if pid == 0 || plugin == 0 {
		t.Fatalf("container pid %d, plugin pid %d", pid, plugin)
	}

	u.kill(t)
	if hostPID(t, marker) != pid || syscall.Kill(plugin, 0) != nil {
		t.Fatalf("after SIGKILL of paddock up: container pid %d (was %d), plugin %d alive: %v", hostPID(t, marker), pid, plugin, syscall.Kill(plugin, 0))
	}
	u2 := startUp(t, u.dataDir)
	if got := u2.pluginPID(t); got != plugin || !strings.Contains(u2.logs.String(), "plugin reattached") {
		t.Errorf("after restart: plugin pid %d (was %d); logs say reattached: %v", got, plugin, strings.Contains(u2.logs.String(), "plugin reattached"))
	}
	if got := waitRunning(t, u2, "keep"); got != id || hostPID(t, marker) != pid {
		t.Errorf("after restart: container %s pid %d, want %s pid %d", got, hostPID(t, marker), id, pid)
	}

	// The plugin dies; the host starts another, which recovers the pod.
	if err := syscall.Kill(plugin, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for u2.pluginPID(t) == plugin {
		if time.Now().After(deadline) {
			t.Fatal("the plugin was not restarted within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if hostPID(t, marker) != pid {
		t.Errorf("after SIGKILL of the plugin: container pid %d, want %d", hostPID(t, marker), pid)
	}
	// The new plugin answers once it has started and taken its config.
	deadline = time.Now().Add(30 * time.Second)
	for r := paddock(t, u2.admin, "", "exec", "--tenant", "demo", "keep", "--", "true"); r.code != 0; r = paddock(t, u2.admin, "", "exec", "--tenant", "demo", "keep", "--", "true") {
		if time.Now().After(deadline) {
			t.Fatalf("exec after the plugin restarted: %s", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := waitRunning(t, u2, "keep"); got != id {
		t.Errorf("after the plugin restarted: container %s, want %s", got, id)
	}

	u2.stop(t)
	if hostPID(t, marker) != pid {
		t.Errorf("after SIGTERM of paddock up: container pid %d, want %d still running", hostPID(t, marker), pid)
	}
	u2.down(t)
	if p := hostPID(t, marker); p != 0 {
		t.Errorf("after paddock down: container still running as pid %d", p)
	}
}

// down stops paddock up and runs paddock down on its data directory.
func (u *up) down(t *testing.T) {
	t.Helper()
	u.stop(t)
	r := mustPaddock(t, "", "", "down", "--data-dir", u.dataDir)
	if !strings.Contains(r.stdout, "stopped") {
		t.Errorf("paddock down said %q", r.stdout)
	}
}

// waitRunning waits for the pod to run with restart count 0 and returns
// its container id.
func waitRunning(t *testing.T, u *up, name string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := paddock(t, u.admin, "", "get", "pod", name, "-t", "demo", "-o", "json")
		var p api.Pod
		if r.code == 0 && json.Unmarshal([]byte(r.stdout), &p) == nil && p.Status.Phase == api.PodRunning &&
			len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil {
			if n := p.Status.ContainerStatuses[0].RestartCount; n != 0 {
				t.Errorf("pod %s restarted %d times", name, n)
			}
			return p.Status.ContainerStatuses[0].ContainerID
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s not running within 60s: %s\nup logs:\n%s", name, r, u.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
