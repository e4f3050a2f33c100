package runsc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/internal/testlock"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/runsc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
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

// podTest prepares a test of a pod: it checks the prerequisites, takes
// the machine lock and returns a plugin and a sandbox with resources r.
func podTest(t *testing.T, r *runtimev1.Resources) (*runsc.Plugin, string) {
	t.Helper()
	bin := requirePrereqs(t)
	testlock.Machine(t)
	p := newPlugin(t, bin)
	return p, newPod(t, p, r)
}

// newPod creates a sandbox with resources r, removed at the end of the
// test if it is still there.
func newPod(t *testing.T, p *runsc.Plugin, r *runtimev1.Resources) string {
	t.Helper()
	sb, err := p.CreateSandbox(t.Context(), &runtimev1.CreateSandboxRequest{Config: &runtimev1.SandboxConfig{Name: "pod", Tenant: "t", Uid: "u1", Resources: r}})
	if err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	t.Cleanup(func() {
		if _, err := p.RemoveSandbox(context.Background(), &runtimev1.RemoveSandboxRequest{Id: sb.Sandbox.Id}); err != nil {
			t.Errorf("RemoveSandbox: %v", err)
		}
	})
	return sb.Sandbox.Id
}

// run creates and starts a busybox container with resources r in sandbox
// sb and returns its id.
func run(t *testing.T, p *runsc.Plugin, sb, name string, r *runtimev1.Resources, argv ...string) string {
	t.Helper()
	c, err := p.CreateContainer(t.Context(), &runtimev1.CreateContainerRequest{SandboxId: sb, Config: &runtimev1.ContainerConfig{Name: name, Image: "busybox", Command: argv, Resources: r}})
	if err != nil {
		t.Fatalf("CreateContainer(%s): %v", name, err)
	}
	if _, err := p.StartContainer(t.Context(), &runtimev1.StartContainerRequest{Id: c.Container.Id}); err != nil {
		t.Fatalf("StartContainer(%s): %v", name, err)
	}
	return c.Container.Id
}

// removePod stops and removes sandbox sb and checks that nothing of it is
// left on the host: no process names it and its pod cgroup is gone.
func removePod(t *testing.T, p *runsc.Plugin, sb string) {
	t.Helper()
	if _, err := p.StopSandbox(t.Context(), &runtimev1.StopSandboxRequest{Id: sb, GracePeriodSeconds: 1}); err != nil {
		t.Errorf("StopSandbox: %v", err)
	}
	if _, err := p.RemoveSandbox(t.Context(), &runtimev1.RemoveSandboxRequest{Id: sb}); err != nil {
		t.Fatalf("RemoveSandbox: %v", err)
	}
	if procs := processesNaming(sb); len(procs) > 0 {
		t.Errorf("processes of the removed sandbox %s still run: %v", sb, procs)
	}
	if dirs, _ := filepath.Glob("/sys/fs/cgroup/*/paddock/" + sb); len(dirs) > 0 {
		t.Errorf("the removed sandbox's pod cgroup is left: %v", dirs)
	}
}

// processesNaming returns the command lines of the host processes whose
// command line contains s.
func processesNaming(s string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && strings.Contains(string(b), s) {
			out = append(out, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// poll calls cond every 100 ms until it is true or timeout passed, and
// reports whether it became true.
func poll(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
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
	p, sb := podTest(t, nil)
	ctx := t.Context()
	server := run(t, p, sb, "server", nil, "sh", "-c", "echo serving; exec nc -ll -p 8080 -e echo from-server")
	client := run(t, p, sb, "client", nil, "sleep", "600")

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

// TestForkBomb runs a fork bomb in a pod whose pids limit is 64: gVisor
// holds the pod's processes to the limit (a clone past it fails inside the
// sandbox), the sandbox and the pod's other container keep running, the
// host's pod cgroup has a limit of its own that leaves the sandbox's
// host tasks room, and once the bomb's container is stopped the pod can
// exec again and be stopped and removed.
func TestForkBomb(t *testing.T) {
	const limit = 64
	p, sb := podTest(t, &runtimev1.Resources{Pids: limit})
	ctx := t.Context()
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/pids/paddock", sb, "pids.max")); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || n <= limit {
			t.Errorf("the host pod cgroup's pids.max = %q, want a number above the pod's %d (room for the sandbox's own tasks)", b, limit)
		}
	}
	idle := run(t, p, sb, "idle", nil, "sleep", "600")
	// "exec sleep" needs no fork: the container's init outlives the bomb.
	bomb := run(t, p, sb, "bomb", nil, "sh", "-c", "f(){ f|f& };f; exec sleep 600")

	var most uint64
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		st, err := p.Stats(ctx, &runtimev1.StatsRequest{Id: bomb})
		if err != nil {
			t.Fatalf("Stats(bomb) while the bomb runs: %v (did the sandbox die?)", err)
		}
		most = max(most, st.Pids)
		if c, err := p.InspectContainer(ctx, &runtimev1.InspectContainerRequest{Id: idle}); err != nil || c.State != runtimev1.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("the pod's other container during the bomb: %v, %v; want it running", c.GetState(), err)
		}
		if s, err := p.InspectSandbox(ctx, &runtimev1.InspectSandboxRequest{Id: sb}); err != nil || s.State != runtimev1.SandboxState_SANDBOX_READY {
			t.Fatalf("the sandbox during the bomb: %v, %v; want it ready", s.GetState(), err)
		}
	}
	// The pause process and the idle container's sleep count too.
	t.Logf("the bomb's container reached %d tasks (pod limit %d)", most, limit)
	if most > limit {
		t.Errorf("the bomb's container reached %d tasks, above the pod's pids limit %d", most, limit)
	}
	if most < limit/2 {
		t.Errorf("the bomb's container reached only %d tasks: the fork bomb did not run", most)
	}
	if _, err := p.StopContainer(ctx, &runtimev1.StopContainerRequest{Id: bomb, TimeoutSeconds: 1}); err != nil {
		t.Fatalf("StopContainer(bomb): %v", err)
	}
	var last string
	if !poll(10*time.Second, func() bool {
		r, err := p.ExecSync(ctx, &runtimev1.ExecSyncRequest{Id: idle, Command: []string{"true"}, TimeoutSeconds: 5})
		last = fmt.Sprint(r, err)
		return err == nil && r.ExitCode == 0
	}) {
		t.Errorf("exec in the pod after the bomb was stopped: %s; want exit 0", last)
	}
	removePod(t, p, sb)
}

// TestMemoryLimit runs a memory hog in a pod: under gVisor a container's
// memory limit is enforced for the whole sandbox (the pod cgroup holds
// the sum of its containers' limits), and exceeding it ends the sandbox.
// The hog is reported OOM-killed with exit 137, so is the pod's other
// container, the sandbox is not ready any more, and it is removed
// cleanly.
func TestMemoryLimit(t *testing.T) {
	p, sb := podTest(t, nil)
	ctx := t.Context()
	limit := &runtimev1.Resources{MemoryBytes: 32 << 20}
	idle := run(t, p, sb, "idle", limit, "sleep", "600")
	hog := run(t, p, sb, "hog", limit, "sh", "-c", "x=a; while true; do x=$x$x; done")
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ex, err := p.WaitContainer(wctx, &runtimev1.WaitContainerRequest{Id: hog})
	if err != nil || !ex.OomKilled || ex.ExitCode != 137 || ex.Reason != "OOMKilled" {
		t.Fatalf("WaitContainer(hog) = %v, %v; want OOM-killed with exit 137", ex, err)
	}
	var got *runtimev1.Container
	if !poll(10*time.Second, func() bool {
		got, err = p.InspectContainer(ctx, &runtimev1.InspectContainerRequest{Id: idle})
		return err == nil && got.State == runtimev1.ContainerState_CONTAINER_EXITED
	}) || !got.GetExit().GetOomKilled() || got.GetExit().GetExitCode() != 137 {
		t.Errorf("the pod's other container after the OOM kill: %v, %v; want exited, OOM-killed with exit 137", got, err)
	}
	if s, err := p.InspectSandbox(ctx, &runtimev1.InspectSandboxRequest{Id: sb}); err != nil || s.State != runtimev1.SandboxState_SANDBOX_NOTREADY {
		t.Errorf("InspectSandbox after the OOM kill = %v, %v; want not ready", s.GetState(), err)
	}
	removePod(t, p, sb)
}

// TestExecTTY runs execs on a terminal through the plugin's gRPC service:
// output comes with CRLF, the terminal has the size asked for, the last
// resize wins, and the exit code is the process's.
func TestExecTTY(t *testing.T) {
	p, sb := podTest(t, nil)
	c := run(t, p, sb, "c", nil, "sleep", "600")

	sock := filepath.Join(t.TempDir(), "plugin.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimev1.RegisterRuntimeServer(srv, p)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := runtimev1.NewRuntimeClient(conn)

	exec := func(start *runtimev1.ExecStart, then ...*runtimev1.ExecInput) (string, int32) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		s, err := client.Exec(ctx)
		if err != nil {
			t.Fatalf("Exec: %v", err)
		}
		for _, in := range append([]*runtimev1.ExecInput{{Input: &runtimev1.ExecInput_Start{Start: start}}}, then...) {
			if err := s.Send(in); err != nil {
				t.Fatalf("Exec send: %v", err)
			}
		}
		var out strings.Builder
		for {
			m, err := s.Recv()
			if err != nil {
				t.Fatalf("Exec %v: %v (output so far %q)", start.Command, err, out.String())
			}
			if code, ok := m.Output.(*runtimev1.ExecOutput_ExitCode); ok {
				return out.String(), code.ExitCode
			}
			out.Write(m.GetStdout())
			out.Write(m.GetStderr())
		}
	}
	start := func(stdin bool, argv ...string) *runtimev1.ExecStart {
		return &runtimev1.ExecStart{Id: c, Command: argv, Tty: true, Stdin: stdin, Width: 80, Height: 24}
	}
	resize := func(w, h uint32) *runtimev1.ExecInput {
		return &runtimev1.ExecInput{Input: &runtimev1.ExecInput_Resize{Resize: &runtimev1.Resize{Width: w, Height: h}}}
	}
	if out, code := exec(start(false, "sh", "-c", "echo a; stty size")); out != "a\r\n24 80\r\n" || code != 0 {
		t.Errorf("echo a; stty size on an 80x24 terminal = %q exit %d, want \"a\\r\\n24 80\\r\\n\" and 0", out, code)
	}
	out, code := exec(start(true, "sh", "-c", "read go; stty size; exit 3"), resize(50, 20), resize(100, 100),
		&runtimev1.ExecInput{Input: &runtimev1.ExecInput_Stdin{Stdin: []byte("go\n")}})
	if !strings.Contains(out, "100 100\r\n") || code != 3 {
		t.Errorf("stty size after resizes to 50x20 and 100x100 = %q exit %d, want \"100 100\" and 3", out, code)
	}
	if out, code := exec(start(false, "/no/such/binary")); code == 0 || out == "" {
		t.Errorf("exec of a missing binary on a terminal = %q exit %d, want runsc's message and a non-zero exit", out, code)
	}
}
