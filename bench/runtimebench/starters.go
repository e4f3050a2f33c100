package runtimebench

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
	"syscall"
	"time"

	"github.com/paddock-dev/paddock/plugins/pluginhost"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// sample is one start, timed from just before its first step.
type sample struct {
	// Sandbox is when CreateSandbox returned (pod starts only).
	Sandbox time.Duration
	// Create and Start are when the create and the start step returned
	// (CreateContainer and StartContainer, or runc create and runc
	// start); zero for runc run, which has one step.
	Create, Start time.Duration
	// Marker is when the container's marker arrived: its process runs.
	Marker time.Duration
	// Ready is when the start is done: the process runs and the start
	// step has returned, the later of Start and Marker.
	Ready time.Duration
	// At is the wall-clock time of Ready.
	At time.Time
}

// done completes s given the start's beginning and its marker's arrival.
func (s *sample) done(t0, marker time.Time) {
	s.Marker = marker.Sub(t0)
	s.Ready = max(s.Start, s.Marker)
	s.At = t0.Add(s.Ready)
}

// starter starts containers one way: through the plugin or with bare
// runc. Its methods are safe for concurrent use with different tags.
type starter interface {
	// name is a short name, part of the containers' tags.
	name() string
	// label names the workload in the report.
	label() string
	// start starts a container whose process writes tag, and returns
	// once it has. worker says which concurrent worker asks (it picks
	// the plugin's sandbox).
	start(ctx context.Context, tag string, worker int) (sample, error)
	// remove stops and removes tag's container.
	remove(ctx context.Context, tag string) error
	// removeAll removes every container still there.
	removeAll(ctx context.Context) error
	// cpu returns the CPU time spent so far on this starter's containers,
	// from their start to their removal, and the part of it spent in the
	// plugin process itself (zero for the floors).
	cpu(ctx context.Context) (total, plugin time.Duration, err error)
}

// waitMark waits for a marker that was expected before the start began.
// exited, when not nil, is closed if the container's runner ends first;
// diag describes the container for the error.
func (e *env) waitMark(ctx context.Context, tag string, mark <-chan time.Time, exited <-chan struct{}, t0 time.Time, diag func() string) (time.Time, error) {
	timer := time.NewTimer(e.cfg.StartTimeout)
	defer timer.Stop()
	select {
	case at := <-mark:
		return at, nil
	case <-exited:
		return time.Time{}, fmt.Errorf("container %s ended before its process wrote its marker: %s", tag, diag())
	case <-timer.C:
		return time.Time{}, fmt.Errorf("container %s: no marker %v after the start began: %s", tag, time.Since(t0).Round(time.Millisecond), diag())
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
}

// pluginStarter starts containers through a runtime plugin, as the node
// agent does: CreateContainer then StartContainer in one of the run's
// sandboxes or, for pod starts, CreateSandbox first, each container in a
// pod of its own.
type pluginStarter struct {
	e            *env
	short, title string
	rt           *runtimev1.Client
	info         pluginhost.Info
	// pods makes every start a pod start of the runtime class class,
	// its sandbox created with handler and removed with the container.
	pods           bool
	class, handler string

	mu  sync.Mutex
	ids map[string]started // by tag
	// made is every sandbox a pod start created, removed or not.
	made []string
}

// started is what a start made: its container and, for a pod start, its
// sandbox.
type started struct{ sandbox, container string }

func (p *pluginStarter) name() string { return p.short }

func (p *pluginStarter) label() string { return p.title }

// record notes what tag's start has made so far.
func (p *pluginStarter) record(tag string, s started) {
	p.mu.Lock()
	p.ids[tag] = s
	p.mu.Unlock()
}

func (p *pluginStarter) start(ctx context.Context, tag string, worker int) (sample, error) {
	e := p.e
	var ids started
	mark := e.marks.expect(tag)
	defer e.marks.forget(tag)
	var s sample
	t0 := time.Now()
	if p.pods {
		resp, err := p.rt.CreateSandbox(ctx, &runtimev1.CreateSandboxRequest{Config: &runtimev1.SandboxConfig{
			Name: tag, Tenant: benchTenant, Uid: e.runID + "-" + tag, Hostname: tag, Handler: p.handler,
		}})
		if err != nil {
			return sample{}, fmt.Errorf("CreateSandbox %s: %w", tag, err)
		}
		s.Sandbox = time.Since(t0)
		ids.sandbox = resp.Sandbox.Id
		p.record(tag, ids)
		p.mu.Lock()
		p.made = append(p.made, ids.sandbox)
		p.mu.Unlock()
	} else {
		ids.sandbox = e.sandboxes[worker%len(e.sandboxes)]
	}
	resp, err := p.rt.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: ids.sandbox, Config: e.containerConfig(tag)})
	if err != nil {
		return sample{}, fmt.Errorf("CreateContainer %s: %w", tag, err)
	}
	s.Create = time.Since(t0)
	ids.container = resp.Container.Id
	p.record(tag, ids)
	if _, err := p.rt.StartContainer(ctx, &runtimev1.StartContainerRequest{Id: ids.container}); err != nil {
		return sample{}, fmt.Errorf("StartContainer %s (%s): %w", ids.container, tag, err)
	}
	s.Start = time.Since(t0)
	at, err := e.waitMark(ctx, tag, mark, nil, t0, func() string { return p.describe(ids.container) })
	s.done(t0, at)
	return s, err
}

// cpu is the plugin process's CPU time and that of the children it
// reaped (shims, with the runc processes and containers they reaped),
// after waiting for it to reap the shims of removed containers. Pod
// starts are not counted: gVisor's sandboxes and containerd's shims are
// not the plugin's children.
func (p *pluginStarter) cpu(ctx context.Context) (total, own time.Duration, err error) {
	if p.pods {
		return 0, 0, nil
	}
	pid := p.e.inst.PID()
	if err := awaitReaped(ctx, pid); err != nil {
		return 0, 0, err
	}
	return procCPU(pid)
}

// describe reports a container's state for an error.
func (p *pluginStarter) describe(id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := p.rt.InspectContainer(ctx, &runtimev1.InspectContainerRequest{Id: id})
	if err != nil {
		return "InspectContainer: " + err.Error()
	}
	d := fmt.Sprintf("state %s", c.State)
	if x := c.Exit; x != nil {
		d += fmt.Sprintf(", exit code %d, reason %s %s", x.ExitCode, x.Reason, x.Message)
	}
	return d + ", log " + c.LogPath
}

// remove removes tag's container and, for a pod start, its sandbox.
func (p *pluginStarter) remove(ctx context.Context, tag string) error {
	p.mu.Lock()
	ids, ok := p.ids[tag]
	p.mu.Unlock()
	if !ok {
		return nil
	}
	if ids.container != "" {
		if _, err := p.rt.RemoveContainer(ctx, &runtimev1.RemoveContainerRequest{Id: ids.container, Force: true}); err != nil {
			return fmt.Errorf("RemoveContainer %s (%s): %w", ids.container, tag, err)
		}
	}
	if p.pods {
		if err := removeSandbox(ctx, p.rt, ids.sandbox); err != nil {
			return fmt.Errorf("%w (%s)", err, tag)
		}
	}
	p.mu.Lock()
	delete(p.ids, tag)
	p.mu.Unlock()
	return nil
}

// removeSandbox stops and removes a sandbox.
func removeSandbox(ctx context.Context, rt *runtimev1.Client, id string) error {
	if _, err := rt.StopSandbox(ctx, &runtimev1.StopSandboxRequest{Id: id}); err != nil {
		return fmt.Errorf("StopSandbox %s: %w", id, err)
	}
	if _, err := rt.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{Id: id}); err != nil {
		return fmt.Errorf("RemoveSandbox %s: %w", id, err)
	}
	return nil
}

func (p *pluginStarter) removeAll(ctx context.Context) error {
	if p == nil || p.rt == nil {
		return nil
	}
	p.mu.Lock()
	var tags []string
	for tag := range p.ids {
		tags = append(tags, tag)
	}
	p.mu.Unlock()
	var errs []error
	for _, tag := range tags {
		errs = append(errs, p.remove(ctx, tag))
	}
	return errors.Join(errs...)
}

// floorStarter starts containers with a bare OCI runtime (runc, or runsc
// for the gVisor floor), from bundles that copy the template's, each
// container with its own process and cgroup: with `runc run` in the
// foreground, which stays the container's parent (as the plugin's shim
// does) and deletes it when its process ends, or, when twoStep is set,
// with `runc create` and `runc start`, what the shim runs, the
// container's process then reparented to this process (a child
// subreaper while the bench runs) and reaped by it.
type floorStarter struct {
	e            *env
	short, title string
	bin          string   // runc or runsc
	global       []string // the runtime's options after --root and the log's
	root         string   // the runtime's --root
	twoStep      bool
	// pod makes each container a pod of its own: a network namespace of
	// its own, and for runsc a gVisor sandbox of its own.
	pod bool

	mu      sync.Mutex
	runs    map[string]*floorRun // by tag
	cgroups []string             // every cgroup path a floor container was given
	used    time.Duration        // CPU time of the processes reaped so far
}

// newFloor returns a floor that runs bin with root dir/rootName.
func (e *env) newFloor(short, title, bin, rootName string, global ...string) *floorStarter {
	return &floorStarter{e: e, short: short, title: title, bin: bin, global: global, root: filepath.Join(e.dir, rootName), runs: map[string]*floorRun{}}
}

// floorRun is one floor container.
type floorRun struct {
	id, bundle string
	// proc is runc run, or the container's process for twoStep.
	proc *os.Process
	done chan struct{} // closed when proc has been reaped
}

func (f *floorStarter) name() string { return f.short }

func (f *floorStarter) label() string { return f.title }

// bundle writes tag's bundle: the template's spec with tag's process and
// a cgroup of its own, the root filesystem the template's. A pod floor's
// container also gets a network namespace of its own, and loses the
// annotations that would make runsc join an existing sandbox.
func (f *floorStarter) bundle(tag, id string) (string, error) {
	var spec map[string]any
	if err := json.Unmarshal(f.e.spec, &spec); err != nil {
		return "", err
	}
	proc, ok1 := spec["process"].(map[string]any)
	linux, ok2 := spec["linux"].(map[string]any)
	if !ok1 || !ok2 {
		return "", errors.New("the template's OCI spec has no process or linux section")
	}
	proc["args"] = command(tag)
	linux["cgroupsPath"] = id
	if f.pod {
		namespaces, _ := linux["namespaces"].([]any)
		for _, ns := range namespaces {
			if ns, ok := ns.(map[string]any); ok && ns["type"] == "network" {
				delete(ns, "path")
			}
		}
		annotations, _ := spec["annotations"].(map[string]any)
		for k := range annotations {
			if strings.HasPrefix(k, "io.kubernetes.cri.") {
				delete(annotations, k)
			}
		}
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(f.e.dir, "floor", tag)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	f.mu.Lock()
	f.cgroups = append(f.cgroups, id)
	f.mu.Unlock()
	return dir, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600)
}

// runc returns a command of the floor's runtime with its root and, like
// the plugin's shim, a JSON log in dir.
func (f *floorStarter) runc(dir string, args ...string) *exec.Cmd {
	base := []string{"--root", f.root, "--log", filepath.Join(dir, "runc.log"), "--log-format", "json"}
	cmd := exec.Command(f.bin, slices.Concat(base, f.global, args)...)
	// Its own process group keeps a Ctrl-C at the terminal away from
	// runc and the container; the cleanup stops them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// runRunc runs a short runc command to its end and counts its CPU time.
func (f *floorStarter) runRunc(dir string, args ...string) ([]byte, error) {
	cmd := f.runc(dir, args...)
	out, err := cmd.CombinedOutput()
	f.count(cmd.ProcessState)
	return out, err
}

// count adds the CPU time of a reaped process, its reaped descendants
// included (wait4's rusage).
func (f *floorStarter) count(ps *os.ProcessState) {
	if ps == nil {
		return
	}
	f.mu.Lock()
	f.used += ps.UserTime() + ps.SystemTime()
	f.mu.Unlock()
}

func (f *floorStarter) cpu(context.Context) (time.Duration, time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.used, 0, nil
}

func (f *floorStarter) start(ctx context.Context, tag string, _ int) (sample, error) {
	id := "paddock-bench-" + f.e.runID + "-" + tag
	dir, err := f.bundle(tag, id)
	if err != nil {
		return sample{}, fmt.Errorf("floor bundle %s: %w", tag, err)
	}
	// The container inherits runc's standard output and error: a file,
	// so that nothing waits on a pipe.
	out, err := os.Create(filepath.Join(dir, "runc.out"))
	if err != nil {
		return sample{}, err
	}
	defer out.Close()
	mark := f.e.marks.expect(tag)
	defer f.e.marks.forget(tag)
	run := &floorRun{id: id, bundle: dir, done: make(chan struct{})}
	var s sample
	t0 := time.Now()
	if f.twoStep {
		err = f.createStart(run, out, &s, t0)
	} else {
		err = f.runForeground(run, out)
	}
	if err != nil {
		return sample{}, fmt.Errorf("%s %s: %w: %s", f.label(), tag, err, runcOutput(dir))
	}
	at, err := f.e.waitMark(ctx, tag, mark, run.done, t0, func() string { return runcOutput(dir) })
	s.done(t0, at)
	return s, err
}

// runForeground starts `runc run`; a goroutine reaps it.
func (f *floorStarter) runForeground(run *floorRun, out *os.File) error {
	cmd := f.runc(run.bundle, "run", "--bundle", run.bundle, run.id)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	run.proc = cmd.Process
	f.track(run)
	go func() {
		cmd.Wait()
		f.count(cmd.ProcessState)
		close(run.done)
	}()
	return nil
}

// createStart runs `runc create` and `runc start`, recording when each
// returned in s; a goroutine reaps the container's process.
func (f *floorStarter) createStart(run *floorRun, out *os.File, s *sample, t0 time.Time) error {
	pidFile := filepath.Join(run.bundle, "init.pid")
	create := f.runc(run.bundle, "create", "--bundle", run.bundle, "--pid-file", pidFile, run.id)
	create.Stdout, create.Stderr = out, out
	err := create.Run()
	f.count(create.ProcessState)
	s.Create = time.Since(t0)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("pid file %s: %w", pidFile, err)
	}
	// runc create has exited: the process is this one's child now.
	if run.proc, err = os.FindProcess(pid); err != nil {
		return err
	}
	f.track(run)
	go func() {
		var ru syscall.Rusage
		var ws syscall.WaitStatus
		for {
			_, err := syscall.Wait4(pid, &ws, 0, &ru)
			if err != syscall.EINTR {
				break
			}
		}
		f.mu.Lock()
		f.used += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		f.mu.Unlock()
		close(run.done)
	}()
	if out, err := f.runRunc(run.bundle, "start", run.id); err != nil {
		return fmt.Errorf("runc start: %w: %s", err, bytes.TrimSpace(out))
	}
	s.Start = time.Since(t0)
	return nil
}

func (f *floorStarter) track(run *floorRun) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs[strings.TrimPrefix(run.id, "paddock-bench-"+f.e.runID+"-")] = run
}

// runcOutput returns what runc wrote for an error.
func runcOutput(dir string) string {
	var parts []string
	for _, name := range []string{"runc.out", "runc.log"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil && len(bytes.TrimSpace(b)) > 0 {
			b = bytes.TrimSpace(b)
			parts = append(parts, name+": "+string(b[max(0, len(b)-2000):]))
		}
	}
	if len(parts) == 0 {
		return "runc wrote nothing"
	}
	return strings.Join(parts, "; ")
}

// floorStopTimeout bounds the wait for a killed floor container's runc
// run to exit.
const floorStopTimeout = 10 * time.Second

func (f *floorStarter) remove(ctx context.Context, tag string) error {
	f.mu.Lock()
	run, ok := f.runs[tag]
	f.mu.Unlock()
	if !ok {
		return nil
	}
	var errs []error
	select {
	case <-run.done:
	default:
		// runc kill fails when the container is already gone; then the
		// wait below returns at once.
		_, _ = f.runRunc(run.bundle, "kill", run.id, "KILL")
		select {
		case <-run.done:
		case <-time.After(floorStopTimeout):
			errs = append(errs, fmt.Errorf("%s did not end %v after runc kill; killing it", run.id, floorStopTimeout))
			_ = run.proc.Kill()
			<-run.done
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// runc run deletes the container when its process ends; runc create
	// leaves that to the caller.
	if _, err := os.Stat(filepath.Join(f.root, run.id)); err == nil {
		if out, err := f.runRunc(run.bundle, "delete", "--force", run.id); err != nil {
			errs = append(errs, fmt.Errorf("runc delete %s: %v: %s", run.id, err, bytes.TrimSpace(out)))
		}
	}
	if err := os.RemoveAll(run.bundle); err != nil {
		errs = append(errs, err)
	}
	f.mu.Lock()
	delete(f.runs, tag)
	f.mu.Unlock()
	return errors.Join(errs...)
}

// removeAll removes every container still there, then deletes any the
// runtime still lists under the floor's root (left by a runc run or
// runsc run that was killed).
func (f *floorStarter) removeAll(ctx context.Context) error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	var tags []string
	for tag := range f.runs {
		tags = append(tags, tag)
	}
	f.mu.Unlock()
	var errs []error
	for _, tag := range tags {
		errs = append(errs, f.remove(ctx, tag))
	}
	if _, err := os.Stat(f.root); err != nil {
		return errors.Join(errs...)
	}
	out, err := f.runc(f.e.dir, "list", "--quiet").Output()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("%s list: %w", f.bin, err))...)
	}
	for _, id := range strings.Fields(string(out)) {
		if out, err := f.runRunc(f.e.dir, "delete", "--force", id); err != nil {
			errs = append(errs, fmt.Errorf("%s delete %s: %v: %s", f.bin, id, err, bytes.TrimSpace(out)))
		}
	}
	return errors.Join(errs...)
}

// removeCgroups removes any cgroup of a floor container that runc left
// behind, in every hierarchy: runc resolves the relative cgroupsPath under
// its own cgroup, which is this process's.
func (f *floorStarter) removeCgroups() error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	names := f.cgroups
	f.mu.Unlock()
	if len(names) == 0 {
		return nil
	}
	dirs, err := ownCgroupDirs()
	if err != nil {
		return err
	}
	_, err = removeCgroupDirs(dirs, names)
	return err
}

// removeCgroupDirs removes the cgroups named names below each of parents
// where they exist, and says how many it removed.
func removeCgroupDirs(parents, names []string) (int, error) {
	var errs []error
	removed := 0
	for _, d := range parents {
		for _, n := range names {
			err := os.Remove(filepath.Join(d, n))
			switch {
			case err == nil:
				removed++
			case !errors.Is(err, os.ErrNotExist):
				errs = append(errs, err)
			}
		}
	}
	return removed, errors.Join(errs...)
}

// ownCgroupDirs returns the directories this process's cgroup might be in:
// every cgroup mount joined with every path /proc/self/cgroup lists.
func ownCgroupDirs() ([]string, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	paths := map[string]bool{}
	for line := range strings.Lines(string(own)) {
		if f := strings.SplitN(strings.TrimSpace(line), ":", 3); len(f) == 3 {
			paths[f[2]] = true
		}
	}
	var dirs []string
	for _, m := range mounts {
		for p := range paths {
			dirs = append(dirs, filepath.Join(m, p))
		}
	}
	return dirs, nil
}

// cgroupMounts returns where every cgroup hierarchy (v1 or v2) is
// mounted.
func cgroupMounts() ([]string, error) {
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil, err
	}
	var dirs []string
	for line := range strings.Lines(string(mounts)) {
		f := strings.Fields(line)
		if len(f) >= 3 && (f[2] == "cgroup" || f[2] == "cgroup2") {
			dirs = append(dirs, unescapeMount(f[1]))
		}
	}
	return dirs, nil
}
