package runtimetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// Cases returns the runtime conformance cases, in id order. Ids follow
// the conformance catalogue; docs/plugin-authors.md lists where a case
// refines the catalogue.
func Cases() []Case {
	cases := []Case{
		{ID: "RT-HS-001", Name: "Handshake line and protocol", Level: "MUST", Profile: "core", Anchor: "go-plugin handshake", Run: handshake},
		{ID: "RT-HS-005", Name: "Graceful shutdown", Level: "MUST", Profile: "core", Anchor: "go-plugin Client.Kill", Run: shutdown},
		{ID: "RT-HS-006", Name: "Socket hardening", Level: "MUST", Profile: "core", Anchor: "go-plugin UnixSocketConfig, AutoMTLS", Run: socketHardening},
		{ID: "RT-HS-007", Name: "Stdout and stderr hygiene", Level: "MUST", Profile: "core", Anchor: "go-plugin stdio, bounded output", AfterAll: true, Run: outputHygiene},
		{ID: "RT-CAP-003", Name: "Runtime conditions", Level: "MUST", Profile: "core", Anchor: "critest runtime conditions", Run: runtimeConditions},
		{ID: "RT-CT-008", Name: "Volumes", Level: "MUST", Profile: "core", Capability: "exec", Anchor: "critest volume mounts", Run: volumes},
		{ID: "RT-EX-004", Name: "Streaming exec with a terminal and resize", Level: "MUST", Profile: "core", Capability: "exec_tty", Anchor: "Nomad ExecTaskStreamingBasicCases (tty)", Run: execTTY},
		{ID: "RT-EX-007", Name: "Log and memory bounds", Level: "MUST", Profile: "core", Anchor: "Firecracker bounded output", Run: logBounds},
		{ID: "RT-HS-002", Name: "API version negotiation", Level: "MUST", Profile: "core", Anchor: "Nomad base plugin", Run: apiVersions},
		{ID: "RT-HS-003", Name: "gRPC health", Level: "MUST", Profile: "core", Anchor: "go-plugin health", Run: grpcHealth},
		{ID: "RT-HS-004", Name: "Config validation", Level: "MUST", Profile: "core", Anchor: "Nomad SetConfig", Run: configValidation},
		{ID: "RT-CAP-001", Name: "Capabilities well-formed and stable", Level: "MUST", Profile: "core", Anchor: "Nomad Capabilities", Run: capabilitiesStable},
		{ID: "RT-CAP-002", Name: "Health stream answers", Level: "MUST", Profile: "core", Anchor: "Nomad Fingerprint", Run: healthStream},
		{ID: "RT-SB-001", Name: "Create and list sandbox", Level: "MUST", Profile: "core", Anchor: "critest PodSandbox", Run: sandboxCreateList},
		{ID: "RT-SB-002", Name: "Sandbox attributes preserved", Level: "MUST", Profile: "core", Anchor: "critest preserving PodSandbox attributes", Run: sandboxAttributes},
		{ID: "RT-SB-003", Name: "Stop sandbox stops its containers", Level: "MUST", Profile: "core", Anchor: "critest stop PodSandbox", Run: sandboxStop},
		{ID: "RT-SB-004", Name: "Remove sandbox", Level: "MUST", Profile: "core", Anchor: "critest remove PodSandbox", Run: sandboxRemove},
		{ID: "RT-SB-006", Name: "Hostname and DNS", Level: "MUST", Profile: "core", Capability: "exec", Anchor: "critest DNS and hostname", Run: sandboxHostnameDNS},
		{ID: "RT-CT-001", Name: "Create container", Level: "MUST", Profile: "core", Anchor: "critest create container", Run: containerCreate},
		{ID: "RT-CT-002", Name: "Start container", Level: "MUST", Profile: "core", Anchor: "critest start container", Run: containerStart},
		{ID: "RT-CT-003", Name: "Wait and exit code", Level: "MUST", Profile: "core", Anchor: "Nomad WaitTask", Run: containerExitCode},
		{ID: "RT-CT-004", Name: "Stop with grace then kill", Level: "MUST", Profile: "core", Anchor: "Nomad StopTask", Run: containerStopGrace},
		{ID: "RT-CT-005", Name: "Signal delivery", Level: "MUST", Profile: "core", Capability: "signals", Anchor: "Nomad SignalTask", Run: containerSignal},
		{ID: "RT-CT-006", Name: "Remove in every state", Level: "MUST", Profile: "core", Anchor: "critest remove container", Run: containerRemoveStates},
		{ID: "RT-CT-007", Name: "Env, args, workdir, user", Level: "MUST", Profile: "core", Anchor: "critest runtime info", Run: containerProcessSpec},
		{ID: "RT-CT-009", Name: "Read-only rootfs", Level: "MUST", Profile: "core", Capability: "read_only_rootfs", Anchor: "critest ReadOnlyRootfs", Run: containerReadOnlyRootfs},
		{ID: "RT-CT-010", Name: "Memory limit enforced (OOM kill)", Level: "MUST", Profile: "core", Anchor: "critest Container OOM", Run: containerOOM},
		{ID: "RT-CT-011", Name: "UpdateResources takes effect", Level: "SHOULD", Profile: "core", Capability: "update_resources", Anchor: "critest update container resources", Run: updateResources},
		{ID: "RT-EX-003", Name: "Streaming exec without a terminal", Level: "MUST", Profile: "core", Capability: "exec", Anchor: "Nomad ExecTaskStreamingBasicCases", Run: execStream},
		{ID: "RT-ID-001", Name: "Idempotent stop and remove", Level: "MUST", Profile: "core", Anchor: "critest Idempotence", Run: idempotent},
		{ID: "RT-ID-002", Name: "NotFound and AlreadyExists typing", Level: "MUST", Profile: "core", Anchor: "critest", Run: errorTyping},
		{ID: "RT-ID-003", Name: "Errors leave state unchanged", Level: "MUST", Profile: "core", Anchor: "OCI ErrorsLeaveStateUnchanged", Run: failedStart},
		{ID: "RT-ID-004", Name: "Concurrent lifecycles", Level: "MUST", Profile: "core", Anchor: "containerd concurrency", Run: concurrency},
		{ID: "RT-EX-001", Name: "ExecSync output and exit code", Level: "MUST", Profile: "core", Capability: "exec", Anchor: "critest execSync", Run: execSync},
		{ID: "RT-EX-002", Name: "ExecSync timeout", Level: "MUST", Profile: "core", Capability: "exec", Anchor: "critest execSync with timeout", Run: execTimeout},
		{ID: "RT-EX-006", Name: "Log lines tagged and timestamped", Level: "MUST", Profile: "core", Anchor: "critest container log", Run: logsFormat},
		{ID: "RT-IS-001", Name: "Filesystem isolation", Level: "MUST", Profile: "core", Capability: "exec", Anchor: "Nomad TestExecFSIsolation", Run: fsIsolation},
		{ID: "RT-IS-002", Name: "Security context enforced", Level: "MUST", Profile: "core", Capability: "exec", Anchor: "critest security context", Run: securityContext},
		{ID: "RT-IS-005", Name: "Sandboxes cannot see each other", Level: "MUST", Profile: "core", Capability: "exec", Anchor: "critest namespaces", Run: crossSandbox},
		{ID: "RT-RC-001", Name: "Recover after plugin restart", Level: "MUST", Profile: "core", Capability: "recover", Anchor: "Nomad StartWaitRecoverWaitStop", Run: recoverRunning},
		{ID: "RT-RC-002", Name: "Exit while the plugin is down", Level: "MUST", Profile: "core", Capability: "recover", Anchor: "Nomad recover exited task", Run: recoverExited},
		{ID: "RT-RC-003", Name: "Recover with a stale or foreign handle", Level: "MUST", Profile: "core", Anchor: "Nomad recover", Run: recoverStale},
	}
	slices.SortStableFunc(cases, func(a, b Case) int { return strings.Compare(a.ID, b.ID) })
	return cases
}

func apiVersions(t *T) {
	info, err := t.Client().Info(t.Context(), &runtimev1.InfoRequest{})
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Name == "" {
		t.Errorf("Info.name is empty")
	}
	if !slices.Contains(info.ApiVersions, runtimev1.APIVersion) {
		t.Errorf("Info.api_versions = %v, want it to contain %s", info.ApiVersions, runtimev1.APIVersion)
	}
}

func grpcHealth(t *T) {
	h := grpc_health_v1.NewHealthClient(t.Client().Conn())
	t.Eventually(5*time.Second, "grpc health of service plugin SERVING", func() bool {
		r, err := h.Check(t.Context(), &grpc_health_v1.HealthCheckRequest{Service: "plugin"})
		return err == nil && r.Status == grpc_health_v1.HealthCheckResponse_SERVING
	})
}

func configValidation(t *T) {
	_, err := t.Client().SetConfig(t.Context(), &runtimev1.SetConfigRequest{ApiVersion: runtimev1.APIVersion, Config: []byte(`{not json`)})
	t.WantClass("SetConfig(malformed JSON)", err, errdefs.ErrInvalidArgument)
	_, err = t.Client().SetConfig(t.Context(), &runtimev1.SetConfigRequest{ApiVersion: "v999", Config: []byte(`{}`)})
	t.WantClass("SetConfig(unknown api version)", err, errdefs.ErrInvalidArgument)
	// Still serving.
	if _, err := t.Client().Info(t.Context(), &runtimev1.InfoRequest{}); err != nil {
		t.Errorf("Info after a refused config: %v", err)
	}
}

func capabilitiesStable(t *T) {
	a, err := t.Client().Capabilities(t.Context(), &runtimev1.CapabilitiesRequest{})
	if err != nil {
		t.Fatalf("Capabilities: %v", err)
	}
	b, err := t.Client().Capabilities(t.Context(), &runtimev1.CapabilitiesRequest{})
	if err != nil {
		t.Fatalf("Capabilities: %v", err)
	}
	if a.IsolationClass == runtimev1.IsolationClass_ISOLATION_CLASS_UNSPECIFIED {
		t.Errorf("isolation_class is unspecified: say namespace, userspace-kernel or vm")
	}
	if a.String() != b.String() {
		t.Errorf("Capabilities changed between calls: %v then %v", a, b)
	}
}

func healthStream(t *T) {
	ev := firstHealthEvent(t)
	if !ev.Healthy || ev.Description == "" {
		t.Errorf("first health event = healthy %v description %q, want healthy with a description", ev.Healthy, ev.Description)
	}
}

func sandboxCreateList(t *T) {
	sb := t.Sandbox(nil)
	if sb.Id == "" {
		t.Fatalf("CreateSandbox returned no id")
	}
	got, err := t.Client().InspectSandbox(t.Context(), &runtimev1.InspectSandboxRequest{Id: sb.Id})
	if err != nil || got.State != runtimev1.SandboxState_SANDBOX_READY {
		t.Errorf("InspectSandbox = %v, %v; want READY", got.GetState(), err)
	}
	list, err := t.Client().ListSandboxes(t.Context(), &runtimev1.ListSandboxesRequest{Id: sb.Id})
	if err != nil || len(list.Sandboxes) != 1 || list.Sandboxes[0].Id != sb.Id {
		t.Errorf("ListSandboxes(id) = %v, %v; want exactly that sandbox", list, err)
	}
}

func sandboxAttributes(t *T) {
	cfg := t.sandboxConfig()
	cfg.Attempt = 3
	cfg.Labels["tier"] = "web"
	cfg.Annotations = map[string]string{"note": "kept exactly", "empty": ""}
	sb := t.Sandbox(cfg)
	for what, got := range map[string]*runtimev1.SandboxConfig{"Inspect": inspectSandbox(t, sb.Id).Config, "List": listOne(t, sb.Id).Config} {
		if got.Name != cfg.Name || got.Uid != cfg.Uid || got.Tenant != cfg.Tenant || got.Attempt != cfg.Attempt ||
			!maps.Equal(got.Labels, cfg.Labels) || !maps.Equal(got.Annotations, cfg.Annotations) {
			t.Errorf("%s config = %v, want %v", what, got, cfg)
		}
	}
}

func inspectSandbox(t *T, id string) *runtimev1.Sandbox {
	sb, err := t.Client().InspectSandbox(t.Context(), &runtimev1.InspectSandboxRequest{Id: id})
	if err != nil {
		t.Fatalf("InspectSandbox(%s): %v", id, err)
	}
	return sb
}

func listOne(t *T, id string) *runtimev1.Sandbox {
	l, err := t.Client().ListSandboxes(t.Context(), &runtimev1.ListSandboxesRequest{Id: id})
	if err != nil || len(l.Sandboxes) != 1 {
		t.Fatalf("ListSandboxes(%s) = %v, %v; want one", id, l, err)
	}
	return l.Sandboxes[0]
}

func sandboxStop(t *T) {
	sb := t.Sandbox(nil)
	c := t.RunContainer(sb, "sleep", "600")
	t.WaitRunning(c.Id)
	if _, err := t.Client().StopSandbox(t.Context(), &runtimev1.StopSandboxRequest{Id: sb.Id, GracePeriodSeconds: 2}); err != nil {
		t.Fatalf("StopSandbox: %v", err)
	}
	if st := inspectSandbox(t, sb.Id).State; st != runtimev1.SandboxState_SANDBOX_NOTREADY {
		t.Errorf("sandbox state after stop = %v, want NOTREADY", st)
	}
	if st := t.Inspect(c.Id).State; st != runtimev1.ContainerState_CONTAINER_EXITED {
		t.Errorf("container state after sandbox stop = %v, want EXITED", st)
	}
}

func sandboxRemove(t *T) {
	sb := t.Sandbox(nil)
	c := t.RunContainer(sb, "sleep", "600")
	t.WaitRunning(c.Id)
	if _, err := t.Client().StopSandbox(t.Context(), &runtimev1.StopSandboxRequest{Id: sb.Id}); err != nil {
		t.Fatalf("StopSandbox: %v", err)
	}
	if _, err := t.Client().RemoveSandbox(t.Context(), &runtimev1.RemoveSandboxRequest{Id: sb.Id}); err != nil {
		t.Fatalf("RemoveSandbox: %v", err)
	}
	l, err := t.Client().ListSandboxes(t.Context(), &runtimev1.ListSandboxesRequest{Id: sb.Id})
	if err != nil || len(l.Sandboxes) != 0 {
		t.Errorf("ListSandboxes after remove = %v, %v; want none", l, err)
	}
	_, err = t.Client().InspectContainer(t.Context(), &runtimev1.InspectContainerRequest{Id: c.Id})
	t.WantClass("InspectContainer of a removed sandbox's container", err, errdefs.ErrNotFound)
}

func sandboxHostnameDNS(t *T) {
	cfg := t.sandboxConfig()
	cfg.Hostname = "conformance-host"
	cfg.Dns = &runtimev1.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"acme.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}}
	sb := t.Sandbox(cfg)
	c := t.RunContainer(sb, "sleep", "600")
	t.WaitRunning(c.Id)
	if out := strings.TrimSpace(string(t.Exec(c.Id, 10*time.Second, "hostname").Stdout)); out != "conformance-host" {
		t.Errorf("hostname = %q, want conformance-host", out)
	}
	resolv := string(t.Exec(c.Id, 10*time.Second, "cat", "/etc/resolv.conf").Stdout)
	for _, want := range []string{"nameserver 10.96.0.10", "search acme.svc.cluster.local svc.cluster.local", "options ndots:5"} {
		if !strings.Contains(resolv, want) {
			t.Errorf("/etc/resolv.conf lacks %q:\n%s", want, resolv)
		}
	}
}

func containerCreate(t *T) {
	sb := t.Sandbox(nil)
	cfg := t.containerConfig("sleep", "600")
	cfg.Labels = map[string]string{"app": "x"}
	cfg.Annotations = map[string]string{"a": "b"}
	c := t.Container(sb, cfg)
	got := t.Inspect(c.Id)
	if got.State != runtimev1.ContainerState_CONTAINER_CREATED {
		t.Errorf("state after create = %v, want CREATED", got.State)
	}
	if got.SandboxId != sb.Id || got.Config.GetName() != cfg.Name || got.Config.GetImage() != cfg.Image ||
		!maps.Equal(got.Config.GetLabels(), cfg.Labels) || !maps.Equal(got.Config.GetAnnotations(), cfg.Annotations) {
		t.Errorf("inspected container = %v, want sandbox %s and config %v", got, sb.Id, cfg)
	}
	l, err := t.Client().ListContainers(t.Context(), &runtimev1.ListContainersRequest{SandboxId: sb.Id})
	if err != nil || len(l.Containers) != 1 {
		t.Errorf("ListContainers(sandbox) = %v, %v; want one", l, err)
	}
}

func containerStart(t *T) {
	sb := t.Sandbox(nil)
	before := time.Now().UnixNano()
	c := t.RunContainer(sb, "sleep", "600")
	got := t.WaitRunning(c.Id)
	if got.StartedAt < before || got.Pid <= 0 {
		t.Errorf("running container started_at %d (before start %d), pid %d; want a start time after the call and a pid", got.StartedAt, before, got.Pid)
	}
}

func containerExitCode(t *T) {
	sb := t.Sandbox(nil)
	c := t.RunContainer(sb, "sh", "-c", "exit 43")
	var wg sync.WaitGroup
	results := make([]*runtimev1.ExitStatus, 3)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := t.Client().WaitContainer(t.Context(), &runtimev1.WaitContainerRequest{Id: c.Id})
			if err != nil {
				t.Errorf("WaitContainer #%d: %v", i, err)
				return
			}
			results[i] = st
		}()
	}
	wg.Wait()
	for i, st := range results {
		if st != nil && (st.ExitCode != 43 || st.Signal != 0 || st.OomKilled) {
			t.Errorf("waiter %d got exit %d signal %d oom %v, want 43, 0, false", i, st.ExitCode, st.Signal, st.OomKilled)
		}
	}
	got := t.Inspect(c.Id)
	if got.State != runtimev1.ContainerState_CONTAINER_EXITED || got.Exit.GetFinishedAt() < got.StartedAt {
		t.Errorf("after exit: state %v finished_at %d started_at %d", got.State, got.Exit.GetFinishedAt(), got.StartedAt)
	}
}

func containerStopGrace(t *T) {
	sb := t.Sandbox(nil)
	c := t.RunContainer(sb, "sh", "-c", "trap '' TERM; echo trapped; while true; do sleep 1; done")
	t.WaitRunning(c.Id)
	t.waitTrapped(c.Id)
	start := time.Now()
	if _, err := t.Client().StopContainer(t.Context(), &runtimev1.StopContainerRequest{Id: c.Id, TimeoutSeconds: 2}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if took := time.Since(start); took > 7*time.Second {
		t.Errorf("StopContainer with timeout 2s took %v, want at most 7s", took)
	}
	st := t.Wait(c.Id)
	if st.Signal != 9 && st.ExitCode != 137 {
		t.Errorf("a process ignoring SIGTERM ended with exit %d signal %d, want SIGKILL (9 or exit 137)", st.ExitCode, st.Signal)
	}
	// A process that exits on SIGTERM (a container's first process has no
	// default signal handlers, so it must install one).
	polite := t.RunContainer(sb, "sh", "-c", "trap 'exit 143' TERM; echo trapped; while true; do sleep 0.1; done")
	t.WaitRunning(polite.Id)
	t.waitTrapped(polite.Id)
	if _, err := t.Client().StopContainer(t.Context(), &runtimev1.StopContainerRequest{Id: polite.Id, TimeoutSeconds: 30}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if st := t.Wait(polite.Id); st.Signal != 15 && st.ExitCode != 143 {
		t.Errorf("a process dying on SIGTERM ended with exit %d signal %d, want SIGTERM (15 or exit 143)", st.ExitCode, st.Signal)
	}
}

// waitTrapped waits for a container's "trapped" line: its shell has set
// its signal handler (until then, as a pid namespace's first process, it
// ignores the signal).
func (t *T) waitTrapped(id string) {
	t.Eventually(10*time.Second, "the container's signal handler", func() bool {
		return slices.Contains(t.Logs(id), "stdout trapped")
	})
}

func containerSignal(t *T) {
	sb := t.Sandbox(nil)
	c := t.RunContainer(sb, "sh", "-c", "trap 'touch /tmp/usr1' USR1; while true; do sleep 0.2; done")
	t.WaitRunning(c.Id)
	if _, err := t.Client().SignalContainer(t.Context(), &runtimev1.SignalContainerRequest{Id: c.Id, Signal: "SIGUSR1"}); err != nil {
		t.Fatalf("SignalContainer(SIGUSR1): %v", err)
	}
	if t.Caps().Exec {
		t.Eventually(10*time.Second, "the USR1 handler's marker", func() bool {
			r, err := t.Client().ExecSync(t.Context(), &runtimev1.ExecSyncRequest{Id: c.Id, Command: []string{"test", "-e", "/tmp/usr1"}, TimeoutSeconds: 5})
			return err == nil && r.ExitCode == 0
		})
	}
	_, err := t.Client().SignalContainer(t.Context(), &runtimev1.SignalContainerRequest{Id: c.Id, Signal: "SIGNOPE"})
	t.WantClass("SignalContainer(SIGNOPE)", err, errdefs.ErrInvalidArgument)
}

func containerRemoveStates(t *T) {
	sb := t.Sandbox(nil)
	created := t.Container(sb, t.containerConfig("sleep", "600"))
	running := t.RunContainer(sb, "sleep", "600")
	t.WaitRunning(running.Id)
	exited := t.RunContainer(sb, "true")
	t.Wait(exited.Id)
	for name, id := range map[string]string{"created": created.Id, "running": running.Id, "exited": exited.Id} {
		if _, err := t.Client().RemoveContainer(t.Context(), &runtimev1.RemoveContainerRequest{Id: id, Force: true}); err != nil {
			t.Errorf("RemoveContainer(%s): %v", name, err)
		}
		_, err := t.Client().InspectContainer(t.Context(), &runtimev1.InspectContainerRequest{Id: id})
		t.WantClass("InspectContainer after removing the "+name+" container", err, errdefs.ErrNotFound)
	}
}

func containerProcessSpec(t *T) {
	sb := t.Sandbox(nil)
	cfg := t.containerConfig("sh", "-c", `echo "env=$GREETING args=$0,$1 cwd=$(pwd) uid=$(id -u) gid=$(id -g)"`, "first", "second")
	cfg.Env = map[string]string{"GREETING": "hello world"}
	cfg.WorkingDir = "/tmp"
	cfg.Uid, cfg.Gid, cfg.HasUser = 65534, 65534, true
	c := t.Container(sb, cfg)
	t.Start(c.Id)
	if st := t.Wait(c.Id); st.ExitCode != 0 {
		t.Fatalf("exit %d", st.ExitCode)
	}
	want := "stdout env=hello world args=first,second cwd=/tmp uid=65534 gid=65534"
	t.Eventually(5*time.Second, "the process's report in the log", func() bool { return slices.Contains(t.Logs(c.Id), want) })

	bad := t.containerConfig("true")
	bad.WorkingDir = "/proc/self/fd/7"
	_, err := t.Client().CreateContainer(t.Context(), &runtimev1.CreateContainerRequest{SandboxId: sb.Id, Config: bad})
	if err == nil {
		// Refusing at start is acceptable too, as long as it never runs.
		resp, _ := t.Client().ListContainers(t.Context(), &runtimev1.ListContainersRequest{SandboxId: sb.Id})
		for _, c := range resp.GetContainers() {
			if c.Config.GetName() == bad.Name {
				if _, err := t.Client().StartContainer(t.Context(), &runtimev1.StartContainerRequest{Id: c.Id}); err == nil {
					t.Errorf("a working directory of /proc/self/fd/N was accepted (CVE-2024-21626)")
				}
			}
		}
		return
	}
	t.WantClass("CreateContainer(workingDir /proc/self/fd/7)", err, errdefs.ErrInvalidArgument)
}

func containerReadOnlyRootfs(t *T) {
	sb := t.Sandbox(nil)
	for _, ro := range []bool{true, false} {
		cfg := t.containerConfig("sh", "-c", "echo x > /written")
		cfg.ReadOnlyRootfs = ro
		c := t.Container(sb, cfg)
		t.Start(c.Id)
		st := t.Wait(c.Id)
		if ro && st.ExitCode == 0 {
			t.Errorf("writing to / of a read-only rootfs succeeded")
		}
		if !ro && st.ExitCode != 0 {
			t.Errorf("writing to / of a writable rootfs failed with exit %d", st.ExitCode)
		}
	}
}

func containerOOM(t *T) {
	sb := t.Sandbox(nil)
	cfg := t.containerConfig("sh", "-c", "x=a; while true; do x=$x$x; done")
	cfg.Resources = &runtimev1.Resources{MemoryBytes: 32 << 20}
	c := t.Container(sb, cfg)
	if got := t.Inspect(c.Id).Config.GetResources().GetMemoryBytes(); got != 32<<20 {
		t.Errorf("inspected memory limit = %d, want %d", got, 32<<20)
	}
	t.Start(c.Id)
	st := t.Wait(c.Id)
	if !st.OomKilled || (st.ExitCode != 137 && st.Signal != 9) {
		t.Errorf("memory hog under 32Mi ended with exit %d signal %d oom_killed %v, want OOM-killed (137)", st.ExitCode, st.Signal, st.OomKilled)
	}
}

func idempotent(t *T) {
	ctx, c := t.Context(), t.Client()
	missing := "no-such-" + unique("id")
	if _, err := c.StopSandbox(ctx, &runtimev1.StopSandboxRequest{Id: missing}); err != nil {
		t.Errorf("StopSandbox(missing) = %v, want OK", err)
	}
	if _, err := c.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{Id: missing}); err != nil {
		t.Errorf("RemoveSandbox(missing) = %v, want OK", err)
	}
	if _, err := c.StopContainer(ctx, &runtimev1.StopContainerRequest{Id: missing}); err != nil {
		t.Errorf("StopContainer(missing) = %v, want OK", err)
	}
	if _, err := c.RemoveContainer(ctx, &runtimev1.RemoveContainerRequest{Id: missing}); err != nil {
		t.Errorf("RemoveContainer(missing) = %v, want OK", err)
	}
	sb := t.Sandbox(nil)
	ct := t.RunContainer(sb, "true")
	t.Wait(ct.Id)
	for i := range 2 {
		if _, err := c.StopContainer(ctx, &runtimev1.StopContainerRequest{Id: ct.Id}); err != nil {
			t.Errorf("StopContainer(exited) #%d = %v, want OK", i+1, err)
		}
		if _, err := c.StopSandbox(ctx, &runtimev1.StopSandboxRequest{Id: sb.Id}); err != nil {
			t.Errorf("StopSandbox(stopped) #%d = %v, want OK", i+1, err)
		}
	}
}

func errorTyping(t *T) {
	ctx, c := t.Context(), t.Client()
	missing := "no-such-" + unique("id")
	_, err := c.InspectContainer(ctx, &runtimev1.InspectContainerRequest{Id: missing})
	t.WantClass("InspectContainer(missing)", err, errdefs.ErrNotFound)
	_, err = c.InspectSandbox(ctx, &runtimev1.InspectSandboxRequest{Id: missing})
	t.WantClass("InspectSandbox(missing)", err, errdefs.ErrNotFound)
	_, err = c.StartContainer(ctx, &runtimev1.StartContainerRequest{Id: missing})
	t.WantClass("StartContainer(missing)", err, errdefs.ErrNotFound)
	if t.Caps().Exec {
		_, err = c.ExecSync(ctx, &runtimev1.ExecSyncRequest{Id: missing, Command: []string{"true"}})
		t.WantClass("ExecSync(missing)", err, errdefs.ErrNotFound)
	}
	if s, err := c.Logs(ctx, &runtimev1.LogsRequest{Id: missing}); err == nil {
		_, err = s.Recv()
		t.WantClass("Logs(missing)", err, errdefs.ErrNotFound)
	} else {
		t.WantClass("Logs(missing)", err, errdefs.ErrNotFound)
	}
	_, err = c.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: missing, Config: t.containerConfig("true")})
	t.WantClass("CreateContainer(missing sandbox)", err, errdefs.ErrNotFound)
	sb := t.Sandbox(nil)
	cfg := t.containerConfig("true")
	t.Container(sb, cfg)
	_, err = c.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: sb.Id, Config: cfg})
	t.WantClass("CreateContainer(duplicate name)", err, errdefs.ErrAlreadyExists)
}

func failedStart(t *T) {
	sb := t.Sandbox(nil)
	c := t.Container(sb, t.containerConfig("/no/such/binary"))
	_, err := t.Client().StartContainer(t.Context(), &runtimev1.StartContainerRequest{Id: c.Id})
	got := t.Inspect(c.Id)
	if err == nil && got.State == runtimev1.ContainerState_CONTAINER_RUNNING {
		t.Errorf("a container whose binary does not exist is RUNNING")
	}
	if got.State == runtimev1.ContainerState_CONTAINER_EXITED && got.Exit.GetReason() == "" && got.Exit.GetMessage() == "" {
		t.Errorf("a failed start left no reason: %v", got.Exit)
	}
	if _, err := t.Client().RemoveContainer(t.Context(), &runtimev1.RemoveContainerRequest{Id: c.Id, Force: true}); err != nil {
		t.Errorf("RemoveContainer after a failed start: %v", err)
	}
}

func concurrency(t *T) {
	const sandboxes, perSandbox = 3, 4
	var wg sync.WaitGroup
	for range sandboxes {
		sb := t.Sandbox(nil)
		for range perSandbox {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, c := t.Context(), t.Client()
				resp, err := c.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: sb.Id, Config: t.containerConfig("sleep", "600")})
				if err != nil {
					t.Errorf("concurrent CreateContainer: %v", err)
					return
				}
				id := resp.Container.Id
				for _, call := range []func() error{
					func() error { _, err := c.StartContainer(ctx, &runtimev1.StartContainerRequest{Id: id}); return err },
					func() error {
						_, err := c.StopContainer(ctx, &runtimev1.StopContainerRequest{Id: id, TimeoutSeconds: 5})
						return err
					},
					func() error { _, err := c.RemoveContainer(ctx, &runtimev1.RemoveContainerRequest{Id: id}); return err },
				} {
					if err := call(); err != nil {
						if errors.Is(err, errdefs.ErrInternal) {
							t.Errorf("concurrent lifecycle returned Internal: %v", err)
						} else {
							t.Errorf("concurrent lifecycle: %v", err)
						}
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	l, err := t.Client().ListContainers(t.Context(), &runtimev1.ListContainersRequest{})
	if err != nil {
		t.Fatalf("ListContainers: %v", err)
	}
	for _, c := range l.Containers {
		if strings.HasPrefix(c.Config.GetName(), "c-") && c.SandboxId != "" {
			if _, err := t.Client().InspectSandbox(t.Context(), &runtimev1.InspectSandboxRequest{Id: c.SandboxId}); err == nil {
				if lbl := inspectSandbox(t, c.SandboxId).Config.GetLabels()["paddock.dev/conformance"]; lbl == "RT-ID-004" {
					t.Errorf("container %s outlived its removal", c.Id)
				}
			}
		}
	}
}

func execSync(t *T) {
	sb := t.Sandbox(nil)
	c := t.RunContainer(sb, "sleep", "600")
	t.WaitRunning(c.Id)
	r := t.Exec(c.Id, 10*time.Second, "sh", "-c", "echo out; echo err >&2; exit 43")
	if string(r.Stdout) != "out\n" || string(r.Stderr) != "err\n" || r.ExitCode != 43 {
		t.Errorf("ExecSync = stdout %q stderr %q exit %d, want \"out\\n\" \"err\\n\" 43", r.Stdout, r.Stderr, r.ExitCode)
	}
}

func execTimeout(t *T) {
	sb := t.Sandbox(nil)
	c := t.RunContainer(sb, "sleep", "600")
	t.WaitRunning(c.Id)
	start := time.Now()
	_, err := t.Client().ExecSync(t.Context(), &runtimev1.ExecSyncRequest{Id: c.Id, Command: []string{"sleep", "61"}, TimeoutSeconds: 1})
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("ExecSync with a 1s timeout took %v, want at most 3s", took)
	}
	t.WantClass("ExecSync(sleep 61, timeout 1s)", err, context.DeadlineExceeded)
	t.Eventually(5*time.Second, "the timed-out exec's process gone", func() bool {
		r, err := t.Client().ExecSync(t.Context(), &runtimev1.ExecSyncRequest{Id: c.Id, Command: []string{"sh", "-c", "ps -o args | grep -v grep | grep -c 'sleep 61' || true"}, TimeoutSeconds: 5})
		return err == nil && strings.TrimSpace(string(r.Stdout)) == "0"
	})
}

func logsFormat(t *T) {
	sb := t.Sandbox(nil)
	before := time.Now().Add(-time.Second).UnixNano()
	c := t.RunContainer(sb, "sh", "-c", "echo one; echo two >&2; echo three")
	t.Wait(c.Id)
	var lines []*runtimev1.LogLine
	t.Eventually(5*time.Second, "three log lines", func() bool {
		s, err := t.Client().Logs(t.Context(), &runtimev1.LogsRequest{Id: c.Id})
		if err != nil {
			return false
		}
		lines = nil
		for {
			l, err := s.Recv()
			if err != nil {
				break
			}
			lines = append(lines, l)
		}
		return len(lines) >= 3
	})
	var got []string
	var stdout []string
	for _, l := range lines {
		got = append(got, fmt.Sprintf("%s %s", l.Stream, l.Line))
		if l.Timestamp < before || l.Timestamp > time.Now().UnixNano() {
			t.Errorf("line %q has timestamp %d outside the run", l.Line, l.Timestamp)
		}
		if l.Stream == "stdout" {
			stdout = append(stdout, string(l.Line))
		}
	}
	if !slices.Contains(got, "stderr two") || !slices.Equal(stdout, []string{"one", "three"}) {
		t.Errorf("log lines = %q, want stdout one, three in order and stderr two", got)
	}
	// tail=1 returns the last line only.
	s, err := t.Client().Logs(t.Context(), &runtimev1.LogsRequest{Id: c.Id, Tail: 1})
	if err != nil {
		t.Fatalf("Logs(tail 1): %v", err)
	}
	n := 0
	for {
		if _, err := s.Recv(); err != nil {
			break
		}
		n++
	}
	if n != 1 {
		t.Errorf("Logs(tail 1) returned %d lines, want 1", n)
	}
}

func fsIsolation(t *T) {
	sb := t.Sandbox(nil)
	c := t.RunContainer(sb, "sleep", "600")
	t.WaitRunning(c.Id)
	marker := "/conformance-" + unique("m")
	t.Exec(c.Id, 10*time.Second, "touch", marker)
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("a file created in the container appeared on the host at %s", marker)
	}
	r := t.Exec(c.Id, 10*time.Second, "sh", "-c", "cat /etc/shadow 2>/dev/null | grep -c '^root:' ; ls /var/run/*.sock 2>/dev/null | wc -l")
	if lines := trimLines(r.Stdout); len(lines) == 2 && lines[1] != "0" {
		t.Errorf("the container sees host sockets in /var/run: %q", r.Stdout)
	}
}

func securityContext(t *T) {
	sb := t.Sandbox(nil)
	c := t.RunContainer(sb, "sleep", "600")
	t.WaitRunning(c.Id)
	status := string(t.Exec(c.Id, 10*time.Second, "cat", "/proc/self/status").Stdout)
	for _, want := range []string{"NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(status, want) {
			t.Errorf("/proc/self/status lacks %q", want)
		}
	}
	if r := t.Exec(c.Id, 10*time.Second, "sh", "-c", "echo x > /proc/sys/kernel/domainname"); r.ExitCode == 0 {
		t.Errorf("/proc/sys is writable in the container")
	}
	if r := t.Exec(c.Id, 10*time.Second, "sh", "-c", "head -c1 /proc/kcore | wc -c"); strings.TrimSpace(string(r.Stdout)) != "0" {
		t.Errorf("/proc/kcore is readable in the container")
	}
}

func crossSandbox(t *T) {
	a, b := t.Sandbox(nil), t.Sandbox(nil)
	ca := t.RunContainer(a, "sleep", "600")
	cb := t.RunContainer(b, "sleep", "601")
	t.WaitRunning(ca.Id)
	pidB := t.WaitRunning(cb.Id).Pid
	ps := string(t.Exec(ca.Id, 10*time.Second, "ps", "-o", "args").Stdout)
	if strings.Contains(ps, "sleep 601") {
		t.Errorf("sandbox A sees sandbox B's process:\n%s", ps)
	}
	if r := t.Exec(ca.Id, 10*time.Second, "kill", "-0", fmt.Sprint(pidB)); r.ExitCode == 0 {
		t.Errorf("sandbox A can signal B's host pid %d", pidB)
	}
}

func recoverRunning(t *T) {
	sb := t.Sandbox(nil)
	c := t.RunContainer(sb, "sleep", "600")
	before := t.WaitRunning(c.Id)
	if err := t.env.cfg.Target.RestartPlugin(t.Context()); err != nil {
		t.Fatalf("restarting the plugin: %v", err)
	}
	if _, err := t.Client().Recover(t.Context(), &runtimev1.RecoverRequest{Handle: sb.Handle}); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	after := t.Inspect(c.Id)
	if after.State != runtimev1.ContainerState_CONTAINER_RUNNING || after.Pid != before.Pid || after.StartedAt != before.StartedAt {
		t.Errorf("after the plugin restart: state %v pid %d started %d, want RUNNING pid %d started %d", after.State, after.Pid, after.StartedAt, before.Pid, before.StartedAt)
	}
	if _, err := t.Client().StopContainer(t.Context(), &runtimev1.StopContainerRequest{Id: c.Id, TimeoutSeconds: 5}); err != nil {
		t.Errorf("StopContainer after recovery: %v", err)
	}
	if st := t.Wait(c.Id); st.Signal == 0 && st.ExitCode == 0 {
		t.Errorf("a stopped sleep reported a clean exit")
	}
}

func recoverExited(t *T) {
	sb := t.Sandbox(nil)
	c := t.RunContainer(sb, "sh", "-c", "sleep 2; exit 7")
	t.WaitRunning(c.Id)
	if err := t.env.cfg.Target.RestartPlugin(t.Context()); err != nil {
		t.Fatalf("restarting the plugin: %v", err)
	}
	if _, err := t.Client().Recover(t.Context(), &runtimev1.RecoverRequest{Handle: sb.Handle}); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if st := t.Wait(c.Id); st.ExitCode != 7 {
		t.Errorf("exit code of a container that exited around a plugin restart = %d (signal %d), want 7", st.ExitCode, st.Signal)
	}
}

func recoverStale(t *T) {
	start := time.Now()
	_, err := t.Client().Recover(t.Context(), &runtimev1.RecoverRequest{Handle: []byte(`{"sandbox":"no-such-sandbox","version":1}`)})
	if !isClass(err, errdefs.ErrNotFound) && !isClass(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Recover(stale handle) = %v, want NotFound or FailedPrecondition", err)
	}
	_, err = t.Client().Recover(t.Context(), &runtimev1.RecoverRequest{Handle: []byte("\x00garbage")})
	if !isClass(err, errdefs.ErrNotFound) && !isClass(err, errdefs.ErrFailedPrecondition) && !isClass(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Recover(garbage handle) = %v, want NotFound, FailedPrecondition or InvalidArgument", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Recover of stale handles took %v, want at most 5s", took)
	}
}

func updateResources(t *T) {
	sb := t.Sandbox(nil)
	cfg := t.containerConfig("sleep", "600")
	cfg.Resources = &runtimev1.Resources{MemoryBytes: 64 << 20}
	c := t.Container(sb, cfg)
	t.Start(c.Id)
	t.WaitRunning(c.Id)
	if _, err := t.Client().UpdateResources(t.Context(), &runtimev1.UpdateResourcesRequest{Id: c.Id, Resources: &runtimev1.Resources{MemoryBytes: 128 << 20}}); err != nil {
		t.Fatalf("UpdateResources(memory 128Mi): %v", err)
	}
	if got := t.Inspect(c.Id).Config.GetResources().GetMemoryBytes(); got != 128<<20 {
		t.Errorf("inspected memory limit after the update = %d, want %d", got, 128<<20)
	}
	st, err := t.Client().Stats(t.Context(), &runtimev1.StatsRequest{Id: c.Id})
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.MemoryLimitBytes != 128<<20 {
		t.Errorf("memory limit in force after the update = %d, want %d", st.MemoryLimitBytes, 128<<20)
	}
	if got := t.Inspect(c.Id); got.State != runtimev1.ContainerState_CONTAINER_RUNNING {
		t.Errorf("the container was restarted or stopped by the update: %v", got.State)
	}
}

// execStream runs commands through the streaming Exec without a
// terminal.
func execStream(t *T) {
	sb := t.Sandbox(nil)
	c := t.RunContainer(sb, "sleep", "600")
	t.WaitRunning(c.Id)
	run := func(in string, cmd ...string) execResult {
		start := &runtimev1.ExecStart{Id: c.Id, Command: cmd, Stdin: in != ""}
		if in == "" {
			return t.execStreaming(start)
		}
		return t.execStreaming(start, stdin(in), &runtimev1.ExecInput{Input: &runtimev1.ExecInput_CloseStdin{CloseStdin: true}})
	}
	if r := run("", "sh", "-c", "echo 1; sleep 0.1; echo 2; sleep 0.1; echo 3; exit 5"); r.stdout != "1\n2\n3\n" || r.code != 5 {
		t.Errorf("streamed output %q exit %d, want \"1\\n2\\n3\\n\" and 5", r.stdout, r.code)
	}
	if r := run("hello through stdin\n", "cat"); r.stdout != "hello through stdin\n" || r.code != 0 {
		t.Errorf("cat of stdin = %q exit %d, want the input back and 0", r.stdout, r.code)
	}
	if r := run("", "stty", "size"); r.code == 0 {
		t.Errorf("stty size without a terminal succeeded; want it to fail (no tty)")
	}
}
