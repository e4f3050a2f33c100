package pluginhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin/runner"
	"golang.org/x/sys/unix"
)

// procRunner is go-plugin's runner for a plugin process this host
// starts. It differs from go-plugin's own in three ways that let the
// plugin outlive the host:
//
//   - the plugin's stderr is a log file, not a pipe: a Go plugin writing
//     its log to a pipe whose reader (the host) has died gets SIGPIPE and
//     dies with it. The host tails the file instead.
//   - the plugin runs in its own process group, so a signal to the host's
//     group (a terminal's ^C, a service manager's stop) does not reach it.
//   - it can detach: Wait returns and the stdout reader ends without the
//     process being touched, which ends go-plugin's goroutines for a
//     client the host lets go of.
type procRunner struct {
	path     string
	dir      string
	logFile  *os.File // the plugin's stderr; the host's copy is closed after start
	sockGID  int
	env      []string
	stdoutR  *os.File
	stdout   *atomic.Int64 // counts what the process writes to stdout after its handshake
	exited   chan struct{} // closed once the process has exited and been reaped
	detached chan struct{}

	mu        sync.Mutex
	cmd       *exec.Cmd
	started   bool
	canceled  bool
	pid       int
	startTime uint64
	waitErr   error
	firstLine []byte // what the plugin printed first on stdout: the handshake
	gotLine   bool
	detach1   sync.Once
}

var _ runner.Runner = (*procRunner)(nil)

func newProcRunner(path, dir string, logFile *os.File, stdout *atomic.Int64) *procRunner {
	return &procRunner{
		path:     path,
		dir:      dir,
		logFile:  logFile,
		stdout:   stdout,
		sockGID:  os.Getegid(),
		exited:   make(chan struct{}),
		detached: make(chan struct{}),
	}
}

// prepare takes the environment go-plugin made for the plugin (its
// cookie, AutoMTLS client certificate, socket directory).
func (p *procRunner) prepare(env []string) {
	// The plugin makes its socket group-owned by the host's group with
	// mode 0660 rather than leaving it at the umask's 0755. Setting this
	// through UnixSocketConfig.Group would also open the socket directory
	// to the group (0770); the directory stays 0700.
	p.env = append(env, fmt.Sprintf("PLUGIN_UNIX_SOCKET_GROUP=%d", p.sockGID))
}

func (p *procRunner) Start(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.logFile.Close()
	if p.canceled {
		return context.Canceled
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(p.path)
	cmd.Env = p.env
	cmd.Dir = p.dir
	cmd.Stdout = w
	cmd.Stderr = p.logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return err
	}
	p.cmd, p.started, p.stdoutR, p.pid = cmd, true, r, cmd.Process.Pid
	p.startTime, _, _ = procStat(p.pid)
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(p.exited)
		// Whatever still holds the write end of stdout (a grandchild),
		// the reader ends with the process.
		p.stdoutR.SetReadDeadline(time.Now())
	}()
	return nil
}

func (p *procRunner) Diagnose(context.Context) string { return "" }

func (p *procRunner) Stdout() io.ReadCloser { return &stdoutReader{p: p} }

// Stderr is empty: the host tails the plugin's log file itself, for
// started and reattached plugins alike.
func (p *procRunner) Stderr() io.ReadCloser { return io.NopCloser(strings.NewReader("")) }

func (p *procRunner) Name() string { return p.path }

func (p *procRunner) Wait(context.Context) error {
	select {
	case <-p.exited:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.waitErr
	case <-p.detached:
		return nil
	}
}

// Kill kills the process at once (go-plugin calls it when a graceful
// shutdown did not work). Before the process starts it cancels the start;
// after detach it does nothing.
func (p *procRunner) Kill(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		p.canceled = true
		return nil
	}
	select {
	case <-p.detached:
		return nil
	default:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (p *procRunner) ID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		return ""
	}
	return strconv.Itoa(p.pid)
}

func (p *procRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (p *procRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

// handshake returns the first line the plugin printed.
func (p *procRunner) handshake() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.TrimSpace(string(p.firstLine))
}

// exitStatus describes how the process ended ("exit status 1").
func (p *procRunner) exitStatus() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waitErr == nil {
		return "exit status 0"
	}
	return p.waitErr.Error()
}

// detach lets go of the process without touching it.
func (p *procRunner) detach() {
	p.detach1.Do(func() {
		close(p.detached)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.stdoutR != nil {
			p.stdoutR.SetReadDeadline(time.Now())
		}
	})
}

// release frees the host's end of the process's stdout; go-plugin must be
// done reading it. The process, if it still runs, is reaped whenever it
// exits.
func (p *procRunner) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdoutR != nil {
		p.stdoutR.Close()
	}
}

// stdoutReader reads the plugin's stdout for go-plugin, keeping the first
// line (the handshake, whose last field is the plugin's AutoMTLS
// certificate), counting what follows it (go-plugin drops it) and ending
// at the process's exit or detach.
type stdoutReader struct{ p *procRunner }

func (r *stdoutReader) Read(b []byte) (int, error) {
	n, err := r.p.stdoutR.Read(b)
	if n > 0 {
		r.p.mu.Lock()
		after := n
		if !r.p.gotLine {
			line := b[:n]
			after = 0
			if i := bytes.IndexByte(line, '\n'); i >= 0 {
				line, r.p.gotLine, after = line[:i], true, n-i-1
			}
			if len(r.p.firstLine)+len(line) <= 64<<10 {
				r.p.firstLine = append(r.p.firstLine, line...)
			}
		}
		r.p.mu.Unlock()
		r.p.stdout.Add(int64(after))
	}
	if err != nil && !errors.Is(err, io.EOF) {
		// A deadline (exit, detach) or a closed file: the end.
		err = io.EOF
	}
	return n, err
}

func (r *stdoutReader) Close() error { return nil }

// attachedRunner is go-plugin's runner for a plugin process a previous
// host started: it is not this process's child, so its exit is watched
// through a pidfd (or /proc where pidfds are missing).
type attachedRunner struct {
	pid       int
	startTime uint64
	pidfd     int
	exited    chan struct{}
	detached  chan struct{}
	watchDone chan struct{}
	detach1   sync.Once
}

var _ runner.AttachedRunner = (*attachedRunner)(nil)

// attach returns a runner for the process pid if it is still the process
// that started at startTime.
func attach(pid int, startTime uint64) (*attachedRunner, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	if err != nil {
		fd = -1
	}
	// Checked after opening the pidfd, so that the pidfd is known to
	// refer to the recorded process and not to a later one with its pid.
	if !processAlive(pid, startTime) {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("process %d is gone", pid)
	}
	a := &attachedRunner{
		pid:       pid,
		startTime: startTime,
		pidfd:     fd,
		exited:    make(chan struct{}),
		detached:  make(chan struct{}),
		watchDone: make(chan struct{}),
	}
	go a.watch()
	return a, nil
}

// watch closes a.exited when the process exits, or returns on detach.
func (a *attachedRunner) watch() {
	defer close(a.watchDone)
	const tick = 100 * time.Millisecond
	for {
		if a.pidfd >= 0 {
			fds := []unix.PollFd{{Fd: int32(a.pidfd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, int(tick/time.Millisecond))
			if err != nil && !errors.Is(err, unix.EINTR) {
				a.pidfd = -1 // fall back to /proc below
			} else if n > 0 {
				close(a.exited)
				return
			}
		} else {
			if !processAlive(a.pid, a.startTime) {
				close(a.exited)
				return
			}
			select {
			case <-a.detached:
				return
			case <-time.After(tick):
			}
		}
		select {
		case <-a.detached:
			return
		default:
		}
	}
}

func (a *attachedRunner) Wait(context.Context) error {
	select {
	case <-a.exited:
		return nil
	case <-a.detached:
		return nil
	}
}

// Kill kills the process if it is still the recorded one.
func (a *attachedRunner) Kill(context.Context) error {
	select {
	case <-a.exited:
		return nil
	case <-a.detached:
		return nil
	default:
	}
	if a.pidfd >= 0 {
		if err := unix.PidfdSendSignal(a.pidfd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
		return nil
	}
	if !processAlive(a.pid, a.startTime) {
		return nil
	}
	if err := syscall.Kill(a.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

func (a *attachedRunner) ID() string { return strconv.Itoa(a.pid) }

func (a *attachedRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (a *attachedRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (a *attachedRunner) detach() {
	a.detach1.Do(func() { close(a.detached) })
}

// release stops watching the process and frees the pidfd.
func (a *attachedRunner) release() {
	a.detach()
	<-a.watchDone
	if a.pidfd >= 0 {
		unix.Close(a.pidfd)
		a.pidfd = -1
	}
}

// procStat returns a process's start time (clock ticks after boot) and
// state letter from /proc/PID/stat.
func procStat(pid int) (startTime uint64, state byte, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold anything,
	// so the fields are counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field 22 (starttime) is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return start, f[0][0], nil
}

// processAlive reports whether pid is a live (not zombie) process that
// started at startTime (any start time when startTime is 0).
func processAlive(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	start, state, err := procStat(pid)
	if err != nil || state == 'Z' || state == 'X' || state == 'x' {
		return false
	}
	return startTime == 0 || start == startTime
}
