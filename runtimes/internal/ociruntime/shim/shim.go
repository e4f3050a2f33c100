package shim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// outputDrainTimeout bounds the wait for the container's output pipes to
// close after its init exited or its start failed (a process that escaped
// into another pid namespace, or a gVisor sandbox that a sub-container
// failed to start in, could keep them open forever).
const outputDrainTimeout = 2 * time.Second

// Run runs the shim for the container directory args[0], with the report
// pipe on fd 3 and its own log on stderr, and returns the process's exit
// code: 0 once the container's exit is recorded, non-zero when the start
// failed (reported on fd 3) or the exit could not be recorded.
func Run(args []string) int {
	begun := time.Now()
	log := &logger{w: os.Stderr, prefix: fmt.Sprintf("shim=%d", os.Getpid())}
	if len(args) != 1 {
		log.print("ERROR", "usage: paddock-runc-shim CONTAINER_DIR")
		return 2
	}
	dir := args[0]
	ready := os.NewFile(3, "ready")
	report := func(r Ready) {
		if ready == nil {
			return
		}
		b, _ := json.Marshal(r)
		ready.Write(append(b, '\n'))
		ready.Close()
		ready = nil
	}
	var cfg Config
	if err := ReadJSON(filepath.Join(dir, ConfigFile), &cfg); err != nil {
		report(Ready{Error: "shim config: " + err.Error()})
		log.print("ERROR", "shim config", "err", err)
		return 1
	}
	log.prefix += " container=" + cfg.ID
	code, err := run(log, begun, dir, &cfg, report)
	if err != nil {
		report(Ready{Error: err.Error()})
		log.print("ERROR", "shim failed", "err", err)
	}
	return code
}

func run(log *logger, begun time.Time, dir string, cfg *Config, report func(Ready)) (int, error) {
	// The shim's life is the container's: hang-ups and interrupts meant
	// for whoever started it do not end it.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return 1, fmt.Errorf("become a subreaper: %w", err)
	}
	logw, err := OpenLogWriter(cfg.LogPath, cfg.LogMaxBytes)
	if err != nil {
		return 1, fmt.Errorf("open the container log: %w", err)
	}
	defer logw.Close()

	outR, outW, err := os.Pipe()
	if err != nil {
		return 1, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return 1, err
	}
	var copiers sync.WaitGroup
	copiers.Go(func() { CopyStream(logw, "stdout", outR); outR.Close() })
	copiers.Go(func() { CopyStream(logw, "stderr", errR); errR.Close() })

	pidFile := filepath.Join(dir, initPidFile)
	runcLog := filepath.Join(dir, RuncLogFile)
	runc := func(args ...string) *exec.Cmd {
		base := append([]string{"--root", cfg.RuncRoot, "--log", runcLog, "--log-format", "json"}, cfg.RuntimeArgs...)
		cmd := exec.Command(cfg.Runc, append(base, args...)...)
		cmd.Dir = dir
		return cmd
	}

	// One runc call creates and starts the container. Without a terminal,
	// runc hands its own stdout and stderr (the pipes) to the container's
	// process; with --detach it returns once that process runs (or has
	// failed to start, when it removes the container itself), and the
	// process, runc's child, becomes the shim's: the shim is a subreaper.
	// A process that already exited by then is a zombie reparented to
	// the shim, whose status reap still collects.
	// The OOM counter may be shared (a gVisor sandbox's pod cgroup) and
	// count kills from before this container: only a rise is its own.
	oomBefore, _ := ReadKeyed(cfg.OOMFile, cfg.OOMKey)
	runcBegun := time.Now()
	start := runc("run", "--detach", "--bundle", cfg.Bundle, "--pid-file", pidFile, cfg.ID)
	start.Stdout, start.Stderr = outW, errW
	startErr := start.Run()
	runcTook := time.Since(runcBegun)
	outW.Close()
	errW.Close()
	if startErr != nil {
		// runc's message goes to the log. Under runsc the sandbox may
		// keep the failed container's output open: the wait is bounded.
		if !drain(&copiers) {
			log.print("WARN", "container output still open after a failed start")
		}
		runc("delete", "--force", cfg.ID).Run()
		return 1, fmt.Errorf("runc run: %s", runcError(runcLog, startErr))
	}
	pid, err := ReadPidFile(pidFile)
	if err != nil {
		runc("delete", "--force", cfg.ID).Run()
		return 1, fmt.Errorf("runc run: %w", err)
	}
	started := time.Now().UnixNano()
	st := State{ShimPid: os.Getpid(), InitPid: pid, StartedAt: started, InitShared: cfg.WaitCommand}
	st.ShimStart, _ = ProcStartTime(os.Getpid())
	st.InitStart, _ = ProcStartTime(pid)
	// shim.json goes to the page cache before the report, since the
	// plugin reads it as soon as the start returns; it is synced after
	// the report, off the start's path (see syncState).
	statePath := filepath.Join(dir, StateFile)
	if err := WriteJSON(statePath, &st, Buffered); err != nil {
		runc("delete", "--force", cfg.ID).Run()
		return 1, fmt.Errorf("write %s: %w", StateFile, err)
	}
	report(Ready{Pid: pid, StartedAt: started})
	log.print("INFO", "container started", "pid", pid,
		"runcRunMs", ms(runcTook), "setupMs", ms(runcBegun.Sub(begun)), "reportedMs", ms(time.Since(begun)))
	// After a crash of the machine shim.json tells a container that ran
	// (its exit is then Unknown) from one that never started. It is a
	// new file, so a Buffered write synced later is as good as a Durable
	// one once synced.
	if err := SyncFile(statePath); err != nil {
		log.print("WARN", "sync the shim record", "err", err)
	}

	var ex Exit
	if cfg.WaitCommand {
		ex = waitCommand(runc("wait", cfg.ID))
	} else {
		status, err := reap(pid)
		ex = Exit{FinishedAt: time.Now().UnixNano()}
		switch {
		case err != nil:
			ex.ExitCode, ex.Reason, ex.Message = 255, "Unknown", "the shim lost its container: "+err.Error()
		case status.Signaled():
			ex.Signal = int32(status.Signal())
			ex.ExitCode = 128 + ex.Signal
		default:
			ex.ExitCode = int32(status.ExitStatus())
		}
	}
	if n, err := ReadKeyed(cfg.OOMFile, cfg.OOMKey); err == nil && n > oomBefore {
		ex.OOMKilled = true
		if cfg.WaitCommand && ex.Reason == "Unknown" {
			// The kernel's OOM killer took the whole gVisor sandbox.
			ex.ExitCode, ex.Signal, ex.Reason, ex.Message = 137, 9, "", ""
		}
	}
	switch {
	case ex.Reason != "":
	case ex.OOMKilled:
		ex.Reason = "OOMKilled"
	case ex.ExitCode == 0:
		ex.Reason = "Completed"
	default:
		ex.Reason = "Error"
	}

	// Everything the container wrote goes to the log before the exit is
	// published, so that a reader who saw the exit sees all the output.
	if !drain(&copiers) {
		log.print("WARN", "container output still open after its exit; closing the log")
	}
	if err := logw.Close(); err != nil {
		log.print("WARN", "container log", "err", err)
	}
	// The one record of how the container ended: nothing could rebuild
	// it, so it is Durable.
	if err := WriteJSON(filepath.Join(dir, ExitFile), &ex, Durable); err != nil {
		return 1, fmt.Errorf("write %s: %w", ExitFile, err)
	}
	log.print("INFO", "container exited", "exitCode", ex.ExitCode, "signal", ex.Signal, "oomKilled", ex.OOMKilled)
	return 0, nil
}

// drain waits for the output copiers to finish, at most
// outputDrainTimeout, and reports whether they did.
func drain(copiers *sync.WaitGroup) bool {
	drained := make(chan struct{})
	go func() { copiers.Wait(); close(drained) }()
	select {
	case <-drained:
		return true
	case <-time.After(outputDrainTimeout):
		return false
	}
}

// reap waits for the container's init (pid) and returns its status,
// reaping any other process reparented to the shim on the way.
func reap(pid int) (unix.WaitStatus, error) {
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("wait for pid %d: %w", pid, err)
		}
		if wpid == pid {
			return ws, nil
		}
	}
}

// waitCommand runs cmd, "RUNTIME wait ID", and returns the exit it
// prints: {"id":ID,"exitStatus":N}, N being 128+S for a death by signal
// S (the status carries no more).
func waitCommand(cmd *exec.Cmd) Exit {
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	ex := Exit{FinishedAt: time.Now().UnixNano()}
	var res struct {
		ExitStatus *int32 `json:"exitStatus"`
	}
	if err == nil {
		err = json.Unmarshal(out, &res)
	}
	if err == nil && res.ExitStatus == nil {
		err = fmt.Errorf("no exitStatus in %q", out)
	}
	if err != nil {
		ex.ExitCode, ex.Reason = 255, "Unknown"
		ex.Message = "the shim lost its container: wait: " + err.Error() + ": " + strings.TrimSpace(stderr.String())
		return ex
	}
	ex.ExitCode = *res.ExitStatus
	if ex.ExitCode > 128 && ex.ExitCode < 128+65 {
		ex.Signal = ex.ExitCode - 128
	}
	return ex
}

// runcError returns the last error runc logged (JSON lines in logPath),
// or err.
func runcError(logPath string, err error) string {
	f, ferr := os.Open(logPath)
	if ferr != nil {
		return err.Error()
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") && e.Msg != "" {
			last = e.Msg
		}
	}
	if last == "" {
		return err.Error()
	}
	return last
}

// logger writes the shim's log (stderr, which the plugin points at
// shim.log): a text line per event with the time in microseconds, so
// that the steps of a start can be timed from it.
type logger struct {
	w      io.Writer
	prefix string
}

// print writes one line: time, level, the constant message, the prefix
// and the key-value pairs kv.
func (l *logger) print(level, msg string, kv ...any) {
	var b strings.Builder
	b.WriteString(time.Now().UTC().Format("2006-01-02T15:04:05.000000Z"))
	fmt.Fprintf(&b, " %s %q %s", level, msg, l.prefix)
	for i := 0; i+1 < len(kv); i += 2 {
		switch v := kv[i+1].(type) {
		case string:
			fmt.Fprintf(&b, " %s=%q", kv[i], v)
		case error:
			fmt.Fprintf(&b, " %s=%q", kv[i], v.Error())
		default:
			fmt.Fprintf(&b, " %s=%v", kv[i], v)
		}
	}
	b.WriteByte('\n')
	io.WriteString(l.w, b.String())
}

// ms is d in milliseconds, to two decimals, for the log.
func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/10) / 100 }
