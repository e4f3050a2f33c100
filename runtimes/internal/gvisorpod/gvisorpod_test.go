package gvisorpod

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The pause binary WriteRoot writes is a real executable that sleeps in
// pause(2) until a signal ends it.
func TestPauseRuns(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		if _, err := pauseELF(); err == nil {
			t.Fatal("pauseELF on a machine that is not amd64: no error")
		}
		t.Skip("the pause binary is amd64 only")
	}
	dir := t.TempDir()
	if err := WriteRoot(dir); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(dir, "pause"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("exec the pause binary: %v", err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "stat"))
		if err == nil {
			if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); len(f) > 0 && f[0] == "S" {
				break // asleep: in pause(2)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pause process never went to sleep: %s", stat)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("pause after SIGTERM: %v, want killed by it", err)
	}
}

// The pause container starts the sandbox; a container joins it by id.
func TestAnnotations(t *testing.T) {
	s := Pause{SandboxID: "sb1", NetnsPath: "/run/netns/x", CgroupsPath: "/paddock/sb1", Root: "rootfs"}.Spec()
	if s.Annotations[AnnotationContainerType] != ContainerTypeSandbox || s.Annotations[AnnotationSandboxID] != "sb1" {
		t.Errorf("pause annotations = %v", s.Annotations)
	}
	if !s.Root.Readonly || !s.Process.NoNewPrivileges || len(s.Process.Capabilities.Bounding) != 0 {
		t.Errorf("pause process is not locked down: root %+v, process %+v", s.Root, s.Process)
	}
	var c specs.Spec
	JoinSandbox(&c, "sb1")
	if c.Annotations[AnnotationContainerType] != ContainerTypeContainer || c.Annotations[AnnotationSandboxID] != "sb1" {
		t.Errorf("container annotations = %v", c.Annotations)
	}
}
