package containerd_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	"github.com/paddock-dev/paddock/internal/netns"
	"github.com/paddock-dev/paddock/internal/testbin"
	"github.com/paddock-dev/paddock/internal/testlock"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/containerd"
	"github.com/paddock-dev/paddock/runtimes/containerd/containerdtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

const testImage = "paddock.dev/test/busybox:latest"

// env is a private containerd with the plugin in front of it, served over
// gRPC in-process the way go-plugin serves it.
type env struct {
	t        *testing.T
	daemon   *containerdtest.Daemon
	stateDir string
	logger   string
	config   string // the plugin's configuration
	client   *runtimev1.Client
	stop     func()
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with more plugin configuration (merged into the
// daemon's address) and directories in front of the daemon's PATH.
func newEnvWith(t *testing.T, config map[string]any, pathDirs ...string) *env {
	t.Helper()
	busybox := testbin.Containers(t)
	testlock.Machine(t)
	e := &env{t: t, daemon: containerdtest.Start(t, pathDirs...), stateDir: t.TempDir(),
		logger: testbin.Binary(t, "paddock-runtime-containerd")}
	cfg := map[string]any{"address": e.daemon.Address}
	maps.Copy(cfg, config)
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.config = string(b)
	e.startPlugin()
	t.Cleanup(func() { e.stop() })
	if _, err := e.client.ImportFile(t.Context(), busybox); err != nil {
		t.Fatalf("import %s: %v", busybox, err)
	}
	return e
}

// startPlugin starts a plugin process-alike on the state directory: a new
// Plugin behind a new gRPC server.
func (e *env) startPlugin() {
	t := e.t
	p := containerd.New(containerd.Options{LoggerPath: e.logger, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	sock := filepath.Join(t.TempDir(), "plugin.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	(&runtimev1.GRPCPlugin{Impl: p}).GRPCServer(nil, srv)
	go srv.Serve(l)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e.client = runtimev1.NewClient(conn)
	e.stop = func() { conn.Close(); srv.Stop() }
	if _, err := e.client.SetConfig(t.Context(), &runtimev1.SetConfigRequest{Config: []byte(e.config), StateDir: e.stateDir}); err != nil {
		t.Fatalf("SetConfig: %v", err)
	}
}

// restartPlugin replaces the plugin by a new one on the same state.
func (e *env) restartPlugin() {
	e.stop()
	e.startPlugin()
}

func (e *env) sandbox(tenant, name, netnsPath string) *runtimev1.Sandbox {
	return e.sandboxOn("", tenant, name, netnsPath)
}

// sandboxOn makes a sandbox with a handler ("" is the plugin's default).
func (e *env) sandboxOn(handler, tenant, name, netnsPath string) *runtimev1.Sandbox {
	t := e.t
	resp, err := e.client.CreateSandbox(t.Context(), &runtimev1.CreateSandboxRequest{Config: &runtimev1.SandboxConfig{
		Name: name, Tenant: tenant, Uid: name + "-uid", NetnsPath: netnsPath, Handler: handler}})
	if err != nil {
		t.Fatalf("CreateSandbox(%s/%s): %v", tenant, name, err)
	}
	id := resp.Sandbox.Id
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := e.client.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{Id: id}); err != nil {
			t.Errorf("RemoveSandbox(%s): %v", id, err)
		}
		// The pod cgroup is gone from every hierarchy, also those where
		// only the containers' runc made it.
		if left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*/paddock-containerd", id)); len(left) > 0 {
			t.Errorf("RemoveSandbox(%s) left cgroups %v", id, left)
		}
	})
	return resp.Sandbox
}

func (e *env) run(sb *runtimev1.Sandbox, name string, cmd ...string) *runtimev1.Container {
	t := e.t
	resp, err := e.client.CreateContainer(t.Context(), &runtimev1.CreateContainerRequest{SandboxId: sb.Id,
		Config: &runtimev1.ContainerConfig{Name: name, Image: testImage, Command: cmd}})
	if err != nil {
		t.Fatalf("CreateContainer(%s): %v", name, err)
	}
	if _, err := e.client.StartContainer(t.Context(), &runtimev1.StartContainerRequest{Id: resp.Container.Id}); err != nil {
		t.Fatalf("StartContainer(%s): %v", name, err)
	}
	return resp.Container
}

func (e *env) inspect(id string) *runtimev1.Container {
	c, err := e.client.InspectContainer(e.t.Context(), &runtimev1.InspectContainerRequest{Id: id})
	if err != nil {
		e.t.Fatalf("InspectContainer(%s): %v", id, err)
	}
	return c
}

func (e *env) waitRunning(id string) *runtimev1.Container {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := e.inspect(id)
		if c.State == runtimev1.ContainerState_CONTAINER_RUNNING {
			return c
		}
		if c.State == runtimev1.ContainerState_CONTAINER_EXITED || time.Now().After(deadline) {
			e.t.Fatalf("container %s is %v, want running (exit %v)", id, c.State, c.Exit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) wait(id string) *runtimev1.ExitStatus {
	ctx, cancel := context.WithTimeout(e.t.Context(), time.Minute)
	defer cancel()
	st, err := e.client.WaitContainer(ctx, &runtimev1.WaitContainerRequest{Id: id})
	if err != nil {
		e.t.Fatalf("WaitContainer(%s): %v", id, err)
	}
	return st
}

func (e *env) exec(id string, cmd ...string) *runtimev1.ExecSyncResponse {
	r, err := e.client.ExecSync(e.t.Context(), &runtimev1.ExecSyncRequest{Id: id, Command: cmd, TimeoutSeconds: 20})
	if err != nil {
		e.t.Fatalf("ExecSync(%s, %q): %v", id, cmd, err)
	}
	return r
}

func (e *env) logs(id string, follow bool, tail int64) []*runtimev1.LogLine {
	ctx, cancel := context.WithTimeout(e.t.Context(), time.Minute)
	defer cancel()
	s, err := e.client.Logs(ctx, &runtimev1.LogsRequest{Id: id, Follow: follow, Tail: tail})
	if err != nil {
		e.t.Fatalf("Logs(%s): %v", id, err)
	}
	var lines []*runtimev1.LogLine
	for {
		l, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return lines
		}
		if err != nil {
			e.t.Fatalf("Logs(%s): %v", id, err)
		}
		lines = append(lines, l)
	}
}

// TestPodSharesLocalhost runs a pod of two containers in a network
// namespace made for it: one listens on 127.0.0.1, the other reaches it.
// The listener's log has its stdout and stderr lines, and exec output and
// exit codes come back.
func TestPodSharesLocalhost(t *testing.T) {
	e := newEnv(t)
	ns := filepath.Join(t.TempDir(), "netns")
	if err := netns.Create(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netns.Remove(ns) })
	sb := e.sandbox("acme", "web", ns)
	server := e.run(sb, "server", "sh", "-c", "echo listening; nc -l -p 8080 -e echo pong; echo done >&2")
	client := e.run(sb, "client", "sleep", "600")
	e.waitRunning(server.Id)
	e.waitRunning(client.Id)

	deadline := time.Now().Add(20 * time.Second)
	for {
		if r := e.exec(client.Id, "nc", "127.0.0.1", "8080"); strings.TrimSpace(string(r.Stdout)) == "pong" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the client container never reached the server on 127.0.0.1:8080")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := e.wait(server.Id); st.ExitCode != 0 || st.Reason != "Completed" {
		t.Errorf("server exit = %d %q, want 0 Completed", st.ExitCode, st.Reason)
	}
	var got []string
	for _, l := range e.logs(server.Id, true, 0) {
		if l.Timestamp == 0 {
			t.Errorf("log line %q has no timestamp", l.Line)
		}
		got = append(got, l.Stream+":"+string(l.Line))
	}
	if want := "stdout:listening,stderr:done"; strings.Join(got, ",") != want {
		t.Errorf("server log = %q, want %q", strings.Join(got, ","), want)
	}
	if last := e.logs(server.Id, false, 1); len(last) != 1 || string(last[0].Line) != "done" {
		t.Errorf("Logs(tail 1) = %v, want the last line", last)
	}

	r := e.exec(client.Id, "sh", "-c", "echo out; echo err >&2; exit 43")
	if string(r.Stdout) != "out\n" || string(r.Stderr) != "err\n" || r.ExitCode != 43 {
		t.Errorf("ExecSync = %q %q %d, want \"out\\n\" \"err\\n\" 43", r.Stdout, r.Stderr, r.ExitCode)
	}
	if r := e.exec(client.Id, "no-such-command"); r.ExitCode == 0 {
		t.Errorf("ExecSync of a missing command exited 0")
	}
	if r := e.exec(client.Id, "hostname"); strings.TrimSpace(string(r.Stdout)) != "web" {
		t.Errorf("hostname = %q, want the pod's name", r.Stdout)
	}
}

// TestStop stops a container that exits on SIGTERM and one that ignores
// it, which is killed after the grace period.
func TestStop(t *testing.T) {
	e := newEnv(t)
	sb := e.sandbox("acme", "stop", "")
	polite := e.run(sb, "polite", "sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.1; done")
	stubborn := e.run(sb, "stubborn", "sh", "-c", "trap '' TERM; echo ready; while true; do sleep 1; done")
	e.waitRunning(polite.Id)
	e.waitRunning(stubborn.Id)
	for deadline := time.Now().Add(20 * time.Second); len(e.logs(stubborn.Id, false, 0)) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the stubborn container never set its trap")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := e.client.StopContainer(t.Context(), &runtimev1.StopContainerRequest{Id: polite.Id, TimeoutSeconds: 10}); err != nil {
		t.Fatal(err)
	}
	if st := e.wait(polite.Id); st.ExitCode != 3 || st.Signal != 0 {
		t.Errorf("a shell stopped with SIGTERM ended with exit %d signal %d, want its trap's exit 3", st.ExitCode, st.Signal)
	}
	start := time.Now()
	if _, err := e.client.StopContainer(t.Context(), &runtimev1.StopContainerRequest{Id: stubborn.Id, TimeoutSeconds: 1}); err != nil {
		t.Fatal(err)
	}
	if st := e.wait(stubborn.Id); st.Signal != 9 || st.ExitCode != 137 {
		t.Errorf("a process ignoring SIGTERM ended with exit %d signal %d, want 137 and SIGKILL", st.ExitCode, st.Signal)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("the stubborn container was killed after %v, before its grace period of 1s", d)
	}
	if _, err := e.client.StopContainer(t.Context(), &runtimev1.StopContainerRequest{Id: "no-such-container"}); err != nil {
		t.Errorf("stopping a missing container: %v", err)
	}
}

// TestRecover restarts the plugin while a container runs and another
// exits: the new plugin finds both, the running one with its pid.
func TestRecover(t *testing.T) {
	e := newEnv(t)
	sb := e.sandbox("acme", "recover", "")
	long := e.run(sb, "long", "sleep", "600")
	short := e.run(sb, "short", "sh", "-c", "read x < /dev/null; sleep 1; exit 7")
	before := e.waitRunning(long.Id)

	e.stop()
	time.Sleep(2 * time.Second) // the short container exits while no plugin runs
	e.startPlugin()

	resp, err := e.client.Recover(t.Context(), &runtimev1.RecoverRequest{Handle: sb.Handle})
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if len(resp.Containers) != 2 {
		t.Fatalf("Recover found %d containers, want 2", len(resp.Containers))
	}
	after := e.inspect(long.Id)
	if after.State != runtimev1.ContainerState_CONTAINER_RUNNING || after.Pid != before.Pid || after.StartedAt != before.StartedAt {
		t.Errorf("after the restart: %v pid %d started %d, want running pid %d started %d", after.State, after.Pid, after.StartedAt, before.Pid, before.StartedAt)
	}
	if st := e.wait(short.Id); st.ExitCode != 7 {
		t.Errorf("exit of a container that ended while the plugin was down = %d, want 7", st.ExitCode)
	}
	if _, err := e.client.Recover(t.Context(), &runtimev1.RecoverRequest{Handle: []byte(`{"version":1,"plugin":"runc","sandboxId":"x"}`)}); err == nil {
		t.Error("Recover of another plugin's handle succeeded")
	}
}

// TestTenantsInSeparateNamespaces checks that each tenant's containers
// live in its own containerd namespace and nowhere else.
func TestTenantsInSeparateNamespaces(t *testing.T) {
	e := newEnv(t)
	a := e.run(e.sandbox("acme", "a", ""), "a", "sleep", "600")
	b := e.run(e.sandbox("globex", "b", ""), "b", "sleep", "600")
	conn, err := grpc.NewClient("unix://"+e.daemon.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	containers := containersapi.NewContainersClient(conn)
	for ns, want := range map[string]string{"paddock-acme": a.Id, "paddock-globex": b.Id} {
		ctx := metadata.AppendToOutgoingContext(t.Context(), "containerd-namespace", ns)
		resp, err := containers.List(ctx, &containersapi.ListContainersRequest{})
		if err != nil {
			t.Fatalf("list namespace %s: %v", ns, err)
		}
		var ids []string
		for _, c := range resp.Containers {
			ids = append(ids, c.ID)
		}
		if len(ids) != 1 || ids[0] != want {
			t.Errorf("namespace %s holds %v, want only %s", ns, ids, want)
		}
	}
	if _, err := os.Stat(e.inspect(a.Id).LogPath); err != nil {
		t.Errorf("log of a running container: %v", err)
	}
}
