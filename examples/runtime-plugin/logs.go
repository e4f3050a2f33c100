package main

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"google.golang.org/grpc"
)

// A container's log is a file of lines in the CRI logging format, which
// the Logs RPC reads back (and which tools for Kubernetes node logs read):
//
//	2026-01-02T15:04:05.123456789Z stdout F the text
//
// an RFC 3339 timestamp with nanoseconds, the stream, a tag (F: a full
// line; P: a part of a line longer than maxLine, continued in the next)
// and the text without its newline. When the file would pass the
// container's log_max_bytes it is renamed to container.log.1 (replacing
// the previous one) and a new one is started, so that a chatty container
// cannot fill the disk.

const (
	maxLine          = 16 << 10 // the longest text one log line carries
	defaultLogMax    = 10 << 20 // log_max_bytes when the config says 0
	minLogMax        = 64 << 10 // a few full-size lines
	rotatedLogSuffix = ".1"
)

// logWriter appends log lines to a file and rotates it; the stdout and
// stderr copiers share it.
type logWriter struct {
	mu   sync.Mutex
	path string
	max  int64
	f    *os.File
	size int64
}

func openLog(path string, max int64) (*logWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	return &logWriter{path: path, max: max, f: f}, nil
}

// copyLines reads r until EOF and logs each line as stream. A container
// must never block on its output, so a failed write drops the line.
func (w *logWriter) copyLines(stream string, r io.Reader) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			w.write(stream, "F", line[:len(line)-1])
		case errors.Is(err, bufio.ErrBufferFull):
			w.write(stream, "P", line)
		default: // EOF or a broken pipe: log what is left and stop
			if len(line) > 0 {
				w.write(stream, "F", line)
			}
			return
		}
	}
}

func (w *logWriter) write(stream, tag string, text []byte) {
	line := fmt.Appendf(nil, "%s %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, tag, text)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.size > 0 && w.size+int64(len(line)) > w.max {
		w.rotate()
	}
	n, _ := w.f.Write(line) // one write per line: readers never see half of one
	w.size += int64(n)
}

// rotate renames the file to path.1 and starts a new one. If it cannot,
// the old file goes on growing: losing output would be worse.
func (w *logWriter) rotate() {
	if os.Rename(w.path, w.path+rotatedLogSuffix) != nil {
		return
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	w.f.Close()
	w.f, w.size = f, 0
}

func (w *logWriter) close() { w.f.Close() }

// logReader reads the complete lines of one log file, from where it left
// off: a line whose newline is not written yet waits for the next call.
type logReader struct {
	f       *os.File
	br      *bufio.Reader
	pending []byte
}

// openLogReader opens path; a missing file is a nil reader and no error.
func openLogReader(path string) (*logReader, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return &logReader{f: f, br: bufio.NewReaderSize(f, 64<<10)}, nil
}

// lines emits each new line at or after since. Lines are read one at a
// time: a log may be far larger than the plugin's memory.
func (lr *logReader) lines(since int64, emit func(*runtimev1.LogLine) error) error {
	if lr == nil {
		return nil
	}
	for {
		chunk, err := lr.br.ReadSlice('\n')
		lr.pending = append(lr.pending, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil { // io.EOF: what is left waits in pending
			return nil
		}
		l, ok := parseLine(lr.pending[:len(lr.pending)-1])
		lr.pending = lr.pending[:0]
		if ok && l.Timestamp >= since {
			if err := emit(l); err != nil {
				return err
			}
		}
	}
}

// replaced reports whether path now names another file than lr reads
// (the writer rotated it).
func (lr *logReader) replaced(path string) bool {
	a, err1 := lr.f.Stat()
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && !os.SameFile(a, b)
}

func (lr *logReader) close() {
	if lr != nil {
		lr.f.Close()
	}
}

// parseLine reads one log line back; malformed lines are skipped.
func parseLine(b []byte) (*runtimev1.LogLine, bool) {
	f := bytes.SplitN(b, []byte{' '}, 4)
	if len(f) != 4 {
		return nil, false
	}
	ts, err := time.Parse(time.RFC3339Nano, string(f[0]))
	if err != nil {
		return nil, false
	}
	return &runtimev1.LogLine{Timestamp: ts.UnixNano(), Stream: string(f[1]), Partial: string(f[2]) == "P", Line: bytes.Clone(f[3])}, true
}

// Logs streams a container's log (the rotated file, then the current
// one): every line, or those at or after since, or the last tail of them.
// With follow it then goes on sending new lines until the container has
// exited and its log is read, or the caller hangs up.
func (r *Runtime) Logs(req *runtimev1.LogsRequest, s grpc.ServerStreamingServer[runtimev1.LogLine]) error {
	c, err := r.lookup(req.Id)
	if err != nil {
		return err
	}
	path := c.logPath()
	var ring []*runtimev1.LogLine // the last tail lines, when tail is set
	send := func(l *runtimev1.LogLine) error {
		if req.Tail <= 0 {
			return s.Send(l)
		}
		if ring = append(ring, l); int64(len(ring)) > req.Tail {
			ring = ring[1:]
		}
		return nil
	}
	old, err := openLogReader(path + rotatedLogSuffix)
	if err != nil {
		return fmt.Errorf("logs of %s: %w", c.id, err)
	}
	err = old.lines(req.Since, send)
	old.close()
	cur, oerr := openLogReader(path)
	defer func() { cur.close() }()
	if err = cmp.Or(err, oerr); err == nil {
		err = cur.lines(req.Since, send)
	}
	for _, l := range ring {
		err = cmp.Or(err, s.Send(l))
	}
	if err != nil || !req.Follow {
		return err
	}
	// Follow: poll for new lines, moving to the new file after a rotation
	// once the old one is read to its end. done is closed only after the
	// last line is written, so one read after it is the last one needed.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		exited := false
		select {
		case <-s.Context().Done():
			return nil
		case <-c.done:
			exited = true
		case <-tick.C:
		}
		if cur == nil || cur.replaced(path) {
			if err := cur.lines(req.Since, s.Send); err != nil {
				return err
			}
			cur.close()
			if cur, err = openLogReader(path); err != nil {
				return err
			}
		}
		if err := cur.lines(req.Since, s.Send); err != nil || exited {
			return err
		}
	}
}
