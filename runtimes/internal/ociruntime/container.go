package ociruntime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"
	"github.com/paddock-dev/paddock/runtimes/internal/sandboxconf"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// container is a container of a sandbox. Its process, once started,
// belongs to its shim; the plugin reads what the shim records.
type container struct {
	// mu serialises the container's lifecycle operations (start, stop,
	// remove, update); readers (inspect, wait, logs) do not take it.
	mu  sync.Mutex
	dir string
	// rec is guarded by Plugin.mu for reading and by mu plus Plugin.mu
	// for writing.
	rec containerRecord
	// ready is false while the container is being created; such a
	// container is invisible. Guarded by Plugin.mu.
	ready bool
	// removed is set, under mu and Plugin.mu, once the container is gone.
	removed bool
	// starting is set while StartContainer waits for the shim. Guarded by
	// Plugin.mu.
	starting bool
	// removing is set, under mu and Plugin.mu, while the container's
	// files are being deleted: it is already invisible.
	removing bool
}

func (c *container) path(name string) string { return filepath.Join(c.dir, name) }

func loadContainer(dir string) (*container, error) {
	c := &container{dir: dir, ready: true}
	if err := shim.ReadJSON(filepath.Join(dir, containerFile), &c.rec); err != nil {
		return nil, err
	}
	if c.rec.Version != recordVersion {
		return nil, fmt.Errorf("record version %d, want %d", c.rec.Version, recordVersion)
	}
	if c.rec.ID != filepath.Base(dir) || c.rec.Config.Msg == nil {
		return nil, errors.New("record does not match its directory")
	}
	return c, nil
}

// lookupContainer returns container id or NotFound.
func (p *Plugin) lookupContainer(id string) (*container, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "the plugin is not configured: call SetConfig with a state_dir first")
	}
	c, ok := p.containers[id]
	if !ok || !c.ready || c.removing {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("container %s not found", jsonString(id)))
	}
	return c, nil
}

// isRemoved reports whether c is gone or going.
func (p *Plugin) isRemoved(c *container) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return c.removed || c.removing
}

// record returns a copy of c's record.
func (p *Plugin) record(c *container) containerRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	rec := c.rec
	rec.Config.Msg = proto.Clone(c.rec.Config.Msg).(*runtimev1.ContainerConfig)
	return rec
}

// validateContainerConfig checks a container config before anything is
// made for it.
func validateContainerConfig(cfg *runtimev1.ContainerConfig) error {
	if cfg == nil {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config", "a container config is required")
	}
	if cfg.Name == "" || len(cfg.Name) > 253 || strings.ContainsAny(cfg.Name, "/\x00") {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config.name", fmt.Sprintf("%q is not a valid container name (1-253 characters, no slash)", cfg.Name))
	}
	if cfg.Image == "" {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config.image", "an image is required")
	}
	if cfg.Tty {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config.tty", "containers with a terminal are not supported by the runc plugin yet")
	}
	if cfg.Stdin {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config.stdin", "containers with stdin are not supported by the runc plugin yet")
	}
	if cfg.WorkingDir != "" {
		if err := checkWorkingDir(cfg.WorkingDir); err != nil {
			return errdefs.Field(errdefs.ErrInvalidArgument, "config.working_dir", err.Error())
		}
	}
	if cfg.LogMaxBytes < 0 || (cfg.LogMaxBytes > 0 && cfg.LogMaxBytes < minLogMaxBytes) {
		return errdefs.Field(errdefs.ErrInvalidArgument, "config.log_max_bytes", fmt.Sprintf("%d is below the minimum %d (0 for the plugin's default)", cfg.LogMaxBytes, minLogMaxBytes))
	}
	if _, err := parseSignal("config.stop_signal", cfg.StopSignal, unix.SIGTERM); err != nil {
		return err
	}
	return sandboxconf.CheckResources("config.resources", cfg.Resources)
}

// CreateContainer makes a container in a sandbox: its root filesystem,
// its OCI bundle and its record. Nothing runs until StartContainer. A
// container of the same name in the sandbox is AlreadyExists.
func (p *Plugin) CreateContainer(ctx context.Context, r *runtimev1.CreateContainerRequest) (*runtimev1.CreateContainerResponse, error) {
	pcfg, err := p.configured()
	if err != nil {
		return nil, err
	}
	if err := validateContainerConfig(r.GetConfig()); err != nil {
		return nil, err
	}
	sb, err := p.lookupSandbox(r.SandboxId)
	if err != nil {
		return nil, err
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.removed {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("sandbox %s not found", jsonString(r.SandboxId)))
	}

	cfg := proto.Clone(r.Config).(*runtimev1.ContainerConfig)
	id := newID()
	stopSig, _ := parseSignal("config.stop_signal", cfg.StopSignal, unix.SIGTERM)
	logMax := cfg.LogMaxBytes
	if logMax == 0 {
		logMax = pcfg.LogMaxBytes
	}
	c := &container{
		dir: filepath.Join(p.stateDir, "containers", id),
		rec: containerRecord{
			Version:     recordVersion,
			ID:          id,
			SandboxID:   sb.rec.ID,
			CreatedAt:   time.Now().UnixNano(),
			Cgroup:      containerCgroup(sb.rec.ID, id),
			StopSignal:  int(stopSig),
			LogMaxBytes: logMax,
		},
	}
	c.rec.Config.Msg = cfg
	c.mu.Lock()
	defer c.mu.Unlock()

	p.mu.Lock()
	if !sb.rec.Ready {
		p.mu.Unlock()
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("sandbox %s is stopped: no new containers", sb.rec.ID))
	}
	for _, o := range p.containers {
		if o.rec.SandboxID == sb.rec.ID && o.rec.Config.Msg.Name == cfg.Name {
			p.mu.Unlock()
			return nil, errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("container %q already exists in sandbox %s as %s", cfg.Name, sb.rec.ID, o.rec.ID))
		}
	}
	p.containers[id] = c
	sbRec := sb.rec
	cg := p.cgroups
	p.mu.Unlock()

	if err := p.makeContainer(ctx, c, &sbRec, sb.dir, pcfg, cg); err != nil {
		p.destroyContainerFiles(context.WithoutCancel(ctx), c)
		p.mu.Lock()
		delete(p.containers, id)
		c.removed = true
		p.mu.Unlock()
		return nil, err
	}
	p.mu.Lock()
	c.ready = true
	p.mu.Unlock()
	p.log.Info("container created", "sandbox", sb.rec.ID, "container", id, "name", cfg.Name, "image", cfg.Image)
	v, err := p.inspect(c)
	if err != nil {
		return nil, err
	}
	return &runtimev1.CreateContainerResponse{Container: v}, nil
}

func (p *Plugin) makeContainer(ctx context.Context, c *container, sb *sandboxRecord, sbDir string, pcfg *Config, cg *cgroupLayout) error {
	cfg := c.rec.Config.Msg
	img, err := p.imageStore().Resolve(ctx, cfg.Image)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return errdefs.Field(errdefs.ErrNotFound, "config.image", fmt.Sprintf("image %q not found: pull or import it first", cfg.Image))
		}
		return fmt.Errorf("image %q: %w", cfg.Image, err)
	}
	c.rec.ImageDigest = img.Digest
	if err := os.Mkdir(c.dir, 0o700); err != nil {
		return fmt.Errorf("container dir: %w", err)
	}
	bundle := c.path(bundleDir)
	if err := os.Mkdir(bundle, 0o700); err != nil {
		return fmt.Errorf("bundle dir: %w", err)
	}
	rootfs, err := p.imageStore().PrepareRootfs(ctx, cfg.Image, c.rec.ID, bundle)
	if err != nil {
		return fmt.Errorf("root filesystem of image %q: %w", cfg.Image, err)
	}
	memsw := false
	if !cg.unified {
		_, err := os.Stat(filepath.Join(cg.dir("memory", "/"), "memory.memsw.limit_in_bytes"))
		memsw = err == nil
	}
	spec, err := buildSpec(specInput{
		id:          c.rec.ID,
		sandbox:     sb,
		sandboxDir:  sbDir,
		cfg:         cfg,
		image:       img,
		rootfs:      rootfs,
		cgroupsPath: c.rec.Cgroup,
		allowed:     pcfg.AllowedMountRoots,
		unified:     cg.unified,
		memsw:       memsw,
	})
	if err != nil {
		return err
	}
	// The bundle's spec and the shim's config are Buffered: they are read
	// only to start the container, which a crash of the machine makes
	// impossible anyway (the overlay root filesystem is a mount). After
	// one, a start of this container fails with a clear error and its
	// removal still works: container.json, the record that removal
	// needs, is Durable.
	oomFile, oomKey := cg.oomFile(c.rec.Cgroup)
	if p.opts.Flavor == Runsc {
		gvisorSpec(spec, sb)
		// The whole sandbox is in the pod cgroup: an OOM kill there is
		// this container's end too.
		oomFile, oomKey = cg.oomFile(podCgroup(sb.ID))
		if err := p.raisePodLimits(sb, cg); err != nil {
			return fmt.Errorf("pod cgroup: %w", err)
		}
	}
	if err := shim.WriteJSON(filepath.Join(bundle, "config.json"), spec, shim.Buffered); err != nil {
		return fmt.Errorf("bundle config: %w", err)
	}
	p.mu.Lock()
	runcPath, runtimeRoot, global := p.runc, p.runtimeRoot(), p.globalArgsLocked()
	p.mu.Unlock()
	sc := shim.Config{
		ID:       c.rec.ID,
		Runc:     runcPath,
		RuncRoot: runtimeRoot,
		// The options after --root ROOT.
		RuntimeArgs: global[2:],
		WaitCommand: p.opts.Flavor == Runsc,
		Bundle:      bundle,
		LogPath:     c.path(logFile),
		LogMaxBytes: c.rec.LogMaxBytes,
		OOMFile:     oomFile,
		OOMKey:      oomKey,
	}
	if err := shim.WriteJSON(c.path(shim.ConfigFile), &sc, shim.Buffered); err != nil {
		return err
	}
	// container.json is how the plugin finds the container, and the files
	// to remove, after any restart: Durable.
	return shim.WriteJSON(c.path(containerFile), &c.rec, shim.Durable)
}

// destroyContainerFiles releases the root filesystem and removes the
// container's directory. Anything still mounted below the directory is
// unmounted first; it refuses to delete through a mount it could not
// remove.
func (p *Plugin) destroyContainerFiles(ctx context.Context, c *container) error {
	var errs []error
	if images := p.imageStore(); images != nil {
		if err := images.ReleaseRootfs(ctx, c.rec.ID, c.path(bundleDir)); err != nil {
			errs = append(errs, fmt.Errorf("release the root filesystem: %w", err))
		}
	}
	mounts, err := mountsUnder(c.dir)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	if mounts, err := mountsUnder(c.dir); err != nil || len(mounts) > 0 {
		return errors.Join(append(errs, fmt.Errorf("%v still mounted below %s; not removing it", mounts, c.dir))...)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// mountsUnder returns the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountPath(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out, nil
}

func (p *Plugin) runcPath() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runc
}

// containerStatus is what the files say about a container now.
type containerStatus struct {
	state runtimev1.ContainerState
	shim  *shim.State
	exit  *shim.Exit
}

// status reads a container's state from its files. When the shim died
// without recording an exit, the container is reported exited (Unknown)
// rather than running forever with nobody to reap it; with persist (the
// caller holds c.mu) that exit is also written to exit.json.
func (p *Plugin) status(c *container, rec *containerRecord, persist bool) containerStatus {
	var st containerStatus
	var ex shim.Exit
	if err := shim.ReadJSON(c.path(shim.ExitFile), &ex); err == nil {
		st.state, st.exit = runtimev1.ContainerState_CONTAINER_EXITED, &ex
		var sh shim.State
		if shim.ReadJSON(c.path(shim.StateFile), &sh) == nil {
			st.shim = &sh
		}
		return st
	}
	if !rec.Started {
		st.state = runtimev1.ContainerState_CONTAINER_CREATED
		return st
	}
	var sh shim.State
	if err := shim.ReadJSON(c.path(shim.StateFile), &sh); err == nil {
		st.shim = &sh
		if (!sh.InitShared && shim.Alive(sh.InitPid, sh.InitStart)) || shim.Alive(sh.ShimPid, sh.ShimStart) {
			st.state = runtimev1.ContainerState_CONTAINER_RUNNING
			return st
		}
	} else {
		// Started, but the shim has not reported yet: starting, unless
		// the shim is gone.
		p.mu.Lock()
		starting := c.starting
		p.mu.Unlock()
		if starting {
			st.state = runtimev1.ContainerState_CONTAINER_CREATED
			return st
		}
		if pid, start, err := readShimPid(c.path(shimPidFile)); err == nil && shim.Alive(pid, start) {
			st.state = runtimev1.ContainerState_CONTAINER_CREATED
			return st
		}
	}
	// Nobody is left to record the exit. Look once more (the shim may
	// have written it just now), then record it ourselves.
	if err := shim.ReadJSON(c.path(shim.ExitFile), &ex); err == nil {
		st.state, st.exit = runtimev1.ContainerState_CONTAINER_EXITED, &ex
		return st
	}
	ex = shim.Exit{ExitCode: 255, FinishedAt: time.Now().UnixNano(), Reason: "Unknown",
		Message: "the container's shim exited without recording how the container ended"}
	if st.shim == nil {
		ex.ExitCode, ex.Reason, ex.Message = 128, "StartError", "the shim exited before the container started; see "+c.path(shim.LogFile)
	}
	// Without c.mu a lifecycle operation (a removal) may be under way:
	// write only if it is free.
	if !persist && c.mu.TryLock() {
		persist = !p.isRemoved(c)
		defer c.mu.Unlock()
	}
	if persist {
		if err := shim.WriteJSON(c.path(shim.ExitFile), &ex, shim.Durable); err != nil {
			p.log.Warn("record a lost exit", "container", rec.ID, "err", err)
		}
	}
	st.state, st.exit = runtimev1.ContainerState_CONTAINER_EXITED, &ex
	return st
}

// readShimPid reads the "PID START" the plugin wrote after launching a
// shim.
func readShimPid(path string) (int, uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("malformed %s", path)
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("malformed %s", path)
	}
	return pid, start, nil
}

// inspect returns the container as the contract's message.
func (p *Plugin) inspect(c *container) (*runtimev1.Container, error) {
	p.mu.Lock()
	if c.removed || c.removing || !c.ready {
		p.mu.Unlock()
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("container %s not found", c.rec.ID))
	}
	p.mu.Unlock()
	rec := p.record(c)
	st := p.status(c, &rec, false)
	v := &runtimev1.Container{
		Id:          rec.ID,
		SandboxId:   rec.SandboxID,
		Config:      rec.Config.Msg,
		State:       st.state,
		CreatedAt:   rec.CreatedAt,
		ImageDigest: rec.ImageDigest,
		LogPath:     c.path(logFile),
		Exit:        exitStatus(st.exit),
	}
	if st.shim != nil {
		v.StartedAt = st.shim.StartedAt
		if st.state == runtimev1.ContainerState_CONTAINER_RUNNING {
			v.Pid = int32(st.shim.InitPid)
		}
	}
	return v, nil
}

func sortContainers(cs []*runtimev1.Container) {
	slices.SortFunc(cs, func(a, b *runtimev1.Container) int {
		if a.CreatedAt != b.CreatedAt {
			return int(min(max(a.CreatedAt-b.CreatedAt, -1), 1))
		}
		return strings.Compare(a.Id, b.Id)
	})
}

// StartContainer starts a created container: a shim runs "runc run
// --detach" and reports. A container that fails to start is EXITED with
// reason StartError and the error is returned; it never stays half
// started.
func (p *Plugin) StartContainer(ctx context.Context, r *runtimev1.StartContainerRequest) (*runtimev1.StartContainerResponse, error) {
	c, err := p.lookupContainer(r.Id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.isRemoved(c) {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("container %s not found", r.Id))
	}
	rec := p.record(c)
	p.mu.Lock()
	sb, ok := p.sandboxes[rec.SandboxID]
	sbReady := ok && sb.rec.Ready
	p.mu.Unlock()
	if !sbReady {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("container %s: its sandbox %s is stopped or gone", r.Id, rec.SandboxID))
	}
	if st := p.status(c, &rec, true); st.state != runtimev1.ContainerState_CONTAINER_CREATED || rec.Started {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("container %s is %s: only a created container can be started", r.Id, stateName(st.state)))
	}
	// The mounts' host paths were checked at create; a path component
	// may have been swapped for a symbolic link since. Check again.
	if err := p.recheckMounts(c); err != nil {
		return nil, err
	}
	// From here on the container counts as started: whatever happens,
	// the files decide its state.
	p.mu.Lock()
	shimCmd := p.shim
	c.rec.Started = true
	c.starting = true
	rec = c.rec
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		c.starting = false
		p.mu.Unlock()
	}()
	// Durable: after any restart, including one after a crash of the
	// machine, a started container must not read as created (and be
	// started a second time); the shim's files say how far it got.
	if err := shim.WriteJSON(c.path(containerFile), &rec, shim.Durable); err != nil {
		p.mu.Lock()
		c.rec.Started = false
		p.mu.Unlock()
		return nil, fmt.Errorf("container %s: %w", r.Id, err)
	}
	// The start must not be abandoned half-way because the caller gave
	// up: bound it by a timeout of its own.
	startCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	ready, _, err := launchShim(startCtx, shimCmd, c.dir, func(pid int) {
		// Another plugin process (after a restart) tells a starting
		// container from a dead start by this file. Buffered: it only
		// matters while the shim runs, and no shim survives a crash of
		// the machine (a missing file then means the same as a dead
		// shim).
		if start, serr := shim.ProcStartTime(pid); serr == nil {
			_ = shim.WriteFileAtomic(c.path(shimPidFile), fmt.Appendf(nil, "%d %d\n", pid, start), 0o600, shim.Buffered)
		}
	})
	if err == nil && ready.Error != "" {
		err = errors.New(ready.Error)
	}
	if err != nil {
		ex := shim.Exit{ExitCode: 128, FinishedAt: time.Now().UnixNano(), Reason: "StartError", Message: err.Error()}
		if werr := shim.WriteJSON(c.path(shim.ExitFile), &ex, shim.Durable); werr != nil {
			p.log.Warn("record a start error", "container", r.Id, "err", werr)
		}
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("start container %s: %v", r.Id, err))
	}
	p.log.Info("container started", "container", r.Id, "pid", ready.Pid)
	return &runtimev1.StartContainerResponse{}, nil
}

// recheckMounts verifies that every bind mount of the bundle still
// resolves to itself inside the allowed roots (or is a sandbox file).
func (p *Plugin) recheckMounts(c *container) error {
	var spec specs.Spec
	if err := shim.ReadJSON(filepath.Join(c.path(bundleDir), "config.json"), &spec); err != nil {
		return fmt.Errorf("container %s: %w", c.rec.ID, err)
	}
	p.mu.Lock()
	roots := resolveRoots(p.cfg.AllowedMountRoots)
	sbDir := filepath.Join(p.stateDir, "sandboxes", c.rec.SandboxID)
	p.mu.Unlock()
	for _, m := range spec.Mounts {
		if m.Type != "bind" || filepath.Dir(m.Source) == sbDir {
			continue
		}
		resolved, err := allowedHostPath(m.Source, roots)
		if err != nil || resolved != m.Source {
			if err == nil {
				err = fmt.Errorf("%s now resolves to %s", m.Source, resolved)
			}
			return errdefs.Field(errdefs.ErrFailedPrecondition, "config.mounts", fmt.Sprintf("mount %s of container %s: %v", m.Destination, c.rec.ID, err))
		}
	}
	return nil
}

func stateName(s runtimev1.ContainerState) string {
	switch s {
	case runtimev1.ContainerState_CONTAINER_CREATED:
		return "created"
	case runtimev1.ContainerState_CONTAINER_RUNNING:
		return "running"
	case runtimev1.ContainerState_CONTAINER_EXITED:
		return "exited"
	}
	return "in an unknown state"
}

// runcCmd runs runc with the plugin's root and returns its combined
// output.
func (p *Plugin) runcCmd(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	bin, global := p.runtimeCommand()
	cmd := exec.CommandContext(ctx, bin, append(global, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", p.opts.Flavor.name(), args[0], err, bytes.TrimSpace(out))
	}
	return out, nil
}

// runcGone reports whether runc's error output says the container is not
// (or no longer) there to act on.
func runcGone(out []byte) bool {
	s := string(out)
	return strings.Contains(s, "does not exist") || strings.Contains(s, "not running") ||
		strings.Contains(s, "container not running") || strings.Contains(s, "process already finished") ||
		strings.Contains(s, "no such process") || strings.Contains(s, "no control socket found")
}

// waitExit polls for the container's exit until ctx ends.
func (p *Plugin) waitExit(ctx context.Context, c *container) (*shim.Exit, error) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if p.isRemoved(c) {
			return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("container %s was removed", c.rec.ID))
		}
		rec := p.record(c)
		if st := p.status(c, &rec, false); st.exit != nil {
			return st.exit, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// StopContainer sends the stop signal (the request's, else the
// container's, else SIGTERM), waits up to the timeout for the container
// to exit and then kills it. Stopping a missing or exited container
// succeeds.
func (p *Plugin) StopContainer(ctx context.Context, r *runtimev1.StopContainerRequest) (*runtimev1.StopContainerResponse, error) {
	sig, err := parseSignal("signal", r.Signal, 0)
	if err != nil {
		return nil, err
	}
	c, err := p.lookupContainer(r.Id)
	if errdefs.IsNotFound(err) {
		return &runtimev1.StopContainerResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.isRemoved(c) {
		return &runtimev1.StopContainerResponse{}, nil
	}
	grace := time.Duration(max(r.TimeoutSeconds, 0)) * time.Second
	if err := p.stopLocked(ctx, c, grace, sig); err != nil {
		return nil, err
	}
	return &runtimev1.StopContainerResponse{}, nil
}

// killTimeout bounds the wait for a SIGKILLed container to be reaped.
const killTimeout = 10 * time.Second

// stopLocked stops c (c.mu held). sig 0 means the container's stop
// signal. A created container that never ran is marked exited.
func (p *Plugin) stopLocked(ctx context.Context, c *container, grace time.Duration, sig unix.Signal) error {
	rec := p.record(c)
	st := p.status(c, &rec, true)
	switch st.state {
	case runtimev1.ContainerState_CONTAINER_EXITED:
		return nil
	case runtimev1.ContainerState_CONTAINER_CREATED:
		if !rec.Started {
			ex := shim.Exit{FinishedAt: time.Now().UnixNano(), Reason: "Stopped", Message: "stopped before it was started"}
			return shim.WriteJSON(c.path(shim.ExitFile), &ex, shim.Durable)
		}
	}
	if sig == 0 {
		sig = unix.Signal(rec.StopSignal)
		if sig == 0 {
			sig = unix.SIGTERM
		}
	}
	if sig != unix.SIGKILL {
		if out, err := p.runcCmd(ctx, nil, "kill", rec.ID, strconv.Itoa(int(sig))); err != nil && !p.runtimeGone(out, rec.SandboxID) {
			return fmt.Errorf("stop container %s: %w", rec.ID, err)
		}
		if grace > 0 {
			wctx, cancel := context.WithTimeout(ctx, grace)
			_, err := p.waitExit(wctx, c)
			cancel()
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	if out, err := p.runcCmd(context.WithoutCancel(ctx), nil, "kill", rec.ID, "KILL"); err != nil && !p.runtimeGone(out, rec.SandboxID) {
		return fmt.Errorf("kill container %s: %w", rec.ID, err)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
	defer cancel()
	if _, err := p.waitExit(wctx, c); err != nil {
		return errdefs.New(errdefs.ErrUnavailable, fmt.Sprintf("container %s did not exit %s after SIGKILL", rec.ID, killTimeout))
	}
	return nil
}

// RemoveContainer removes a container: a running one only with force
// (it is killed). Removing a missing container succeeds.
func (p *Plugin) RemoveContainer(ctx context.Context, r *runtimev1.RemoveContainerRequest) (*runtimev1.RemoveContainerResponse, error) {
	c, err := p.lookupContainer(r.Id)
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
	if p.isRemoved(c) {
		return nil
	}
	rec := p.record(c)
	st := p.status(c, &rec, true)
	if st.state == runtimev1.ContainerState_CONTAINER_RUNNING ||
		(st.state == runtimev1.ContainerState_CONTAINER_CREATED && rec.Started) {
		if !force {
			return errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("container %s is running: stop it first or remove it with force", rec.ID))
		}
		if err := p.stopLocked(ctx, c, 0, unix.SIGKILL); err != nil {
			return err
		}
	}
	if rec.Started {
		if out, err := p.runcCmd(context.WithoutCancel(ctx), nil, "delete", "--force", rec.ID); err != nil && !p.runtimeGone(out, rec.SandboxID) {
			return fmt.Errorf("remove container %s: %w", rec.ID, err)
		}
		// The shim exits right after recording the exit; wait for it so
		// that nothing of the container is left running.
		if st.shim != nil {
			deadline := time.Now().Add(5 * time.Second)
			for shim.Alive(st.shim.ShimPid, st.shim.ShimStart) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if shim.Alive(st.shim.ShimPid, st.shim.ShimStart) {
				unix.Kill(st.shim.ShimPid, unix.SIGKILL)
			}
		}
	}
	// From here on the container is going: readers no longer see it.
	p.mu.Lock()
	c.removing = true
	cg := p.cgroups
	p.mu.Unlock()
	fail := func(err error) error {
		p.mu.Lock()
		c.removing = false
		p.mu.Unlock()
		return fmt.Errorf("remove container %s: %w", rec.ID, err)
	}
	// runc removes the container's cgroup; make sure of it in every
	// hierarchy (a failed create can leave directories behind).
	if err := cg.removeTree(rec.Cgroup); err != nil {
		return fail(err)
	}
	if err := p.destroyContainerFiles(context.WithoutCancel(ctx), c); err != nil {
		return fail(err)
	}
	p.mu.Lock()
	c.removed = true
	delete(p.containers, rec.ID)
	p.mu.Unlock()
	p.log.Info("container removed", "container", rec.ID)
	return nil
}

// InspectContainer returns a container.
func (p *Plugin) InspectContainer(ctx context.Context, r *runtimev1.InspectContainerRequest) (*runtimev1.Container, error) {
	c, err := p.lookupContainer(r.Id)
	if err != nil {
		return nil, err
	}
	return p.inspect(c)
}

// ListContainers lists the containers matching the filter (sandbox, id,
// labels).
func (p *Plugin) ListContainers(ctx context.Context, r *runtimev1.ListContainersRequest) (*runtimev1.ListContainersResponse, error) {
	if _, err := p.configured(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	var cs []*container
	for _, c := range p.containers {
		if !c.ready || c.removing || (r.SandboxId != "" && c.rec.SandboxID != r.SandboxId) || (r.Id != "" && c.rec.ID != r.Id) {
			continue
		}
		if !matchLabels(c.rec.Config.Msg.Labels, r.Labels) {
			continue
		}
		cs = append(cs, c)
	}
	p.mu.Unlock()
	resp := &runtimev1.ListContainersResponse{}
	for _, c := range cs {
		v, err := p.inspect(c)
		if errdefs.IsNotFound(err) {
			continue // removed meanwhile
		} else if err != nil {
			return nil, err
		}
		resp.Containers = append(resp.Containers, v)
	}
	sortContainers(resp.Containers)
	return resp, nil
}

// WaitContainer blocks until the container has exited and returns how.
// Any number of callers may wait.
func (p *Plugin) WaitContainer(ctx context.Context, r *runtimev1.WaitContainerRequest) (*runtimev1.ExitStatus, error) {
	c, err := p.lookupContainer(r.Id)
	if err != nil {
		return nil, err
	}
	ex, err := p.waitExit(ctx, c)
	if err != nil {
		return nil, err
	}
	return exitStatus(ex), nil
}

// running returns c's status and FailedPrecondition unless it runs.
func (p *Plugin) running(c *container, verb string) (containerRecord, containerStatus, error) {
	rec := p.record(c)
	st := p.status(c, &rec, false)
	if st.state != runtimev1.ContainerState_CONTAINER_RUNNING {
		return rec, st, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("%s: container %s is %s, not running", verb, rec.ID, stateName(st.state)))
	}
	return rec, st, nil
}

// SignalContainer sends a signal to the container's init process.
func (p *Plugin) SignalContainer(ctx context.Context, r *runtimev1.SignalContainerRequest) (*runtimev1.SignalContainerResponse, error) {
	if r.Signal == "" {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "signal", "a signal is required")
	}
	sig, err := parseSignal("signal", r.Signal, 0)
	if err != nil {
		return nil, err
	}
	c, err := p.lookupContainer(r.Id)
	if err != nil {
		return nil, err
	}
	rec, _, err := p.running(c, "signal")
	if err != nil {
		return nil, err
	}
	if out, err := p.runcCmd(ctx, nil, "kill", rec.ID, strconv.Itoa(int(sig))); err != nil {
		if p.runtimeGone(out, rec.SandboxID) {
			return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("signal: container %s is not running", rec.ID))
		}
		return nil, err
	}
	return &runtimev1.SignalContainerResponse{}, nil
}

// UpdateResources changes a running container's limits with runc update
// and records them in its config.
func (p *Plugin) UpdateResources(ctx context.Context, r *runtimev1.UpdateResourcesRequest) (*runtimev1.UpdateResourcesResponse, error) {
	if r.Resources == nil {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "resources", "resources are required")
	}
	if err := sandboxconf.CheckResources("resources", r.Resources); err != nil {
		return nil, err
	}
	c, err := p.lookupContainer(r.Id)
	if err != nil {
		return nil, err
	}
	if p.opts.Flavor == Runsc {
		return nil, errdefs.New(errdefs.ErrNotImplemented, "update resources: the runsc plugin does not change a running container's limits; the pod's are set when its sandbox is created")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rec, _, err := p.running(c, "update resources")
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	cg := p.cgroups
	p.mu.Unlock()
	memsw := false
	if !cg.unified {
		_, err := os.Stat(filepath.Join(cg.dir("memory", rec.Cgroup), "memory.memsw.limit_in_bytes"))
		memsw = err == nil
	}
	res := containerResources(r.Resources, cg.unified, memsw)
	res.Devices = nil
	body, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	if out, err := p.runcCmd(ctx, body, "update", "--resources", "-", rec.ID); err != nil {
		if runcGone(out) {
			return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("update resources: container %s is not running", rec.ID))
		}
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("update resources of container %s: %v", rec.ID, err))
	}
	p.mu.Lock()
	c.rec.Config.Msg.Resources = proto.Clone(r.Resources).(*runtimev1.Resources)
	rec = c.rec
	err = shim.WriteJSON(c.path(containerFile), &rec, shim.Durable)
	p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", rec.ID, err)
	}
	return &runtimev1.UpdateResourcesResponse{}, nil
}

// Stats reads a running container's usage from its cgroup.
func (p *Plugin) Stats(ctx context.Context, r *runtimev1.StatsRequest) (*runtimev1.ContainerStats, error) {
	c, err := p.lookupContainer(r.Id)
	if err != nil {
		return nil, err
	}
	rec, _, err := p.running(c, "stats")
	if err != nil {
		return nil, err
	}
	if p.opts.Flavor == Runsc {
		st, err := p.gvisorStats(ctx, rec.ID)
		if err != nil {
			return nil, fmt.Errorf("stats of container %s: %w", rec.ID, err)
		}
		return st, nil
	}
	p.mu.Lock()
	cg := p.cgroups
	p.mu.Unlock()
	cpu, mem, limit, pids, err := cg.stats(rec.Cgroup)
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", rec.ID, err)
	}
	return &runtimev1.ContainerStats{
		Id:               rec.ID,
		Timestamp:        time.Now().UnixNano(),
		CpuUsageNanos:    cpu,
		MemoryUsageBytes: mem,
		MemoryLimitBytes: limit,
		Pids:             pids,
	}, nil
}
