package runc

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
}

// startExec starts argv in container id with the given stdio.
func (p *Plugin) startExec(c *container, argv []string, stdin io.Reader, stdout, stderr io.Writer) (*execProc, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "command", "a command is required")
	}
	tmp, err := os.MkdirTemp(c.dir, "exec-")
	if err != nil {
		return nil, err
	}
	ep := &execProc{pidFile: filepath.Join(tmp, "pid"), tmpDir: tmp}
	args := []string{"--root", filepath.Join(p.stateDir, "runc"), "exec", "--pid-file", ep.pidFile, c.rec.ID}
	ep.cmd = exec.Command(p.runcPath(), append(args, argv...)...)
	ep.cmd.Stdin, ep.cmd.Stdout, ep.cmd.Stderr = stdin, stdout, stderr
	// A process that leaves children holding the pipes must not keep the
	// call open forever.
	ep.cmd.WaitDelay = 2 * time.Second
	if err := ep.cmd.Start(); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("runc exec: %w", err)
	}
	return ep, nil
}

// kill kills the exec'd process (not runc, which would orphan it): by its
// pid once runc wrote it, else runc itself before it started anything.
func (ep *execProc) kill() {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if pid, err := readPidFile(ep.pidFile); err == nil {
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
	ep, err := p.startExec(c, r.Command, nil, stdout, stderr)
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
// first message is the start; later ones carry stdin or close it. The
// last message sent is the exit code. Terminals are not supported yet
// (Capabilities.exec_tty is false).
func (p *Plugin) Exec(s grpc.BidiStreamingServer[runtimev1.ExecInput, runtimev1.ExecOutput]) error {
	ctx := s.Context()
	first, err := s.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return errdefs.New(errdefs.ErrInvalidArgument, "exec: the first message must be the start")
	}
	if start.Tty {
		return errdefs.New(errdefs.ErrNotImplemented, "exec: terminals are not supported by the runc plugin yet")
	}
	c, err := p.lookupContainer(start.Id)
	if err != nil {
		return err
	}
	if _, _, err := p.running(c, "exec"); err != nil {
		return err
	}
	var sendMu sync.Mutex
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
	ep, err := p.startExec(c, start.Command, stdin, streamWriter{mu: &sendMu, s: s}, streamWriter{mu: &sendMu, s: s, stderr: true})
	if err != nil {
		return err
	}
	if pr, ok := stdin.(*os.File); ok {
		pr.Close() // the child has its copy
	}
	done := make(chan struct{})
	var code int
	var werr error
	go func() { code, werr = ep.wait(); close(done) }()

	// Input: stdin data and its close; resize is ignored without a tty.
	go func() {
		for {
			in, err := s.Recv()
			if err != nil {
				closeStdin()
				return
			}
			switch v := in.Input.(type) {
			case *runtimev1.ExecInput_Stdin:
				if stdinW != nil {
					stdinW.Write(v.Stdin)
				}
			case *runtimev1.ExecInput_CloseStdin:
				if v.CloseStdin {
					closeStdin()
				}
			}
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
		ep.kill()
		<-done
		return ctx.Err()
	}
	closeStdin()
	if werr != nil {
		return fmt.Errorf("exec in container %s: %w", start.Id, werr)
	}
	sendMu.Lock()
	defer sendMu.Unlock()
	return s.Send(&runtimev1.ExecOutput{Output: &runtimev1.ExecOutput_ExitCode{ExitCode: int32(code)}})
}
