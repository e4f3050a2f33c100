package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/internal/testbin"
	"github.com/paddock-dev/paddock/internal/testcluster"
	"github.com/paddock-dev/paddock/internal/testlock"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// harness is a real control plane and a real agent (with the real runc
// plugin) on this machine.
type harness struct {
	t       *testing.T
	cl      *testcluster.Cluster
	admin   *client.Client
	node    *client.Client
	cfg     Config
	agent   *Agent
	cancel  context.CancelFunc
	done    chan error
	tenant  string
	nodeKey string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	busybox := testbin.Containers(t)
	testlock.Machine(t)
	plugin := testbin.Binary(t, "paddock-runtime-runc")
	cl := testcluster.Start(t)
	h := &harness{t: t, cl: cl, admin: cl.Admin, tenant: "acme"}
	h.node = cl.Client(t, api.RoleNode, "", "n1")
	if _, err := h.admin.Create(t.Context(), &api.Tenant{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Tenant"}, Metadata: api.ObjectMeta{Name: h.tenant}}); err != nil {
		t.Fatal(err)
	}
	// A short data dir: plugin socket paths live under it.
	dir, err := os.MkdirTemp("", "pdk-agent-")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "import"), 0o700)
	if err := os.Symlink(busybox, filepath.Join(dir, "import", "busybox.tar")); err != nil {
		t.Fatal(err)
	}
	h.cfg = Config{
		Client:            h.node,
		NodeName:          "n1",
		DataDir:           dir,
		Runtimes:          []RuntimePlugin{{Name: "runc", Path: plugin}},
		NodeIP:            "127.0.0.1",
		StreamsListen:     "127.0.0.1:0",
		ClientCA:          []byte(cl.AdminConfig.CertificateAuthority),
		HeartbeatInterval: time.Second,
		ResyncInterval:    2 * time.Second,
		RestartBackoff:    Backoff{Initial: 300 * time.Millisecond, Max: 2 * time.Second},
		Log:               slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	t.Cleanup(func() {
		h.stopAgent()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := Down(ctx, h.cfg); err != nil {
			t.Errorf("Down: %v", err)
		}
		os.RemoveAll(dir)
	})
	return h
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// startAgent runs an agent until stopAgent or the test's end.
func (h *harness) startAgent() *Agent {
	h.t.Helper()
	a, err := New(h.cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.agent, h.cancel, h.done = a, cancel, make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-h.done:
		h.cancel = nil
		h.t.Fatalf("agent exited: %v", err)
	case <-time.After(60 * time.Second):
		h.t.Fatal("agent not ready within 60s")
	}
	return a
}

func (h *harness) stopAgent() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("agent: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Error("agent did not stop within 30s")
	}
	h.cancel = nil
}

// pod returns a pod of the harness's tenant bound to n1 running cmd in
// busybox.
func (h *harness) pod(name string, cmd ...string) *api.Pod {
	return &api.Pod{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Pod"},
		Metadata: api.ObjectMeta{Name: name, Tenant: h.tenant},
		Spec: api.PodSpec{
			NodeName:   "n1",
			Containers: []api.Container{{Name: "main", Image: "paddock.dev/test/busybox:latest", Command: cmd}},
		},
	}
}

func (h *harness) create(p *api.Pod) *api.Pod {
	h.t.Helper()
	out, err := h.admin.Create(h.t.Context(), p)
	if err != nil {
		h.t.Fatalf("create pod %s: %v", p.Metadata.Name, err)
	}
	return out.(*api.Pod)
}

// waitPod polls the pod until cond holds.
func (h *harness) waitPod(name, what string, within time.Duration, cond func(*api.Pod) bool) *api.Pod {
	h.t.Helper()
	deadline := time.Now().Add(within)
	var last *api.Pod
	for {
		o, err := h.admin.Get(h.t.Context(), podKind, h.tenant, name)
		if err == nil {
			last = o.(*api.Pod)
			if cond(last) {
				return last
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("pod %s: %s: not within %v; last status: %s", name, what, within, statusLine(last, err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func statusLine(p *api.Pod, err error) string {
	if p == nil {
		return fmt.Sprint(err)
	}
	s := fmt.Sprintf("phase %s", p.Status.Phase)
	for _, c := range p.Status.ContainerStatuses {
		s += fmt.Sprintf("; %s: ready=%v restarts=%d %+v last=%+v", c.Name, c.Ready, c.RestartCount, stateLine(c.State), stateLine(c.LastTerminationState))
	}
	return s
}

func stateLine(s api.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running"
	case s.Waiting != nil:
		return "waiting:" + s.Waiting.Reason + ":" + s.Waiting.Message
	case s.Terminated != nil:
		return fmt.Sprintf("terminated:%s:%d", s.Terminated.Reason, s.Terminated.ExitCode)
	}
	return "-"
}

func running(p *api.Pod) bool {
	return p.Status.Phase == api.PodRunning && len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Running != nil
}

// runtime is the runc plugin's client of the running agent.
func (h *harness) runtime() *runtimev1.Client {
	h.t.Helper()
	c, err := h.agent.rt.client("runc")
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// container inspects a container in the runtime.
func (h *harness) container(id string) *runtimev1.Container {
	h.t.Helper()
	c, err := h.runtime().InspectContainer(h.t.Context(), &runtimev1.InspectContainerRequest{Id: id})
	if err != nil {
		h.t.Fatalf("inspect container %s: %v", id, err)
	}
	return c
}

// sandboxes lists the agent's sandboxes in the runtime.
func (h *harness) sandboxes() []*runtimev1.Sandbox {
	h.t.Helper()
	resp, err := h.runtime().ListSandboxes(h.t.Context(), &runtimev1.ListSandboxesRequest{Labels: map[string]string{labelManaged: "true"}})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.Sandboxes
}

// events returns the reasons of the pod's events.
func (h *harness) events(name string) []string {
	h.t.Helper()
	list, err := h.admin.ListAll(h.t.Context(), eventKind, h.tenant, client.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, o := range list.Items {
		out = append(out, o.(*api.Event).Reason)
	}
	return out
}

func deleteNow(grace int64) client.DeleteOptions {
	return client.DeleteOptions{GracePeriodSeconds: &grace}
}
