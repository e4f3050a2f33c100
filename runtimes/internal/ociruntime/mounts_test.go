package ociruntime

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// RT-CT-008, RS-13 (d): mounts come only from the allowed roots, after
// symbolic links are resolved; a read-only mount refuses writes.
func TestVolumes(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	h := newHarness(t)
	ctx := t.Context()
	vols := filepath.Join(h.stateDir, "volumes")
	data := filepath.Join(vols, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(data, "hello"), []byte("from the host\n"), 0o644)
	os.Symlink(data, filepath.Join(vols, "link-inside"))
	os.Symlink(outside, filepath.Join(vols, "link-outside"))
	os.Symlink("../../..", filepath.Join(vols, "link-up"))

	sb := h.sandbox(nil)
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "vol", Command: []string{"sleep", "1000"},
		Mounts: []*runtimev1.Mount{
			{HostPath: data, ContainerPath: "/data"},
			{HostPath: filepath.Join(vols, "link-inside"), ContainerPath: "/ro", ReadOnly: true},
		}})
	if out, _, _ := h.exec(c.Id, "cat", "/data/hello"); out != "from the host\n" {
		t.Errorf("/data/hello = %q", out)
	}
	if _, _, code := h.exec(c.Id, "sh", "-c", "echo new > /data/new"); code != 0 {
		t.Errorf("writing a read-write mount failed")
	}
	if b, _ := os.ReadFile(filepath.Join(data, "new")); string(b) != "new\n" {
		t.Errorf("host sees %q, want the container's write", b)
	}
	_, stderr, code := h.exec(c.Id, "sh", "-c", "echo x > /ro/x")
	if code == 0 || !strings.Contains(stderr, "Read-only file system") {
		t.Errorf("writing a read-only mount: exit %d, %q; want EROFS", code, stderr)
	}

	// A host path swapped for a symbolic link between create and start
	// is refused at start.
	swap := filepath.Join(vols, "swap")
	os.Mkdir(swap, 0o755)
	swapped := h.create(sb.Id, &runtimev1.ContainerConfig{Name: "swapped", Command: []string{"true"},
		Mounts: []*runtimev1.Mount{{HostPath: swap, ContainerPath: "/swap"}}})
	os.Remove(swap)
	os.Symlink(outside, swap)
	if _, err := h.p.StartContainer(ctx, &runtimev1.StartContainerRequest{Id: swapped.Id}); !isClass(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("StartContainer after the mount source became a symlink out = %v, want FailedPrecondition", err)
	}

	for _, tc := range []struct{ name, host, ctr string }{
		{"outside the roots", outside, "/x"},
		{"symlink to outside", filepath.Join(vols, "link-outside"), "/x"},
		{"symlink up", filepath.Join(vols, "link-up"), "/x"},
		{"host root", "/", "/x"},
		{"relative", "volumes/data", "/x"},
		{"missing", filepath.Join(vols, "missing"), "/x"},
		{"over proc", data, "/proc/sys"},
		{"over root", data, "/"},
		{"relative target", data, "x"},
	} {
		_, err := h.p.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: sb.Id, Config: &runtimev1.ContainerConfig{
			Name: "bad-" + strings.ReplaceAll(tc.name, " ", "-"), Image: "busybox", Command: []string{"true"},
			Mounts: []*runtimev1.Mount{{HostPath: tc.host, ContainerPath: tc.ctr}}}})
		if !isClass(err, errdefs.ErrInvalidArgument) {
			t.Errorf("mount %s: %v, want InvalidArgument", tc.name, err)
		} else if tc.host == outside && !strings.Contains(err.Error(), outside) {
			t.Errorf("mount %s: %v, want the error to name the path", tc.name, err)
		}
	}
}

// A configured allowed root is honoured.
func TestVolumesConfiguredRoot(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	h := newHarnessConfig(t, fmt.Sprintf(`{"allowedMountRoots":[%q]}`, root))
	sb := h.sandbox(nil)
	os.WriteFile(filepath.Join(root, "f"), []byte("ok"), 0o644)
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "vol", Command: []string{"cat", "/mnt/f"},
		Mounts: []*runtimev1.Mount{{HostPath: root, ContainerPath: "/mnt", ReadOnly: true}}})
	if ex := h.wait(c.Id); ex.ExitCode != 0 {
		t.Errorf("cat /mnt/f: %v", ex)
	}
	_, err := h.p.CreateContainer(t.Context(), &runtimev1.CreateContainerRequest{SandboxId: sb.Id, Config: &runtimev1.ContainerConfig{
		Name: "default-root", Image: "busybox", Command: []string{"true"},
		Mounts: []*runtimev1.Mount{{HostPath: filepath.Join(h.stateDir, "volumes"), ContainerPath: "/x"}}}})
	if !isClass(err, errdefs.ErrInvalidArgument) {
		t.Errorf("the default root with a configured one: %v, want InvalidArgument", err)
	}
}

// Containers join the sandbox's network namespace and share it.
func TestSandboxNetns(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	name := fmt.Sprintf("paddock-runc-test-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	if out, err := exec.Command("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	path := "/run/netns/" + name
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	sb := h.sandbox(&runtimev1.SandboxConfig{Name: "net", NetnsPath: path})
	// The listener's stdin stays open (an nc whose stdin ends may quit
	// before the data arrives); what it receives goes to a file.
	listener := []string{"sh", "-c", "sleep 1000 | nc -l -p 8080 > /tmp/got"}
	server := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "server", Command: listener})
	client := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "client", Command: []string{"sleep", "1000"}})
	want := fmt.Sprintf("net:[%d]\n", st.Ino)
	for _, c := range []*runtimev1.Container{server, client} {
		if out, _, _ := h.exec(c.Id, "readlink", "/proc/self/ns/net"); out != want {
			t.Errorf("container %s is in %q, want the sandbox's %q", c.Config.Name, out, want)
		}
	}
	checkPodLoopback(h, server.Id, client.Id)

	// A sandbox without a namespace gets one of its own, not the host's,
	// shared by its containers.
	own := h.sandbox(&runtimev1.SandboxConfig{Name: "own-net"})
	server = h.run(own.Id, &runtimev1.ContainerConfig{Name: "server", Command: listener})
	client = h.run(own.Id, &runtimev1.ContainerConfig{Name: "client", Command: []string{"sleep", "1000"}})
	hostNS, err := exec.Command("readlink", "/proc/self/ns/net").Output()
	if err != nil {
		t.Fatal(err)
	}
	nsA, _, _ := h.exec(server.Id, "readlink", "/proc/self/ns/net")
	nsB, _, _ := h.exec(client.Id, "readlink", "/proc/self/ns/net")
	if nsA != nsB || nsA == string(hostNS) || nsA == want {
		t.Errorf("own-netns sandbox: containers in %q and %q (host %q, other sandbox %q); want one new namespace", nsA, nsB, hostNS, want)
	}
	checkPodLoopback(h, server.Id, client.Id)
}

// checkPodLoopback checks that a listener in one container is reachable
// from the other over loopback, as in a pod.
func checkPodLoopback(h *harness, server, client string) {
	t := h.t
	t.Helper()
	_, stderr, code := h.exec(client, "sh", "-c", "for i in $(seq 100); do echo hello-pod | nc 127.0.0.1 8080 && exit 0; sleep 0.1; done; exit 1")
	if code != 0 {
		t.Fatalf("connecting to the other container: exit %d: %s", code, stderr)
	}
	waitFor(t, "the listener to receive hello-pod", 10*time.Second, func() bool {
		out, _, _ := h.exec(server, "cat", "/tmp/got")
		return out == "hello-pod\n"
	})
}
