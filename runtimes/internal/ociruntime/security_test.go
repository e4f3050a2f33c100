package ociruntime

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// RT-CT-007, RT-SB-006: env, argv, working dir, user, hostname and DNS
// are what the spec says; a working dir in /proc is refused.
func TestProcessSpec(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := t.Context()
	sb := h.sandbox(&runtimev1.SandboxConfig{Name: "spec", Hostname: "spec-host",
		Dns: &runtimev1.DNSConfig{Servers: []string{"10.0.0.10", "10.0.0.11"}, Searches: []string{"ns.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}}})
	script := `echo "argv=$0,$1"; echo "env=$FOO,$IMAGE_VAR"; echo "cwd=$(pwd)"; echo "user=$(id -u):$(id -g)"; echo "host=$(hostname)"; cat /etc/resolv.conf; grep spec-host /etc/hosts`
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "spec",
		Command: []string{"sh", "-c", script}, Args: []string{"first", "second"},
		Env:        map[string]string{"FOO": "bar baz"},
		WorkingDir: "/tmp", HasUser: true, Uid: 1000, Gid: 50,
	})
	if ex := h.wait(c.Id); ex.ExitCode != 0 {
		t.Fatalf("exit = %v, logs %v", ex, h.logs(&runtimev1.LogsRequest{Id: c.Id}))
	}
	var out []string
	for _, l := range h.logs(&runtimev1.LogsRequest{Id: c.Id}) {
		out = append(out, string(l.Line))
	}
	want := []string{
		"argv=first,second", "env=bar baz,from-image", "cwd=/tmp", "user=1000:50", "host=spec-host",
		"search ns.svc.cluster.local svc.cluster.local", "nameserver 10.0.0.10", "nameserver 10.0.0.11", "options ndots:5",
		"127.0.1.1\tspec-host",
	}
	if strings.Join(out, "\n") != strings.Join(want, "\n") {
		t.Errorf("container saw\n%s\nwant\n%s", strings.Join(out, "\n"), strings.Join(want, "\n"))
	}

	// The image's user (by name) and working dir, and its cmd.
	c = h.run(sb.Id, &runtimev1.ContainerConfig{Name: "imageuser", Image: "busybox-user"})
	h.wait(c.Id)
	if l := h.logs(&runtimev1.LogsRequest{Id: c.Id}); len(l) != 1 || !strings.HasPrefix(string(l[0].Line), "uid=1000(app) gid=1000(app)") {
		t.Errorf("image user: %v, want uid=1000(app) gid=1000(app)", l)
	}

	// CVE-2024-21626: a working dir under /proc/self/fd is refused, from
	// the container or from the image.
	for _, tc := range []struct{ name, image, wd string }{
		{"cfg-fd", "busybox", "/proc/self/fd/7"},
		{"cfg-dotdot", "busybox", "/tmp/../proc/self/fd/8"},
		{"image-fd", "busybox-badwd", ""},
		{"relative", "busybox", "tmp"},
	} {
		_, err := h.p.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: sb.Id,
			Config: &runtimev1.ContainerConfig{Name: tc.name, Image: tc.image, WorkingDir: tc.wd, Command: []string{"pwd"}}})
		if !isClass(err, errdefs.ErrInvalidArgument) {
			t.Errorf("CreateContainer(working dir %s) = %v, want InvalidArgument", tc.name, err)
		}
	}
}

// RT-IS-002, RT-IS-001: default capabilities, no-new-privileges, the
// default seccomp profile (deny by default), masked and read-only paths.
func TestSecurityDefaults(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sb := h.sandbox(nil)
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "sec", Command: []string{"sleep", "1000"}})
	status, _, _ := h.exec(c.Id, "cat", "/proc/self/status")
	for _, want := range []string{"CapEff:\t00000000a80425fb", "CapBnd:\t00000000a80425fb", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(status, want+"\n") {
			t.Errorf("/proc/self/status lacks %q:\n%s", want, status)
		}
	}
	checks := []struct {
		name string
		cmd  []string
		ok   bool
	}{
		{"busybox works", []string{"sh", "-c", "echo hi > /tmp/x && cat /tmp/x && ls / >/dev/null"}, true},
		{"unshare a user namespace", []string{"unshare", "-U", "true"}, false},
		{"mount", []string{"mount", "-t", "tmpfs", "tmpfs", "/mnt"}, false},
		{"write /proc/sys", []string{"sh", "-c", "echo 1 > /proc/sys/kernel/domainname"}, false},
		{"read /proc/kcore", []string{"sh", "-c", "test -s /proc/kcore && head -c 1 /proc/kcore | wc -c | grep -q 1"}, false},
		{"see the host's shadow", []string{"test", "-e", "/etc/shadow"}, false},
		{"load a module", []string{"insmod", "/nonexistent.ko"}, false},
	}
	for _, tc := range checks {
		_, stderr, code := h.exec(c.Id, tc.cmd...)
		if (code == 0) != tc.ok {
			t.Errorf("%s: exit %d (stderr %q), want success=%v", tc.name, code, stderr, tc.ok)
		}
	}

	// System calls a static probe makes directly: keyctl and io_uring are
	// not in the allow list, so they fail with EPERM (without the profile
	// they answer otherwise).
	probe := buildProbe(t)
	rootfs := filepath.Join(h.stateDir, "containers", c.Id, "bundle", "rootfs")
	data, err := os.ReadFile(probe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "probe"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := h.exec(c.Id, "/probe")
	if code != 0 {
		t.Fatalf("probe: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"keyctl=1", "io_uring_setup=1", "unshare_user=1", "clone_newns=1", "personality_bad=1"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("probe output lacks %q (errno 1 = EPERM):\n%s", want, out)
		}
	}
	if !strings.Contains(out, "getpid=0\n") {
		t.Errorf("probe: getpid failed:\n%s", out)
	}
}

var (
	probeOnce sync.Once
	probePath string
	probeErr  error
)

// probeSource is a static program that makes system calls directly and
// prints name=errno for each.
const probeSource = `package main

import (
	"fmt"
	"syscall"
)

func try(name string, trap uintptr, a1, a2, a3 uintptr) {
	_, _, e := syscall.RawSyscall(trap, a1, a2, a3)
	fmt.Printf("%s=%d\n", name, int(e))
}

func main() {
	try("getpid", syscall.SYS_GETPID, 0, 0, 0)
	try("keyctl", 250, 0, ^uintptr(2), 0) // KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING
	try("io_uring_setup", 425, 0, 0, 0)
	try("unshare_user", syscall.SYS_UNSHARE, syscall.CLONE_NEWUSER, 0, 0)
	try("clone_newns", syscall.SYS_CLONE, syscall.CLONE_NEWNS|uintptr(syscall.SIGCHLD), 0, 0)
	try("personality_bad", syscall.SYS_PERSONALITY, 0x0400000, 0, 0)
}
`

// buildProbe builds the probe once per test binary.
func buildProbe(t *testing.T) string {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("the probe's syscall numbers are amd64's")
	}
	probeOnce.Do(func() {
		dir := filepath.Join(filepath.Dir(busyboxRootfs(t)), "probe")
		if probeErr = os.MkdirAll(dir, 0o755); probeErr != nil {
			return
		}
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module probe\n\ngo 1.22\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "main.go"), []byte(probeSource), 0o644)
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(gobin); err != nil {
			gobin = "go"
		}
		cmd := exec.Command(gobin, "build", "-o", "probe", ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local")
		if out, err := cmd.CombinedOutput(); err != nil {
			probeErr = err
			t.Logf("go build: %s", out)
			return
		}
		probePath = filepath.Join(dir, "probe")
	})
	if probeErr != nil {
		t.Fatalf("build the probe: %v", probeErr)
	}
	return probePath
}

// RT-CT-009: a read-only root filesystem refuses writes; a writable one
// takes them.
func TestReadOnlyRootfs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sb := h.sandbox(nil)
	ro := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "ro", ReadOnlyRootfs: true, Command: []string{"sh", "-c", "touch /written"}})
	rw := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "rw", Command: []string{"sh", "-c", "touch /written"}})
	if ex := h.wait(ro.Id); ex.ExitCode == 0 {
		t.Errorf("writing / of a read-only rootfs succeeded")
	}
	if l := h.logs(&runtimev1.LogsRequest{Id: ro.Id}); len(l) == 0 || !strings.Contains(string(l[0].Line), "Read-only file system") {
		t.Errorf("read-only rootfs write error = %v, want EROFS", l)
	}
	if ex := h.wait(rw.Id); ex.ExitCode != 0 {
		t.Errorf("writing / of a writable rootfs: exit %d, logs %v", ex.ExitCode, h.logs(&runtimev1.LogsRequest{Id: rw.Id}))
	}
}
