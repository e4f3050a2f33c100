package ociruntime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/internal/testbin"
	"github.com/paddock-dev/paddock/internal/testlock"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// TestMain lets the test binary be the shim, as the plugin's binary is
// when the shim binary is missing: a plugin without a shim path starts
// os.Executable() as "BINARY shim DIR" (TestShimFallback).
func TestMain(m *testing.M) {
	if IsShim(os.Args) {
		os.Exit(RunShim(os.Args[2:]))
	}
	// Other packages' tests that run containers (the conformance suite)
	// check the machine for leaks; this package's containers must not run
	// at the same time. Its own tests run in parallel under the one lock.
	unlock, err := lockMachine()
	if err != nil {
		fmt.Fprintln(os.Stderr, "machine test lock:", err)
		os.Exit(1)
	}
	code := m.Run()
	unlock()
	if busyboxTemplate != "" {
		os.RemoveAll(filepath.Dir(busyboxTemplate))
	}
	os.Exit(code)
}

// requirePrereqs skips (or under CI=true fails) a test that cannot run
// here: it needs root, runc and Debian's static busybox.
func requirePrereqs(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		missing = append(missing, "runc in PATH (apt-get install runc)")
	}
	if fi, err := os.Stat("/bin/busybox"); err != nil || !fi.Mode().IsRegular() {
		missing = append(missing, "/bin/busybox (apt-get install busybox-static)")
	} else if out, err := exec.Command("file", "/bin/busybox").Output(); err == nil && !strings.Contains(string(out), "statically linked") && !strings.Contains(string(out), "static-pie") {
		missing = append(missing, "a static /bin/busybox (apt-get install busybox-static)")
	}
	if len(missing) == 0 {
		return
	}
	msg := "needs " + strings.Join(missing, ", ")
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// busyboxTemplate is a root filesystem of Debian's static busybox, made
// once per test binary.
var (
	busyboxOnce     sync.Once
	busyboxTemplate string
	busyboxErr      error
)

func busyboxRootfs(t *testing.T) string {
	t.Helper()
	busyboxOnce.Do(func() {
		dir, err := os.MkdirTemp("", "paddock-runc-busybox-")
		if err != nil {
			busyboxErr = err
			return
		}
		root := filepath.Join(dir, "rootfs")
		busyboxErr = makeBusyboxRootfs(root)
		busyboxTemplate = root
	})
	if busyboxErr != nil {
		t.Fatalf("busybox rootfs: %v", busyboxErr)
	}
	return busyboxTemplate
}

func makeBusyboxRootfs(root string) error {
	for _, d := range []string{"bin", "etc", "tmp", "root", "home/app", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(root, "home/app"), 1000, 1000); err != nil {
		return err
	}
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		return err
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return err
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// dirImages serves images that are directories: each container gets a
// copy of the image's tree.
type dirImages struct {
	images map[string]*runtimev1.Image
	dirs   map[string]string
}

func newDirImages(t *testing.T) *dirImages {
	root := busyboxRootfs(t)
	return &dirImages{
		images: map[string]*runtimev1.Image{
			"busybox": {Ref: "busybox", Digest: "sha256:busybox", Cmd: []string{"sh"}, Env: []string{"IMAGE_VAR=from-image"}},
			"busybox-user": {Ref: "busybox-user", Digest: "sha256:busybox-user", Cmd: []string{"id"},
				User: "app", WorkingDir: "/home/app"},
			"busybox-badwd": {Ref: "busybox-badwd", Digest: "sha256:bad", Cmd: []string{"pwd"}, WorkingDir: "/proc/self/fd/7"},
		},
		dirs: map[string]string{"busybox": root, "busybox-user": root, "busybox-badwd": root},
	}
}

func (d *dirImages) Resolve(_ context.Context, ref string) (*runtimev1.Image, error) {
	img, ok := d.images[ref]
	if !ok {
		return nil, errdefs.New(errdefs.ErrNotFound, "image "+ref+" not found")
	}
	return img, nil
}

func (d *dirImages) PrepareRootfs(_ context.Context, ref, _, dir string) (string, error) {
	src, ok := d.dirs[ref]
	if !ok {
		return "", errdefs.New(errdefs.ErrNotFound, "image "+ref+" not found")
	}
	dst := filepath.Join(dir, "rootfs")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copy %s: %v: %s", src, err, out)
	}
	return dst, nil
}

func (d *dirImages) ReleaseRootfs(context.Context, string, string) error { return nil }

// harness is a plugin on a fresh state directory, removed with
// everything it made at the end of the test, which then checks that
// nothing leaked.
type harness struct {
	t        *testing.T
	p        *Plugin
	stateDir string
	images   *dirImages
	config   string
	// shimPath is Options.ShimPath: the shim binary cmd/paddock-runc-shim,
	// or empty for the default (this test binary as the shim: see
	// TestMain).
	shimPath string
}

func newHarness(t *testing.T) *harness {
	return newHarnessConfig(t, "")
}

func newHarnessConfig(t *testing.T, config string) *harness {
	t.Helper()
	requirePrereqs(t)
	h := &harness{t: t, stateDir: t.TempDir(), images: newDirImages(t), config: config, shimPath: testbin.Binary(t, ShimBinary)}
	h.p = h.newPlugin()
	t.Cleanup(h.cleanup)
	return h
}

// newPlugin returns a new Plugin value on the harness's state directory,
// as after a plugin restart.
func (h *harness) newPlugin() *Plugin {
	h.t.Helper()
	p := New(Options{
		Logger:   slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Images:   h.images,
		ShimPath: h.shimPath,
	})
	if _, err := p.SetConfig(h.t.Context(), &runtimev1.SetConfigRequest{ApiVersion: "v1", StateDir: h.stateDir, Config: []byte(h.config)}); err != nil {
		h.t.Fatalf("SetConfig: %v", err)
	}
	return p
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// cleanup removes every sandbox left and checks for leaks: processes
// (shims, containers), mounts below the state directory, cgroups and
// state files.
func (h *harness) cleanup() {
	t := h.t
	ctx := context.Background()
	// A fresh plugin value sees everything on disk, including what an
	// abandoned value made.
	p := h.newPlugin()
	list, err := p.ListSandboxes(ctx, &runtimev1.ListSandboxesRequest{})
	if err != nil {
		t.Errorf("cleanup: ListSandboxes: %v", err)
		return
	}
	var ids []string
	for _, sb := range list.Sandboxes {
		ids = append(ids, sb.Id)
		if _, err := p.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{Id: sb.Id}); err != nil {
			t.Errorf("cleanup: RemoveSandbox(%s): %v", sb.Id, err)
		}
	}
	cs, _ := p.ListContainers(ctx, &runtimev1.ListContainersRequest{})
	for _, c := range cs.GetContainers() {
		t.Errorf("leak: container %s of sandbox %s left after its sandbox was removed", c.Id, c.SandboxId)
		p.RemoveContainer(ctx, &runtimev1.RemoveContainerRequest{Id: c.Id, Force: true})
	}
	h.checkNoLeaks(ids)
}

func (h *harness) checkNoLeaks(sandboxIDs []string) {
	t := h.t
	// Processes: a shim names its directory, under the state dir.
	deadline := time.Now().Add(5 * time.Second)
	for {
		procs := processesMentioning(h.stateDir)
		if len(procs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("leak: processes still running: %v", procs)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if mounts, err := mountsUnder(h.stateDir); err != nil || len(mounts) > 0 {
		t.Errorf("leak: mounts below the state dir: %v %v", mounts, err)
	}
	layout, err := detectCgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range sandboxIDs {
		if layout.exists(podCgroup(id)) {
			t.Errorf("leak: cgroup %s still exists", podCgroup(id))
		}
	}
	for _, d := range []string{"sandboxes", "containers"} {
		entries, _ := os.ReadDir(filepath.Join(h.stateDir, d))
		for _, e := range entries {
			t.Errorf("leak: state %s/%s left", d, e.Name())
		}
	}
	entries, _ := os.ReadDir(filepath.Join(h.stateDir, "runc"))
	for _, e := range entries {
		t.Errorf("leak: runc state %s left", e.Name())
	}
}

// processesMentioning lists the processes whose command line contains s.
func processesMentioning(s string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, s) {
			if state, _, err := shim.ProcStat(atoi(e.Name())); err == nil && state == 'Z' {
				continue
			}
			out = append(out, e.Name()+": "+cmd)
		}
	}
	return out
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// sandbox creates a sandbox named name.
func (h *harness) sandbox(cfg *runtimev1.SandboxConfig) *runtimev1.Sandbox {
	h.t.Helper()
	if cfg == nil {
		cfg = &runtimev1.SandboxConfig{}
	}
	if cfg.Name == "" {
		cfg.Name = "pod-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(h.t.Name()))
	}
	if cfg.Tenant == "" {
		cfg.Tenant = "t1"
	}
	resp, err := h.p.CreateSandbox(h.t.Context(), &runtimev1.CreateSandboxRequest{Config: cfg})
	if err != nil {
		h.t.Fatalf("CreateSandbox: %v", err)
	}
	return resp.Sandbox
}

// create creates a container in sandbox sb.
func (h *harness) create(sb string, cfg *runtimev1.ContainerConfig) *runtimev1.Container {
	h.t.Helper()
	if cfg.Image == "" {
		cfg.Image = "busybox"
	}
	resp, err := h.p.CreateContainer(h.t.Context(), &runtimev1.CreateContainerRequest{SandboxId: sb, Config: cfg})
	if err != nil {
		h.t.Fatalf("CreateContainer(%s): %v", cfg.Name, err)
	}
	return resp.Container
}

// run creates and starts a container.
func (h *harness) run(sb string, cfg *runtimev1.ContainerConfig) *runtimev1.Container {
	h.t.Helper()
	c := h.create(sb, cfg)
	if _, err := h.p.StartContainer(h.t.Context(), &runtimev1.StartContainerRequest{Id: c.Id}); err != nil {
		h.t.Fatalf("StartContainer(%s): %v", cfg.Name, err)
	}
	return c
}

// wait waits (bounded) for the container to exit.
func (h *harness) wait(id string) *runtimev1.ExitStatus {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.t.Context(), 30*time.Second)
	defer cancel()
	ex, err := h.p.WaitContainer(ctx, &runtimev1.WaitContainerRequest{Id: id})
	if err != nil {
		h.t.Fatalf("WaitContainer(%s): %v", id, err)
	}
	return ex
}

// exec runs a command in a container and returns stdout, stderr, exit code.
func (h *harness) exec(id string, cmd ...string) (string, string, int32) {
	h.t.Helper()
	resp, err := h.p.ExecSync(h.t.Context(), &runtimev1.ExecSyncRequest{Id: id, Command: cmd, TimeoutSeconds: 20})
	if err != nil {
		h.t.Fatalf("ExecSync(%s, %q): %v", id, cmd, err)
	}
	return string(resp.Stdout), string(resp.Stderr), resp.ExitCode
}

// logs returns the container's log lines.
func (h *harness) logs(r *runtimev1.LogsRequest) []*runtimev1.LogLine {
	h.t.Helper()
	s := &collectStream[runtimev1.LogLine]{ctx: h.t.Context()}
	if err := h.p.Logs(r, s); err != nil {
		h.t.Fatalf("Logs(%s): %v", r.Id, err)
	}
	return s.msgs
}

// inspect returns a container.
func (h *harness) inspect(id string) *runtimev1.Container {
	h.t.Helper()
	c, err := h.p.InspectContainer(h.t.Context(), &runtimev1.InspectContainerRequest{Id: id})
	if err != nil {
		h.t.Fatalf("InspectContainer(%s): %v", id, err)
	}
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// collectStream is an in-process server stream that collects what is
// sent to it.
type collectStream[T any] struct {
	ctx  context.Context
	mu   sync.Mutex
	msgs []*T
	// onSend, if set, is called with every message.
	onSend func(*T)
}

func (s *collectStream[T]) Send(m *T) error {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	f := s.onSend
	s.mu.Unlock()
	if f != nil {
		f(m)
	}
	return nil
}

func (s *collectStream[T]) snapshot() []*T {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*T(nil), s.msgs...)
}

func (s *collectStream[T]) Context() context.Context     { return s.ctx }
func (s *collectStream[T]) SetHeader(metadata.MD) error  { return nil }
func (s *collectStream[T]) SendHeader(metadata.MD) error { return nil }
func (s *collectStream[T]) SetTrailer(metadata.MD)       {}
func (s *collectStream[T]) SendMsg(any) error            { return nil }
func (s *collectStream[T]) RecvMsg(any) error            { return io.EOF }

var _ grpc.ServerStreamingServer[runtimev1.LogLine] = (*collectStream[runtimev1.LogLine])(nil)

// bidiStream is an in-process bidirectional stream for Exec.
type bidiStream struct {
	collectStream[runtimev1.ExecOutput]
	in chan *runtimev1.ExecInput
}

func (s *bidiStream) Recv() (*runtimev1.ExecInput, error) {
	select {
	case m, ok := <-s.in:
		if !ok {
			return nil, io.EOF
		}
		return m, nil
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

var _ grpc.BidiStreamingServer[runtimev1.ExecInput, runtimev1.ExecOutput] = (*bidiStream)(nil)

// isClass reports whether err is of class.
func isClass(err, class error) bool { return errors.Is(err, class) }

func itoa(n int) string { return strconv.Itoa(n) }

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// lockMachine takes the machine-wide lock of internal/testlock for the
// whole test binary.
func lockMachine() (func(), error) { return testlock.Acquire() }
