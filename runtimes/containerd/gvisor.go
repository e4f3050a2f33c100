package containerd

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/gvisorpod"
	"github.com/paddock-dev/paddock/runtimes/internal/sandboxconf"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// A sandbox whose handler maps to io.containerd.runsc.v1 is one gVisor
// sandbox. CreateSandbox starts its root container, the pause container:
// a containerd container whose ID is the sandbox's, running a tiny pause
// process (runtimes/internal/gvisorpod) in the pod's network namespace (gVisor's network
// stack takes over the interfaces there) and the pod cgroup (which then
// holds the whole sandbox and carries the pod's limits). Every container
// of the pod joins that sandbox as a sub-container through the CRI
// annotations below, sharing its kernel and localhost. Each container has
// a shim of its own (containerd-shim-runsc-v1 groups shims only when a
// machine-wide config file says so); runsc, not the shim, places a
// container in its sandbox.
//
// The shim learns where runsc is, its root directory and its flags from
// the runtime options of the containerd container: a TOML file the plugin
// writes (STATE/containerd-shim-runsc.toml).

const (
	// labelPause marks a sandbox's pause container (its value is the
	// sandbox); it is none of the plugin's containers.
	labelPause = "dev.paddock/pause"
	// pauseDir is the sandbox directory's root file system of the pause
	// container.
	pauseDir = "pause"
	// runscShimConfig is the shim's options file in the state directory;
	// runscRootDir is runsc's root directory there (the shim adds the
	// containerd namespace).
	runscShimConfig = "containerd-shim-runsc.toml"
	runscRootDir    = "runsc"
	// runtimeOptionsTypeURL and runscOptionsType are what the shim decodes
	// its runtime options as (containerd's CRI runtimeoptions.v1.Options).
	runtimeOptionsTypeURL = "runtimeoptions.v1.Options"
	runscOptionsType      = "io.containerd.runsc.v1.options"
)

// gvisorWaitFailed is the exit status gVisor's shim reports for a
// container when runsc cannot wait for it, as when its sandbox died
// (internalErrorCode in gvisor.dev/gvisor/pkg/shim/v1/proc).
const gvisorWaitFailed = 128

// gVisor reports whether containers of runtime type rt run under gVisor.
func gVisor(rt string) bool {
	return isolation(rt) == runtimev1.IsolationClass_ISOLATION_CLASS_USERSPACE_KERNEL
}

// writeRunscShimConfig writes the shim's options file for cfg.
func writeRunscShimConfig(stateDir string, cfg *Config) error {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) } // a TOML basic string
	toml := fmt.Sprintf("binary_name = %s\nroot = %s\n\n[runsc_config]\n  platform = %s\n  network = \"sandbox\"\n  oci-seccomp = \"true\"\n",
		q(cfg.RunscPath), q(filepath.Join(stateDir, runscRootDir)), q(cfg.RunscPlatform))
	return writeFileSynced(filepath.Join(stateDir, runscShimConfig), []byte(toml), 0o600)
}

// runtimeOptions returns the containerd runtime options of runtime type
// rt: for gVisor's shim, the path of its options file.
func runtimeOptions(stateDir, rt string) *anypb.Any {
	if !gVisor(rt) {
		return nil
	}
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, runscOptionsType)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, filepath.Join(stateDir, runscShimConfig))
	return &anypb.Any{TypeUrl: runtimeOptionsTypeURL, Value: b}
}

// gvisorSpec places a container's spec in its sandbox's gVisor sandbox.
// It gets no cgroup of its own: its processes are the sandbox's, all in
// the pod cgroup.
func gvisorSpec(s *specs.Spec, sandboxID string) {
	gvisorpod.JoinSandbox(s, sandboxID)
	s.Linux.CgroupsPath = ""
}

// cgroupOf is the cgroup that holds c's processes: its own, or under
// gVisor its pod's (the whole sandbox's).
func (p *Plugin) cgroupOf(c *container) string {
	p.mu.Lock()
	sb := p.sandboxes[c.sandboxID]
	p.mu.Unlock()
	if sb != nil && gVisor(sb.rec.Runtime) {
		return podCgroupPath(c.sandboxID)
	}
	return containerCgroup(c.sandboxID, c.id)
}

// startPause starts the gVisor sandbox of sb: its pause container.
func (p *Plugin) startPause(ctx context.Context, d *daemon, sb *sandbox) error {
	rootfs := filepath.Join(sb.dir, pauseDir)
	if err := gvisorpod.WriteRoot(rootfs); err != nil {
		return err
	}
	pause := gvisorpod.Pause{SandboxID: sb.rec.ID, Hostname: sandboxconf.Hostname(sb.rec.config()), NetnsPath: sb.rec.NetnsPath,
		CgroupsPath: podCgroupPath(sb.rec.ID), Root: rootfs}
	specAny, err := jsonAny(specTypeURL, pause.Spec())
	if err != nil {
		return err
	}
	ctx = inNamespace(ctx, sb.rec.Namespace)
	if _, err := d.containers.Create(ctx, &containersapi.CreateContainerRequest{Container: &containersapi.Container{
		ID:      sb.rec.ID,
		Labels:  map[string]string{labelPause: sb.rec.ID},
		Runtime: &containersapi.Container_Runtime{Name: sb.rec.Runtime, Options: runtimeOptions(p.stateDir, sb.rec.Runtime)},
		Spec:    specAny,
	}}); err != nil {
		return fmt.Errorf("pause container: %w", err)
	}
	if _, err := d.tasks.Create(ctx, &tasksapi.CreateTaskRequest{ContainerID: sb.rec.ID}); err != nil {
		return fmt.Errorf("start the gVisor sandbox: %w", err)
	}
	if _, err := d.tasks.Start(ctx, &tasksapi.StartRequest{ContainerID: sb.rec.ID}); err != nil {
		return fmt.Errorf("start the gVisor sandbox: %w", err)
	}
	return nil
}

// stopPause kills sb's pause container, and with it the gVisor sandbox
// and whatever still runs in it, and deletes its task; remove also
// deletes the container. What is gone already is not an error.
func (p *Plugin) stopPause(ctx context.Context, d *daemon, sb *sandbox, remove bool) error {
	ctx, cancel := context.WithTimeout(inNamespace(context.WithoutCancel(ctx), sb.rec.Namespace), time.Minute)
	defer cancel()
	id := sb.rec.ID
	if _, err := d.tasks.Kill(ctx, &tasksapi.KillRequest{ContainerID: id, Signal: uint32(unix.SIGKILL), All: true}); ignoreGone(err) != nil {
		return fmt.Errorf("stop the gVisor sandbox: %w", err)
	}
	if _, err := d.tasks.Wait(ctx, &tasksapi.WaitRequest{ContainerID: id}); ignoreNotFound(err) != nil {
		return fmt.Errorf("stop the gVisor sandbox: wait for it: %w", err)
	}
	if _, err := d.tasks.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: id}); ignoreNotFound(err) != nil {
		return fmt.Errorf("stop the gVisor sandbox: delete its task: %w", err)
	}
	if remove {
		if _, err := d.containers.Delete(ctx, &containersapi.DeleteContainerRequest{ID: id}); ignoreNotFound(err) != nil {
			return fmt.Errorf("remove the pause container: %w", err)
		}
	}
	return nil
}

// checkGVisorAlive marks a ready gVisor sandbox not ready when its pause
// task has stopped or is gone: the sandbox died (the host's OOM killer
// ends a gVisor pod whole), and the agent must not start containers in
// it. A daemon that does not answer changes nothing.
func (p *Plugin) checkGVisorAlive(ctx context.Context, sb *sandbox) {
	p.mu.Lock()
	check := sb.rec.Ready && gVisor(sb.rec.Runtime)
	d, ns, id := p.d, sb.rec.Namespace, sb.rec.ID
	p.mu.Unlock()
	if !check || d == nil {
		return
	}
	t, err := d.tasks.Get(inNamespace(ctx, ns), &tasksapi.GetRequest{ContainerID: id})
	if err == nil && t.Process.Status != task.Status_STOPPED {
		return
	}
	if err != nil && !errdefs.IsNotFound(err) {
		return
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if sb.rec.Ready && !sb.removed {
		sb.rec.Ready = false
		if err := sb.rec.write(sb.dir); err != nil {
			p.log.Warn("record a dead gVisor sandbox", "sandbox", id, "error", err)
		}
		p.log.Warn("the gVisor sandbox died", "sandbox", id)
	}
}

// releaseNullNetns unmounts the empty network namespace runsc pins in its
// root directory of namespace ns for the gofers ("null-netns") once no
// gVisor sandbox but removing is left there, so that nothing stays
// mounted in the state directory. runsc pins it again when it needs it.
func (p *Plugin) releaseNullNetns(ns, removing string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, sb := range p.sandboxes {
		if id != removing && sb.rec.Namespace == ns && gVisor(sb.rec.Runtime) {
			return
		}
	}
	path := filepath.Join(p.stateDir, runscRootDir, ns, "null-netns")
	// Concurrent runsc commands may have stacked several mounts.
	for unix.Unmount(path, unix.MNT_DETACH) == nil {
	}
}

// setGVisorPodLimits makes the pod cgroup of sandbox sb, which holds the
// whole gVisor sandbox, carry its containers' limits where the pod sets
// none of its own: the sum of its containers' memory and CPU limits, or
// none when one of them has none. A container's own limits cannot be
// enforced apart from its pod's: its processes are the sandbox's. Pids
// are left alone: the pod cgroup counts the sentry's host threads, not
// the sandbox's processes. with, when not nil, is a container's limits
// to count instead of those it has recorded (a container being made or
// updated).
func (p *Plugin) setGVisorPodLimits(ctx context.Context, d *daemon, sb *sandbox, c *container, with *runtimev1.Resources) error {
	pod := sb.rec.cfg.GetResources()
	if pod.GetMemoryBytes() > 0 && pod.GetCpuMillis() > 0 {
		return nil
	}
	limits := []*runtimev1.Resources{with}
	for _, o := range p.containersOf(sb.rec.ID) {
		if o == c {
			continue
		}
		resp, err := d.containers.Get(o.ctx(ctx), &containersapi.GetContainerRequest{ID: o.id})
		if errdefs.IsNotFound(err) {
			continue
		} else if err != nil {
			return err
		}
		cfg, err := configOf(resp.Container)
		if err != nil {
			return err
		}
		limits = append(limits, cfg.Resources)
	}
	var mem, cpu int64
	for i, r := range limits {
		if i == 0 {
			mem, cpu = r.GetMemoryBytes(), r.GetCpuMillis()
			continue
		}
		mem, cpu = addLimit(mem, r.GetMemoryBytes()), addLimit(cpu, r.GetCpuMillis())
	}
	cg := podCgroupPath(sb.rec.ID)
	if pod.GetMemoryBytes() == 0 {
		if err := p.cgroups.setMemoryLimit(cg, mem); err != nil {
			return err
		}
	}
	if pod.GetCpuMillis() == 0 {
		return p.cgroups.setCPULimit(cg, cpu)
	}
	return nil
}

// addLimit adds two limits, 0 meaning none (so that the sum is none).
func addLimit(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	return a + b
}
