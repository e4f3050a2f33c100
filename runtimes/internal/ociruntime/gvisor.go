package ociruntime

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"
	"golang.org/x/sys/unix"
)

// A runsc sandbox is one gVisor sandbox: CreateSandbox starts its root
// container, a pause process (pauseELF) in the pod's network namespace
// and pod cgroup, and every container of the pod joins that sandbox as a
// sub-container (the CRI annotations below), sharing its kernel and its
// network stack. The sandbox's processes (the sentry and the gofers) are
// separate host processes that outlive the plugin.

// The annotations gVisor reads to place a container in a sandbox
// (runsc/specutils/cri.go).
const (
	annotationContainerType = "io.kubernetes.cri.container-type"
	annotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	containerTypeSandbox    = "sandbox"
	containerTypeContainer  = "container"
)

// pauseDir is the sandbox directory's bundle of the root container.
const pauseDir = "pause"

// runscConfigSchema is the JSON Schema of the Runsc flavor's Config.
const runscConfigSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "paddock-runtime-runsc configuration",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "runscPath": {
      "description": "The runsc binary: an absolute path or a name looked up in PATH. Default: runsc next to the plugin's binary, else in PATH.",
      "type": "string"
    },
    "platform": {
      "description": "gVisor's platform. Default systrap.",
      "enum": ["systrap", "ptrace"]
    },
    "rootDir": {
      "description": "runsc's own state directory (--root). Default: STATE_DIR/runsc.",
      "type": "string", "pattern": "^/"
    },
    "debugLogDir": {
      "description": "When set, runsc writes debug logs here, one file per command and sandbox process.",
      "type": "string", "pattern": "^/"
    },` + sharedSchemaProperties + `
  }
}`

// runscArgs are runsc's global options for cfg after --root.
func runscArgs(cfg *Config) []string {
	// --oci-seccomp: gVisor applies the spec's seccomp profile inside the
	// sandbox, as runc does on the host.
	args := []string{"--platform", cfg.Platform, "--network", "sandbox", "--oci-seccomp"}
	if cfg.DebugLogDir != "" {
		args = append(args, "--debug", "--debug-log", cfg.DebugLogDir+"/")
	}
	return args
}

// internalPidFile is where runsc exec writes the exec'd process's pid in
// the sandbox, next to pidFile (runsc exec's own host pid).
func internalPidFile(pidFile string) string { return pidFile + ".internal" }

// execKiller returns how to kill an exec'd process. runc's process is a
// host process; runsc's lives in the sandbox, where "runsc kill --pid"
// reaches it (killing runsc exec alone would leave it running).
func (p *Plugin) execKiller(c *container, ep *execProc) func() {
	if p.opts.Flavor != Runsc {
		return ep.killHost
	}
	return func() {
		p.killSandboxProcess(c.rec.ID, internalPidFile(ep.pidFile))
		ep.killHost()
	}
}

// killSandboxProcess SIGKILLs the sandbox process whose pid runsc wrote
// to file, waiting a little for runsc to write it.
func (p *Plugin) killSandboxProcess(containerID, file string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if pid, err := shim.ReadPidFile(file); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := p.runcCmd(ctx, nil, "kill", "--pid", strconv.Itoa(pid), containerID, "KILL"); err != nil {
				p.log.Warn("kill an exec'd process", "container", containerID, "pid", pid, "err", err)
			}
			return
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gvisorSpec places a container's spec in its sandbox. It gets no
// cgroup of its own: its processes are the sandbox's, all in the pod
// cgroup (a cgroup runsc made would hold only the container's gofer and
// keep the pod cgroup from being removed).
func gvisorSpec(s *specs.Spec) {
	s.Annotations[annotationContainerType] = containerTypeContainer
	s.Annotations[annotationSandboxID] = s.Annotations["dev.paddock.sandbox-id"]
	s.Linux.CgroupsPath = ""
}

// pauseELF returns a minimal static x86-64 Linux executable that calls
// pause(2) forever: the root container of a gVisor sandbox, which needs
// no image. It is a 64-byte ELF header, one 56-byte PT_LOAD program
// header and 9 bytes of code (mov eax, 34; syscall; jmp back).
func pauseELF() ([]byte, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("the gVisor sandbox's pause process is built for amd64 only, not %s", runtime.GOARCH)
	}
	const base, hdr = 0x400000, 64 + 56
	code := []byte{0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7}
	size := uint64(hdr + len(code))
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	for _, v := range []any{
		uint16(2), uint16(0x3e), uint32(1), uint64(base + hdr), uint64(64), uint64(0), // type, machine, version, entry, phoff, shoff
		uint32(0), uint16(64), uint16(56), uint16(1), uint16(0), uint16(0), uint16(0), // flags, ehsize, phentsize, phnum, shentsize, shnum, shstrndx
		uint32(1), uint32(5), uint64(0), uint64(base), uint64(base), size, size, uint64(0x1000), // PT_LOAD, R+X, offset, vaddr, paddr, filesz, memsz, align
	} {
		binary.Write(&b, le, v)
	}
	b.Write(code)
	return b.Bytes(), nil
}

// startGVisorSandbox starts the sandbox's root container: the pause
// process, in the pod's network namespace (gVisor's network stack takes
// over its interfaces) and in the pod cgroup, which holds the whole
// sandbox and so carries the pod's limits.
func (p *Plugin) startGVisorSandbox(ctx context.Context, sb *sandbox) error {
	dir := filepath.Join(sb.dir, pauseDir)
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return fmt.Errorf("pause bundle: %w", err)
	}
	elf, err := pauseELF()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "pause"), elf, 0o755); err != nil {
		return fmt.Errorf("pause bundle: %w", err)
	}
	cfg := sb.rec.Config.Msg
	spec := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args:            []string{"/pause"},
			Cwd:             "/",
			Env:             []string{defaultPath},
			NoNewPrivileges: true,
			Capabilities:    &specs.LinuxCapabilities{},
		},
		Root:     &specs.Root{Path: "rootfs", Readonly: true},
		Hostname: sandboxHostname(cfg),
		Annotations: map[string]string{
			annotationContainerType:  containerTypeSandbox,
			annotationSandboxID:      sb.rec.ID,
			"dev.paddock.sandbox-id": sb.rec.ID,
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: podCgroup(sb.rec.ID),
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: sb.rec.NetnsPath},
			},
		},
	}
	if err := shim.WriteJSON(filepath.Join(dir, "config.json"), spec, shim.Buffered); err != nil {
		return fmt.Errorf("pause bundle: %w", err)
	}
	bin, global := p.runtimeCommand()
	logPath := filepath.Join(dir, "runsc.log")
	args := append(global, "--log", logPath, "--log-format", "json",
		"run", "--detach", "--bundle", dir, "--pid-file", filepath.Join(dir, "pid"), sb.rec.ID)
	cmd := exec.CommandContext(context.WithoutCancel(ctx), bin, args...)
	cmd.Dir = dir
	// Its own session: the sandbox outlives the plugin and is not hit by
	// signals meant for it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// The sandbox inherits runsc's stdout and stderr and keeps them: a
	// file, not a pipe that would never close.
	outPath := filepath.Join(dir, "runsc.out")
	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("pause bundle: %w", err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		p.deleteGVisorSandbox(ctx, sb.rec.ID)
		msg, _ := os.ReadFile(outPath)
		return fmt.Errorf("start the gVisor sandbox: %s run: %v: %s", bin, err, truncate(bytes.TrimSpace(msg), 4096))
	}
	return nil
}

// deleteGVisorSandbox kills and removes the gVisor sandbox of sandbox id
// with everything still in it. A sandbox that is gone is not an error.
func (p *Plugin) deleteGVisorSandbox(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if out, err := p.runcCmd(ctx, nil, "delete", "--force", id); err != nil && !runcGone(out) {
		return err
	}
	return nil
}

// raisePodLimits makes the pod cgroup, which holds the whole gVisor
// sandbox, carry its containers' limits where the pod sets none of its
// own: the sum of the limits of its containers (the new one included), as
// long as every one of them has that limit. A container's own limits
// cannot be enforced apart from its pod's: its processes are the
// sandbox's. Pids are left alone: the pod cgroup counts the sentry's host
// threads, not the sandbox's processes.
func (p *Plugin) raisePodLimits(sb *sandboxRecord, cg *cgroupLayout) error {
	var sum *runtimev1.Resources
	for _, c := range p.containersOf(sb.ID) {
		p.mu.Lock()
		r := c.rec.Config.Msg.GetResources()
		p.mu.Unlock()
		if sum == nil {
			sum = &runtimev1.Resources{CpuMillis: r.GetCpuMillis(), MemoryBytes: r.GetMemoryBytes()}
			continue
		}
		sum.CpuMillis = addLimit(sum.CpuMillis, r.GetCpuMillis())
		sum.MemoryBytes = addLimit(sum.MemoryBytes, r.GetMemoryBytes())
	}
	if sum == nil {
		return nil
	}
	pod := sb.Config.Msg.GetResources()
	set := &runtimev1.Resources{}
	if pod.GetCpuMillis() == 0 {
		set.CpuMillis = sum.CpuMillis
	}
	if pod.GetMemoryBytes() == 0 {
		set.MemoryBytes = sum.MemoryBytes
	}
	return cg.setPodLimits(podCgroup(sb.ID), set)
}

// addLimit adds two limits, 0 meaning none (so that the sum is none).
func addLimit(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	return a + b
}

// releaseNullNetns unmounts the empty network namespace runsc pins in
// its root directory for the gofers ("null-netns") once the last sandbox
// but removing (its id) is gone, so that nothing stays mounted in the
// state directory. runsc pins it again when it next needs it.
func (p *Plugin) releaseNullNetns(removing string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range p.sandboxes {
		if id != removing {
			return
		}
	}
	path := filepath.Join(p.runtimeRoot(), "null-netns")
	// Concurrent runsc commands may have stacked several mounts.
	for unix.Unmount(path, unix.MNT_DETACH) == nil {
	}
}

// gvisorStats reads a container's usage from its sandbox ("runsc events
// --stats"): gVisor accounts per container, which the host cgroup, one
// for the whole sandbox, cannot.
func (p *Plugin) gvisorStats(ctx context.Context, id string) (*runtimev1.ContainerStats, error) {
	out, err := p.runcCmd(ctx, nil, "events", "--stats", id)
	if err != nil {
		return nil, err
	}
	// runsc may log before the event: the event is the last line.
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	var ev struct {
		Data struct {
			CPU struct {
				Usage struct {
					Total uint64 `json:"total"`
				} `json:"usage"`
			} `json:"cpu"`
			Memory struct {
				Usage struct {
					Usage uint64 `json:"usage"`
					Limit uint64 `json:"limit"`
				} `json:"usage"`
			} `json:"memory"`
			Pids struct {
				Current uint64 `json:"current"`
			} `json:"pids"`
		} `json:"data"`
	}
	if err := json.Unmarshal(lines[len(lines)-1], &ev); err != nil {
		return nil, fmt.Errorf("runsc events: %w", err)
	}
	return &runtimev1.ContainerStats{
		Id:               id,
		Timestamp:        time.Now().UnixNano(),
		CpuUsageNanos:    ev.Data.CPU.Usage.Total,
		MemoryUsageBytes: ev.Data.Memory.Usage.Usage,
		MemoryLimitBytes: ev.Data.Memory.Usage.Limit,
		Pids:             ev.Data.Pids.Current,
	}, nil
}

// execTTYRunsc runs an exec on a terminal under gVisor: "runsc exec
// --console-socket" (runsc has no --tty) stays the plugin's child and
// exits with the process, so the plugin need not adopt anything (an
// adopting plugin would also inherit the sandboxes runsc starts).
func (p *Plugin) execTTYRunsc(st *execStream, c *container, start *runtimev1.ExecStart, sized bool) error {
	sock, err := newConsoleSocket()
	if err != nil {
		return err
	}
	defer sock.close()
	tmp, err := os.MkdirTemp(c.dir, "exec-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	pidFile := filepath.Join(tmp, "pid")
	bin, args := p.runcExecArgs(c, pidFile, start.Command, "--console-socket", sock.path())
	cmd := exec.Command(bin, args...)
	out := &limitedBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("runsc exec: %w", err)
	}
	exited := make(chan struct{})
	var code int
	var werr error
	go func() {
		defer close(exited)
		werr = cmd.Wait()
		code = cmd.ProcessState.ExitCode()
		if code < 0 {
			code = 255
		}
		sock.l.Close()
	}()
	master, err := sock.receive(30 * time.Second)
	if err != nil {
		cmd.Process.Kill()
		<-exited
		// Like an exec without a terminal: runsc's own message and exit
		// code are the exec's output and result.
		st.writer(false).Write(bytes.ReplaceAll(out.buf.Bytes(), []byte("\n"), []byte("\r\n")))
		return st.finish(func() (int, error) { return code, nil }, func() {}, start.Id, nil)
	}
	wait := func() (int, error) {
		<-exited
		var ee *exec.ExitError
		if werr != nil && !errors.As(werr, &ee) {
			return -1, werr
		}
		return code, nil
	}
	kill := func() { p.killSandboxProcess(c.rec.ID, internalPidFile(pidFile)) }
	return p.streamTTY(st, c, start, sized, master, wait, kill)
}
