package ociruntime

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"
)

// shimOf returns the command line and executable of the running shim of
// container id, from its shim.json and /proc.
func (h *harness) shimOf(id string) (args []string, exe string) {
	h.t.Helper()
	var st shim.State
	if err := shim.ReadJSON(filepath.Join(h.stateDir, "containers", id, shim.StateFile), &st); err != nil {
		h.t.Fatal(err)
	}
	cmdline, err := os.ReadFile("/proc/" + itoa(st.ShimPid) + "/cmdline")
	if err != nil {
		h.t.Fatalf("the shim of %s (pid %d): %v", id, st.ShimPid, err)
	}
	exe, err = os.Readlink("/proc/" + itoa(st.ShimPid) + "/exe")
	if err != nil {
		h.t.Fatal(err)
	}
	// A binary rebuilt meanwhile by another test process (testbin renames
	// the new one into place) is still the one the shim runs.
	exe = strings.TrimSuffix(exe, " (deleted)")
	return strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00"), exe
}

// The shim is the small binary cmd/paddock-runc-shim, run as
// "paddock-runc-shim DIR", with one runc call: a container's output, an
// exit code (also of a process that exits before runc returns) and a
// failed start are recorded as with the plugin's own binary as the shim.
func TestShimBinary(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sb := h.sandbox(nil)
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "long", Command: []string{"sleep", "1000"}})
	dir := filepath.Join(h.stateDir, "containers", c.Id)
	args, exe := h.shimOf(c.Id)
	if want := []string{h.shimPath, dir}; !slices.Equal(args, want) || exe != h.shimPath {
		t.Errorf("shim = %q (exe %s), want %q", args, exe, want)
	}
	// The shim logs the start, timed, just after its report.
	waitFor(t, "the shim to log the start", 10*time.Second, func() bool {
		shimLog, _ := os.ReadFile(filepath.Join(dir, shim.LogFile))
		return bytes.Contains(shimLog, []byte(`"container started"`)) && bytes.Contains(shimLog, []byte("runcRunMs="))
	})

	// A process that has exited before runc run returns is still the
	// shim's to reap, with its status and output.
	quick := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "quick", Command: []string{"sh", "-c", "echo out; echo err >&2; exit 5"}})
	if ex := h.wait(quick.Id); ex.ExitCode != 5 || ex.Reason != "Error" || ex.Signal != 0 {
		t.Errorf("exit of a quick container = %v, want 5 Error", ex)
	}
	var lines []string
	for _, l := range h.logs(&runtimev1.LogsRequest{Id: quick.Id}) {
		lines = append(lines, l.Stream+":"+string(l.Line))
	}
	slices.Sort(lines)
	if !slices.Equal(lines, []string{"stderr:err", "stdout:out"}) {
		t.Errorf("logs of a quick container = %q, want out on stdout and err on stderr", lines)
	}

	// A failed start leaves nothing in runc's state: the container is not
	// half started.
	broken := h.create(sb.Id, &runtimev1.ContainerConfig{Name: "broken", Command: []string{"/no/such/binary"}})
	if _, err := h.p.StartContainer(t.Context(), &runtimev1.StartContainerRequest{Id: broken.Id}); !isClass(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "/no/such/binary") {
		t.Errorf("StartContainer(missing binary) = %v, want FailedPrecondition naming the binary", err)
	}
	if got := h.inspect(broken.Id); got.State != runtimev1.ContainerState_CONTAINER_EXITED || got.Exit.GetReason() != "StartError" {
		t.Errorf("broken container = %v, want EXITED with reason StartError", got)
	}
	if out, err := exec.Command("runc", "--root", filepath.Join(h.stateDir, "runc"), "state", broken.Id).CombinedOutput(); err == nil {
		t.Errorf("runc state of a container that failed to start = %s, want no container", out)
	}
}

// Without the shim binary (no shim path, none next to the executable)
// the plugin's own binary, here the test binary (see TestMain), runs as
// "EXE shim DIR", and containers work as with the shim binary.
func TestShimFallback(t *testing.T) {
	t.Parallel()
	requirePrereqs(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(self), ShimBinary)); err == nil {
		t.Fatalf("%s lies next to the test binary: the fallback cannot be tested", ShimBinary)
	}
	h := newHarness(t)
	h.shimPath = ""
	h.p = h.newPlugin()
	sb := h.sandbox(nil)
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "long", Command: []string{"sh", "-c", "echo hello; sleep 1000"}})
	dir := filepath.Join(h.stateDir, "containers", c.Id)
	args, exe := h.shimOf(c.Id)
	if want := []string{self, "shim", dir}; !slices.Equal(args, want) || exe != self {
		t.Errorf("shim = %q (exe %s), want %q", args, exe, want)
	}
	waitFor(t, "hello", 10*time.Second, func() bool { return len(h.logs(&runtimev1.LogsRequest{Id: c.Id})) > 0 })
	if _, err := h.p.StopContainer(t.Context(), &runtimev1.StopContainerRequest{Id: c.Id, TimeoutSeconds: 1}); err != nil {
		t.Fatal(err)
	}
	if ex := h.wait(c.Id); ex.Signal != 9 {
		t.Errorf("exit = %v, want killed by 9 (sh as pid 1 ignores SIGTERM)", ex)
	}
}
