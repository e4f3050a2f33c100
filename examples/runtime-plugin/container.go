package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// container is one container. Its directory holds rootfs/ (a private copy
// of the image) and container.log.
type container struct {
	id, sandboxID string
	config        *runtimev1.ContainerConfig // as given; never modified
	imageDigest   string
	dir           string
	createdAt     int64
	proc          process // what to run, worked out at create
	stopSignal    syscall.Signal
	done          chan struct{} // closed once exit is set

	lifecycle sync.Mutex // serialises Start, Stop and Remove; taken before Runtime.mu

	// Guarded by Runtime.mu.
	state     runtimev1.ContainerState
	startedAt int64
	first     *os.Process // the container's first process, once started
	exit      *runtimev1.ExitStatus
}

// process is what a container runs, in terms of its own root filesystem.
type process struct {
	argv     []string
	env      []string
	dir      string
	uid, gid uint32
}

func (c *container) rootfs() string  { return filepath.Join(c.dir, "rootfs") }
func (c *container) logPath() string { return filepath.Join(c.dir, "container.log") }

// CreateContainer checks the config, unpacks a private root filesystem
// from the image and records the container as CREATED.
func (r *Runtime) CreateContainer(_ context.Context, req *runtimev1.CreateContainerRequest) (*runtimev1.CreateContainerResponse, error) {
	root, err := r.configured()
	if err != nil {
		return nil, err
	}
	cfg := req.GetConfig()
	if cfg == nil {
		return nil, invalid("config", "a container config is required")
	}
	r.mu.Lock()
	sb, err := r.sandboxLocked(req.SandboxId)
	img := r.images[cfg.GetImage()]
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	c := &container{id: newID(), sandboxID: sb.id, config: proto.Clone(cfg).(*runtimev1.ContainerConfig), createdAt: time.Now().UnixNano(),
		done: make(chan struct{}), state: runtimev1.ContainerState_CONTAINER_CREATED}
	if err := c.resolve(img); err != nil {
		return nil, err
	}
	c.imageDigest, c.dir = img.meta.Digest, filepath.Join(root, "containers", c.id)
	if err := prepareRootfs(c.rootfs(), img.rootfsTar, sb.config.Dns); err != nil {
		os.RemoveAll(c.dir)
		return nil, fmt.Errorf("container %s: root filesystem from %s: %w", cfg.Name, cfg.Image, err)
	}
	// Check again under the lock: the sandbox may have been stopped, or
	// a container of the same name made, while we unpacked.
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.checkSandboxFor(c); err != nil {
		os.RemoveAll(c.dir)
		return nil, err
	}
	r.containers[c.id] = c
	return &runtimev1.CreateContainerResponse{Container: c.protoLocked()}, nil
}

// resolve validates c's config against its image and works out the
// process to run. Anything this plugin cannot do faithfully is refused
// here, naming the field, rather than ignored.
func (c *container) resolve(img *image) error {
	cfg := c.config
	switch {
	case cfg.Name == "":
		return invalid("config.name", "a container name is required")
	case img == nil:
		return errdefs.Field(errdefs.ErrNotFound, "config.image", fmt.Sprintf("image %q not found: import it first (ImportImage)", cfg.Image))
	case len(cfg.Mounts) > 0:
		return errdefs.Field(errdefs.ErrNotImplemented, "config.mounts", "the example runtime makes no bind mounts")
	case cfg.ReadOnlyRootfs:
		return errdefs.Field(errdefs.ErrNotImplemented, "config.read_only_rootfs", "the example runtime has no read-only root filesystems (Capabilities.read_only_rootfs is false)")
	case cfg.Tty:
		return errdefs.Field(errdefs.ErrNotImplemented, "config.tty", "the example runtime attaches no terminal")
	case cfg.Stdin:
		return errdefs.Field(errdefs.ErrNotImplemented, "config.stdin", "the example runtime attaches no stdin")
	}
	// A working directory under /proc could reach the runtime's own file
	// descriptors (CVE-2024-21626); a relative one means nothing.
	if wd := cfg.WorkingDir; wd != "" && (!path.IsAbs(wd) || path.Clean(wd) == "/proc" || strings.HasPrefix(path.Clean(wd), "/proc/")) {
		return invalid("config.working_dir", fmt.Sprintf("%q: want an absolute path outside /proc", wd))
	}
	if err := noResources("config.resources", cfg.Resources); err != nil {
		return err
	}
	if n := cfg.LogMaxBytes; n != 0 && n < minLogMax {
		return invalid("config.log_max_bytes", fmt.Sprintf("%d: want 0 (the default, %d) or at least %d", n, defaultLogMax, minLogMax))
	}
	var err error
	if c.stopSignal, err = parseSignal("config.stop_signal", cfg.StopSignal, syscall.SIGTERM); err != nil {
		return err
	}
	m := img.meta
	// CRI's rule: command replaces the entrypoint, args replace cmd.
	argv, args := m.Entrypoint, m.Cmd
	if len(cfg.Command) > 0 {
		argv, args = cfg.Command, nil
	}
	if len(cfg.Args) > 0 {
		args = cfg.Args
	}
	c.proc.argv = append(slices.Clone(argv), args...)
	if len(c.proc.argv) == 0 {
		return invalid("config.command", fmt.Sprintf("image %s has no entrypoint or cmd: give a command", cfg.Image))
	}
	// Environment: the image's, then the config's (sorted, for a stable
	// order), which wins.
	env := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, kv := range m.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	maps.Copy(env, cfg.Env)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		c.proc.env = append(c.proc.env, k+"="+env[k])
	}
	c.proc.dir = cmp.Or(cfg.WorkingDir, m.WorkingDir, "/")
	if cfg.HasUser {
		c.proc.uid, c.proc.gid = cfg.Uid, cfg.Gid
	} else if c.proc.uid, c.proc.gid, err = numericUser(m.User); err != nil {
		return err
	}
	return nil
}

// numericUser reads an image's "uid[:gid]". User names would need a look
// into the image's /etc/passwd, which this example leaves out.
func numericUser(u string) (uid, gid uint32, err error) {
	if u == "" || u == "root" {
		return 0, 0, nil
	}
	us, gs, _ := strings.Cut(u, ":")
	gs = cmp.Or(gs, us)
	a, err1 := strconv.ParseUint(us, 10, 32)
	b, err2 := strconv.ParseUint(gs, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, errdefs.Field(errdefs.ErrNotImplemented, "image user", fmt.Sprintf("%q: the example runtime only understands numeric users; set the container's uid and gid", u))
	}
	return uint32(a), uint32(b), nil
}

// checkSandboxFor checks, under mu, that c's sandbox is ready and has no
// other container of c's name.
func (r *Runtime) checkSandboxFor(c *container) error {
	sb, err := r.sandboxLocked(c.sandboxID)
	if err != nil {
		return err
	}
	if !sb.ready {
		return errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("sandbox %s is stopped: no new containers", sb.id))
	}
	for _, o := range r.containers {
		if o.sandboxID == c.sandboxID && o.config.Name == c.config.Name {
			return errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("sandbox %s already has a container named %q (%s)", sb.id, c.config.Name, o.id))
		}
	}
	return nil
}

// lookup returns container id, or NotFound.
func (r *Runtime) lookup(id string) (*container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.containers[id]; ok {
		return c, nil
	}
	return nil, notFound("container", id)
}

// StartContainer starts a CREATED container. A start that fails (no such
// binary, say) leaves the container EXITED with reason StartError.
func (r *Runtime) StartContainer(_ context.Context, req *runtimev1.StartContainerRequest) (*runtimev1.StartContainerResponse, error) {
	c, err := r.lookup(req.Id)
	if err != nil {
		return nil, err
	}
	c.lifecycle.Lock()
	defer c.lifecycle.Unlock()
	r.mu.Lock()
	state, sb := c.state, r.sandboxes[c.sandboxID]
	r.mu.Unlock()
	if state != runtimev1.ContainerState_CONTAINER_CREATED || sb == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("container %s is %v: only a created container of an existing sandbox starts", c.id, state))
	}
	if err := r.launch(c, sb.config); err != nil {
		r.setExit(c, &runtimev1.ExitStatus{ExitCode: 128, Reason: "StartError", Message: err.Error()})
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("start container %s: %v", c.id, err))
	}
	r.log.Info("container started", "container", c.id, "sandbox", c.sandboxID)
	return &runtimev1.StartContainerResponse{}, nil
}

// launch starts c's process and a goroutine that supervises it until it
// exits. It returns once the process runs, or why it could not start.
//
// How the namespaces are made. Go's os/exec can clone the child into new
// namespaces (Cloneflags) and chroot it, but it runs no code of ours
// between the clone and the exec, so it cannot set the hostname inside a
// new uts namespace. Namespaces are per thread, though, and a child is
// cloned from the thread that starts it. So the supervising goroutine
// locks itself to its OS thread, gives that thread a new uts namespace
// with the sandbox's hostname (and joins the sandbox's network namespace,
// if it has one), and starts the child from there. The thread never
// returns to Go's pool: when the goroutine ends, the thread ends with it.
//
// Pdeathsig ties the child to that thread: if the plugin dies, the kernel
// SIGKILLs the container's first process, and with it (it is pid 1 of its
// pid namespace) every process of the container. That is what
// containers_tied_to_plugin means. The thread lives exactly as long as
// the container, since the goroutine waits for it.
func (r *Runtime) launch(c *container, sbc *runtimev1.SandboxConfig) error {
	logw, err := openLog(c.logPath(), cmp.Or(c.config.LogMaxBytes, defaultLogMax))
	if err != nil {
		return err
	}
	clone := uintptr(syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC)
	if sbc.NetnsPath == "" {
		clone |= syscall.CLONE_NEWNET // no network given: only a loopback, down
	}
	cmd := &exec.Cmd{
		// Path is resolved inside the rootfs; Go execs it after chroot.
		Path: lookPath(c.rootfs(), c.proc.argv[0], c.proc.env), Args: c.proc.argv, Env: c.proc.env, Dir: c.proc.dir,
		SysProcAttr: &syscall.SysProcAttr{ // Stdin is left nil: /dev/null
			Chroot:     c.rootfs(),
			Cloneflags: clone,
			// A new mount namespace through unshare rather than clone: then
			// Go also makes its mounts private, so that nothing mounted in
			// the container propagates back to the host.
			Unshareflags: syscall.CLONE_NEWNS,
			// No supplementary groups; uid and gid as configured.
			Credential: &syscall.Credential{Uid: c.proc.uid, Gid: c.proc.gid},
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	hostname := cmp.Or(sbc.Hostname, sbc.Name)
	hostname = hostname[:min(len(hostname), 64)] // the kernel's limit
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, on purpose: see above
		err := enterNamespaces(hostname, sbc.NetnsPath)
		var stdout, stderr io.Reader
		if err == nil {
			// os/exec makes the pipes, and closes them if Start fails.
			stdout, _ = cmd.StdoutPipe() // errors only if Stdout was set
			stderr, _ = cmd.StderrPipe()
			err = cmd.Start()
		}
		if err != nil {
			logw.close()
			started <- err
			return
		}
		var copiers sync.WaitGroup
		copiers.Go(func() { logw.copyLines("stdout", stdout) })
		copiers.Go(func() { logw.copyLines("stderr", stderr) })
		r.mu.Lock()
		c.state, c.first, c.startedAt = runtimev1.ContainerState_CONTAINER_RUNNING, cmd.Process, time.Now().UnixNano()
		r.mu.Unlock()
		started <- nil

		// The copiers reach EOF when no process of the container holds the
		// pipes any more: when its first process has exited, since that
		// takes its whole pid namespace with it. Only then may Wait, which
		// closes the pipes, run; and only then is every line in the log
		// before anyone sees the container as exited.
		copiers.Wait()
		_ = cmd.Wait() // the exit status is in cmd.ProcessState
		logw.close()
		r.setExit(c, exitStatus(cmd.ProcessState))
		r.log.Info("container exited", "container", c.id, "state", cmd.ProcessState.String())
	}()
	return <-started
}

// enterNamespaces moves the calling (locked) thread into a new uts
// namespace with hostname, and into the network namespace at netns.
func enterNamespaces(hostname, netns string) error {
	if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
		return fmt.Errorf("new uts namespace: %w", err)
	}
	if err := unix.Sethostname([]byte(hostname)); err != nil {
		return fmt.Errorf("hostname %q: %w", hostname, err)
	}
	if netns == "" {
		return nil
	}
	fd, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", netns, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("join network namespace %s: %w", netns, err)
	}
	return nil
}

// lookPath finds a bare command name in the PATH of env, inside rootfs,
// and returns its path as the container will see it. Whether it can be
// executed is left to exec, after chroot, where symbolic links resolve
// inside the rootfs. A name it cannot find is returned as it is; the exec
// then fails and the start reports why.
func lookPath(rootfs, name string, env []string) string {
	if strings.Contains(name, "/") {
		return name
	}
	for _, kv := range env {
		if dirs, ok := strings.CutPrefix(kv, "PATH="); ok {
			for _, dir := range filepath.SplitList(dirs) {
				if _, err := os.Lstat(filepath.Join(rootfs, dir, name)); err == nil && path.IsAbs(dir) {
					return path.Join(dir, name)
				}
			}
		}
	}
	return name
}

// exitStatus turns a wait status into the contract's ExitStatus. Killed
// by a signal reads like a shell does: exit code 128+signal.
func exitStatus(ps *os.ProcessState) *runtimev1.ExitStatus {
	st := &runtimev1.ExitStatus{Reason: "Completed"}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		st.Signal = int32(ws.Signal())
		st.ExitCode = 128 + st.Signal
	} else {
		st.ExitCode = int32(ps.ExitCode())
	}
	if st.ExitCode != 0 {
		st.Reason = "Error"
	}
	return st
}

// setExit records how c ended and wakes its waiters.
func (r *Runtime) setExit(c *container, st *runtimev1.ExitStatus) {
	st.FinishedAt = time.Now().UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	c.state, c.exit = runtimev1.ContainerState_CONTAINER_EXITED, st
	close(c.done)
}

// StopContainer sends the stop signal (the request's, else the
// container's, else SIGTERM), waits up to timeout_seconds and then
// SIGKILLs. Stopping a missing or exited container succeeds.
func (r *Runtime) StopContainer(ctx context.Context, req *runtimev1.StopContainerRequest) (*runtimev1.StopContainerResponse, error) {
	sig, err := parseSignal("signal", req.Signal, 0)
	if err != nil {
		return nil, err
	}
	c, err := r.lookup(req.Id)
	if err != nil {
		return &runtimev1.StopContainerResponse{}, nil
	}
	if err := r.stop(ctx, c, time.Duration(max(req.TimeoutSeconds, 0))*time.Second, sig); err != nil {
		return nil, err
	}
	return &runtimev1.StopContainerResponse{}, nil
}

func (r *Runtime) stop(ctx context.Context, c *container, grace time.Duration, sig syscall.Signal) error {
	c.lifecycle.Lock()
	defer c.lifecycle.Unlock()
	return r.stopLocked(ctx, c, grace, sig)
}

// killWait bounds the wait for a SIGKILLed process to be reaped.
const killWait = 10 * time.Second

// stopLocked stops c; the caller holds c.lifecycle. sig 0 is the
// container's stop signal. A container that never started is marked
// exited, so that its waiters return.
func (r *Runtime) stopLocked(ctx context.Context, c *container, grace time.Duration, sig syscall.Signal) error {
	r.mu.Lock()
	state, proc := c.state, c.first
	r.mu.Unlock()
	switch state {
	case runtimev1.ContainerState_CONTAINER_EXITED:
		return nil
	case runtimev1.ContainerState_CONTAINER_CREATED:
		r.setExit(c, &runtimev1.ExitStatus{Reason: "Stopped", Message: "stopped before it was started"})
		return nil
	}
	if sig == 0 {
		sig = c.stopSignal
	}
	// os.Process signals through a pidfd: never a recycled pid. The first
	// process of a pid namespace only gets the signals it handles; SIGKILL
	// from outside always arrives.
	if sig != syscall.SIGKILL && grace > 0 {
		_ = proc.Signal(sig)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	_ = proc.Kill()
	select {
	case <-c.done:
		return nil
	case <-time.After(killWait):
		return errdefs.New(errdefs.ErrUnavailable, fmt.Sprintf("container %s did not exit within %v of SIGKILL", c.id, killWait))
	}
}

// RemoveContainer removes a container and its files: a running one only
// with force (it is killed). Removing a missing container succeeds.
func (r *Runtime) RemoveContainer(ctx context.Context, req *runtimev1.RemoveContainerRequest) (*runtimev1.RemoveContainerResponse, error) {
	c, err := r.lookup(req.Id)
	if err != nil {
		return &runtimev1.RemoveContainerResponse{}, nil
	}
	if err := r.remove(ctx, c, req.Force); err != nil {
		return nil, err
	}
	return &runtimev1.RemoveContainerResponse{}, nil
}

func (r *Runtime) remove(ctx context.Context, c *container, force bool) error {
	c.lifecycle.Lock()
	defer c.lifecycle.Unlock()
	r.mu.Lock()
	running := c.state == runtimev1.ContainerState_CONTAINER_RUNNING
	r.mu.Unlock()
	if running && !force {
		return errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("container %s is running: stop it first or remove it with force", c.id))
	}
	if err := r.stopLocked(ctx, c, 0, syscall.SIGKILL); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.containers, c.id)
	r.mu.Unlock()
	return os.RemoveAll(c.dir) // nothing is mounted there, so this is safe
}

// SignalContainer sends a signal to a running container's first process.
func (r *Runtime) SignalContainer(_ context.Context, req *runtimev1.SignalContainerRequest) (*runtimev1.SignalContainerResponse, error) {
	sig, err := parseSignal("signal", req.Signal, 0)
	if err != nil {
		return nil, err
	}
	if sig == 0 {
		return nil, invalid("signal", "a signal is required")
	}
	c, err := r.lookup(req.Id)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	state, proc := c.state, c.first
	r.mu.Unlock()
	if state != runtimev1.ContainerState_CONTAINER_RUNNING {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("container %s is not running", c.id))
	}
	if err := proc.Signal(sig); err != nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("signal container %s: %v", c.id, err))
	}
	return &runtimev1.SignalContainerResponse{}, nil
}

// parseSignal reads SIGUSR1, USR1 or 10; "" is def.
func parseSignal(field, s string, def syscall.Signal) (syscall.Signal, error) {
	if s == "" {
		return def, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 1 && n <= 64 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, invalid(field, fmt.Sprintf("%q is not a signal (a name like SIGTERM or USR1, or a number 1-64)", s))
}

// WaitContainer blocks until the container has exited (or the caller
// gives up) and returns how it ended.
func (r *Runtime) WaitContainer(ctx context.Context, req *runtimev1.WaitContainerRequest) (*runtimev1.ExitStatus, error) {
	c, err := r.lookup(req.Id)
	if err != nil {
		return nil, err
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return proto.Clone(c.exit).(*runtimev1.ExitStatus), nil
}

// InspectContainer returns a container, or NotFound.
func (r *Runtime) InspectContainer(_ context.Context, req *runtimev1.InspectContainerRequest) (*runtimev1.Container, error) {
	c, err := r.lookup(req.Id)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return c.protoLocked(), nil
}

// ListContainers lists the containers matching the filter, oldest first.
func (r *Runtime) ListContainers(_ context.Context, req *runtimev1.ListContainersRequest) (*runtimev1.ListContainersResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	resp := &runtimev1.ListContainersResponse{}
	for _, c := range r.containers {
		if (req.SandboxId == "" || req.SandboxId == c.sandboxID) && (req.Id == "" || req.Id == c.id) && matchLabels(c.config.Labels, req.Labels) {
			resp.Containers = append(resp.Containers, c.protoLocked())
		}
	}
	slices.SortFunc(resp.Containers, func(a, b *runtimev1.Container) int {
		return cmpCreated(a.CreatedAt, b.CreatedAt, a.Id, b.Id)
	})
	return resp, nil
}

// protoLocked returns the container as the contract's message; the
// caller holds Runtime.mu.
func (c *container) protoLocked() *runtimev1.Container {
	m := &runtimev1.Container{
		Id: c.id, SandboxId: c.sandboxID, Config: proto.Clone(c.config).(*runtimev1.ContainerConfig), State: c.state,
		CreatedAt: c.createdAt, StartedAt: c.startedAt, ImageDigest: c.imageDigest, LogPath: c.logPath(),
	}
	if c.state == runtimev1.ContainerState_CONTAINER_RUNNING {
		m.Pid = int32(c.first.Pid)
	}
	if c.exit != nil {
		m.Exit = proto.Clone(c.exit).(*runtimev1.ExitStatus)
	}
	return m
}
