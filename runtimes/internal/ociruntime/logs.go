package ociruntime

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"github.com/paddock-dev/paddock/runtimes/internal/ociruntime/shim"
	"google.golang.org/grpc"
)

// Container logs are files of CRI-format lines, written by the shim
// (runtimes/internal/ociruntime/shim, LogWriter) and read here: a timestamp, the stream,
// a tag (F for a full line, P for a part of a longer one) and the text.

// logEntry is one parsed log line.
type logEntry struct {
	ts      time.Time
	stream  string
	partial bool
	text    []byte
}

// parseLogLine parses a CRI log line (without its newline).
func parseLogLine(line []byte) (logEntry, error) {
	ts, rest, ok1 := bytes.Cut(line, []byte{' '})
	stream, rest, ok2 := bytes.Cut(rest, []byte{' '})
	tag, text, ok3 := bytes.Cut(rest, []byte{' '})
	if !ok1 || !ok2 || !ok3 {
		return logEntry{}, fmt.Errorf("malformed log line %q", truncate(line, 80))
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return logEntry{}, fmt.Errorf("malformed log timestamp: %w", err)
	}
	return logEntry{ts: t, stream: string(stream), partial: string(tag) == "P", text: bytes.Clone(text)}, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func (e logEntry) proto() *runtimev1.LogLine {
	return &runtimev1.LogLine{Timestamp: e.ts.UnixNano(), Stream: e.stream, Line: e.text, Partial: e.partial}
}

// logFollower reads a rotating log file from the start of its rotated
// predecessor onwards.
type logFollower struct {
	path string
	f    *os.File
	ino  uint64
	buf  []byte // an incomplete last line, kept until its newline arrives
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// readAll reads the rotated file (if any) and what the current file has
// now, calling emit per line.
func (lf *logFollower) readAll(emit func(logEntry) error) error {
	if err := readFileLines(lf.path+".1", emit); err != nil && !isNotExist(err) {
		return err
	}
	f, ino, err := openLog(lf.path)
	if f == nil || err != nil {
		return err
	}
	lf.f, lf.ino = f, ino
	return lf.poll(emit)
}

// poll emits the complete lines written since the last call, following a
// rotation to the new file.
func (lf *logFollower) poll(emit func(logEntry) error) error {
	for {
		if lf.f == nil {
			f, ino, err := openLog(lf.path)
			if f == nil || err != nil {
				return err
			}
			lf.f, lf.ino, lf.buf = f, ino, nil
		}
		if err := lf.drain(emit); err != nil {
			return err
		}
		// Rotated? Then the old file is complete: go on with the new one.
		fi, err := os.Stat(lf.path)
		if err != nil || inode(fi) == lf.ino {
			return nil
		}
		if err := lf.drain(emit); err != nil {
			return err
		}
		lf.f.Close()
		lf.f = nil
	}
}

// openLog opens a log file and returns its inode; a missing file is a nil
// file and no error.
func openLog(path string) (*os.File, uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		if isNotExist(err) {
			return nil, 0, nil
		}
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, inode(fi), nil
}

// drain reads lf.f to its current end.
func (lf *logFollower) drain(emit func(logEntry) error) error {
	chunk := make([]byte, 64<<10)
	for {
		n, err := lf.f.Read(chunk)
		if n > 0 {
			lf.buf = append(lf.buf, chunk[:n]...)
			for {
				i := bytes.IndexByte(lf.buf, '\n')
				if i < 0 {
					break
				}
				if e, perr := parseLogLine(lf.buf[:i]); perr == nil {
					if err := emit(e); err != nil {
						return err
					}
				}
				lf.buf = lf.buf[i+1:]
			}
			lf.buf = bytes.Clone(lf.buf)
		}
		if err == io.EOF || n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (lf *logFollower) Close() {
	if lf.f != nil {
		lf.f.Close()
		lf.f = nil
	}
}

// readFileLines emits every complete line of a file.
func readFileLines(path string, emit func(logEntry) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4*shim.MaxLogLine)
	for sc.Scan() {
		e, err := parseLogLine(sc.Bytes())
		if err != nil {
			continue
		}
		if err := emit(e); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Logs streams a container's log lines: all of them, or those since a
// time, or the last tail; with follow it goes on until the container has
// exited and its log is read, or the caller goes away.
func (p *Plugin) Logs(r *runtimev1.LogsRequest, s grpc.ServerStreamingServer[runtimev1.LogLine]) error {
	ctx := s.Context()
	c, err := p.lookupContainer(r.Id)
	if err != nil {
		return err
	}
	lf := &logFollower{path: c.path(logFile)}
	defer lf.Close()
	send := func(e logEntry) error {
		if r.Since > 0 && e.ts.UnixNano() < r.Since {
			return nil
		}
		return s.Send(e.proto())
	}
	if r.Tail > 0 {
		// Keep the last Tail lines of what is there now.
		ring := make([]logEntry, 0, min(r.Tail, 4096))
		var start int
		err := lf.readAll(func(e logEntry) error {
			if r.Since > 0 && e.ts.UnixNano() < r.Since {
				return nil
			}
			if int64(len(ring)) < r.Tail {
				ring = append(ring, e)
			} else {
				ring[start] = e
				start = (start + 1) % len(ring)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("logs of %s: %w", r.Id, err)
		}
		for i := range ring {
			if err := send(ring[(start+i)%len(ring)]); err != nil {
				return err
			}
		}
	} else if err := lf.readAll(send); err != nil {
		return fmt.Errorf("logs of %s: %w", r.Id, err)
	}
	if !r.Follow {
		return nil
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		// The shim writes exit.json after the last line: once it exists,
		// one more read gets everything.
		exited := fileExists(c.path(shim.ExitFile))
		if err := lf.poll(send); err != nil {
			return fmt.Errorf("logs of %s: %w", r.Id, err)
		}
		if exited {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if p.isRemoved(c) {
			return nil
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
