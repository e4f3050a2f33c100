package runtimetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// importImage sends the test image archive through the image service of
// the plugin c.
func (e *env) importImage(ctx context.Context, c *runtimev1.Client) error {
	if _, err := os.Stat(e.cfg.ImageArchive); err != nil {
		return fmt.Errorf("test image archive: %w (make testimages builds it)", err)
	}
	_, err := c.ImportFile(ctx, e.cfg.ImageArchive)
	return err
}

var seq atomic.Int64

// unique returns a name unique in this run.
func unique(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), seq.Add(1))
}

// sandboxConfig returns a minimal sandbox config with a unique name.
func (t *T) sandboxConfig() *runtimev1.SandboxConfig {
	name := unique("ct")
	return &runtimev1.SandboxConfig{
		Name: name, Tenant: "conformance", Uid: name + "-uid", Hostname: "sb-" + fmt.Sprint(seq.Load()),
		Labels: map[string]string{"paddock.dev/conformance": t.id},
	}
}

// Sandbox creates a sandbox and removes it when the case ends.
func (t *T) Sandbox(cfg *runtimev1.SandboxConfig) *runtimev1.Sandbox {
	if cfg == nil {
		cfg = t.sandboxConfig()
	}
	resp, err := t.Client().CreateSandbox(t.Context(), &runtimev1.CreateSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	id := resp.Sandbox.Id
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
		defer cancel()
		if _, err := t.Client().StopSandbox(ctx, &runtimev1.StopSandboxRequest{Id: id}); err != nil {
			t.Errorf("cleanup StopSandbox(%s): %v", id, err)
		}
		if _, err := t.Client().RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{Id: id}); err != nil {
			t.Errorf("cleanup RemoveSandbox(%s): %v", id, err)
		}
	})
	return resp.Sandbox
}

// containerConfig returns a config running cmd in the test image.
func (t *T) containerConfig(cmd ...string) *runtimev1.ContainerConfig {
	return &runtimev1.ContainerConfig{Name: unique("c"), Image: t.env.cfg.Image, Command: cmd}
}

// Container creates a container; the sandbox's removal removes it.
func (t *T) Container(sb *runtimev1.Sandbox, cfg *runtimev1.ContainerConfig) *runtimev1.Container {
	resp, err := t.Client().CreateContainer(t.Context(), &runtimev1.CreateContainerRequest{SandboxId: sb.Id, Config: cfg})
	if err != nil {
		t.Fatalf("CreateContainer(%v): %v", cfg.Command, err)
	}
	return resp.Container
}

// Start starts a container.
func (t *T) Start(id string) {
	if _, err := t.Client().StartContainer(t.Context(), &runtimev1.StartContainerRequest{Id: id}); err != nil {
		t.Fatalf("StartContainer(%s): %v", id, err)
	}
}

// RunContainer creates and starts a container running cmd.
func (t *T) RunContainer(sb *runtimev1.Sandbox, cmd ...string) *runtimev1.Container {
	c := t.Container(sb, t.containerConfig(cmd...))
	t.Start(c.Id)
	return c
}

// Inspect returns a container's state.
func (t *T) Inspect(id string) *runtimev1.Container {
	c, err := t.Client().InspectContainer(t.Context(), &runtimev1.InspectContainerRequest{Id: id})
	if err != nil {
		t.Fatalf("InspectContainer(%s): %v", id, err)
	}
	return c
}

// Wait waits for a container to exit.
func (t *T) Wait(id string) *runtimev1.ExitStatus {
	st, err := t.Client().WaitContainer(t.Context(), &runtimev1.WaitContainerRequest{Id: id})
	if err != nil {
		t.Fatalf("WaitContainer(%s): %v", id, err)
	}
	return st
}

// WaitRunning waits until a container is running.
func (t *T) WaitRunning(id string) *runtimev1.Container {
	var c *runtimev1.Container
	t.Eventually(60*time.Second, "container "+id+" running", func() bool {
		c = t.Inspect(id)
		return c.State == runtimev1.ContainerState_CONTAINER_RUNNING
	})
	return c
}

// Exec runs a command in a container and returns its output.
func (t *T) Exec(id string, timeout time.Duration, cmd ...string) *runtimev1.ExecSyncResponse {
	resp, err := t.Client().ExecSync(t.Context(), &runtimev1.ExecSyncRequest{Id: id, Command: cmd, TimeoutSeconds: int64(timeout / time.Second)})
	if err != nil {
		t.Fatalf("ExecSync(%s, %q): %v", id, cmd, err)
	}
	return resp
}

// Logs returns a container's log lines so far as "stream text".
func (t *T) Logs(id string) []string {
	stream, err := t.Client().Logs(t.Context(), &runtimev1.LogsRequest{Id: id})
	if err != nil {
		t.Fatalf("Logs(%s): %v", id, err)
	}
	var lines []string
	for {
		l, err := stream.Recv()
		if err == io.EOF {
			return lines
		}
		if err != nil {
			t.Fatalf("Logs(%s): %v", id, err)
		}
		lines = append(lines, l.Stream+" "+string(l.Line))
	}
}

// WantClass fails unless err is of class want.
func (t *T) WantClass(what string, err, want error) {
	if !isClass(err, want) {
		t.Errorf("%s = %v, want an error of class %v", what, err, want)
	}
}

func isClass(err, want error) bool {
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}

// tempDir makes a directory with a short path under parent (the
// system's temporary directory when empty) and removes it when the case
// ends, unless something is still mounted inside it.
func (t *T) tempDir(parent, prefix string) string {
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		t.Fatalf("temporary directory: %v", err)
	}
	t.Cleanup(func() {
		if m := mountsUnder(dir); len(m) > 0 {
			t.Errorf("not removing %s: still mounted inside it: %v", dir, m)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}

// mountsUnder returns the mount points at or below dir.
func mountsUnder(dir string) []string {
	var out []string
	for m := range readMounts() {
		if m == dir || strings.HasPrefix(m, dir+"/") {
			out = append(out, m)
		}
	}
	return out
}

// trimLines splits output into lines without the trailing empty one.
func trimLines(b []byte) []string {
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
