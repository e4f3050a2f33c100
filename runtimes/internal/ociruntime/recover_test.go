package ociruntime

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"
)

// RT-RC-001: a new plugin on the same state (a plugin restart) finds a
// running container with the same pid and start time; Wait, Stop and
// Logs work.
func TestRecoverRunning(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := t.Context()
	sb := h.sandbox(nil)
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "long",
		Command: []string{"sh", "-c", "trap 'echo bye; exit 3' TERM; echo hello; sleep 1000 & wait $!"}})
	waitFor(t, "hello", 10*time.Second, func() bool { return len(h.logs(&runtimev1.LogsRequest{Id: c.Id})) > 0 })
	before := h.inspect(c.Id)

	// The restart: the old value is dropped, a new one loads the state.
	h.p = h.newPlugin()
	resp, err := h.p.Recover(ctx, &runtimev1.RecoverRequest{Handle: sb.Handle})
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if resp.Sandbox.Id != sb.Id || len(resp.Containers) != 1 {
		t.Fatalf("Recover = %v, want the sandbox and its container", resp)
	}
	after := resp.Containers[0]
	if after.State != runtimev1.ContainerState_CONTAINER_RUNNING || after.Pid != before.Pid || after.StartedAt != before.StartedAt {
		t.Errorf("after restart: %v\nbefore: %v\nwant the same pid and start, running", after, before)
	}
	if _, err := os.Stat("/proc/" + itoa(int(after.Pid))); err != nil {
		t.Errorf("pid %d is not running: %v", after.Pid, err)
	}
	waited := make(chan *runtimev1.ExitStatus, 1)
	go func() {
		ex, err := h.p.WaitContainer(ctx, &runtimev1.WaitContainerRequest{Id: c.Id})
		if err != nil {
			t.Errorf("WaitContainer: %v", err)
		}
		waited <- ex
	}()
	if _, err := h.p.StopContainer(ctx, &runtimev1.StopContainerRequest{Id: c.Id, TimeoutSeconds: 10}); err != nil {
		t.Fatalf("StopContainer after restart: %v", err)
	}
	if ex := <-waited; ex.GetExitCode() != 3 {
		t.Errorf("exit after restart = %v, want 3", ex)
	}
	var lines []string
	for _, l := range h.logs(&runtimev1.LogsRequest{Id: c.Id}) {
		lines = append(lines, string(l.Line))
	}
	if len(lines) != 2 || lines[1] != "bye" {
		t.Errorf("logs after restart = %q, want hello, bye", lines)
	}
}

// RT-RC-002: a container that exits while no plugin is running: its shim
// records the real exit code, which a new plugin reports.
func TestRecoverExitedWhileDown(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := t.Context()
	sb := h.sandbox(nil)
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "later",
		Command: []string{"sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.05; done; echo went; exit 7"}})
	h.p = nil // the plugin is down: nothing reads the container's state

	// The container is told to exit (through its root filesystem, with
	// no plugin involved) and its shim records it.
	dir := filepath.Join(h.stateDir, "containers", c.Id)
	if err := os.WriteFile(filepath.Join(dir, "bundle", "rootfs", "tmp", "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the shim to record the exit", 10*time.Second, func() bool { return fileExists(filepath.Join(dir, shim.ExitFile)) })

	h.p = h.newPlugin()
	resp, err := h.p.Recover(ctx, &runtimev1.RecoverRequest{Handle: sb.Handle})
	if err != nil || len(resp.Containers) != 1 {
		t.Fatalf("Recover = %v, %v", resp, err)
	}
	if got := resp.Containers[0]; got.State != runtimev1.ContainerState_CONTAINER_EXITED || got.Exit.GetExitCode() != 7 {
		t.Errorf("recovered container = %v, want EXITED with code 7", got)
	}
	if ex := h.wait(c.Id); ex.ExitCode != 7 || ex.Reason != "Error" {
		t.Errorf("Wait = %v, want the real exit code 7", ex)
	}
	if l := h.logs(&runtimev1.LogsRequest{Id: c.Id}); len(l) != 1 || string(l[0].Line) != "went" {
		t.Errorf("logs = %v, want went", l)
	}
}

// A shim killed with its container is noticed: the container is reported
// exited (Unknown) instead of running forever.
func TestShimLost(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sb := h.sandbox(nil)
	c := h.run(sb.Id, &runtimev1.ContainerConfig{Name: "orphan", Command: []string{"sleep", "1000"}})
	var st shim.State
	if err := shim.ReadJSON(filepath.Join(h.stateDir, "containers", c.Id, shim.StateFile), &st); err != nil {
		t.Fatal(err)
	}
	// Kill the shim first, then the container: nobody records the exit.
	if err := syscallKill(st.ShimPid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the shim to die", 5*time.Second, func() bool { return !shim.Alive(st.ShimPid, st.ShimStart) })
	if err := syscallKill(st.InitPid); err != nil {
		t.Fatal(err)
	}
	ex := h.wait(c.Id)
	if ex.Reason != "Unknown" || ex.ExitCode != 255 {
		t.Errorf("exit of a container whose shim died = %v, want Unknown 255", ex)
	}
}
