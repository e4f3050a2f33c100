package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/sandboxconf"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// Labels and extensions of the plugin's containerd containers.
const (
	labelSandbox     = "dev.paddock/sandbox"
	labelName        = "dev.paddock/name"
	labelImageDigest = "dev.paddock/image-digest"
	// labelStartedAt is set (Unix nanoseconds) when StartContainer makes
	// the task: from then on the container is never started again.
	labelStartedAt = "dev.paddock/started-at"
	// labelExit holds an exit the plugin decided (stopped before it
	// started, start error) or saw (the task's), as protojson.
	labelExit = "dev.paddock/exit"
	// labelOOMKillsAtStart is the OOM kill count of the container's
	// cgroup when its task was made: under gVisor the pod's, shared by
	// the sandbox's containers, so that only a kill after the start is
	// the container's.
	labelOOMKillsAtStart = "dev.paddock/oom-kills-at-start"
	extensionConfig      = "dev.paddock/config"
)

// container is the plugin's handle on a containerd container. Its truth
// is in containerd: the container record (config, labels) and its task.
type container struct {
	// mu serialises lifecycle operations (start, stop, remove, update).
	mu                     sync.Mutex
	id, ns, sandboxID, dir string
	removed                bool // guarded by Plugin.mu
}

func (c *container) ctx(ctx context.Context) context.Context { return inNamespace(ctx, c.ns) }

// checkContainerConfig checks a container config before anything is made.
func checkContainerConfig(cfg *runtimev1.ContainerConfig) error {
	if cfg == nil {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config", "a container config is required")
	}
	if cfg.Name == "" || len(cfg.Name) > 253 || strings.ContainsAny(cfg.Name, "/\x00") {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config.name", fmt.Sprintf("%q is not a valid container name (1-253 characters, no slash)", cfg.Name))
	}
	if cfg.Image == "" {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config.image", "an image is required")
	}
	if cfg.Tty || cfg.Stdin {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config.tty", "containers with a terminal or stdin are not supported by the containerd plugin")
	}
	if cfg.WorkingDir != "" {
		if err := safeWorkingDir(cfg.WorkingDir); err != nil {
			return errdefs.Field(errdefs.ErrInvalidArgument, "config.working_dir", err.Error())
		}
	}
	if cfg.LogMaxBytes < 0 || (cfg.LogMaxBytes > 0 && cfg.LogMaxBytes < minLogMaxBytes) {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config.log_max_bytes", fmt.Sprintf("%d is below the minimum %d (0 for the plugin's default)", cfg.LogMaxBytes, minLogMaxBytes))
	}
	if _, err := signalNumber("config.stop_signal", cfg.StopSignal, unix.SIGTERM); err != nil {
		return err
	}
	return sandboxconf.CheckResources("config.resources", cfg.Resources)
}

// signalNumber reads a signal name (SIGUSR1, USR1, usr1, SIGRTMIN+3) or
// number; "" is def. Anything else is InvalidArgument naming field.
func signalNumber(field, s string, def unix.Signal) (unix.Signal, error) {
	if s == "" {
		return def, nil
	}
	name := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	n, err := strconv.Atoi(s)
	switch {
	case err == nil:
	case name == "SIGRTMIN" || name == "SIGRTMAX":
		n, err = map[string]int{"SIGRTMIN": 34, "SIGRTMAX": 64}[name], nil
	case strings.HasPrefix(name, "SIGRTMIN+"):
		n, err = strconv.Atoi(name[len("SIGRTMIN+"):])
		n += 34
	case strings.HasPrefix(name, "SIGRTMAX-"):
		n, err = strconv.Atoi(name[len("SIGRTMAX-"):])
		n = 64 - n
	default:
		n, err = int(unix.SignalNum(name)), nil
	}
	if err != nil || n < 1 || n > 64 {
		return 0, errdefs.Field(errdefs.ErrInvalidArgument, field, fmt.Sprintf("%q is not a signal (a name like SIGTERM or USR1, or a number 1-64)", s))
	}
	return unix.Signal(n), nil
}

// containerCgroup is the cgroupsPath of a container.
func containerCgroup(sandboxID, id string) string { return podCgroupPath(sandboxID) + "/" + id }

// CreateContainer makes a container in a sandbox: the image in the
// tenant's namespace, a snapshot of it, the OCI spec and the containerd
// container. Nothing runs until StartContainer. A container of the same
// name in the sandbox is AlreadyExists.
func (p *Plugin) CreateContainer(ctx context.Context, r *runtimev1.CreateContainerRequest) (*runtimev1.CreateContainerResponse, error) {
	pcfg, d, err := p.configured()
	if err != nil {
		return nil, err
	}
	if err := checkContainerConfig(r.GetConfig()); err != nil {
		return nil, err
	}
	sb, err := p.lookupSandbox(r.SandboxId)
	if err != nil {
		return nil, err
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	p.mu.Lock()
	ready := !sb.removed && sb.rec.Ready
	p.mu.Unlock()
	if !ready {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("sandbox %s is stopped: no new containers", sb.rec.ID))
	}
	cfg := proto.Clone(r.Config).(*runtimev1.ContainerConfig)
	for _, o := range p.containersOf(sb.rec.ID) {
		rec, err := d.containers.Get(o.ctx(ctx), &containersapi.GetContainerRequest{ID: o.id})
		if err == nil && rec.Container.Labels[labelName] == cfg.Name {
			return nil, errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("container %q already exists in sandbox %s as %s", cfg.Name, sb.rec.ID, o.id))
		}
	}
	id := newID()
	c := &container{id: id, ns: sb.rec.Namespace, sandboxID: sb.rec.ID, dir: filepath.Join(p.stateDir, "containers", id)}
	if err := p.makeContainer(ctx, d, pcfg, sb, c, cfg); err != nil {
		if cerr := p.destroy(context.WithoutCancel(ctx), d, c); cerr != nil {
			p.log.Warn("clean up a failed container", "container", id, "err", cerr)
		}
		return nil, err
	}
	p.mu.Lock()
	p.containers[id] = c
	p.mu.Unlock()
	p.log.Info("container created", "sandbox", sb.rec.ID, "container", id, "name", cfg.Name, "image", cfg.Image, "namespace", c.ns)
	v, err := p.inspect(ctx, c)
	if err != nil {
		return nil, err
	}
	return &runtimev1.CreateContainerResponse{Container: v}, nil
}

func (p *Plugin) makeContainer(ctx context.Context, d *daemon, pcfg *Config, sb *sandbox, c *container, cfg *runtimev1.ContainerConfig) error {
	lctx, release, err := d.withLease(ctx, c.ns)
	if err != nil {
		return err
	}
	defer release()
	img, chainID, err := p.imageFor(lctx, d, pcfg, c.ns, cfg.Image)
	if err != nil {
		return err
	}
	spec, err := containerSpec{id: c.id, sandbox: sb.rec, sandboxDir: sb.dir, cfg: cfg, image: img,
		cgroup: containerCgroup(sb.rec.ID, c.id), allowed: pcfg.AllowedMountRoots, cgroups: p.cgroups}.build()
	if err != nil {
		return err
	}
	specAny, err := jsonAny(specTypeURL, spec)
	if err != nil {
		return err
	}
	cfgAny, err := anypb.New(cfg)
	if err != nil {
		return err
	}
	if err := os.Mkdir(c.dir, 0o700); err != nil {
		return fmt.Errorf("container dir: %w", err)
	}
	logMax := cmpOr(cfg.LogMaxBytes, pcfg.LogMaxBytes)
	if err := writeLoggerConfig(c.dir, logMax); err != nil {
		return err
	}
	if _, err := d.snapshots.Prepare(lctx, &snapshotsapi.PrepareSnapshotRequest{Snapshotter: pcfg.Snapshotter, Key: c.id, Parent: chainID}); err != nil {
		return fmt.Errorf("root filesystem of image %q: %w", cfg.Image, err)
	}
	if _, err := d.containers.Create(lctx, &containersapi.CreateContainerRequest{Container: &containersapi.Container{
		ID:          c.id,
		Labels:      map[string]string{labelSandbox: sb.rec.ID, labelName: cfg.Name, labelImageDigest: img.Digest},
		Image:       img.Ref,
		Runtime:     &containersapi.Container_Runtime{Name: sb.rec.Runtime, Options: runtimeOptions(p.stateDir, sb.rec.Runtime)},
		Spec:        specAny,
		Snapshotter: pcfg.Snapshotter,
		SnapshotKey: c.id,
		Extensions:  map[string]*anypb.Any{extensionConfig: cfgAny},
	}}); err != nil {
		return err
	}
	if gVisor(sb.rec.Runtime) {
		if err := p.setGVisorPodLimits(ctx, d, sb, c, cfg.Resources); err != nil {
			return fmt.Errorf("pod cgroup: %w", err)
		}
	}
	return nil
}

func cmpOr(v, def int64) int64 {
	if v != 0 {
		return v
	}
	return def
}

// destroy removes every trace of a container that has no task: the
// containerd container, its snapshot, its cgroup and its directory.
func (p *Plugin) destroy(ctx context.Context, d *daemon, c *container) error {
	p.mu.Lock()
	snapshotter := p.cfg.Snapshotter
	p.mu.Unlock()
	if err := ignoreNotFound(p.deleteContainer(ctx, d, c)); err != nil {
		return err
	}
	if _, err := d.snapshots.Remove(c.ctx(ctx), &snapshotsapi.RemoveSnapshotRequest{Snapshotter: snapshotter, Key: c.id}); ignoreNotFound(err) != nil {
		return fmt.Errorf("remove the snapshot of container %s: %w", c.id, err)
	}
	if err := p.cgroups.remove(containerCgroup(c.sandboxID, c.id)); err != nil {
		return err
	}
	return os.RemoveAll(c.dir)
}

func (p *Plugin) deleteContainer(ctx context.Context, d *daemon, c *container) error {
	_, err := d.containers.Delete(c.ctx(ctx), &containersapi.DeleteContainerRequest{ID: c.id})
	return err
}

// lookupContainer returns container id or NotFound.
func (p *Plugin) lookupContainer(id string) (*container, *daemon, error) {
	_, d, err := p.configured()
	if err != nil {
		return nil, nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.containers[id]
	if !ok || c.removed {
		return nil, nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("container %q not found", id))
	}
	return c, d, nil
}

// ctrState is a container's state as containerd and the plugin's labels
// tell it.
type ctrState struct {
	rec   *containersapi.Container
	cfg   *runtimev1.ContainerConfig
	state runtimev1.ContainerState
	pid   uint32
	exit  *runtimev1.ExitStatus
	// task says a task exists (created, running or stopped).
	task bool
}

// configOf is the ContainerConfig recorded in containerd container rec.
func configOf(rec *containersapi.Container) (*runtimev1.ContainerConfig, error) {
	cfg := &runtimev1.ContainerConfig{}
	if a := rec.Extensions[extensionConfig]; a != nil {
		if err := a.UnmarshalTo(cfg); err != nil {
			return nil, fmt.Errorf("container %s: config: %w", rec.ID, err)
		}
	}
	return cfg, nil
}

// startedAt is when StartContainer made the task; 0 before.
func (st *ctrState) startedAt() int64 {
	n, _ := strconv.ParseInt(st.rec.Labels[labelStartedAt], 10, 64)
	return n
}

// status reads a container's state. A task that stopped has its exit
// recorded in the container's labels, with the OOM kill read from the
// container's cgroup while the task still holds it.
func (p *Plugin) status(ctx context.Context, d *daemon, c *container) (*ctrState, error) {
	resp, err := d.containers.Get(c.ctx(ctx), &containersapi.GetContainerRequest{ID: c.id})
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("container %q not found", c.id))
		}
		return nil, err
	}
	st := &ctrState{rec: resp.Container}
	if st.cfg, err = configOf(st.rec); err != nil {
		return nil, err
	}
	if s, ok := st.rec.Labels[labelExit]; ok {
		st.exit = &runtimev1.ExitStatus{}
		if err := protojson.Unmarshal([]byte(s), st.exit); err == nil {
			st.state = runtimev1.ContainerState_CONTAINER_EXITED
		}
	}
	t, err := d.tasks.Get(c.ctx(ctx), &tasksapi.GetRequest{ContainerID: c.id})
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	if err == nil {
		st.task = true
	}
	if st.state == runtimev1.ContainerState_CONTAINER_EXITED {
		return st, nil
	}
	if err != nil { // no task
		st.state = runtimev1.ContainerState_CONTAINER_CREATED
		if st.startedAt() != 0 {
			st.state = runtimev1.ContainerState_CONTAINER_EXITED
			st.exit = &runtimev1.ExitStatus{ExitCode: 255, FinishedAt: time.Now().UnixNano(), Reason: "Unknown",
				Message: "the container's task is gone from containerd without a recorded exit"}
		}
		return st, nil
	}
	switch t.Process.Status {
	case task.Status_CREATED:
		st.state = runtimev1.ContainerState_CONTAINER_CREATED
	case task.Status_RUNNING, task.Status_PAUSED, task.Status_PAUSING:
		st.state, st.pid = runtimev1.ContainerState_CONTAINER_RUNNING, t.Process.Pid
	case task.Status_STOPPED:
		code, at := t.Process.ExitStatus, t.Process.ExitedAt.AsTime()
		if !at.After(time.Unix(0, 0)) {
			// gVisor's shim reports a task stopped as soon as runsc
			// says so, before it has its exit status (0 until then):
			// the exit is the one its Wait returns.
			wctx, cancel := context.WithTimeout(ctx, killTimeout)
			w, err := d.tasks.Wait(c.ctx(wctx), &tasksapi.WaitRequest{ContainerID: c.id})
			cancel()
			if err != nil {
				// Not known yet: still running as far as the caller can tell.
				st.state, st.pid = runtimev1.ContainerState_CONTAINER_RUNNING, t.Process.Pid
				return st, nil
			}
			code, at = w.ExitStatus, w.ExitedAt.AsTime()
		}
		st.state, st.exit = runtimev1.ContainerState_CONTAINER_EXITED, p.exitOf(c, st.rec, code, at)
		p.recordExit(ctx, d, c, st.exit)
	default:
		st.state = runtimev1.ContainerState_CONTAINER_UNKNOWN
	}
	return st, nil
}

// exitOf describes how the task of c (whose containerd container is rec)
// ended. The shims report a death by signal N as 128+N. It was an OOM
// kill when the OOM killer killed in c's cgroup after the task was made.
// Under gVisor that cgroup is the pod's: the kernel kills the sandbox,
// and with it every process of the pod, and gVisor's shim, whose wait
// for the container fails then, reports gvisorWaitFailed; the container
// was killed (SIGKILL) with its sandbox.
func (p *Plugin) exitOf(c *container, rec *containersapi.Container, code uint32, at time.Time) *runtimev1.ExitStatus {
	oom := p.cgroups.oomKills(p.cgroupOf(c)) > oomKillsAtStart(rec)
	ex := &runtimev1.ExitStatus{FinishedAt: at.UnixNano(), Reason: "Completed"}
	if oom && code == gvisorWaitFailed && gVisor(rec.Runtime.GetName()) {
		code = 128 + uint32(unix.SIGKILL)
		ex.Message = "the kernel's OOM killer killed the pod's gVisor sandbox"
	}
	ex.ExitCode = int32(code)
	if code > 128 && code <= 128+64 {
		ex.Signal = int32(code - 128)
	}
	switch {
	case oom:
		ex.OomKilled, ex.Reason = true, "OOMKilled"
	case code != 0:
		ex.Reason = "Error"
	}
	return ex
}

// oomKillsAtStart is the OOM kill count of a container's cgroup when its
// task was made (0 when not recorded: a cgroup of its own).
func oomKillsAtStart(rec *containersapi.Container) uint64 {
	n, _ := strconv.ParseUint(rec.Labels[labelOOMKillsAtStart], 10, 64)
	return n
}

// recordExit stores ex in the container's labels; from then on it is the
// container's exit whatever happens to its task. Best effort: the task
// keeps the exit until it is deleted.
func (p *Plugin) recordExit(ctx context.Context, d *daemon, c *container, ex *runtimev1.ExitStatus) error {
	b, err := protojson.Marshal(ex)
	if err != nil {
		return err
	}
	return p.setLabel(ctx, d, c, labelExit, string(b))
}

func (p *Plugin) setLabel(ctx context.Context, d *daemon, c *container, key, value string) error {
	_, err := d.containers.Update(c.ctx(ctx), &containersapi.UpdateContainerRequest{
		Container:  &containersapi.Container{ID: c.id, Labels: map[string]string{key: value}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels." + key}},
	})
	if err != nil {
		p.log.Warn("update a container label", "container", c.id, "label", key, "err", err)
	}
	return err
}

// inspect returns the container as the contract's message.
func (p *Plugin) inspect(ctx context.Context, c *container) (*runtimev1.Container, error) {
	_, d, err := p.configured()
	if err != nil {
		return nil, err
	}
	st, err := p.status(ctx, d, c)
	if err != nil {
		return nil, err
	}
	v := &runtimev1.Container{
		Id:          c.id,
		SandboxId:   c.sandboxID,
		Config:      st.cfg,
		State:       st.state,
		CreatedAt:   st.rec.CreatedAt.AsTime().UnixNano(),
		StartedAt:   st.startedAt(),
		Exit:        st.exit,
		ImageDigest: st.rec.Labels[labelImageDigest],
		LogPath:     filepath.Join(c.dir, logFileName),
	}
	if st.state == runtimev1.ContainerState_CONTAINER_RUNNING {
		v.Pid = int32(st.pid)
	}
	return v, nil
}

func sortContainers(cs []*runtimev1.Container) {
	slices.SortFunc(cs, func(a, b *runtimev1.Container) int {
		if a.CreatedAt != b.CreatedAt {
			return int(a.CreatedAt - b.CreatedAt)
		}
		return strings.Compare(a.Id, b.Id)
	})
}

// StartContainer starts a created container: a task with the image's
// snapshot as its root and the plugin's logger on its stdout and stderr.
// A container starts at most once; one whose start fails is EXITED with
// reason StartError.
func (p *Plugin) StartContainer(ctx context.Context, r *runtimev1.StartContainerRequest) (*runtimev1.StartContainerResponse, error) {
	c, d, err := p.lookupContainer(r.Id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := p.status(ctx, d, c)
	if err != nil {
		return nil, err
	}
	if st.state != runtimev1.ContainerState_CONTAINER_CREATED || st.startedAt() != 0 {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("start: container %s was already started (it is %s)", c.id, stateName(st.state)))
	}
	// The start must not be abandoned half-way because the caller gave up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := p.setLabel(ctx, d, c, labelStartedAt, strconv.FormatInt(time.Now().UnixNano(), 10)); err != nil {
		return nil, fmt.Errorf("start container %s: %w", c.id, err)
	}
	if gVisor(st.rec.Runtime.GetName()) {
		if err := p.setLabel(ctx, d, c, labelOOMKillsAtStart, strconv.FormatUint(p.cgroups.oomKills(p.cgroupOf(c)), 10)); err != nil {
			return nil, fmt.Errorf("start container %s: %w", c.id, err)
		}
	}
	if err := p.startTask(ctx, d, c, st.rec); err != nil {
		ex := &runtimev1.ExitStatus{ExitCode: 128, FinishedAt: time.Now().UnixNano(), Reason: "StartError", Message: err.Error()}
		p.recordExit(ctx, d, c, ex)
		if _, derr := d.tasks.Delete(c.ctx(ctx), &tasksapi.DeleteTaskRequest{ContainerID: c.id}); ignoreNotFound(derr) != nil {
			p.log.Warn("delete the task of a failed start", "container", c.id, "err", derr)
		}
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("start container %s: %v", c.id, err))
	}
	p.log.Info("container started", "container", c.id)
	return &runtimev1.StartContainerResponse{}, nil
}

func (p *Plugin) startTask(ctx context.Context, d *daemon, c *container, rec *containersapi.Container) error {
	m, err := d.snapshots.Mounts(c.ctx(ctx), &snapshotsapi.MountsRequest{Snapshotter: rec.Snapshotter, Key: rec.SnapshotKey})
	if err != nil {
		return fmt.Errorf("root filesystem: %w", err)
	}
	req := &tasksapi.CreateTaskRequest{ContainerID: c.id, Rootfs: m.Mounts}
	if gVisor(rec.Runtime.GetName()) {
		// gVisor's shim writes output to FIFOs only.
		if err := p.createTaskLogged(ctx, d, c, req); err != nil {
			return err
		}
	} else {
		out, err := p.loggerURI(c.dir)
		if err != nil {
			return err
		}
		req.Stdout, req.Stderr = out, out
		if _, err := d.tasks.Create(c.ctx(ctx), req); err != nil {
			return err
		}
	}
	_, err = d.tasks.Start(c.ctx(ctx), &tasksapi.StartRequest{ContainerID: c.id})
	return err
}

func stateName(s runtimev1.ContainerState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "CONTAINER_"))
}

// waitExit waits until the container has exited and returns how.
func (p *Plugin) waitExit(ctx context.Context, d *daemon, c *container) (*runtimev1.ExitStatus, error) {
	for {
		st, err := p.status(ctx, d, c)
		if err != nil {
			return nil, err
		}
		if st.exit != nil {
			return st.exit, nil
		}
		if st.task {
			// Blocks until the task exits (or is deleted).
			if _, err := d.tasks.Wait(c.ctx(ctx), &tasksapi.WaitRequest{ContainerID: c.id}); err != nil && !errdefs.IsNotFound(err) {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// StopContainer sends the stop signal (the request's, else the
// container's, else SIGTERM), waits up to the timeout and then kills
// every process of the container. Stopping a missing or exited container
// succeeds.
func (p *Plugin) StopContainer(ctx context.Context, r *runtimev1.StopContainerRequest) (*runtimev1.StopContainerResponse, error) {
	sig, err := signalNumber("signal", r.Signal, 0)
	if err != nil {
		return nil, err
	}
	c, _, err := p.lookupContainer(r.Id)
	if errdefs.IsNotFound(err) {
		return &runtimev1.StopContainerResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := p.stopLocked(ctx, c, time.Duration(max(r.TimeoutSeconds, 0))*time.Second, sig); err != nil {
		return nil, err
	}
	return &runtimev1.StopContainerResponse{}, nil
}

// killTimeout bounds the wait for a killed container to exit.
const killTimeout = 10 * time.Second

// stopLocked stops c (c.mu held); sig 0 is the container's stop signal.
// A container never started is marked exited.
func (p *Plugin) stopLocked(ctx context.Context, c *container, grace time.Duration, sig unix.Signal) error {
	_, d, err := p.configured()
	if err != nil {
		return err
	}
	st, err := p.status(ctx, d, c)
	if errdefs.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if st.exit != nil {
		return nil
	}
	if !st.task {
		return p.recordExit(ctx, d, c, &runtimev1.ExitStatus{FinishedAt: time.Now().UnixNano(), Reason: "Stopped", Message: "stopped before it was started"})
	}
	if sig == 0 {
		sig, _ = signalNumber("config.stop_signal", st.cfg.StopSignal, unix.SIGTERM)
	}
	if sig != unix.SIGKILL {
		if _, err := d.tasks.Kill(c.ctx(ctx), &tasksapi.KillRequest{ContainerID: c.id, Signal: uint32(sig)}); ignoreGone(err) != nil {
			return fmt.Errorf("stop container %s: %w", c.id, err)
		}
		if grace > 0 {
			wctx, cancel := context.WithTimeout(ctx, grace)
			_, err := p.waitExit(wctx, d, c)
			cancel()
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	ctx = context.WithoutCancel(ctx)
	if _, err := d.tasks.Kill(c.ctx(ctx), &tasksapi.KillRequest{ContainerID: c.id, Signal: uint32(unix.SIGKILL), All: true}); ignoreGone(err) != nil {
		return fmt.Errorf("kill container %s: %w", c.id, err)
	}
	wctx, cancel := context.WithTimeout(ctx, killTimeout)
	defer cancel()
	if _, err := p.waitExit(wctx, d, c); err != nil {
		return errdefs.New(errdefs.ErrUnavailable, fmt.Sprintf("container %s did not exit %s after SIGKILL: %v", c.id, killTimeout, err))
	}
	return nil
}

// ignoreGone returns nil for the errors of signalling a process that
// already exited.
func ignoreGone(err error) error {
	if err == nil || errdefs.IsNotFound(err) || strings.Contains(err.Error(), "process already finished") {
		return nil
	}
	return err
}

// RemoveContainer removes a container: a running one only with force (it
// is killed). Removing a missing container succeeds.
func (p *Plugin) RemoveContainer(ctx context.Context, r *runtimev1.RemoveContainerRequest) (*runtimev1.RemoveContainerResponse, error) {
	c, _, err := p.lookupContainer(r.Id)
	if errdefs.IsNotFound(err) {
		return &runtimev1.RemoveContainerResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	if err := p.removeContainer(ctx, c, r.Force); err != nil {
		return nil, err
	}
	return &runtimev1.RemoveContainerResponse{}, nil
}

func (p *Plugin) removeContainer(ctx context.Context, c *container, force bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, d, err := p.configured()
	if err != nil {
		return err
	}
	p.mu.Lock()
	removed := c.removed
	p.mu.Unlock()
	if removed {
		return nil
	}
	st, err := p.status(ctx, d, c)
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if st != nil && st.task && st.exit == nil {
		if !force {
			return errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("container %s is %s: stop it first or remove it with force", c.id, stateName(st.state)))
		}
		if err := p.stopLocked(ctx, c, 0, unix.SIGKILL); err != nil {
			return err
		}
	}
	ctx = context.WithoutCancel(ctx)
	if st != nil && st.task {
		if _, err := d.tasks.Delete(c.ctx(ctx), &tasksapi.DeleteTaskRequest{ContainerID: c.id}); ignoreNotFound(err) != nil {
			return fmt.Errorf("remove container %s: delete its task: %w", c.id, err)
		}
	}
	if err := p.destroy(ctx, d, c); err != nil {
		return fmt.Errorf("remove container %s: %w", c.id, err)
	}
	p.mu.Lock()
	c.removed = true
	delete(p.containers, c.id)
	p.mu.Unlock()
	p.log.Info("container removed", "container", c.id)
	return nil
}

// InspectContainer returns a container.
func (p *Plugin) InspectContainer(ctx context.Context, r *runtimev1.InspectContainerRequest) (*runtimev1.Container, error) {
	c, _, err := p.lookupContainer(r.Id)
	if err != nil {
		return nil, err
	}
	return p.inspect(ctx, c)
}

// ListContainers lists the containers matching the filter (sandbox, id,
// labels).
func (p *Plugin) ListContainers(ctx context.Context, r *runtimev1.ListContainersRequest) (*runtimev1.ListContainersResponse, error) {
	if _, _, err := p.configured(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	var cs []*container
	for _, c := range p.containers {
		if (r.SandboxId == "" || c.sandboxID == r.SandboxId) && (r.Id == "" || c.id == r.Id) {
			cs = append(cs, c)
		}
	}
	p.mu.Unlock()
	resp := &runtimev1.ListContainersResponse{}
	for _, c := range cs {
		v, err := p.inspect(ctx, c)
		if errdefs.IsNotFound(err) {
			continue // removed meanwhile
		} else if err != nil {
			return nil, err
		}
		if matchLabels(v.Config.GetLabels(), r.Labels) {
			resp.Containers = append(resp.Containers, v)
		}
	}
	sortContainers(resp.Containers)
	return resp, nil
}

// WaitContainer blocks until the container has exited and returns how.
func (p *Plugin) WaitContainer(ctx context.Context, r *runtimev1.WaitContainerRequest) (*runtimev1.ExitStatus, error) {
	c, d, err := p.lookupContainer(r.Id)
	if err != nil {
		return nil, err
	}
	return p.waitExit(ctx, d, c)
}

// running returns c's status, FailedPrecondition unless it runs.
func (p *Plugin) running(ctx context.Context, d *daemon, c *container, verb string) (*ctrState, error) {
	st, err := p.status(ctx, d, c)
	if err != nil {
		return nil, err
	}
	if st.state != runtimev1.ContainerState_CONTAINER_RUNNING {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("%s: container %s is %s, not running", verb, c.id, stateName(st.state)))
	}
	return st, nil
}

// SignalContainer sends a signal to the container's init process.
func (p *Plugin) SignalContainer(ctx context.Context, r *runtimev1.SignalContainerRequest) (*runtimev1.SignalContainerResponse, error) {
	if r.Signal == "" {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "signal", "a signal is required")
	}
	sig, err := signalNumber("signal", r.Signal, 0)
	if err != nil {
		return nil, err
	}
	c, d, err := p.lookupContainer(r.Id)
	if err != nil {
		return nil, err
	}
	if _, err := p.running(ctx, d, c, "signal"); err != nil {
		return nil, err
	}
	if _, err := d.tasks.Kill(c.ctx(ctx), &tasksapi.KillRequest{ContainerID: c.id, Signal: uint32(sig)}); err != nil {
		if ignoreGone(err) == nil {
			return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("signal: container %s is not running", c.id))
		}
		return nil, err
	}
	return &runtimev1.SignalContainerResponse{}, nil
}

// UpdateResources changes a running container's limits and records them
// in its config: through its task (the runc shim updates its cgroup) or,
// under gVisor, where the pod cgroup holds the whole sandbox, in the pod
// cgroup (setGVisorPodLimits).
func (p *Plugin) UpdateResources(ctx context.Context, r *runtimev1.UpdateResourcesRequest) (*runtimev1.UpdateResourcesResponse, error) {
	if r.Resources == nil {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "resources", "resources are required")
	}
	if err := sandboxconf.CheckResources("resources", r.Resources); err != nil {
		return nil, err
	}
	c, d, err := p.lookupContainer(r.Id)
	if err != nil {
		return nil, err
	}
	sb, err := p.lookupSandbox(c.sandboxID)
	if err != nil {
		return nil, err
	}
	// The sandbox's lock orders updates of the pod cgroup under gVisor.
	sb.mu.Lock()
	defer sb.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := p.running(ctx, d, c, "update resources")
	if err != nil {
		return nil, err
	}
	if gVisor(st.rec.Runtime.GetName()) {
		if err := p.setGVisorPodLimits(ctx, d, sb, c, r.Resources); err != nil {
			return nil, fmt.Errorf("update resources of container %s: %w", c.id, err)
		}
	} else if err := p.updateTask(ctx, d, c, r.Resources); err != nil {
		return nil, err
	}
	st.cfg.Resources = proto.Clone(r.Resources).(*runtimev1.Resources)
	cfgAny, err := anypb.New(st.cfg)
	if err != nil {
		return nil, err
	}
	if _, err := d.containers.Update(c.ctx(ctx), &containersapi.UpdateContainerRequest{
		Container:  &containersapi.Container{ID: c.id, Extensions: map[string]*anypb.Any{extensionConfig: cfgAny}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"extensions." + extensionConfig}},
	}); err != nil {
		return nil, fmt.Errorf("record the resources of container %s: %w", c.id, err)
	}
	return &runtimev1.UpdateResourcesResponse{}, nil
}

// updateTask changes the limits of c's cgroup through its task.
func (p *Plugin) updateTask(ctx context.Context, d *daemon, c *container, r *runtimev1.Resources) error {
	res := p.cgroups.resources(r)
	res.Devices = nil
	a, err := jsonAny(resourcesTypeURL, res)
	if err != nil {
		return err
	}
	if _, err := d.tasks.Update(c.ctx(ctx), &tasksapi.UpdateTaskRequest{ContainerID: c.id, Resources: a}); err != nil {
		return fmt.Errorf("update resources of container %s: %w", c.id, err)
	}
	return nil
}

// Stats reads a running container's usage from its cgroup: under gVisor
// the pod's, the whole sandbox's, whose limits are the ones in force.
func (p *Plugin) Stats(ctx context.Context, r *runtimev1.StatsRequest) (*runtimev1.ContainerStats, error) {
	c, d, err := p.lookupContainer(r.Id)
	if err != nil {
		return nil, err
	}
	if _, err := p.running(ctx, d, c, "stats"); err != nil {
		return nil, err
	}
	cpu, mem, limit, pids, err := p.cgroups.usage(p.cgroupOf(c))
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", c.id, err)
	}
	return &runtimev1.ContainerStats{Id: c.id, Timestamp: time.Now().UnixNano(), CpuUsageNanos: cpu,
		MemoryUsageBytes: mem, MemoryLimitBytes: limit, Pids: pids}, nil
}
