package ociruntime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

// maxExecOutput bounds each of an ExecSync's stdout and stderr; the rest
// is dropped (the response must fit a gRPC message).
const maxExecOutput = 1 << 20

// execProc is a process run in a container with runc exec. The process
// inherits the container's process spec (user, env, cwd, capabilities,
// seccomp, no-new-privileges).
type execProc struct {
	cmd     *exec.Cmd
	pidFile string
	tmpDir  string
	// kill kills the process (see execKiller).
	kill func()
}

// execIO is an exec'd process's stdio.
type execIO struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// terminal, when set, is the replica of a pseudo-terminal: the
	// process's stdin, stdout and stderr and its controlling terminal, in
	// a session of its own (stdin, stdout and stderr are then unused).
	terminal *os.File
}

// startExec starts argv in container id with the given stdio.
func (p *Plugin) startExec(c *container, argv []string, stdio execIO) (*execProc, error) {
	if err := checkCommand(argv); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(c.dir, "exec-")
	if err != nil {
		return nil, err
	}
	ep := &execProc{pidFile: filepath.Join(tmp, "pid"), tmpDir: tmp}
	bin, args := p.runcExecArgs(c, ep.pidFile, argv)
	ep.cmd = exec.Command(bin, args...)
	ep.kill = p.execKiller(c, ep)
	ep.cmd.Stdin, ep.cmd.Stdout, ep.cmd.Stderr = stdio.stdin, stdio.stdout, stdio.stderr
	if t := stdio.terminal; t != nil {
		ep.cmd.Stdin, ep.cmd.Stdout, ep.cmd.Stderr = t, t, t
		ep.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	// A process that leaves children holding the pipes must not keep the
	// call open forever.
	ep.cmd.WaitDelay = 2 * time.Second
	if err := ep.cmd.Start(); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("runc exec: %w", err)
	}
	return ep, nil
}

func checkCommand(argv []string) error {
	if len(argv) == 0 || argv[0] == "" {
		return errdefs.Field(errdefs.ErrInvalidArgument, "command", "a command is required")
	}
	return nil
}

// runcExecArgs is the runc command line that execs argv in container c,
// with options before the container id.
func (p *Plugin) runcExecArgs(c *container, pidFile string, argv []string, opts ...string) (string, []string) {
	bin, args := p.runtimeCommand()
	args = append(args, "exec", "--pid-file", pidFile)
	if p.opts.Flavor == Runsc {
		args = append(args, "--internal-pid-file", internalPidFile(pidFile))
	}
	args = append(args, opts...)
	return bin, append(append(args, c.rec.ID), argv...)
}

// killHost kills the exec'd process (not runc, which would orphan it): by
// its pid once runc wrote it, else runc itself before it started anything.
func (ep *execProc) killHost() {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if pid, err := shim.ReadPidFile(ep.pidFile); err == nil {
			unix.Kill(pid, unix.SIGKILL)
			return
		}
		if ep.cmd.ProcessState != nil || time.Now().After(deadline) {
			ep.cmd.Process.Kill()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wait waits for runc exec and returns the process's exit code.
func (ep *execProc) wait() (int, error) {
	defer os.RemoveAll(ep.tmpDir)
	err := ep.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if ee.Exited() {
			return ee.ExitCode(), nil
		}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return -1, err
	case errors.Is(err, exec.ErrWaitDelay):
		return ep.cmd.ProcessState.ExitCode(), nil
	}
	return -1, err
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// ExecSync runs a command in a running container and returns its output
// and exit code. On timeout the process is killed and the call fails
// with DeadlineExceeded.
func (p *Plugin) ExecSync(ctx context.Context, r *runtimev1.ExecSyncRequest) (*runtimev1.ExecSyncResponse, error) {
	c, err := p.lookupContainer(r.Id)
	if err != nil {
		return nil, err
	}
	if _, _, err := p.running(c, "exec"); err != nil {
		return nil, err
	}
	stdout := &limitedBuffer{max: maxExecOutput}
	stderr := &limitedBuffer{max: maxExecOutput}
	ep, err := p.startExec(c, r.Command, execIO{stdout: stdout, stderr: stderr})
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	var code int
	var werr error
	go func() { code, werr = ep.wait(); close(done) }()
	var timeout <-chan time.Time
	if r.TimeoutSeconds > 0 {
		t := time.NewTimer(time.Duration(r.TimeoutSeconds) * time.Second)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-done:
	case <-timeout:
		ep.kill()
		<-done
		return nil, fmt.Errorf("exec in container %s: timed out after %ds and was killed: %w", r.Id, r.TimeoutSeconds, context.DeadlineExceeded)
	case <-ctx.Done():
		ep.kill()
		<-done
		return nil, ctx.Err()
	}
	if werr != nil {
		return nil, fmt.Errorf("exec in container %s: %w", r.Id, werr)
	}
	// runc exec answers 255 with a message of its own when it could not
	// run the command at all (no such binary...).
	return &runtimev1.ExecSyncResponse{Stdout: stdout.buf.Bytes(), Stderr: stderr.buf.Bytes(), ExitCode: int32(code)}, nil
}

// streamWriter sends what is written to it as ExecOutput messages.
type streamWriter struct {
	mu     *sync.Mutex
	s      grpc.BidiStreamingServer[runtimev1.ExecInput, runtimev1.ExecOutput]
	stderr bool
}

func (w streamWriter) Write(b []byte) (int, error) {
	msg := &runtimev1.ExecOutput{}
	data := bytes.Clone(b)
	if w.stderr {
		msg.Output = &runtimev1.ExecOutput_Stderr{Stderr: data}
	} else {
		msg.Output = &runtimev1.ExecOutput_Stdout{Stdout: data}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.s.Send(msg); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Exec runs a command in a running container with streamed stdio. The
// first message is the start; later ones carry stdin, its close, or (with
// a terminal) a resize. The last message sent is the exit code. With a
// terminal, output comes as stdout only, and only the lead process is
// waited for.
func (p *Plugin) Exec(s grpc.BidiStreamingServer[runtimev1.ExecInput, runtimev1.ExecOutput]) error {
	first, err := s.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "exec: the first message must be the start")
	}
	c, err := p.lookupContainer(start.Id)
	if err != nil {
		return err
	}
	if _, _, err := p.running(c, "exec"); err != nil {
		return err
	}
	st := &execStream{s: s}
	if start.Tty {
		return p.execTTY(st, c, start)
	}
	return p.execPipes(st, c, start)
}

// execStream is an Exec call's stream; sends are serialised.
type execStream struct {
	s  grpc.BidiStreamingServer[runtimev1.ExecInput, runtimev1.ExecOutput]
	mu sync.Mutex
}

func (st *execStream) writer(stderr bool) io.Writer {
	return streamWriter{mu: &st.mu, s: st.s, stderr: stderr}
}

// receive hands the stream's later messages to the callbacks until the
// client closes its side (which counts as closing stdin).
func (st *execStream) receive(stdin func([]byte), closeStdin func(), resize func(*runtimev1.Resize)) {
	for {
		in, err := st.s.Recv()
		if err != nil {
			closeStdin()
			return
		}
		switch v := in.Input.(type) {
		case *runtimev1.ExecInput_Stdin:
			stdin(v.Stdin)
		case *runtimev1.ExecInput_CloseStdin:
			if v.CloseStdin {
				closeStdin()
			}
		case *runtimev1.ExecInput_Resize:
			if v.Resize != nil {
				resize(v.Resize)
			}
		}
	}
}

// finish waits for the process (killing it if the call ends first), then
// for drain when set, and sends the exit code.
func (st *execStream) finish(wait func() (int, error), kill func(), id string, drain func()) error {
	done := make(chan struct{})
	var code int
	var werr error
	go func() { code, werr = wait(); close(done) }()
	select {
	case <-done:
	case <-st.s.Context().Done():
		kill()
		<-done
		return st.s.Context().Err()
	}
	if werr != nil {
		return fmt.Errorf("exec in container %s: %w", id, werr)
	}
	if drain != nil {
		drain()
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.s.Send(&runtimev1.ExecOutput{Output: &runtimev1.ExecOutput_ExitCode{ExitCode: int32(code)}})
}

// execPipes runs an exec without a terminal: stdout and stderr apart.
func (p *Plugin) execPipes(st *execStream, c *container, start *runtimev1.ExecStart) error {
	// stdin is a real pipe (not an io.Reader os/exec would copy from in a
	// goroutine that could outlive the process).
	var stdin io.Reader
	var stdinW *os.File
	if start.Stdin {
		pr, pw, err := os.Pipe()
		if err != nil {
			return err
		}
		defer pr.Close()
		stdin, stdinW = pr, pw
	}
	var stdinOnce sync.Once
	closeStdin := func() {
		if stdinW != nil {
			stdinOnce.Do(func() { stdinW.Close() })
		}
	}
	defer closeStdin()
	// Each stream gets one copier so that its order is kept; os/exec
	// copies from the process's pipes into the writers.
	ep, err := p.startExec(c, start.Command, execIO{stdin: stdin, stdout: st.writer(false), stderr: st.writer(true)})
	if err != nil {
		return err
	}
	if pr, ok := stdin.(*os.File); ok {
		pr.Close() // the child has its copy
	}
	go st.receive(func(b []byte) {
		if stdinW != nil {
			stdinW.Write(b)
		}
	}, closeStdin, func(*runtimev1.Resize) {})
	return st.finish(ep.wait, ep.kill, start.Id, nil)
}

// ttyDrainTimeout bounds how long output still buffered in the terminal
// is read after the lead process exited.
const ttyDrainTimeout = 2 * time.Second

// execTTY runs an exec on a terminal of the container's own (see
// pty.go). Output comes as stdout; closing stdin sends end-of-file (^D)
// to the terminal, as a user would. The initial size applies as soon as
// the terminal exists, which may be just after the process started.
func (p *Plugin) execTTY(st *execStream, c *container, start *runtimev1.ExecStart) error {
	if err := checkCommand(start.Command); err != nil {
		return err
	}
	sized := start.Width != 0 || start.Height != 0
	if sized && (start.Width == 0 || start.Height == 0 || start.Width > 0xffff || start.Height > 0xffff) {
		return errdefs.Field(errdefs.ErrInvalidArgument, "start.width/height", fmt.Sprintf("terminal size %dx%d: want columns and rows between 1 and 65535, or both 0", start.Width, start.Height))
	}
	if p.opts.Flavor == Runsc {
		return p.execTTYRunsc(st, c, start, sized)
	}
	if err := becomeSubreaper(); err != nil {
		return fmt.Errorf("exec with a terminal: become a child subreaper: %w", err)
	}
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

	type console struct {
		master *os.File
		err    error
	}
	got := make(chan console, 1)
	go func() {
		m, err := sock.receive(30 * time.Second)
		got <- console{m, err}
	}()
	opts := []string{"--detach", "--tty", "--console-socket", sock.path()}
	bin, args := p.runcExecArgs(c, pidFile, start.Command, opts...)
	cmd := exec.Command(bin, args...)
	runcOut := &limitedBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = runcOut, runcOut
	runErr := cmd.Run()
	if runErr != nil {
		sock.l.Close()
	}
	con := <-got
	pid, pidErr := shim.ReadPidFile(pidFile)
	if runErr != nil || con.err != nil || pidErr != nil {
		if con.master != nil {
			con.master.Close()
		}
		if pidErr == nil {
			unix.Kill(pid, unix.SIGKILL)
			waitAdopted(pid)
		}
		var ee *exec.ExitError
		if errors.As(runErr, &ee) {
			// Like an exec without a terminal: runc's own message and exit
			// code (no such binary...) are the exec's output and result.
			st.writer(false).Write(bytes.ReplaceAll(runcOut.buf.Bytes(), []byte("\n"), []byte("\r\n")))
			return st.finish(func() (int, error) { return ee.ExitCode(), nil }, func() {}, start.Id, nil)
		}
		return fmt.Errorf("exec in container %s: %w", start.Id, errors.Join(runErr, con.err, pidErr))
	}
	kill := func() { unix.Kill(pid, unix.SIGKILL) }
	return p.streamTTY(st, c, start, sized, con.master, func() (int, error) { return waitAdopted(pid) }, kill)
}

// streamTTY copies between the stream and a terminal's master until the
// process (wait) exits, then sends its exit code.
func (p *Plugin) streamTTY(st *execStream, c *container, start *runtimev1.ExecStart, sized bool, master *os.File, wait func() (int, error), kill func()) error {
	defer master.Close()
	if sized {
		if err := resizePTY(master, start.Width, start.Height); err != nil {
			p.log.Warn("exec resize", "container", start.Id, "error", err)
		}
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		io.Copy(st.writer(false), master)
	}()
	var closed sync.Once
	go st.receive(func(b []byte) {
		if start.Stdin {
			master.Write(b)
		}
	}, func() {
		if start.Stdin {
			closed.Do(func() { master.Write([]byte{4}) })
		}
	}, func(r *runtimev1.Resize) {
		if err := resizePTY(master, r.Width, r.Height); err != nil {
			p.log.Warn("exec resize", "container", start.Id, "error", err)
		}
	})
	// Once the lead process exited, what is still buffered is read for a
	// bounded time: the call does not wait for anything else.
	return st.finish(wait, kill, start.Id, func() {
		select {
		case <-drained:
		case <-time.After(ttyDrainTimeout):
			master.SetReadDeadline(time.Now())
			<-drained
		}
	})
}
