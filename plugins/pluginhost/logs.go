package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Plugin logs. A plugin writes its log to stderr, as hclog JSON lines
// (runtimev1.Serve sets that up). The host points the plugin's stderr at a
// file, StateDir/logs/NAME.log, and a tailer re-emits each line in the
// host's slog logger with plugin=NAME, keeping the plugin's level, message,
// time and attributes. A file rather than a pipe because the plugin must
// survive the host: with a pipe, the plugin's first log line after the
// host died would kill it with SIGPIPE. While the host is down the plugin
// keeps logging into the file, and a host that reattaches after a clean
// Close carries on from where the last one stopped.

// slogLevel maps hclog's levels onto slog's (trace is below debug).
func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// hclogAdapter is an hclog.Logger writing to a slog.Handler: go-plugin's
// own client logs go through it. Levels above max are lowered to max:
// go-plugin reports at error level things the host reports better itself
// ("plugin process exited" on every crash and every Kill).
type hclogAdapter struct {
	h       slog.Handler
	name    string
	implied []any
	max     slog.Level
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHCLogAdapter(h slog.Handler, name string, max slog.Level) *hclogAdapter {
	return &hclogAdapter{h: h, name: name, max: max}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	l := min(slogLevel(level), a.max)
	ctx := context.Background()
	if !a.h.Enabled(ctx, l) {
		return
	}
	r := slog.NewRecord(time.Now(), l, msg, 0)
	if a.name != "" {
		r.AddAttrs(slog.String("logger", a.name))
	}
	r.Add(renamePlugin(a.implied)...)
	r.Add(renamePlugin(args)...)
	_ = a.h.Handle(ctx, r)
}

// renamePlugin renames go-plugin's "plugin" attribute (the binary's path)
// to "path": the host's records carry plugin=NAME.
func renamePlugin(args []any) []any {
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] == "plugin" {
			args = slices.Clone(args)
			args[i] = "path"
		}
	}
	return args
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	return a.h.Enabled(context.Background(), min(slogLevel(l), a.max))
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return slices.Clone(a.implied) }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	b := *a
	b.implied = append(slices.Clone(a.implied), args...)
	return &b
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	b := *a
	if a.name != "" {
		name = a.name + "." + name
	}
	b.name = name
	return &b
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	b := *a
	b.name = name
	return &b
}

// SetLevel does nothing: the slog handler decides what is logged.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

// GetLevel returns the most verbose level the handler takes.
func (a *hclogAdapter) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if a.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return writerFunc(func(p []byte) (int, error) {
		a.Log(level, strings.TrimRight(string(p), "\n"))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// lineEmitter turns a plugin's output lines into records of the host's
// logger.
type lineEmitter struct {
	h       slog.Handler // the host's, with plugin=NAME
	stream  string       // "stderr" or "stdout"
	inPanic bool         // a panic or fatal error started: the rest is its trace
}

// emit logs one line. hclog JSON lines keep their level, message, time
// and attributes; other lines are logged as they are, at info level, or
// at error level from a Go panic on.
func (e *lineEmitter) emit(line []byte) {
	line = bytes.TrimRight(line, "\r\n")
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	ctx := context.Background()
	if r, ok := parseHCLogJSON(line); ok {
		if e.h.Enabled(ctx, r.Level) {
			_ = e.h.Handle(ctx, r)
		}
		return
	}
	s := string(line)
	level := slog.LevelInfo
	switch {
	case strings.HasPrefix(s, "panic: "), strings.HasPrefix(s, "fatal error: "):
		e.inPanic = true
		level = slog.LevelError
	case e.inPanic:
		level = slog.LevelError
	case strings.HasPrefix(s, "[TRACE]"):
		level = slog.LevelDebug - 4
	case strings.HasPrefix(s, "[DEBUG]"):
		level = slog.LevelDebug
	case strings.HasPrefix(s, "[WARN]"):
		level = slog.LevelWarn
	case strings.HasPrefix(s, "[ERROR]"):
		level = slog.LevelError
	}
	if !e.h.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(time.Now(), level, "plugin output", 0)
	r.AddAttrs(slog.String("stream", e.stream), slog.String("line", s))
	_ = e.h.Handle(ctx, r)
}

// parseHCLogJSON parses one line of hclog's JSON format.
func parseHCLogJSON(line []byte) (slog.Record, bool) {
	if len(line) == 0 || line[0] != '{' {
		return slog.Record{}, false
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		return slog.Record{}, false
	}
	msg, ok := m["@message"].(string)
	if !ok {
		return slog.Record{}, false
	}
	level := slog.LevelInfo
	if s, ok := m["@level"].(string); ok {
		if l := hclog.LevelFromString(s); l != hclog.NoLevel {
			level = slogLevel(l)
		}
	}
	t := time.Now()
	if s, ok := m["@timestamp"].(string); ok {
		if pt, err := time.Parse(time.RFC3339Nano, s); err == nil {
			t = pt
		} else if pt, err := time.Parse(hclog.TimeFormatJSON, s); err == nil {
			t = pt
		}
	}
	r := slog.NewRecord(t, level, msg, 0)
	if s, ok := m["@module"].(string); ok && s != "" {
		r.AddAttrs(slog.String("module", s))
	}
	if s, ok := m["@caller"].(string); ok && s != "" {
		r.AddAttrs(slog.String("caller", s))
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if !strings.HasPrefix(k, "@") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		r.AddAttrs(slog.Any(k, m[k]))
	}
	return r, true
}

// lineWriter is an io.Writer emitting whole lines (go-plugin's
// SyncStdout/SyncStderr: what plugin code writes to os.Stdout and
// os.Stderr after Serve has swapped them for pipes).
type lineWriter struct {
	mu    sync.Mutex
	e     lineEmitter
	count *atomic.Int64 // bytes written
	buf   []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.count.Add(int64(len(p)))
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.e.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLogLine {
		w.e.emit(w.buf)
		w.buf = nil
	}
	return len(p), nil
}

const (
	maxLogLine    = 64 << 10 // longer lines are cut
	maxLogFile    = 8 << 20  // the host truncates a log file it has read this far
	logPollPeriod = 100 * time.Millisecond
)

// tailer follows one plugin process's log file.
type tailer struct {
	path   string
	e      lineEmitter
	exited <-chan struct{}
	count  *atomic.Int64 // bytes read

	stopOnce sync.Once
	stopc    chan struct{}
	drain    bool // set before stopc closes
	done     chan struct{}

	mu     sync.Mutex
	offset int64 // how far the file has been read and emitted
}

// startTailer follows path from offset until the process exits (after
// which it reads what is left) or stop is called, adding what it reads to
// count.
func startTailer(path string, offset int64, h slog.Handler, exited <-chan struct{}, count *atomic.Int64) *tailer {
	t := &tailer{
		path:   path,
		e:      lineEmitter{h: h, stream: "stderr"},
		exited: exited,
		count:  count,
		stopc:  make(chan struct{}),
		done:   make(chan struct{}),
		offset: offset,
	}
	go t.run()
	return t
}

// stop ends the tailer; with drain, after reading the file to its end.
func (t *tailer) stop(drain bool) {
	t.stopOnce.Do(func() {
		t.drain = drain
		close(t.stopc)
	})
	<-t.done
}

// wait returns once the tailer has read everything the exited process
// wrote.
func (t *tailer) wait() { <-t.done }

// position returns how far the file has been read.
func (t *tailer) position() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.offset
}

func (t *tailer) run() {
	defer close(t.done)
	f, err := os.Open(t.path)
	if err != nil {
		return
	}
	defer f.Close()
	offset := t.position()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return
	}
	buf := make([]byte, 32<<10)
	var pending []byte
	// readAll reads to the end of the file, emitting whole lines.
	readAll := func() {
		for {
			n, err := f.Read(buf)
			if n > 0 {
				t.count.Add(int64(n))
				pending = append(pending, buf[:n]...)
				for {
					i := bytes.IndexByte(pending, '\n')
					if i < 0 {
						break
					}
					t.e.emit(pending[:i])
					offset += int64(i + 1)
					pending = pending[i+1:]
				}
				if len(pending) > maxLogLine {
					t.e.emit(pending)
					offset += int64(len(pending))
					pending = nil
				}
				t.mu.Lock()
				t.offset = offset
				t.mu.Unlock()
			}
			if err != nil || n == 0 {
				return
			}
		}
	}
	ticker := time.NewTicker(logPollPeriod)
	defer ticker.Stop()
	for {
		readAll()
		if fi, err := f.Stat(); err == nil {
			switch {
			case fi.Size() < offset:
				// Truncated by someone else: start again.
				f.Seek(0, io.SeekStart)
				offset, pending = 0, nil
			case offset >= maxLogFile && fi.Size() == offset && len(pending) == 0:
				// Everything is read: keep the file from growing without
				// bound. A line written between the read and the
				// truncation is lost.
				if err := os.Truncate(t.path, 0); err == nil {
					f.Seek(0, io.SeekStart)
					offset = 0
				}
			}
			t.mu.Lock()
			t.offset = offset
			t.mu.Unlock()
		}
		select {
		case <-t.exited:
			readAll()
			if len(pending) > 0 {
				t.e.emit(pending)
				t.mu.Lock()
				t.offset += int64(len(pending))
				t.mu.Unlock()
			}
			return
		case <-t.stopc:
			if t.drain {
				readAll()
			}
			return
		case <-ticker.C:
		}
	}
}

// tailOf returns the last lines of a plugin's log file, joined into one
// line, for error messages about a plugin that failed to start.
func tailOf(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const tailMax = 2 << 10
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-tailMax, 0)
	b := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	var parts []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if r, ok := parseHCLogJSON([]byte(l)); ok {
			l = r.Message
		}
		parts = append(parts, l)
	}
	if len(parts) > 8 {
		parts = parts[len(parts)-8:]
	}
	s := strings.Join(parts, " ")
	if len(s) > 512 {
		s = "..." + s[len(s)-509:]
	}
	return s
}
