package containerd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"google.golang.org/grpc"
)

// Container logs are CRI-format files ("TIME STREAM F|P TEXT" lines)
// written by a logger process that containerd's shim starts with the
// container's stdout and stderr (its binary:// log URI): the plugin's own
// binary as "BINARY paddock-container-log DIR". The logger lives as long
// as the container's output, not as long as the plugin, so no output is
// lost while the plugin restarts. gVisor's shim has no binary:// URIs: it
// writes to FIFOs whose read ends the plugin hands to a logger it starts
// itself (createTaskLogged). The logger rotates the file at the container's
// log_max_bytes, keeping one rotated file, and creates log.done once it
// wrote the last line.

const (
	logFileName    = "container.log"
	logDoneName    = "log.done"
	loggerConfig   = "logger.json"
	loggerArg      = "paddock-container-log"
	maxLogLine     = 16 << 10 // longer lines are split into partial ones
	loggerTermWait = 2 * time.Second
)

// loggerSettings is DIR/logger.json.
type loggerSettings struct {
	MaxBytes int64 `json:"maxBytes"`
}

func writeLoggerConfig(dir string, maxBytes int64) error {
	b, _ := json.Marshal(loggerSettings{MaxBytes: maxBytes})
	return writeFileSynced(filepath.Join(dir, loggerConfig), b, 0o600)
}

// loggerURI is the log URI of a container whose directory is dir.
func (p *Plugin) loggerURI(dir string) (string, error) {
	bin, err := p.loggerBinary()
	if err != nil {
		return "", err
	}
	u := url.URL{Scheme: "binary", Path: bin, RawQuery: url.Values{loggerArg: {dir}}.Encode()}
	return u.String(), nil
}

// createTaskLogged creates c's task with its output on FIFOs in c's
// directory, for a shim that has no binary:// log URIs (gVisor's), and
// starts the logger on their read ends itself. The logger is in a session
// of its own and outlives the plugin, like one a shim starts.
func (p *Plugin) createTaskLogged(ctx context.Context, d *daemon, c *container, req *tasksapi.CreateTaskRequest) error {
	bin, err := p.loggerBinary()
	if err != nil {
		return err
	}
	// A restarted start would find the FIFOs of the last attempt.
	for _, name := range []string{"stdout", "stderr"} {
		os.Remove(filepath.Join(c.dir, name))
	}
	ff, err := makeFIFOs(c.dir, []string{"stdout", "stderr"})
	if err != nil {
		return err
	}
	req.Stdout, req.Stderr = ff.paths["stdout"], ff.paths["stderr"]
	if _, err := d.tasks.Create(c.ctx(ctx), req); err != nil {
		ff.abort()
		return err
	}
	files, err := ff.wait(fifoOpenTimeout)
	if err != nil {
		return err
	}
	ready, readyW, err := os.Pipe()
	if err != nil {
		ff.closeAll(files)
		return err
	}
	defer ready.Close()
	cmd := exec.Command(bin, loggerArg, c.dir)
	cmd.ExtraFiles = []*os.File{files["stdout"], files["stderr"], readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	ff.closeAll(files)
	readyW.Close()
	if err != nil {
		return fmt.Errorf("start the container logger: %w", err)
	}
	go cmd.Wait()
	// The logger closes its end of the pipe once it holds the streams.
	ready.SetReadDeadline(time.Now().Add(fifoOpenTimeout))
	io.Copy(io.Discard, ready)
	return nil
}

// loggerBinary is the binary run as the container logger.
func (p *Plugin) loggerBinary() (string, error) {
	if p.opts.LoggerPath != "" {
		return p.opts.LoggerPath, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("the plugin's executable (the container logger): %w", err)
	}
	return exe, nil
}

// IsLogger reports whether args (os.Args) start the container logger
// rather than the plugin; the plugin's main then calls RunLogger.
func IsLogger(args []string) bool { return len(args) == 3 && args[1] == loggerArg }

// RunLogger is the container logger's main: it reads the container's
// stdout (fd 3) and stderr (fd 4), tells the shim it is ready by closing
// fd 5, and writes CRI lines to DIR/container.log until both streams end.
// It returns the process's exit code.
func RunLogger(args []string) int {
	dir := args[2]
	var settings loggerSettings
	if b, err := os.ReadFile(filepath.Join(dir, loggerConfig)); err == nil {
		json.Unmarshal(b, &settings)
	}
	w, err := openLogWriter(filepath.Join(dir, logFileName), max(settings.MaxBytes, minLogMaxBytes))
	if err != nil {
		fmt.Fprintln(os.Stderr, "paddock container logger:", err)
		return 1
	}
	streams := map[string]*os.File{"stdout": os.NewFile(3, "stdout"), "stderr": os.NewFile(4, "stderr")}
	os.NewFile(5, "ready").Close()
	// The shim sends SIGTERM when the task is deleted: finish what is
	// still buffered, briefly.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for name, f := range streams {
		wg.Go(func() { w.copyLines(name, f) })
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-term:
		select {
		case <-done:
		case <-time.After(loggerTermWait):
		}
	}
	w.close()
	os.WriteFile(filepath.Join(dir, logDoneName), nil, 0o600)
	return 0
}

// logWriter writes CRI lines to a file it rotates.
type logWriter struct {
	mu       sync.Mutex
	path     string
	f        *os.File
	size     int64
	maxBytes int64
}

func openLogWriter(path string, maxBytes int64) (*logWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &logWriter{path: path, f: f, size: fi.Size(), maxBytes: maxBytes}, nil
}

// copyLines reads r line by line and writes each as a CRI line of stream.
func (w *logWriter) copyLines(stream string, r io.Reader) {
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			full := line[len(line)-1] == '\n'
			w.write(stream, bytes.TrimSuffix(line, []byte("\n")), !full)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (w *logWriter) write(stream string, text []byte, partial bool) {
	tag := "F"
	if partial {
		tag = "P"
	}
	var b bytes.Buffer
	b.WriteString(time.Now().UTC().Format(time.RFC3339Nano))
	b.WriteString(" " + stream + " " + tag + " ")
	b.Write(text)
	b.WriteByte('\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return
	}
	if w.size > 0 && w.size+int64(b.Len()) > w.maxBytes {
		w.f.Close()
		os.Rename(w.path, w.path+".1")
		f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			w.f = nil
			return
		}
		w.f, w.size = f, 0
	}
	n, _ := w.f.Write(b.Bytes())
	w.size += int64(n)
}

func (w *logWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		w.f.Sync()
		w.f.Close()
		w.f = nil
	}
}

// logLine parses a CRI log line (without its newline).
func logLine(line []byte) (*runtimev1.LogLine, bool) {
	parts := bytes.SplitN(line, []byte{' '}, 4)
	if len(parts) != 4 {
		return nil, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(parts[0]))
	if err != nil {
		return nil, false
	}
	return &runtimev1.LogLine{Timestamp: t.UnixNano(), Stream: string(parts[1]), Partial: string(parts[2]) == "P", Line: bytes.Clone(parts[3])}, true
}

// logReader reads a container's log: the rotated file, then the current
// one, following rotations.
type logReader struct {
	path string
	f    *os.File
	ino  uint64
	rest []byte // an incomplete last line
}

func fileIno(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// start emits the rotated file's lines, then what the current file holds.
func (lr *logReader) start(emit func(*runtimev1.LogLine) error) error {
	if b, err := os.ReadFile(lr.path + ".1"); err == nil {
		for _, line := range bytes.Split(b, []byte{'\n'}) {
			if l, ok := logLine(line); ok {
				if err := emit(l); err != nil {
					return err
				}
			}
		}
	}
	return lr.next(emit)
}

// next emits the complete lines written since the last call.
func (lr *logReader) next(emit func(*runtimev1.LogLine) error) error {
	for {
		if lr.f == nil {
			f, err := os.Open(lr.path)
			if errors.Is(err, os.ErrNotExist) {
				return nil
			} else if err != nil {
				return err
			}
			fi, err := f.Stat()
			if err != nil {
				f.Close()
				return err
			}
			lr.f, lr.ino, lr.rest = f, fileIno(fi), nil
		}
		if err := lr.drain(emit); err != nil {
			return err
		}
		fi, err := os.Stat(lr.path)
		if err != nil || fileIno(fi) == lr.ino {
			return nil
		}
		// Rotated: finish the old file, go on with the new one.
		if err := lr.drain(emit); err != nil {
			return err
		}
		lr.f.Close()
		lr.f = nil
	}
}

func (lr *logReader) drain(emit func(*runtimev1.LogLine) error) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := lr.f.Read(buf)
		lr.rest = append(lr.rest, buf[:n]...)
		for {
			i := bytes.IndexByte(lr.rest, '\n')
			if i < 0 {
				break
			}
			if l, ok := logLine(lr.rest[:i]); ok {
				if err := emit(l); err != nil {
					return err
				}
			}
			lr.rest = lr.rest[i+1:]
		}
		lr.rest = bytes.Clone(lr.rest)
		if n == 0 || errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (lr *logReader) close() {
	if lr.f != nil {
		lr.f.Close()
	}
}

// Logs streams a container's log lines: all, those since a time, or the
// last tail; with follow it goes on until the container has exited and
// its logger wrote the last line, or the caller goes away.
func (p *Plugin) Logs(r *runtimev1.LogsRequest, s grpc.ServerStreamingServer[runtimev1.LogLine]) error {
	ctx := s.Context()
	c, d, err := p.lookupContainer(r.Id)
	if err != nil {
		return err
	}
	lr := &logReader{path: filepath.Join(c.dir, logFileName)}
	defer lr.close()
	keep := func(l *runtimev1.LogLine) bool { return r.Since <= 0 || l.Timestamp >= r.Since }
	send := func(l *runtimev1.LogLine) error {
		if !keep(l) {
			return nil
		}
		return s.Send(l)
	}
	if r.Tail > 0 {
		var last []*runtimev1.LogLine
		if err := lr.start(func(l *runtimev1.LogLine) error {
			if keep(l) {
				if last = append(last, l); int64(len(last)) > r.Tail {
					last = last[1:]
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("logs of %s: %w", r.Id, err)
		}
		for _, l := range last {
			if err := s.Send(l); err != nil {
				return err
			}
		}
	} else if err := lr.start(send); err != nil {
		return fmt.Errorf("logs of %s: %w", r.Id, err)
	}
	if !r.Follow {
		return nil
	}
	var exitedAt time.Time
	for {
		st, err := p.status(ctx, d, c)
		if err != nil {
			return nil // removed
		}
		if st.exit != nil && exitedAt.IsZero() {
			exitedAt = time.Now()
		}
		// The logger creates log.done after its last line; a logger that
		// never ran (a failed start) is waited for briefly.
		_, doneErr := os.Stat(filepath.Join(c.dir, logDoneName))
		finished := !exitedAt.IsZero() && (doneErr == nil || time.Since(exitedAt) > loggerTermWait)
		if err := lr.next(send); err != nil {
			return fmt.Errorf("logs of %s: %w", r.Id, err)
		}
		if finished {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}
