package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/paddock-dev/paddock/core/errdefs"
)

// Config configures a Host.
type Config struct {
	// StateDir holds the host's state: plugin sockets, records of running
	// plugins, plugin logs and each plugin's own state directory. It is
	// created with mode 0700. Two hosts never share one (New refuses).
	StateDir string
	// Logger gets the host's log and the plugins' logs (with plugin=NAME).
	// Nil discards them.
	Logger *slog.Logger
	// OnEvent, when set, is told when a plugin process exits and when it
	// has been started again (call Recover then). It is called from the
	// plugin's supervisor goroutine, one event at a time and in order; it
	// may call the Instance's methods other than Kill and Close, and
	// should not block for long: restarts wait for it.
	OnEvent func(Event)
	// HandshakeTimeout bounds the wait for a plugin's handshake line
	// (default 10s).
	HandshakeTimeout time.Duration
	// Backoff paces restarts of crashed plugins (defaults: 100ms doubling
	// to 30s, reset after a minute of uptime).
	Backoff Backoff
}

// Backoff paces restarts: the first waits Initial, each next one twice as
// long up to Max; a process that ran for ResetAfter starts over at
// Initial.
type Backoff struct {
	Initial, Max, ResetAfter time.Duration
}

// Host launches plugin binaries and keeps them running. See the package
// documentation.
type Host struct {
	cfg  Config
	log  *slog.Logger
	lock *os.File // flock on StateDir/host.lock

	mu        sync.Mutex
	instances map[string]*Instance // nil value: a Launch in progress
	closed    bool
}

// socketDirSpace is what go-plugin adds to StateDir/sockets for a socket
// path: /plugin-dirNNNNNNNNNN/pluginNNNNNNNNNN.
const socketDirSpace = len("/sockets/plugin-dir1234567890/plugin1234567890")

// maxSocketPath is the longest unix socket path (sun_path less its NUL).
const maxSocketPath = 107

// New returns a host keeping its state in cfg.StateDir. It holds a lock on
// the directory until Close.
func New(cfg Config) (*Host, error) {
	if cfg.StateDir == "" {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "StateDir", "is required")
	}
	dir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "StateDir", err.Error())
	}
	cfg.StateDir = dir
	if len(dir)+socketDirSpace > maxSocketPath {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "StateDir",
			fmt.Sprintf("%s is %d bytes long; plugin sockets under it need it to be at most %d", dir, len(dir), maxSocketPath-socketDirSpace))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.Backoff.Initial <= 0 {
		cfg.Backoff.Initial = 100 * time.Millisecond
	}
	if cfg.Backoff.Max <= 0 {
		cfg.Backoff.Max = 30 * time.Second
	}
	if cfg.Backoff.ResetAfter <= 0 {
		cfg.Backoff.ResetAfter = time.Minute
	}
	for _, d := range []string{dir, filepath.Join(dir, "sockets"), filepath.Join(dir, "records"), filepath.Join(dir, "logs"), filepath.Join(dir, "plugins")} {
		if err := mkdirPrivate(d); err != nil {
			return nil, err
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, "host.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("plugin host state dir %s is in use by another host", dir))
		}
		return nil, fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	h := &Host{cfg: cfg, log: cfg.Logger, lock: lock, instances: map[string]*Instance{}}
	h.sweepSockets()
	return h, nil
}

// mkdirPrivate makes dir (mode 0700) or makes an existing one 0700.
func mkdirPrivate(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// sweepSockets removes socket directories no record points at: left by
// plugins that died while no host watched them.
func (h *Host) sweepSockets() {
	keep := map[string]bool{}
	records, _ := filepath.Glob(filepath.Join(h.cfg.StateDir, "records", "*.json"))
	for _, p := range records {
		if rec, err := h.readRecord(strings.TrimSuffix(filepath.Base(p), ".json")); err == nil && rec != nil {
			keep[filepath.Clean(rec.SocketDir)] = true
		}
	}
	entries, _ := os.ReadDir(h.socketsDir())
	for _, e := range entries {
		if p := filepath.Join(h.socketsDir(), e.Name()); !keep[p] {
			os.RemoveAll(p)
		}
	}
}

func (h *Host) socketsDir() string { return filepath.Join(h.cfg.StateDir, "sockets") }

func (h *Host) logPath(name string) string {
	return filepath.Join(h.cfg.StateDir, "logs", name+".log")
}

func (h *Host) pluginStateDir(name string) string {
	return filepath.Join(h.cfg.StateDir, "plugins", name)
}

// removeSocketDir removes a plugin's socket directory, if it is one of
// this host's.
func (h *Host) removeSocketDir(dir string) {
	if dir == "" || filepath.Dir(filepath.Clean(dir)) != h.socketsDir() {
		return
	}
	os.RemoveAll(dir)
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// Launch runs the plugin binary at path as the plugin name, of the given
// kind, configured with config (JSON), and returns once it has answered
// the handshake, agreed on an API version and accepted its configuration.
//
// If a plugin of that name is recorded as running (a previous host
// launched it and then closed or died), Launch reattaches to that process
// instead of starting another, and hands it config again. A recorded
// process of another binary is stopped and a new one started.
//
// The errors: ErrInvalidArgument for a bad name or a configuration the
// plugin rejects (its message names the plugin), ErrNotFound for a missing
// binary, ErrFailedPrecondition for a binary that is not a plugin of the
// kind or speaks no API version of the host's, ErrUnavailable for a
// plugin that does not answer in time, ErrAlreadyExists if this host
// already runs a plugin of that name.
func (h *Host) Launch(ctx context.Context, kind Kind, name, path string, config []byte) (*Instance, error) {
	if err := kind.validate(); err != nil {
		return nil, err
	}
	if !nameRE.MatchString(name) {
		return nil, errdefs.Field(errdefs.ErrInvalidArgument, "name",
			fmt.Sprintf("plugin name %q: want 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", name))
	}
	path, err := resolveBinary(name, path)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	switch _, ok := h.instances[name]; {
	case h.closed:
		h.mu.Unlock()
		return nil, errdefs.New(errdefs.ErrUnavailable, "plugin host is closed")
	case ok:
		h.mu.Unlock()
		return nil, errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("plugin %q is already running in this host", name))
	}
	h.instances[name] = nil
	h.mu.Unlock()

	inst, err := h.launch(ctx, kind, name, path, config)
	h.mu.Lock()
	if err != nil || h.closed {
		delete(h.instances, name)
		h.mu.Unlock()
		if err == nil {
			inst.Close()
			return nil, errdefs.New(errdefs.ErrUnavailable, "plugin host is closed")
		}
		return nil, err
	}
	h.instances[name] = inst
	h.mu.Unlock()
	return inst, nil
}

// resolveBinary returns the absolute path of a plugin binary.
func resolveBinary(name, path string) (string, error) {
	if path == "" {
		return "", errdefs.Field(errdefs.ErrInvalidArgument, "path", fmt.Sprintf("plugin %q: no binary given", name))
	}
	found, err := exec.LookPath(path)
	if err != nil {
		class := errdefs.ErrFailedPrecondition
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, exec.ErrNotFound) {
			class = errdefs.ErrNotFound
		}
		reason := errors.Unwrap(err)
		var pe *fs.PathError
		if errors.As(err, &pe) {
			reason = pe.Err
		}
		return "", errdefs.New(class, fmt.Sprintf("plugin %q: binary %s: %v", name, path, reason))
	}
	return filepath.Abs(found)
}

// forget drops a finished instance.
func (h *Host) forget(i *Instance) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.instances[i.name] == i {
		delete(h.instances, i.name)
	}
}

// Close detaches from every plugin, leaving them running for a later
// host to reattach to, and releases the state directory.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	var insts []*Instance
	for _, i := range h.instances {
		if i != nil {
			insts = append(insts, i)
		}
	}
	h.mu.Unlock()
	var errs []error
	for _, i := range insts {
		errs = append(errs, i.Close())
	}
	errs = append(errs, h.lock.Close()) // releases the flock
	return errors.Join(errs...)
}

// emit hands an event to the OnEvent hook.
func (h *Host) emit(ev Event) {
	if h.cfg.OnEvent != nil {
		h.cfg.OnEvent(ev)
	}
}
