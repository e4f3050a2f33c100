// Package streamstest runs real containers for the tests of the stream
// endpoint and of what proxies to it: it builds the runc runtime plugin,
// launches it through plugins/pluginhost as the agent does, imports the
// busybox test image and starts containers in it. Resolver maps names to
// those containers the way the agent's resolver maps pods.
//
// Tests that use it take the machine-wide test lock (StartRunc does) and
// need root, runc and build/images/busybox.tar (make testimages); they
// skip without them outside CI and fail under CI=true.
package streamstest

import (
	"context"
	"fmt"
	"github.com/paddock-dev/paddock/internal/testbin"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/agent/streams"
	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/internal/testlock"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// Image is the test image's reference inside busybox.tar.
const Image = "paddock.dev/test/busybox:latest"

// Runtime is a runc plugin running for one test.
type Runtime struct {
	Client *runtimev1.Client
}

// StartRunc builds and launches the runc plugin for the test, imports the
// test image, and stops everything when the test ends.
func StartRunc(t testing.TB) *Runtime {
	t.Helper()
	archive := testbin.Containers(t)
	testlock.Machine(t)
	bin := testbin.Binary(t, "paddock-runtime-runc")
	// A short state path: plugin sockets live under it.
	state, err := os.MkdirTemp("", "pdst")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	host, err := pluginhost.New(pluginhost.Config{StateDir: state, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	inst, err := host.Launch(ctx, pluginhost.RuntimeKind, "runc", bin, []byte("{}"))
	if err != nil {
		t.Fatalf("launch the runc plugin: %v", err)
	}
	t.Cleanup(func() { _ = inst.Kill(context.Background()) })
	c, err := inst.Runtime()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ImportFile(ctx, archive); err != nil {
		t.Fatal(err)
	}
	return &Runtime{Client: c}
}

var seq atomic.Int64

// RunContainer starts a container running cmd in a sandbox of its own,
// waits until it runs and returns its id. The sandbox is removed when the
// test ends.
func (r *Runtime) RunContainer(t testing.TB, cmd ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := fmt.Sprintf("st-%d-%d", os.Getpid(), seq.Add(1))
	sb, err := r.Client.CreateSandbox(ctx, &runtimev1.CreateSandboxRequest{Config: &runtimev1.SandboxConfig{
		Name: name, Tenant: "streams", Uid: name + "-uid", Hostname: name,
	}})
	if err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	id := sb.Sandbox.Id
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := r.Client.StopSandbox(ctx, &runtimev1.StopSandboxRequest{Id: id}); err != nil {
			t.Errorf("StopSandbox(%s): %v", id, err)
		}
		if _, err := r.Client.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{Id: id}); err != nil {
			t.Errorf("RemoveSandbox(%s): %v", id, err)
		}
	})
	c, err := r.Client.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: id, Config: &runtimev1.ContainerConfig{
		Name: "c", Image: Image, Command: cmd,
	}})
	if err != nil {
		t.Fatalf("CreateContainer(%q): %v", cmd, err)
	}
	cid := c.Container.Id
	if _, err := r.Client.StartContainer(ctx, &runtimev1.StartContainerRequest{Id: cid}); err != nil {
		t.Fatalf("StartContainer(%s): %v", cid, err)
	}
	for {
		got, err := r.Client.InspectContainer(ctx, &runtimev1.InspectContainerRequest{Id: cid})
		if err != nil {
			t.Fatalf("InspectContainer(%s): %v", cid, err)
		}
		if got.State == runtimev1.ContainerState_CONTAINER_RUNNING {
			return cid
		}
		select {
		case <-ctx.Done():
			t.Fatalf("container %s not running within a minute: %v", cid, got.State)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Resolver maps "tenant/pod/container" to a target; an empty container
// resolves to the pod's only one.
type Resolver map[string]streams.Target

// Resolve implements streams.Resolver.
func (m Resolver) Resolve(_ context.Context, tenant, pod, container string) (streams.Target, error) {
	prefix := tenant + "/" + pod + "/"
	if container != "" {
		if t, ok := m[prefix+container]; ok {
			return t, nil
		}
		return streams.Target{}, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("container %q of pod %q in tenant %q not found", container, pod, tenant))
	}
	var names []string
	for k := range m {
		if name, ok := strings.CutPrefix(k, prefix); ok {
			names = append(names, name)
		}
	}
	switch len(names) {
	case 0:
		return streams.Target{}, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("pod %q in tenant %q not found on this node", pod, tenant))
	case 1:
		return m[prefix+names[0]], nil
	}
	slices.Sort(names)
	return streams.Target{}, errdefs.Field(errdefs.ErrBadRequest, "container", fmt.Sprintf("pod %q has several containers: choose one of %s", pod, strings.Join(names, ", ")))
}

// Serve runs a stream server for cfg on a loopback port until the test
// ends, and returns it with the endpoint a node would publish for it.
func Serve(t testing.TB, cfg streams.Config) (*streams.Server, api.NodeDaemonEndpoint) {
	t.Helper()
	srv, err := streams.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stream server: %v", err)
		}
	})
	return srv, srv.Endpoint(ln)
}
