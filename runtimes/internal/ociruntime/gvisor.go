package ociruntime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/gvisorpod"
	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"
	"github.com/paddock-dev/paddock/runtimes/internal/sandboxconf"
	"golang.org/x/sys/unix"
)

// A runsc sandbox is one gVisor sandbox: CreateSandbox starts its root
// container, a pause process (runtimes/internal/gvisorpod) in the pod's network namespace
// and pod cgroup, and every container of the pod joins that sandbox as a
// sub-container (the CRI annotations below), sharing its kernel and its
// network stack. The sandbox's processes (the sentry and the gofers) are
// separate host processes that outlive the plugin.

// The host tasks of a gVisor sandbox, for its pod cgroup's pids limit
// (hostPidsLimit): room for what a sandbox with several containers uses
// by itself (the sentry's and the gofers' threads), and for what each
// process in it may add (the systrap platform's stub threads). Measured
// with systrap on 2 cores: ~19 for an idle sandbox, ~16 more for its
// first container, 182 with 64 processes in it (TestForkBomb).
const (
	sandboxHostTasks    = 256
	hostTasksPerProcess = 4
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
func gvisorSpec(s *specs.Spec, sb *sandboxRecord) {
	gvisorpod.JoinSandbox(s, sb.ID)
	s.Linux.CgroupsPath = ""
	s.Process.Rlimits = sandboxRlimits(sb.Config.Msg.GetResources())
}

// sandboxRlimits are the resource limits of every process of a gVisor
// sandbox with the pod resources r: the pod's pids limit as RLIMIT_NPROC.
//
// The pod cgroup on the host cannot hold a pod to its pids limit under
// gVisor: it counts the sandbox's host tasks (the sentry's threads, the
// gofers, the platform's stub processes), not the pod's processes, and
// when it runs out the sentry cannot make the host task a new process
// needs and the whole sandbox dies. gVisor's own cgroupfs pids controller
// cannot be relied on either (this gVisor charges a new task to only one
// of the task's cgroups, chosen at random). RLIMIT_NPROC is what the
// sentry enforces on every clone: its count is per user id, across the
// whole sandbox (all its containers and execs), and a clone past it fails
// with EAGAIN. Only CAP_SYS_ADMIN or CAP_SYS_RESOURCE would lift it, and
// Paddock's containers get neither; as the limit's soft and hard values
// are the same, no process can raise it. Processes that change to
// another user id are counted against that one's own limit.
func sandboxRlimits(r *runtimev1.Resources) []specs.POSIXRlimit {
	if r.GetPids() <= 0 {
		return nil
	}
	n := uint64(r.GetPids())
	return []specs.POSIXRlimit{{Type: "RLIMIT_NPROC", Hard: n, Soft: n}}
}

// hostPidsLimit is the pids limit of the pod cgroup of a gVisor sandbox
// whose pod's own is pids (0: none): room for the sandbox's host tasks
// when the pod runs pids processes (each may cost a stub thread of the
// platform), so that the limit inside the sandbox (sandboxRlimits) is
// met first and the host's only stops a runaway sentry.
func hostPidsLimit(pids int64) int64 {
	if pids <= 0 {
		return 0
	}
	return sandboxHostTasks + hostTasksPerProcess*pids
}

// startGVisorSandbox starts the sandbox's root container: the pause
// process, in the pod's network namespace (gVisor's network stack takes
// over its interfaces) and in the pod cgroup, which holds the whole
// sandbox and so carries the pod's limits.
func (p *Plugin) startGVisorSandbox(ctx context.Context, sb *sandbox) error {
	dir := filepath.Join(sb.dir, pauseDir)
	if err := gvisorpod.WriteRoot(filepath.Join(dir, "rootfs")); err != nil {
		return err
	}
	cfg := sb.rec.Config.Msg
	spec := gvisorpod.Pause{
		SandboxID: sb.rec.ID, Hostname: sandboxconf.Hostname(cfg), NetnsPath: sb.rec.NetnsPath,
		CgroupsPath: podCgroup(sb.rec.ID), Root: "rootfs",
		Rlimits: sandboxRlimits(cfg.GetResources()), // execs run with the root container's limits
	}.Spec()
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
	if out, err := p.runcCmd(ctx, nil, "delete", "--force", id); err != nil && !p.runtimeGone(out, id) {
		return err
	}
	return nil
}

// gvisorSandboxGone reports whether the gVisor sandbox of sandbox id is
// gone: its process (the sentry, whose pid "runsc run" wrote) has exited
// or is not that sandbox's any more. A sandbox whose process the host's
// OOM killer (or anything else) killed is given up to wait to finish
// dying.
func (p *Plugin) gvisorSandboxGone(id string, wait time.Duration) bool {
	pidFile := filepath.Join(p.stateDir, "sandboxes", id, pauseDir, "pid")
	deadline := time.Now().Add(wait)
	for {
		pid, err := shim.ReadPidFile(pidFile)
		if err != nil {
			return true // never started, or removed
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !shim.Alive(pid, 0) || !bytes.Contains(cmdline, []byte(id)) {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runtimeGone reports whether a runtime command that failed with out
// failed because what it acts on is gone: runc's and runsc's own
// messages, or, under gVisor, a sandbox that died (a sub-container's
// commands then fail with an error of the sandbox's control socket).
func (p *Plugin) runtimeGone(out []byte, sandboxID string) bool {
	return runcGone(out) || (p.opts.Flavor == Runsc && p.gvisorSandboxGone(sandboxID, 5*time.Second))
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

// execTTYRunsc runs an exec on a terminal under gVisor. "runsc exec
// --console-socket" without --detach does not make a terminal (only its
// --detach mode does, for a child runsc that the caller would have to
// adopt, and with it the sandboxes runsc starts): the plugin makes the
// terminal itself, a host pseudo-terminal whose replica is runsc exec's
// stdio and controlling terminal, as runsc's --detach mode does. runsc
// exec then hands the replica to the sandbox as the process's terminal
// (its size and modes are the host terminal's), forwards the SIGWINCH a
// resize of the master raises to the process's foreground group, stays
// the plugin's child and exits with the process.
func (p *Plugin) execTTYRunsc(st *execStream, c *container, start *runtimev1.ExecStart, sized bool) error {
	master, replica, err := openPTY()
	if err != nil {
		return fmt.Errorf("exec in container %s with a terminal: %w", start.Id, err)
	}
	// The initial size is the terminal's before the process starts.
	if sized {
		if err := resizePTY(master, start.Width, start.Height); err != nil {
			master.Close()
			replica.Close()
			return fmt.Errorf("exec in container %s with a terminal: %w", start.Id, err)
		}
	}
	ep, err := p.startExec(c, start.Command, execIO{terminal: replica})
	replica.Close() // runsc exec has its copy
	if err != nil {
		master.Close()
		return err
	}
	return p.streamTTY(st, c, start, false, master, ep.wait, ep.kill)
}
