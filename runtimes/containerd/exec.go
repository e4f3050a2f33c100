package containerd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

// maxExecOutput bounds each of an ExecSync's stdout and stderr.
const maxExecOutput = 1 << 20

// drainTimeout bounds how long an exec's output is read after it exited.
const drainTimeout = 2 * time.Second

// fifoOpenTimeout bounds the wait for a shim to open a process's stdio
// (the shims give up after 30 s).
const fifoOpenTimeout = 30 * time.Second

// execProc is a process run in a container's task. Its stdio are FIFOs in
// a directory of the container's, which the shim opens from its side.
type execProc struct {
	d      *daemon
	c      *container
	id     string
	dir    string
	stdin  *os.File // nil without stdin
	stdout *os.File
	stderr *os.File // nil with a terminal
	copies sync.WaitGroup
}

// startExec starts argv in c with the container's process settings (user,
// env, cwd, capabilities, seccomp, no-new-privileges).
func (p *Plugin) startExec(ctx context.Context, d *daemon, c *container, st *ctrState, argv []string, tty, stdin bool, out, errw io.Writer) (*execProc, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "command", "a command is required")
	}
	var spec specs.Spec
	if err := json.Unmarshal(st.rec.Spec.GetValue(), &spec); err != nil || spec.Process == nil {
		return nil, fmt.Errorf("exec in container %s: its spec: %v", c.id, err)
	}
	proc := *spec.Process
	proc.Args, proc.Terminal = argv, tty
	procAny, err := jsonAny(processTypeURL, &proc)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(c.dir, "exec-")
	if err != nil {
		return nil, err
	}
	e := &execProc{d: d, c: c, id: filepath.Base(dir), dir: dir}
	req := &tasksapi.ExecProcessRequest{ContainerID: c.id, ExecID: e.id, Terminal: tty, Spec: procAny}
	names := []string{"stdout"}
	if !tty {
		names = append(names, "stderr")
	}
	if stdin {
		names = append(names, "stdin")
	}
	ff, err := makeFIFOs(dir, names, "stdin")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	req.Stdout, req.Stderr, req.Stdin = ff.paths["stdout"], ff.paths["stderr"], ff.paths["stdin"]
	fail := func(err error) (*execProc, error) {
		ff.abort()
		os.RemoveAll(dir)
		return nil, err
	}
	if _, err := d.tasks.Exec(c.ctx(ctx), req); err != nil {
		return fail(fmt.Errorf("exec in container %s: %w", c.id, err))
	}
	if _, err := d.tasks.Start(c.ctx(ctx), &tasksapi.StartRequest{ContainerID: c.id, ExecID: e.id}); err != nil {
		d.tasks.DeleteProcess(c.ctx(context.WithoutCancel(ctx)), &tasksapi.DeleteProcessRequest{ContainerID: c.id, ExecID: e.id})
		// The command could not be run (no such binary...): like a shell,
		// answer with the error and exit code 126/127 rather than fail.
		return fail(&execStartError{err: err})
	}
	files, err := ff.wait(fifoOpenTimeout)
	if err != nil {
		e.kill()
		e.release()
		return nil, fmt.Errorf("exec in container %s: %w", c.id, err)
	}
	e.stdin, e.stdout, e.stderr = files["stdin"], files["stdout"], files["stderr"]
	e.copies.Go(func() { io.Copy(out, e.stdout) })
	if e.stderr != nil {
		e.copies.Go(func() { io.Copy(errw, e.stderr) })
	}
	return e, nil
}

// execStartError is an exec whose process could not start.
type execStartError struct{ err error }

func (e *execStartError) Error() string { return e.err.Error() }

// exitCode is what a shell answers for a command it cannot run.
func (e *execStartError) exitCode() int32 {
	if bytes.Contains([]byte(e.err.Error()), []byte("not found")) || bytes.Contains([]byte(e.err.Error()), []byte("no such file")) {
		return 127
	}
	return 126
}

// wait waits for the process and its output, then deletes it.
func (e *execProc) wait(ctx context.Context) (int32, error) {
	resp, err := e.d.tasks.Wait(e.c.ctx(ctx), &tasksapi.WaitRequest{ContainerID: e.c.id, ExecID: e.id})
	if err != nil {
		return -1, err
	}
	// Output still in flight is read for a bounded time: a child left
	// holding the terminal or the pipes does not keep the call open.
	copied := make(chan struct{})
	go func() { e.copies.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(drainTimeout):
		for _, f := range []*os.File{e.stdout, e.stderr} {
			if f != nil {
				f.SetReadDeadline(time.Now())
			}
		}
		<-copied
	}
	return int32(resp.ExitStatus), nil
}

// kill kills the process.
func (e *execProc) kill() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.d.tasks.Kill(e.c.ctx(ctx), &tasksapi.KillRequest{ContainerID: e.c.id, ExecID: e.id, Signal: uint32(unix.SIGKILL)})
}

// closeStdin closes the process's stdin: our end of the FIFO, then the
// shim's, which it keeps open until told.
func (e *execProc) closeStdin() {
	if e.stdin == nil {
		return
	}
	e.stdin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.d.tasks.CloseIO(e.c.ctx(ctx), &tasksapi.CloseIORequest{ContainerID: e.c.id, ExecID: e.id, Stdin: true})
}

// release deletes the process from the task and removes its FIFOs.
func (e *execProc) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.d.tasks.DeleteProcess(e.c.ctx(ctx), &tasksapi.DeleteProcessRequest{ContainerID: e.c.id, ExecID: e.id})
	for _, f := range []*os.File{e.stdin, e.stdout, e.stderr} {
		if f != nil {
			f.Close()
		}
	}
	os.RemoveAll(e.dir)
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
// and exit code. On timeout the process is killed and the call fails with
// DeadlineExceeded.
func (p *Plugin) ExecSync(ctx context.Context, r *runtimev1.ExecSyncRequest) (*runtimev1.ExecSyncResponse, error) {
	c, d, err := p.lookupContainer(r.Id)
	if err != nil {
		return nil, err
	}
	st, err := p.running(ctx, d, c, "exec")
	if err != nil {
		return nil, err
	}
	stdout, stderr := &limitedBuffer{max: maxExecOutput}, &limitedBuffer{max: maxExecOutput}
	e, err := p.startExec(ctx, d, c, st, r.Command, false, false, stdout, stderr)
	var startErr *execStartError
	if errors.As(err, &startErr) {
		return &runtimev1.ExecSyncResponse{Stderr: []byte(startErr.Error() + "\n"), ExitCode: startErr.exitCode()}, nil
	} else if err != nil {
		return nil, err
	}
	defer e.release()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if r.TimeoutSeconds > 0 {
		wctx, cancel = context.WithTimeout(ctx, time.Duration(r.TimeoutSeconds)*time.Second)
		defer cancel()
	}
	code, err := e.wait(wctx)
	if err != nil {
		e.kill()
		if ctx.Err() == nil && wctx.Err() != nil {
			return nil, fmt.Errorf("exec in container %s: timed out after %ds and was killed: %w", r.Id, r.TimeoutSeconds, context.DeadlineExceeded)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("exec in container %s: %w", r.Id, err)
	}
	return &runtimev1.ExecSyncResponse{Stdout: stdout.buf.Bytes(), Stderr: stderr.buf.Bytes(), ExitCode: code}, nil
}

// execOutput sends what is written to it as ExecOutput messages.
type execOutput struct {
	mu     *sync.Mutex
	s      grpc.BidiStreamingServer[runtimev1.ExecInput, runtimev1.ExecOutput]
	stderr bool
}

func (w execOutput) Write(b []byte) (int, error) {
	msg := &runtimev1.ExecOutput{Output: &runtimev1.ExecOutput_Stdout{Stdout: bytes.Clone(b)}}
	if w.stderr {
		msg.Output = &runtimev1.ExecOutput_Stderr{Stderr: bytes.Clone(b)}
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
// a terminal) a resize. The last message sent is the exit code.
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
	if start.Tty && (start.Width > 0xffff || start.Height > 0xffff || (start.Width == 0) != (start.Height == 0)) {
		return errdefs.Field(errdefs.ErrInvalidArgument, "start.width/height", fmt.Sprintf("terminal size %dx%d: want columns and rows between 1 and 65535, or both 0", start.Width, start.Height))
	}
	c, d, err := p.lookupContainer(start.Id)
	if err != nil {
		return err
	}
	st, err := p.running(ctx, d, c, "exec")
	if err != nil {
		return err
	}
	var mu sync.Mutex
	send := func(msg *runtimev1.ExecOutput) error {
		mu.Lock()
		defer mu.Unlock()
		return s.Send(msg)
	}
	e, err := p.startExec(ctx, d, c, st, start.Command, start.Tty, start.Stdin || start.Tty,
		execOutput{mu: &mu, s: s}, execOutput{mu: &mu, s: s, stderr: true})
	var startErr *execStartError
	if errors.As(err, &startErr) {
		if err := send(&runtimev1.ExecOutput{Output: &runtimev1.ExecOutput_Stderr{Stderr: []byte(startErr.Error() + "\n")}}); err != nil {
			return err
		}
		return send(&runtimev1.ExecOutput{Output: &runtimev1.ExecOutput_ExitCode{ExitCode: startErr.exitCode()}})
	} else if err != nil {
		return err
	}
	defer e.release()
	resize := func(w, h uint32) {
		if w == 0 || h == 0 {
			return
		}
		if _, err := d.tasks.ResizePty(c.ctx(ctx), &tasksapi.ResizePtyRequest{ContainerID: c.id, ExecID: e.id, Width: w, Height: h}); err != nil {
			p.log.Warn("exec resize", "container", c.id, "err", err)
		}
	}
	if start.Tty {
		resize(start.Width, start.Height)
	}
	var closeOnce sync.Once
	closeStdin := func() {
		closeOnce.Do(func() {
			if start.Tty && start.Stdin && e.stdin != nil {
				e.stdin.Write([]byte{4}) // ^D, as a user would
			}
			if !start.Tty {
				e.closeStdin()
			}
		})
	}
	go func() {
		for {
			in, err := s.Recv()
			if err != nil {
				closeStdin()
				return
			}
			switch v := in.Input.(type) {
			case *runtimev1.ExecInput_Stdin:
				if start.Stdin && e.stdin != nil {
					e.stdin.Write(v.Stdin)
				}
			case *runtimev1.ExecInput_CloseStdin:
				if v.CloseStdin {
					closeStdin()
				}
			case *runtimev1.ExecInput_Resize:
				if start.Tty && v.Resize != nil {
					resize(v.Resize.Width, v.Resize.Height)
				}
			}
		}
	}()
	code, err := e.wait(ctx)
	if err != nil {
		e.kill()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("exec in container %s: %w", c.id, err)
	}
	return send(&runtimev1.ExecOutput{Output: &runtimev1.ExecOutput_ExitCode{ExitCode: code}})
}
