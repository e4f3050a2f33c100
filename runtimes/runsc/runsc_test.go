package runsc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/internal/testlock"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/runsc"
)

// TestMain lets the test binary be the container shim, as the plugin's
// binary is when paddock-runc-shim is not next to it.
func TestMain(m *testing.M) {
	if runsc.IsShim(os.Args) {
		os.Exit(runsc.RunShim(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// runscBinary is the runsc that `make build` puts in bin/.
func runscBinary() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "bin", "runsc")
}

// requirePrereqs skips (or under CI=true fails) a test that cannot run
// here: it needs root, bin/runsc (make build) and a static /bin/busybox.
func requirePrereqs(t *testing.T) string {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	bin := runscBinary()
	if _, err := os.Stat(bin); err != nil {
		missing = append(missing, bin+" (make build)")
	}
	if out, err := exec.Command("file", "/bin/busybox").Output(); err != nil || !strings.Contains(string(out), "statically linked") && !strings.Contains(string(out), "static-pie") {
		missing = append(missing, "a static /bin/busybox (apt-get install busybox-static)")
	}
	if len(missing) > 0 {
		msg := "needs " + strings.Join(missing, ", ")
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// busyboxImages serves one image, "busybox": a copy of a root filesystem
// of Debian's static busybox per container.
type busyboxImages struct{ root string }

func newBusyboxImages(t *testing.T) *busyboxImages {
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("cp", "/bin/busybox", filepath.Join(root, "bin/busybox")).CombinedOutput(); err != nil {
		t.Fatalf("copy busybox: %v: %s", err, out)
	}
	if out, err := exec.Command(filepath.Join(root, "bin/busybox"), "--install", "-s", filepath.Join(root, "bin")).CombinedOutput(); err != nil {
		t.Fatalf("busybox --install: %v: %s", err, out)
	}
	// --install links to the absolute path of this busybox: make them
	// relative to the container's root.
	entries, _ := os.ReadDir(filepath.Join(root, "bin"))
	for _, e := range entries {
		if e.Name() != "busybox" {
			p := filepath.Join(root, "bin", e.Name())
			os.Remove(p)
			os.Symlink("busybox", p)
		}
	}
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	return &busyboxImages{root: root}
}

func (b *busyboxImages) Resolve(_ context.Context, ref string) (*runtimev1.Image, error) {
	if ref != "busybox" {
		return nil, errdefs.New(errdefs.ErrNotFound, "image "+ref+" not found")
	}
	return &runtimev1.Image{Ref: ref, Digest: "sha256:busybox", Cmd: []string{"sh"}}, nil
}

func (b *busyboxImages) PrepareRootfs(_ context.Context, _, _, dir string) (string, error) {
	dst := filepath.Join(dir, "rootfs")
	if out, err := exec.Command("cp", "-a", b.root, dst).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copy rootfs: %v: %s", err, out)
	}
	return dst, nil
}

func (b *busyboxImages) ReleaseRootfs(context.Context, string, string) error { return nil }

// newPlugin returns a configured runsc plugin on a fresh state directory.
func newPlugin(t *testing.T, bin string) *runsc.Plugin {
	t.Helper()
	p := runsc.New(runsc.Options{Images: newBusyboxImages(t)})
	cfg := fmt.Sprintf(`{"runscPath":%q}`, bin)
	if _, err := p.SetConfig(t.Context(), &runtimev1.SetConfigRequest{ApiVersion: runtimev1.APIVersion, StateDir: filepath.Join(t.TempDir(), "state"), Config: []byte(cfg)}); err != nil {
		t.Fatalf("SetConfig: %v", err)
	}
	return p
}

func exitOf(t *testing.T, p *runsc.Plugin, id string, argv ...string) *runtimev1.ExecSyncResponse {
	t.Helper()
	r, err := p.ExecSync(t.Context(), &runtimev1.ExecSyncRequest{Id: id, Command: argv, TimeoutSeconds: 30})
	if err != nil {
		t.Fatalf("ExecSync(%v): %v", argv, err)
	}
	return r
}

func TestCapabilities(t *testing.T) {
	p := runsc.New(runsc.Options{})
	caps, err := p.Capabilities(t.Context(), &runtimev1.CapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if caps.IsolationClass != runtimev1.IsolationClass_ISOLATION_CLASS_USERSPACE_KERNEL || len(caps.Handlers) != 1 || caps.Handlers[0] != "runsc" {
		t.Errorf("Capabilities() = %v, want userspace-kernel with handler runsc", caps)
	}
}

func TestInfoSchema(t *testing.T) {
	info, err := runsc.New(runsc.Options{}).Info(t.Context(), &runtimev1.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal([]byte(info.ConfigSchema), &schema); err != nil {
		t.Fatalf("Info.config_schema is not JSON: %v", err)
	}
	for _, f := range []string{"runscPath", "platform", "rootDir", "debugLogDir", "allowedMountRoots", "shimPath"} {
		if _, ok := schema.Properties[f]; !ok {
			t.Errorf("Info.config_schema lacks %s", f)
		}
	}
	if _, ok := schema.Properties["runcPath"]; ok || info.Name != "runsc" {
		t.Errorf("Info = name %q, schema with runcPath %v; want runsc's own", info.Name, ok)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, config, field string }{
		{"bad platform", `{"platform":"kvm2"}`, "platform"},
		{"runc setting", `{"runcPath":"runc"}`, "runcPath"},
		{"relative root", `{"rootDir":"x"}`, "rootDir"},
		{"missing runsc", `{"runscPath":"/nonexistent/runsc"}`, "runscPath"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := runsc.New(runsc.Options{})
			_, err := p.SetConfig(t.Context(), &runtimev1.SetConfigRequest{ApiVersion: runtimev1.APIVersion, StateDir: t.TempDir(), Config: []byte(tc.config)})
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("SetConfig(%s) = %v, want InvalidArgument naming %s", tc.config, err, tc.field)
			}
		})
	}
}

// TestPod runs a pod of two containers in one gVisor sandbox: they run
// on gVisor's kernel, share localhost, see no host process, and their
// logs, exec exit codes and stop work.
func TestPod(t *testing.T) {
	bin := requirePrereqs(t)
	testlock.Machine(t)
	p := newPlugin(t, bin)
	ctx := t.Context()
	sb, err := p.CreateSandbox(ctx, &runtimev1.CreateSandboxRequest{Config: &runtimev1.SandboxConfig{Name: "pod", Tenant: "t", Uid: "u1"}})
	if err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	t.Cleanup(func() {
		if _, err := p.RemoveSandbox(context.Background(), &runtimev1.RemoveSandboxRequest{Id: sb.Sandbox.Id}); err != nil {
			t.Errorf("RemoveSandbox: %v", err)
		}
	})
	run := func(name string, argv ...string) string {
		c, err := p.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: sb.Sandbox.Id, Config: &runtimev1.ContainerConfig{Name: name, Image: "busybox", Command: argv}})
		if err != nil {
			t.Fatalf("CreateContainer(%s): %v", name, err)
		}
		if _, err := p.StartContainer(ctx, &runtimev1.StartContainerRequest{Id: c.Container.Id}); err != nil {
			t.Fatalf("StartContainer(%s): %v", name, err)
		}
		return c.Container.Id
	}
	server := run("server", "sh", "-c", "echo serving; exec nc -ll -p 8080 -e echo from-server")
	client := run("client", "sleep", "600")

	if r := exitOf(t, p, client, "uname", "-r"); !strings.HasSuffix(strings.TrimSpace(string(r.Stdout)), "gvisor") {
		t.Errorf("uname -r = %q, want gVisor's kernel", r.Stdout)
	}
	var got string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(got, "from-server") {
		got = string(exitOf(t, p, client, "sh", "-c", "nc 127.0.0.1 8080 </dev/null").Stdout)
	}
	if !strings.Contains(got, "from-server") {
		t.Errorf("client's nc 127.0.0.1 8080 = %q, want the server container's answer over the pod's localhost", got)
	}
	ps := string(exitOf(t, p, client, "ps", "-o", "args").Stdout)
	if strings.Contains(ps, "runsc") || strings.Contains(ps, filepath.Base(os.Args[0])) || strings.Contains(ps, "systemd") {
		t.Errorf("ps in the sandbox shows host processes:\n%s", ps)
	}
	if r := exitOf(t, p, client, "sh", "-c", "echo err >&2; exit 3"); r.ExitCode != 3 || strings.TrimSpace(string(r.Stderr)) != "err" {
		t.Errorf("exec exit 3 = code %d stderr %q, want 3 and err", r.ExitCode, r.Stderr)
	}
	info, err := p.InspectContainer(ctx, &runtimev1.InspectContainerRequest{Id: server})
	if err != nil || info.State != runtimev1.ContainerState_CONTAINER_RUNNING || info.Pid <= 0 {
		t.Fatalf("InspectContainer(server) = %v, %v; want running with a pid", info, err)
	}
	logBytes, _ := os.ReadFile(info.LogPath)
	if !strings.Contains(string(logBytes), " stdout F serving") {
		t.Errorf("server's log = %q, want a CRI line with its output", logBytes)
	}
	if _, err := p.StopContainer(ctx, &runtimev1.StopContainerRequest{Id: server, TimeoutSeconds: 2}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	ex, err := p.WaitContainer(ctx, &runtimev1.WaitContainerRequest{Id: server})
	if err != nil || ex.ExitCode == 0 {
		t.Errorf("WaitContainer(stopped server) = %v, %v; want a non-zero exit", ex, err)
	}
	if r := exitOf(t, p, client, "true"); r.ExitCode != 0 {
		t.Errorf("the client stopped with the server: exec exit %d", r.ExitCode)
	}
}

// TestRecover restarts the plugin (a new Plugin on the same state
// directory) while a container runs: it is recovered running, and its
// exit is seen afterwards.
func TestRecover(t *testing.T) {
	bin := requirePrereqs(t)
	testlock.Machine(t)
	images := newBusyboxImages(t)
	state := filepath.Join(t.TempDir(), "state")
	cfg := &runtimev1.SetConfigRequest{ApiVersion: runtimev1.APIVersion, StateDir: state, Config: []byte(fmt.Sprintf(`{"runscPath":%q}`, bin))}
	p := runsc.New(runsc.Options{Images: images})
	if _, err := p.SetConfig(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	sb, err := p.CreateSandbox(t.Context(), &runtimev1.CreateSandboxRequest{Config: &runtimev1.SandboxConfig{Name: "pod", Tenant: "t"}})
	if err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	c, err := p.CreateContainer(t.Context(), &runtimev1.CreateContainerRequest{SandboxId: sb.Sandbox.Id, Config: &runtimev1.ContainerConfig{Name: "c", Image: "busybox", Command: []string{"sleep", "600"}}})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := p.StartContainer(t.Context(), &runtimev1.StartContainerRequest{Id: c.Container.Id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}

	p2 := runsc.New(runsc.Options{Images: images})
	if _, err := p2.SetConfig(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := p2.RemoveSandbox(context.Background(), &runtimev1.RemoveSandboxRequest{Id: sb.Sandbox.Id}); err != nil {
			t.Errorf("RemoveSandbox: %v", err)
		}
	})
	rec, err := p2.Recover(t.Context(), &runtimev1.RecoverRequest{Handle: sb.Sandbox.Handle})
	if err != nil || len(rec.Containers) != 1 || rec.Containers[0].State != runtimev1.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("Recover = %v, %v; want the sandbox with its running container", rec, err)
	}
	if r := exitOf(t, p2, c.Container.Id, "uname", "-r"); !strings.Contains(string(r.Stdout), "gvisor") {
		t.Errorf("exec after recovery: uname -r = %q", r.Stdout)
	}
	if _, err := p2.StopContainer(t.Context(), &runtimev1.StopContainerRequest{Id: c.Container.Id, TimeoutSeconds: 1}); err != nil {
		t.Fatalf("StopContainer after recovery: %v", err)
	}
}
