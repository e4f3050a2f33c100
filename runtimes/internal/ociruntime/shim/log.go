package shim

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// Container logs are files of CRI-format lines:
//
//	2026-01-02T15:04:05.000000000Z stdout F text
//
// a timestamp (UTC, nanoseconds), the stream, a tag (F for a full line, P
// for a part of a line longer than MaxLogLine that continues in the next
// one) and the text without its newline. The shim writes them; at the
// rotation size the file is renamed to PATH.1 (replacing the previous
// one) and a new file is started.

// MaxLogLine is the longest text one log line carries; longer lines are
// split into partial lines.
const MaxLogLine = 16 << 10

// CRITimeFormat is the timestamp of CRI log lines: fixed-width RFC 3339
// with nanoseconds.
const CRITimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// LogWriter writes CRI log lines to a file, rotating it. It is safe for
// concurrent use by the stdout and stderr copiers.
type LogWriter struct {
	// Now stamps the lines; OpenLogWriter sets time.Now. Set it before
	// the first write.
	Now func() time.Time

	mu   sync.Mutex
	path string
	max  int64
	f    *os.File
	size int64
	err  error // the first write error, reported once
}

// OpenLogWriter opens (appending) or creates the log file path, rotated
// when it would grow beyond max bytes.
func OpenLogWriter(path string, max int64) (*LogWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &LogWriter{path: path, max: max, f: f, size: st.Size(), Now: time.Now}, nil
}

// writeLine writes one line. Errors (a full disk) drop the line: the
// container must never block on its output.
func (w *LogWriter) writeLine(stream string, partial bool, text []byte) {
	tag := "F"
	if partial {
		tag = "P"
	}
	var b bytes.Buffer
	b.Grow(len(CRITimeFormat) + len(stream) + len(text) + 5)
	b.WriteString(w.Now().UTC().Format(CRITimeFormat))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.WriteString(tag)
	b.WriteByte(' ')
	b.Write(text)
	b.WriteByte('\n')

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return
	}
	if w.size > 0 && w.size+int64(b.Len()) > w.max {
		w.rotate()
	}
	n, err := w.f.Write(b.Bytes())
	w.size += int64(n)
	if err != nil && w.err == nil {
		w.err = err
	}
}

// rotate renames the file to path.1 and starts a new one.
func (w *LogWriter) rotate() {
	w.f.Close()
	w.f = nil
	if err := os.Rename(w.path, w.path+".1"); err != nil && w.err == nil {
		w.err = err
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o640)
	if err != nil {
		if w.err == nil {
			w.err = err
		}
		return
	}
	w.f, w.size = f, 0
}

// Close closes the file and returns the first error any write met.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return w.err
	}
	err := w.f.Close()
	w.f = nil
	return errors.Join(w.err, err)
}

// CopyStream reads r until EOF and writes its lines to w as stream.
func CopyStream(w *LogWriter, stream string, r io.Reader) {
	br := bufio.NewReaderSize(r, MaxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			w.writeLine(stream, false, line[:len(line)-1])
		case errors.Is(err, bufio.ErrBufferFull):
			w.writeLine(stream, true, line)
		default:
			if len(line) > 0 {
				w.writeLine(stream, false, line)
			}
			return
		}
	}
}
