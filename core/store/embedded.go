package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Defaults for EmbeddedConfig fields left zero.
const (
	DefaultMemberName        = "paddock"
	DefaultQuotaBackendBytes = 2 << 30 // 2 GiB, etcd's own default
	defaultPeriodicRetention = "1h"
	defaultRevisionRetention = "1000"
)

const (
	// embeddedClusterToken seeds the cluster and member IDs of a new member.
	embeddedClusterToken = "paddock"
	// embeddedLockFile, in the data directory, is locked while a member
	// or a restore uses the directory.
	embeddedLockFile = "paddock-etcd.lock"
	// embeddedBootstrapMarker, in the data directory, exists while a new
	// member starts for the first time. See bootstrapMarker.
	embeddedBootstrapMarker = "paddock-etcd.bootstrapping"
	// embeddedReadyTimeout bounds the wait for a started member to become
	// ready. A single member needs no peers, so only a damaged member
	// directory or a stalled disk takes this long.
	embeddedReadyTimeout = time.Minute
	// embeddedMaxListenAttempts bounds the retries when a port picked at
	// run time is taken before etcd binds it.
	embeddedMaxListenAttempts = 5
)

// Raft timing of the embedded member. A single member has no peer to hear
// heartbeats from and elects itself as soon as its election timer fires
// (etcd fast-forwards all but one election tick), so short ticks only make
// startup faster; they cost a 100 Hz timer.
const (
	embeddedTickMs     = 10
	embeddedElectionMs = 100
	// watchProgressInterval is how often idle watches get a BOOKMARK.
	watchProgressInterval = 5 * time.Second
)

// EmbeddedConfig configures an etcd member that runs inside the Paddock process.
type EmbeddedConfig struct {
	// Dir is the data directory; etcd's member directory goes here. It is
	// created with mode 0700 if missing.
	Dir string
	// Name is the member name, default "paddock".
	Name string
	// ClientURL, when set (e.g. "http://127.0.0.1:2379"), also serves the etcd
	// client API on that URL for external tools; by default etcd listens on no TCP
	// port at all for clients and Paddock talks to it over a unix socket in
	// Dir. Only
	// loopback http:// URLs and unix:// sockets are accepted: the API is
	// unauthenticated. Port 0 picks a free port; see Embedded.ClientURL.
	ClientURL string
	// AutoCompactionMode is "periodic" (default) or "revision".
	AutoCompactionMode string
	// AutoCompactionRetention is how much history compaction keeps: a
	// duration for periodic mode (default "1h"), a revision count for
	// revision mode (default "1000").
	AutoCompactionRetention string
	// QuotaBackendBytes caps the size of the database, default 2 GiB.
	QuotaBackendBytes int64
	// Logger receives etcd's own log entries at warn level and above,
	// re-emitted with the attribute component=etcd. Nil discards them.
	Logger *slog.Logger
}

// Embedded is a running single-member etcd. Create it with StartEmbedded and
// stop it with Close. Its methods are safe for concurrent use.
type Embedded struct {
	etcd      *embed.Etcd
	client    *clientv3.Client
	lock      *os.File
	clientURL string
	closing   *atomic.Bool // tells the log bridge that shutdown noise is expected

	// socketDir is a directory made only to hold the client socket when
	// the data directory's path is too long for one; removed by Close.
	socketDir string
	closeOnce sync.Once
	closeErr  error
}

// StartEmbedded starts an etcd member on cfg.Dir and returns once it is ready
// to serve, or fails. A member directory left by an earlier run is reused, so
// data persists across restarts. The member's raft peer endpoint listens on a
// loopback port chosen at run time and is never used (there are no peers);
// clients reach the member through Client, and through cfg.ClientURL when it
// is set.
//
// While the member starts, cancelling ctx stops it and StartEmbedded returns
// ctx's error. ctx is not used after StartEmbedded returns. A member that
// does not become ready within a minute of starting is stopped with an error.
//
// A first start that is interrupted (by ctx or by the process dying) leaves
// a member directory that etcd could never start on again; the next
// StartEmbedded on the same Dir discards it and starts afresh. Nothing was
// lost: no client could write to a member that was never ready.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start embedded etcd: %w", err)
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	clientURL, err := parseClientURL(cfg.ClientURL)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create etcd data directory: %w", err)
	}
	lock, err := lockDataDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	unlock := true
	defer func() {
		if unlock {
			lock.Close() // releases the lock
		}
	}()

	fresh, err := bootstrapMarker(cfg.Dir, cfg.Logger)
	if err != nil {
		return nil, err
	}

	socket, socketDir, err := clientSocket(cfg.Dir)
	if err != nil {
		return nil, err
	}
	closing := new(atomic.Bool)
	logger := newZapLogger(cfg.Logger, closing)
	var e *embed.Etcd
	for attempt := 1; ; attempt++ {
		ecfg, err := cfg.etcdConfig(logger, clientURL, socket)
		if err != nil {
			return nil, err
		}
		e, err = embed.StartEtcd(ecfg)
		if err == nil {
			break
		}
		// A port picked at run time can be taken by someone else
		// between picking and binding: pick again. (A fixed port in
		// ClientURL that is in use fails every attempt the same way.)
		if errors.Is(err, syscall.EADDRINUSE) && attempt < embeddedMaxListenAttempts {
			continue
		}
		return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.Dir, err)
	}

	stop := func() {
		closing.Store(true)
		e.Close()
	}
	timeout := time.NewTimer(embeddedReadyTimeout)
	defer timeout.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		stop()
		return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.Dir, err)
	case <-e.Server.StopNotify():
		stop()
		return nil, fmt.Errorf("start embedded etcd in %s: member stopped before it became ready (see the etcd log)", cfg.Dir)
	case <-ctx.Done():
		stop()
		return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.Dir, ctx.Err())
	case <-timeout.C:
		stop()
		return nil, fmt.Errorf("start embedded etcd in %s: member not ready after %v: see etcd's warnings in the log (EmbeddedConfig.Logger)", cfg.Dir, embeddedReadyTimeout)
	}
	if fresh {
		// The member has committed its first entries: from now on it
		// can always restart.
		if err := removeSynced(filepath.Join(cfg.Dir, embeddedBootstrapMarker)); err != nil {
			stop()
			return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.Dir, err)
		}
	}

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"unix://" + socket},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("connect to embedded etcd at %s: %w", socket, err)
	}
	m := &Embedded{
		etcd:      e,
		client:    cli,
		lock:      lock,
		closing:   closing,
		socketDir: socketDir,
	}
	if clientURL != nil {
		m.clientURL = e.Config().AdvertiseClientUrls[0].String()
	}
	unlock = false
	return m, nil
}

// Client returns the member's client, connected over a unix socket in the
// data directory. (etcd's in-process client, v3client, deadlocks when many
// watches end at once — etcd-io/etcd#18879 — so Paddock uses real gRPC.)
// It is closed by Close; callers must not close it themselves.
func (e *Embedded) Client() *clientv3.Client { return e.client }

// ClientURL returns the URL on which the member serves the etcd client API
// to other processes, with a port picked at run time filled in, or "" if
// EmbeddedConfig.ClientURL was empty.
func (e *Embedded) ClientURL() string { return e.clientURL }

// Close stops the member and closes its client. Requests still in flight
// are cut off after etcd's request timeout. Close is idempotent; later calls
// return the first call's result.
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		e.closing.Store(true)
		// The client's Close may report its own cancellation.
		if err := e.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
			e.closeErr = fmt.Errorf("close embedded etcd client: %w", err)
		}
		e.etcd.Close()
		if e.socketDir != "" {
			os.RemoveAll(e.socketDir)
		}
		if err := e.lock.Close(); err != nil && e.closeErr == nil {
			e.closeErr = fmt.Errorf("release etcd data directory lock: %w", err)
		}
	})
	return e.closeErr
}

// setDefaults fills in defaults and checks the fields StartEmbedded uses.
func (cfg *EmbeddedConfig) setDefaults() error {
	if cfg.Dir == "" {
		return errors.New("embedded etcd: EmbeddedConfig.Dir is empty: set a data directory")
	}
	if cfg.Name == "" {
		cfg.Name = DefaultMemberName
	}
	switch cfg.AutoCompactionMode {
	case "", embed.CompactorModePeriodic:
		cfg.AutoCompactionMode = embed.CompactorModePeriodic
		if cfg.AutoCompactionRetention == "" {
			cfg.AutoCompactionRetention = defaultPeriodicRetention
		}
		if _, err := time.ParseDuration(cfg.AutoCompactionRetention); err != nil {
			if _, err := strconv.Atoi(cfg.AutoCompactionRetention); err != nil {
				return fmt.Errorf("embedded etcd: AutoCompactionRetention %q: want a duration such as \"1h\" for periodic compaction", cfg.AutoCompactionRetention)
			}
		}
	case embed.CompactorModeRevision:
		if cfg.AutoCompactionRetention == "" {
			cfg.AutoCompactionRetention = defaultRevisionRetention
		}
		if _, err := strconv.ParseInt(cfg.AutoCompactionRetention, 10, 64); err != nil {
			return fmt.Errorf("embedded etcd: AutoCompactionRetention %q: want a number of revisions such as \"1000\" for revision compaction", cfg.AutoCompactionRetention)
		}
	default:
		return fmt.Errorf("embedded etcd: AutoCompactionMode %q: want %q or %q", cfg.AutoCompactionMode, embed.CompactorModePeriodic, embed.CompactorModeRevision)
	}
	if cfg.QuotaBackendBytes == 0 {
		cfg.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	if cfg.QuotaBackendBytes < 0 {
		return fmt.Errorf("embedded etcd: QuotaBackendBytes %d: want a positive size in bytes", cfg.QuotaBackendBytes)
	}
	return nil
}

// etcdConfig builds the embed configuration. It picks free loopback ports
// for the peer URL and for a client URL with port 0.
func (cfg *EmbeddedConfig) etcdConfig(logger *zap.Logger, clientURL *url.URL, socket string) (*embed.Config, error) {
	ecfg := embed.NewConfig()
	ecfg.Name = cfg.Name
	ecfg.Dir = cfg.Dir
	ecfg.InitialClusterToken = embeddedClusterToken
	ecfg.TickMs = embeddedTickMs
	ecfg.ElectionMs = embeddedElectionMs
	ecfg.AutoCompactionMode = cfg.AutoCompactionMode
	ecfg.AutoCompactionRetention = cfg.AutoCompactionRetention
	ecfg.QuotaBackendBytes = cfg.QuotaBackendBytes
	// Watches that ask for bookmarks get one this often while idle, so a
	// client that reconnects resumes from a recent revision.
	ecfg.WatchProgressNotifyInterval = watchProgressInterval
	ecfg.Logger = "zap"
	ecfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(logger)

	// The raft peer endpoint: embed insists on one, a single member never
	// uses it. Bind it to loopback on a port nobody else needs to know.
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	peer := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	ecfg.ListenPeerUrls = []url.URL{peer}
	ecfg.AdvertisePeerUrls = []url.URL{peer}
	ecfg.InitialCluster = ecfg.InitialClusterFromName(cfg.Name)

	// Paddock's own client talks gRPC over a unix socket in the data
	// directory (private: the directory is 0700).
	unix := url.URL{Scheme: "unix", Path: socket}
	ecfg.ListenClientUrls = []url.URL{unix}
	ecfg.AdvertiseClientUrls = []url.URL{unix}
	if clientURL != nil {
		u := *clientURL
		if u.Scheme == "http" && u.Port() == "0" {
			port, err := freeLoopbackPort()
			if err != nil {
				return nil, err
			}
			u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(port))
		}
		ecfg.ListenClientUrls = append(ecfg.ListenClientUrls, u)
		ecfg.AdvertiseClientUrls = []url.URL{u}
	}
	return ecfg, nil
}

// parseClientURL checks EmbeddedConfig.ClientURL: the client API has no
// authentication, so it may only be reachable from this machine.
func parseClientURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: ClientURL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "unix":
		return u, nil
	case "http":
		host, port := u.Hostname(), u.Port()
		if port == "" {
			return nil, fmt.Errorf("embedded etcd: ClientURL %q has no port: use e.g. http://127.0.0.1:2379", raw)
		}
		if host == "localhost" {
			return u, nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return u, nil
		}
		return nil, fmt.Errorf("embedded etcd: ClientURL %q is not a loopback address: the embedded client API is unauthenticated, so serve it on 127.0.0.1, [::1] or a unix socket, or run an external etcd cluster with TLS", raw)
	default:
		return nil, fmt.Errorf("embedded etcd: ClientURL %q: scheme must be http (loopback) or unix", raw)
	}
}

// freeLoopbackPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port for embedded etcd: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// bootstrapMarker prepares a first start. etcd writes a new member's WAL
// before its first raft entries are durable; a member stopped in between
// has no voters when it restarts and waits for a leader forever. So while a
// new member starts, a marker file says its member directory is disposable:
// bootstrapMarker removes a member directory that still has the marker (an
// earlier first start was interrupted), and creates the marker when the
// member is new. It reports whether the member is new; StartEmbedded removes
// the marker once the member is ready.
func bootstrapMarker(dir string, logger *slog.Logger) (fresh bool, err error) {
	marker := filepath.Join(dir, embeddedBootstrapMarker)
	memberDir := filepath.Join(dir, "member")
	switch _, err := os.Stat(marker); {
	case err == nil:
		if logger != nil {
			logger.Warn("discarding the etcd member directory of an interrupted first start", "component", "etcd", "dir", memberDir)
		}
		if err := os.RemoveAll(memberDir); err != nil {
			return false, fmt.Errorf("remove etcd member directory of an interrupted first start: %w", err)
		}
		return true, nil
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("check etcd bootstrap marker: %w", err)
	}
	if _, err := os.Stat(filepath.Join(memberDir, "wal")); err == nil {
		return false, nil // an existing member
	}
	if err := createSynced(marker); err != nil {
		return false, fmt.Errorf("create etcd bootstrap marker: %w", err)
	}
	return true, nil
}

// createSynced creates an empty file and makes its existence durable.
func createSynced(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// removeSynced removes a file and makes its removal durable.
func removeSynced(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// lockDataDir takes an exclusive lock on dir so that a second member (in
// this process or another) or a restore cannot use the same data at the
// same time; etcd would otherwise block on its database lock without
// saying why. Closing the returned file releases the lock.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, embeddedLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock etcd data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("etcd data directory %s is in use by another embedded etcd member: stop the other Paddock server first", dir)
		}
		return nil, fmt.Errorf("lock etcd data directory %s: %w", dir, err)
	}
	return f, nil
}

// newZapLogger returns a zap logger that re-emits entries at warn level and
// above to l, or discards everything when l is nil. Once closing is set,
// the errors etcd logs about its own listeners shutting down are expected and
// demoted to debug.
func newZapLogger(l *slog.Logger, closing *atomic.Bool) *zap.Logger {
	if l == nil {
		return zap.NewNop()
	}
	return zap.New(&slogCore{logger: l.With("component", "etcd"), closing: closing})
}

// slogCore is a zapcore.Core that writes to a slog.Logger. It passes on
// entries at warn level and above (etcd is chatty at info), except the known
// harmless ones, which it demotes to debug.
type slogCore struct {
	logger  *slog.Logger
	closing *atomic.Bool
	fields  []zapcore.Field
}

var _ zapcore.Core = (*slogCore)(nil)

func (c *slogCore) Enabled(l zapcore.Level) bool {
	// Demoted entries are decided in Write, once the fields are known;
	// here only the level counts.
	return l >= zapcore.WarnLevel
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{logger: c.logger, closing: c.closing, fields: append(slices.Clip(c.fields), fields...)}
}

func (c *slogCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *slogCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	level := slogLevel(ent.Level)
	errText, _ := enc.Fields["error"].(string)
	if harmlessEtcdEntry(ent.Message, errText, c.closing != nil && c.closing.Load()) {
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if !c.logger.Enabled(ctx, level) {
		return nil
	}

	attrs := make([]slog.Attr, 0, len(enc.Fields)+1)
	if ent.LoggerName != "" {
		attrs = append(attrs, slog.String("logger", ent.LoggerName))
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	c.logger.LogAttrs(ctx, level, ent.Message, attrs...)
	return nil
}

func (c *slogCore) Sync() error { return nil }

// harmlessEtcdEntry reports whether an etcd warning or error is expected in
// the way Paddock runs etcd and says nothing an operator can act on. Should
// etcd reword one of these, it is simply shown again.
func harmlessEtcdEntry(msg, errText string, closing bool) bool {
	switch msg {
	case "Running http and grpc server on single port. This is not recommended for production.",
		// Paddock does not enable etcd's own authentication.
		"simple token is not cryptographically signed":
		return true
	case "Failed to detect schema version", "failed to update storage version":
		// A fresh member's version monitor can run before the first
		// term is stored; it tries again a few seconds later.
		return strings.Contains(errText, "missing term information")
	case "setting up serving from embedded etcd failed.",
		"stopping insecure grpc server due to error",
		"stopped insecure grpc server due to error",
		"failed to update cluster version",
		"failed to publish local member to cluster through raft",
		"stopped publish because server is stopping":
		// Listeners and in-flight internal requests ending in Close.
		return closing
	}
	return false
}

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l < zapcore.InfoLevel:
		return slog.LevelDebug
	case l < zapcore.WarnLevel:
		return slog.LevelInfo
	case l < zapcore.ErrorLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// maxSocketPath is the longest unix socket path that fits sun_path.
const maxSocketPath = 100

// clientSocket returns the path of the member's client socket: in the data
// directory, or, when that path would be too long for a unix socket, in a
// private temporary directory (returned as dir, to be removed on Close).
// A socket left by an earlier run is removed.
func clientSocket(dataDir string) (socket, dir string, err error) {
	socket = filepath.Join(dataDir, "client.sock")
	if abs, err := filepath.Abs(socket); err == nil {
		socket = abs
	}
	if len(socket) > maxSocketPath {
		if dir, err = os.MkdirTemp("", "paddock-etcd-"); err != nil {
			return "", "", fmt.Errorf("embedded etcd socket: %w", err)
		}
		socket = filepath.Join(dir, "client.sock")
	}
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("remove stale embedded etcd socket: %w", err)
	}
	return socket, dir, nil
}
