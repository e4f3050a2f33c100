package ociruntime

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/internal/testbin"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// RT-SB-001, RT-SB-002, RT-SB-003, RT-SB-004: create, inspect, list, stop
// and remove a sandbox; its attributes round-trip; its pod cgroup carries
// the pod's limits and goes away with it.
func TestSandboxLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := t.Context()
	cfg := &runtimev1.SandboxConfig{
		Name: "web-1", Tenant: "acme", Uid: "uid-123", Attempt: 2, Hostname: "web-1-host",
		Dns:         &runtimev1.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"acme.svc.cluster.local"}, Options: []string{"ndots:5"}},
		Resources:   &runtimev1.Resources{CpuMillis: 500, CpuSharesMillis: 250, MemoryBytes: 64 << 20, Pids: 100},
		Labels:      map[string]string{"app": "web", "tier": "front"},
		Annotations: map[string]string{"note": "a b c"},
		Handler:     "runc",
	}
	sb := h.sandbox(proto.Clone(cfg).(*runtimev1.SandboxConfig))
	if sb.Id == "" || sb.State != runtimev1.SandboxState_SANDBOX_READY || len(sb.Handle) == 0 {
		t.Fatalf("CreateSandbox = %v, want an id, READY and a handle", sb)
	}
	got, err := h.p.InspectSandbox(ctx, &runtimev1.InspectSandboxRequest{Id: sb.Id})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.Config, cfg) {
		t.Errorf("InspectSandbox config = %v, want %v", got.Config, cfg)
	}
	list, err := h.p.ListSandboxes(ctx, &runtimev1.ListSandboxesRequest{Id: sb.Id})
	if err != nil || len(list.Sandboxes) != 1 || !proto.Equal(list.Sandboxes[0].Config, cfg) {
		t.Errorf("ListSandboxes(id) = %v, %v; want exactly the sandbox", list, err)
	}
	other := h.sandbox(&runtimev1.SandboxConfig{Name: "other", Labels: map[string]string{"app": "db"}})
	list, _ = h.p.ListSandboxes(ctx, &runtimev1.ListSandboxesRequest{Labels: map[string]string{"app": "web"}})
	if len(list.Sandboxes) != 1 || list.Sandboxes[0].Id != sb.Id {
		t.Errorf("ListSandboxes(app=web) = %v, want only %s", list.Sandboxes, sb.Id)
	}
	list, _ = h.p.ListSandboxes(ctx, &runtimev1.ListSandboxesRequest{})
	if len(list.Sandboxes) != 2 {
		t.Errorf("ListSandboxes() has %d sandboxes, want 2", len(list.Sandboxes))
	}

	// Duplicate identity.
	if _, err := h.p.CreateSandbox(ctx, &runtimev1.CreateSandboxRequest{Config: cfg}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("CreateSandbox(duplicate) = %v, want AlreadyExists", err)
	}

	// The pod cgroup and its limits.
	layout, err := detectCgroups()
	if err != nil {
		t.Fatal(err)
	}
	pod := podCgroup(sb.Id)
	check := func(ctrl, file, want string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(layout.dir(ctrl, pod), file))
		if err != nil {
			t.Errorf("pod cgroup %s: %v", file, err)
			return
		}
		if got := strings.TrimSpace(string(b)); got != want {
			t.Errorf("pod cgroup %s = %q, want %q", file, got, want)
		}
	}
	if layout.unified {
		check("", "cpu.max", "50000 100000")
		check("", "memory.max", "67108864")
		check("", "pids.max", "100")
	} else {
		check("cpu", "cpu.cfs_quota_us", "50000")
		check("cpu", "cpu.shares", "256")
		check("memory", "memory.limit_in_bytes", "67108864")
		check("pids", "pids.max", "100")
	}

	// Stop: NOTREADY, idempotent; no new containers.
	for range 2 {
		if _, err := h.p.StopSandbox(ctx, &runtimev1.StopSandboxRequest{Id: sb.Id}); err != nil {
			t.Fatalf("StopSandbox: %v", err)
		}
	}
	got, _ = h.p.InspectSandbox(ctx, &runtimev1.InspectSandboxRequest{Id: sb.Id})
	if got.State != runtimev1.SandboxState_SANDBOX_NOTREADY {
		t.Errorf("state after stop = %v, want NOTREADY", got.State)
	}
	if _, err := h.p.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: sb.Id, Config: &runtimev1.ContainerConfig{Name: "late", Image: "busybox"}}); !isClass(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("CreateContainer in a stopped sandbox = %v, want FailedPrecondition", err)
	}

	// Remove: gone from the list, cgroup and directory gone; idempotent.
	for range 2 {
		if _, err := h.p.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{Id: sb.Id}); err != nil {
			t.Fatalf("RemoveSandbox: %v", err)
		}
	}
	if _, err := h.p.InspectSandbox(ctx, &runtimev1.InspectSandboxRequest{Id: sb.Id}); !errdefs.IsNotFound(err) {
		t.Errorf("InspectSandbox(removed) = %v, want NotFound", err)
	}
	list, _ = h.p.ListSandboxes(ctx, &runtimev1.ListSandboxesRequest{})
	if len(list.Sandboxes) != 1 || list.Sandboxes[0].Id != other.Id {
		t.Errorf("ListSandboxes after remove = %v, want only %s", list.Sandboxes, other.Id)
	}
	if layout.exists(pod) {
		t.Errorf("pod cgroup %s still exists after RemoveSandbox", pod)
	}
	if _, err := os.Stat(filepath.Join(h.stateDir, "sandboxes", sb.Id)); !os.IsNotExist(err) {
		t.Errorf("sandbox dir after RemoveSandbox: %v, want it gone", err)
	}
	// Its handle no longer recovers anything.
	if _, err := h.p.Recover(ctx, &runtimev1.RecoverRequest{Handle: sb.Handle}); !errdefs.IsNotFound(err) {
		t.Errorf("Recover(removed sandbox) = %v, want NotFound", err)
	}
}

// RT-ID-001 and RT-ID-002 for sandboxes, and bad input.
func TestSandboxErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := t.Context()
	missing := "0123456789abcdef01234567"
	if _, err := h.p.StopSandbox(ctx, &runtimev1.StopSandboxRequest{Id: missing}); err != nil {
		t.Errorf("StopSandbox(missing) = %v, want OK", err)
	}
	if _, err := h.p.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{Id: "not-even-an-id"}); err != nil {
		t.Errorf("RemoveSandbox(missing) = %v, want OK", err)
	}
	if _, err := h.p.InspectSandbox(ctx, &runtimev1.InspectSandboxRequest{Id: missing}); !errdefs.IsNotFound(err) {
		t.Errorf("InspectSandbox(missing) = %v, want NotFound", err)
	}
	if _, err := h.p.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: missing, Config: &runtimev1.ContainerConfig{Name: "c", Image: "busybox"}}); !errdefs.IsNotFound(err) {
		t.Errorf("CreateContainer(missing sandbox) = %v, want NotFound", err)
	}
	bad := []struct {
		name string
		cfg  *runtimev1.SandboxConfig
	}{
		{"no config", nil},
		{"no name", &runtimev1.SandboxConfig{}},
		{"relative netns", &runtimev1.SandboxConfig{Name: "x", NetnsPath: "run/netns/x"}},
		{"missing netns", &runtimev1.SandboxConfig{Name: "x", NetnsPath: "/run/netns/does-not-exist-paddock"}},
		{"not a netns", &runtimev1.SandboxConfig{Name: "x", NetnsPath: "/etc/hostname"}},
		{"bad dns server", &runtimev1.SandboxConfig{Name: "x", Dns: &runtimev1.DNSConfig{Servers: []string{"dns.example"}}}},
		{"negative memory", &runtimev1.SandboxConfig{Name: "x", Resources: &runtimev1.Resources{MemoryBytes: -1}}},
		{"bad hostname", &runtimev1.SandboxConfig{Name: "x", Hostname: "a b"}},
	}
	for _, tc := range bad {
		if _, err := h.p.CreateSandbox(ctx, &runtimev1.CreateSandboxRequest{Config: tc.cfg}); !isClass(err, errdefs.ErrInvalidArgument) {
			t.Errorf("CreateSandbox(%s) = %v, want InvalidArgument", tc.name, err)
		}
	}
	// Handles that are not ours.
	handles := []struct {
		name   string
		handle string
		class  error
	}{
		{"garbage", "\x00not json", errdefs.ErrInvalidArgument},
		{"other plugin", `{"version":1,"plugin":"runsc","sandboxId":"0123456789abcdef01234567"}`, errdefs.ErrFailedPrecondition},
		{"other version", `{"version":99,"plugin":"runc","sandboxId":"0123456789abcdef01234567"}`, errdefs.ErrFailedPrecondition},
		{"unknown sandbox", `{"version":1,"plugin":"runc","sandboxId":"0123456789abcdef01234567"}`, errdefs.ErrNotFound},
		{"path in id", `{"version":1,"plugin":"runc","sandboxId":"../../etc"}`, errdefs.ErrNotFound},
	}
	for _, tc := range handles {
		if _, err := h.p.Recover(ctx, &runtimev1.RecoverRequest{Handle: []byte(tc.handle)}); !isClass(err, tc.class) {
			t.Errorf("Recover(%s) = %v, want %v", tc.name, err, tc.class)
		}
	}
}

// SetConfig validates its input and keeps serving with the old config.
func TestSetConfig(t *testing.T) {
	t.Parallel()
	requirePrereqs(t)
	ctx := t.Context()
	p := New(Options{})
	dir := t.TempDir()
	if _, err := p.ListSandboxes(ctx, &runtimev1.ListSandboxesRequest{}); !isClass(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("ListSandboxes before SetConfig = %v, want FailedPrecondition", err)
	}
	bad := []struct{ name, state, config string }{
		{"no state dir", "", ""},
		{"relative state dir", "state", ""},
		{"not json", dir, "{"},
		{"unknown field", dir, `{"allowedMountRoots":["/x"],"bogus":1}`},
		{"relative root", dir, `{"allowedMountRoots":["x"]}`},
		{"host root", dir, `{"allowedMountRoots":["/"]}`},
		{"small log", dir, `{"logMaxBytes":10}`},
		{"missing runc", dir, `{"runcPath":"/nonexistent/runc"}`},
		{"trailing", dir, `{} {}`},
	}
	for _, tc := range bad {
		_, err := p.SetConfig(ctx, &runtimev1.SetConfigRequest{ApiVersion: "v1", StateDir: tc.state, Config: []byte(tc.config)})
		if !isClass(err, errdefs.ErrInvalidArgument) {
			t.Errorf("SetConfig(%s) = %v, want InvalidArgument", tc.name, err)
		}
	}
	// A shim binary that cannot run is refused up front, naming the field.
	notExec := filepath.Join(t.TempDir(), "shim")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, shimPath string }{
		{"relative shim", "bin/paddock-runc-shim"},
		{"missing shim", "/nonexistent/paddock-runc-shim"},
		{"shim is a directory", t.TempDir()},
		{"shim not executable", notExec},
	} {
		_, err := p.SetConfig(ctx, &runtimev1.SetConfigRequest{ApiVersion: "v1", StateDir: dir, Config: []byte(fmt.Sprintf(`{"shimPath":%q}`, tc.shimPath))})
		if !isClass(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != "shimPath" {
			t.Errorf("SetConfig(%s) = %v (field %q), want InvalidArgument for shimPath", tc.name, err, errdefs.FieldOf(err))
		}
	}
	if _, err := p.SetConfig(ctx, &runtimev1.SetConfigRequest{ApiVersion: "v2", StateDir: dir}); !isClass(err, errdefs.ErrInvalidArgument) {
		t.Errorf("SetConfig(api v2) = %v, want InvalidArgument", err)
	}
	good := fmt.Sprintf(`{"allowedMountRoots":["/srv/volumes"],"runcPath":"runc","logMaxBytes":1048576,"insecureRegistries":["localhost:5000"],"shimPath":%q}`,
		testbin.Binary(t, ShimBinary))
	for range 2 {
		if _, err := p.SetConfig(ctx, &runtimev1.SetConfigRequest{ApiVersion: "v1", StateDir: dir, Config: []byte(good)}); err != nil {
			t.Fatalf("SetConfig(valid) = %v", err)
		}
	}
	if _, err := p.SetConfig(ctx, &runtimev1.SetConfigRequest{ApiVersion: "v1", StateDir: t.TempDir()}); !isClass(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("SetConfig(another state dir) = %v, want FailedPrecondition", err)
	}
	if _, err := p.ListSandboxes(ctx, &runtimev1.ListSandboxesRequest{}); err != nil {
		t.Errorf("ListSandboxes after SetConfig = %v", err)
	}
	info, err := p.Info(ctx, &runtimev1.InfoRequest{})
	if err != nil || info.Name != "runc" || len(info.ApiVersions) != 1 || info.ApiVersions[0] != "v1" || !strings.Contains(info.ConfigSchema, "allowedMountRoots") {
		t.Errorf("Info = %v, %v", info, err)
	}
	var schema map[string]any
	if err := json.Unmarshal([]byte(info.ConfigSchema), &schema); err != nil {
		t.Errorf("config schema does not parse: %v", err)
	}
	props, _ := schema["properties"].(map[string]any)
	for _, f := range []string{"allowedMountRoots", "runcPath", "imageStoreRoot", "insecureRegistries", "logMaxBytes", "shimPath"} {
		if _, ok := props[f]; !ok {
			t.Errorf("config schema lacks %s", f)
		}
	}
	caps, err := p.Capabilities(ctx, &runtimev1.CapabilitiesRequest{})
	if err != nil || caps.IsolationClass != runtimev1.IsolationClass_ISOLATION_CLASS_NAMESPACE || !caps.Exec || !caps.ExecTty || caps.ContainersTiedToPlugin {
		t.Errorf("Capabilities = %v, %v", caps, err)
	}
}

// After a host reboot (no pod cgroup, no namespace mount) a new plugin
// re-creates what a ready sandbox needs, and containers run in it.
func TestRestoreAfterReboot(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sb := h.sandbox(&runtimev1.SandboxConfig{Name: "reboot", Resources: &runtimev1.Resources{MemoryBytes: 48 << 20}})
	layout, err := detectCgroups()
	if err != nil {
		t.Fatal(err)
	}
	netns := filepath.Join(h.stateDir, "sandboxes", sb.Id, "netns")
	if err := layout.removeTree(podCgroup(sb.Id)); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(netns, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	h.p = h.newPlugin()
	var st unix.Statfs_t
	if err := unix.Statfs(netns, &st); err != nil || st.Type != unix.NSFS_MAGIC {
		t.Errorf("sandbox netns not restored: %v", err)
	}
	if !layout.unified {
		b, err := os.ReadFile(filepath.Join(layout.dir("memory", podCgroup(sb.Id)), "memory.limit_in_bytes"))
		if err != nil || strings.TrimSpace(string(b)) != "50331648" {
			t.Errorf("pod memory limit after restore = %q, %v; want 50331648", b, err)
		}
	}
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "after", Command: []string{"true"}})
	if ex := h.wait(c.Id); ex.ExitCode != 0 {
		t.Errorf("container after restore: %v", ex)
	}
}
