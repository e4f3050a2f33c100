package runc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The shim: one process per running container, the parent (subreaper) of
// the container's init. It is the plugin's own binary started as
//
//	paddock-runtime-runc shim DIR
//
// with DIR the container's state directory and fd 3 the write end of a
// pipe on which it reports, in one JSON line (shimReady), whether the
// container started. It runs in a session of its own, so it outlives the
// plugin.

// shimArg is the argument that makes the plugin's binary a shim.
const shimArg = "shim"

// IsShim reports whether a process with arguments args (os.Args) is to run
// as a shim; its main then calls RunShim instead of serving the plugin.
func IsShim(args []string) bool { return len(args) > 1 && args[1] == shimArg }

// shimConfig is containers/ID/shim-config.json: everything the shim needs.
type shimConfig struct {
	ID          string `json:"id"`
	Runc        string `json:"runc"`
	RuncRoot    string `json:"runcRoot"`
	Bundle      string `json:"bundle"`
	LogPath     string `json:"logPath"`
	LogMaxBytes int64  `json:"logMaxBytes"`
	OOMFile     string `json:"oomFile"`
	OOMKey      string `json:"oomKey"`
}

// shimReady is the shim's one report to the plugin.
type shimReady struct {
	Pid       int    `json:"pid,omitempty"`
	StartedAt int64  `json:"startedAt,omitempty"`
	Error     string `json:"error,omitempty"`
}

// outputDrainTimeout bounds the wait for the container's output pipes to
// close after its init exited (a process that escaped into another pid
// namespace could keep them open forever).
const outputDrainTimeout = 2 * time.Second

// RunShim runs the shim with os.Args[2:] as args and returns the process's
// exit code. See IsShim.
func RunShim(args []string) int {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("shim", os.Getpid())
	if len(args) != 1 {
		log.Error("usage: shim CONTAINER_DIR")
		return 2
	}
	dir := args[0]
	ready := os.NewFile(3, "ready")
	report := func(r shimReady) {
		if ready == nil {
			return
		}
		b, _ := json.Marshal(r)
		ready.Write(append(b, '\n'))
		ready.Close()
		ready = nil
	}
	var cfg shimConfig
	if err := readJSON(filepath.Join(dir, shimConfFile), &cfg); err != nil {
		report(shimReady{Error: "shim config: " + err.Error()})
		log.Error("shim config", "err", err)
		return 1
	}
	log = log.With("container", cfg.ID)
	code, err := runShim(log, dir, &cfg, report)
	if err != nil {
		report(shimReady{Error: err.Error()})
		log.Error("shim failed", "err", err)
	}
	return code
}

func runShim(log *slog.Logger, dir string, cfg *shimConfig, report func(shimReady)) (int, error) {
	// The shim's life is the container's: hang-ups and interrupts meant
	// for whoever started it do not end it.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return 1, fmt.Errorf("become a subreaper: %w", err)
	}
	logw, err := openLogWriter(cfg.LogPath, cfg.LogMaxBytes)
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
	copiers.Go(func() { copyStream(logw, "stdout", outR); outR.Close() })
	copiers.Go(func() { copyStream(logw, "stderr", errR); errR.Close() })

	pidFile := filepath.Join(dir, "init.pid")
	runcLog := filepath.Join(dir, runcLogFile)
	runc := func(args ...string) *exec.Cmd {
		base := []string{"--root", cfg.RuncRoot, "--log", runcLog, "--log-format", "json"}
		return exec.Command(cfg.Runc, append(base, args...)...)
	}

	// runc create hands its own stdio to the container: the pipes.
	create := runc("create", "--bundle", cfg.Bundle, "--pid-file", pidFile, cfg.ID)
	create.Stdout, create.Stderr = outW, errW
	create.Dir = dir
	createErr := create.Run()
	outW.Close()
	errW.Close()
	if createErr != nil {
		copiers.Wait()
		return 1, fmt.Errorf("runc create: %s", runcError(runcLog, createErr))
	}
	pid, err := readPidFile(pidFile)
	if err != nil {
		runc("delete", "--force", cfg.ID).Run()
		return 1, fmt.Errorf("runc create: %w", err)
	}
	if out, err := runc("start", cfg.ID).CombinedOutput(); err != nil {
		runc("delete", "--force", cfg.ID).Run()
		return 1, fmt.Errorf("runc start: %s", runcError(runcLog, fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))))
	}
	started := time.Now().UnixNano()
	st := shimState{ShimPid: os.Getpid(), InitPid: pid, StartedAt: started}
	st.ShimStart, _ = procStartTime(os.Getpid())
	st.InitStart, _ = procStartTime(pid)
	if err := writeJSON(filepath.Join(dir, shimFile), &st); err != nil {
		runc("delete", "--force", cfg.ID).Run()
		return 1, fmt.Errorf("write %s: %w", shimFile, err)
	}
	report(shimReady{Pid: pid, StartedAt: started})
	log.Info("container started", "pid", pid)

	status, err := reap(pid)
	ex := exitRecord{FinishedAt: time.Now().UnixNano()}
	switch {
	case err != nil:
		ex.ExitCode, ex.Reason, ex.Message = 255, "Unknown", "the shim lost its container: "+err.Error()
	case status.Signaled():
		ex.Signal = int32(status.Signal())
		ex.ExitCode = 128 + ex.Signal
	default:
		ex.ExitCode = int32(status.ExitStatus())
	}
	if n, err := readKeyed(cfg.OOMFile, cfg.OOMKey); err == nil && n > 0 {
		ex.OOMKilled = true
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
	drained := make(chan struct{})
	go func() { copiers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(outputDrainTimeout):
		log.Warn("container output still open after its exit; closing the log")
	}
	if err := logw.Close(); err != nil {
		log.Warn("container log", "err", err)
	}
	if err := writeJSON(filepath.Join(dir, exitFile), &ex); err != nil {
		return 1, fmt.Errorf("write %s: %w", exitFile, err)
	}
	log.Info("container exited", "exitCode", ex.ExitCode, "signal", ex.Signal, "oomKilled", ex.OOMKilled)
	return 0, nil
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

// readPidFile reads a pid file runc wrote.
func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: malformed %q", path, b)
	}
	return pid, nil
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

// procStartTime returns the start time of process pid (field 22 of
// /proc/PID/stat, in clock ticks since boot): with the pid it names a
// process unambiguously.
func procStartTime(pid int) (uint64, error) {
	_, start, err := procStat(pid)
	return start, err
}

// procStat returns the state letter and start time of process pid.
func procStat(pid int) (byte, uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name is in parentheses and may contain anything.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 || len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat: %w", pid, err)
	}
	return fields[0][0], start, nil
}

// alive reports whether process pid, started at start, still runs (a
// zombie does not).
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	state, s, err := procStat(pid)
	if err != nil {
		return false
	}
	return state != 'Z' && state != 'X' && (start == 0 || s == start)
}

// launchShim starts the shim for the container in dir, calls started
// with its pid and waits for its report. The shim is this process's child until it exits or this
// process does; a goroutine reaps it.
func launchShim(ctx context.Context, shimPath, dir string, started func(pid int)) (shimReady, int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return shimReady{}, 0, err
	}
	defer r.Close()
	logf, err := os.OpenFile(filepath.Join(dir, shimLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		w.Close()
		return shimReady{}, 0, err
	}
	cmd := exec.Command(shimPath, shimArg, dir)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	logf.Close()
	if err != nil {
		return shimReady{}, 0, fmt.Errorf("start the shim %s: %w", shimPath, err)
	}
	pid := cmd.Process.Pid
	go cmd.Wait()
	started(pid)

	// The report arrives when runc create and start are done; the pipe
	// closes without one if the shim dies.
	type result struct {
		ready shimReady
		err   error
	}
	done := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadBytes('\n')
		if err != nil && len(line) == 0 {
			done <- result{err: errors.New("the shim exited without reporting; see " + filepath.Join(dir, shimLogFile))}
			return
		}
		var rd shimReady
		if err := json.Unmarshal(line, &rd); err != nil {
			done <- result{err: fmt.Errorf("the shim's report %q: %w", line, err)}
			return
		}
		done <- result{ready: rd}
	}()
	select {
	case res := <-done:
		return res.ready, pid, res.err
	case <-ctx.Done():
		// The caller gave up; the shim goes on and its outcome is read
		// from its files (shim.json, exit.json) later.
		r.SetReadDeadline(time.Now())
		return shimReady{}, pid, ctx.Err()
	}
}
