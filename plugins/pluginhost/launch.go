package pluginhost

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/plugins/errgrpc"
)

// callTimeout bounds each negotiation call (Info, SetConfig) beyond the
// caller's context.
const callTimeout = 30 * time.Second

// reattachTimeout bounds the wait for a recorded process to answer.
const reattachTimeout = 5 * time.Second

// launch makes the Instance of a Launch: reattached to a recorded process
// or started afresh, then supervised.
func (h *Host) launch(ctx context.Context, kind Kind, name, path string, config []byte) (*Instance, error) {
	i := &Instance{
		host:           h,
		kind:           kind,
		name:           name,
		path:           path,
		config:         config,
		log:            h.log.With("plugin", name),
		changed:        make(chan struct{}),
		supervisorDone: make(chan struct{}),
	}
	if err := mkdirPrivate(h.pluginStateDir(name)); err != nil {
		return nil, err
	}
	cur, err := i.fromRecord(ctx)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		if cur, err = i.startFresh(ctx); err != nil {
			return nil, err
		}
	}
	i.setCurrent(cur)
	sctx, cancel := context.WithCancel(context.Background())
	i.stopSupervisor = cancel
	go i.supervise(sctx)
	return i, nil
}

// fromRecord reattaches to the recorded process of the plugin, if there is
// one that is alive and answers. It returns nil when a new process is to
// be started. A recorded process that is alive but unusable (another
// binary, does not answer, speaks no common version) is stopped first.
func (i *Instance) fromRecord(ctx context.Context) (*incarnation, error) {
	h := i.host
	rec, err := h.readRecord(i.name)
	if err != nil {
		i.log.Warn("plugin record unreadable; starting a new process", "err", err)
		h.removeRecord(i.name)
		return nil, nil
	}
	if rec == nil {
		return nil, nil
	}
	if rec.Kind != i.kind.Name {
		return nil, errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("plugin name %q is recorded for a %s plugin (pid %d), not a %s plugin", i.name, rec.Kind, rec.PID, i.kind.Name))
	}
	alive := processAlive(rec.PID, rec.StartTime)
	switch {
	case !alive:
		i.log.Info("recorded plugin process is gone; starting a new one", "pid", rec.PID)
	case rec.Path != i.path:
		i.log.Info("recorded plugin process runs another binary; replacing it", "pid", rec.PID, "recorded_path", rec.Path)
	default:
		cur, err := i.reattach(ctx, rec)
		if err == nil {
			return cur, nil
		}
		if errors.Is(err, errKeptRunning) || ctx.Err() != nil {
			return nil, err
		}
		i.log.Warn("cannot reattach to the recorded plugin process; starting a new one", "pid", rec.PID, "err", err)
	}
	if alive {
		i.stopRecorded(ctx, rec)
	}
	h.removeSocketDir(rec.SocketDir)
	h.removeRecord(i.name)
	return nil, nil
}

// errKeptRunning marks a reattach that failed for the caller's reasons
// (its new configuration): the recorded process is left running.
var errKeptRunning = errors.New("the running plugin process was left as it was")

// reattachConfig is the go-plugin configuration that connects to the
// recorded process ar.
func (i *Instance) reattachConfig(rec *record, plugins plugin.PluginSet, tlsCfg *tls.Config, ar runner.AttachedRunner) *plugin.ClientConfig {
	return &plugin.ClientConfig{
		HandshakeConfig: i.kind.Handshake,
		// go-plugin sets Plugins from the handshake for processes it
		// starts; on reattach it is the caller's to set.
		Plugins: plugins,
		Reattach: &plugin.ReattachConfig{
			Protocol:        plugin.Protocol(rec.Protocol),
			ProtocolVersion: rec.ProtocolVersion,
			Addr:            &net.UnixAddr{Net: rec.Network, Name: rec.Addr},
			Pid:             rec.PID,
			ReattachFunc:    func() (runner.AttachedRunner, error) { return ar, nil },
		},
		// AutoMTLS cannot be used to reattach: the certificates are the
		// recorded ones.
		TLSConfig:        tlsCfg,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           newHCLogAdapter(i.log.Handler(), "go-plugin", slog.LevelDebug),
	}
}

// reattach connects to the recorded process and configures it again.
func (i *Instance) reattach(ctx context.Context, rec *record) (*incarnation, error) {
	h := i.host
	plugins, ok := i.kind.Plugins[rec.ProtocolVersion]
	if !ok {
		return nil, fmt.Errorf("it speaks go-plugin protocol version %d, which this host does not", rec.ProtocolVersion)
	}
	tlsCfg, err := rec.tlsConfig()
	if err != nil {
		return nil, err
	}
	ar, err := attach(rec.PID, rec.StartTime)
	if err != nil {
		return nil, err
	}
	cfg := i.reattachConfig(rec, plugins, tlsCfg, ar)
	cfg.GRPCDialOptions = i.kind.dialOptions()
	cfg.SyncStdout = &lineWriter{e: lineEmitter{h: i.log.Handler(), stream: "stdout"}, count: &i.stdoutBytes}
	cfg.SyncStderr = &lineWriter{e: lineEmitter{h: i.log.Handler(), stream: "stderr"}, count: &i.stderrBytes}
	client := plugin.NewClient(cfg)
	cur := &incarnation{
		client:     client,
		rec:        rec,
		reattached: true,
		started:    time.Now(),
		exited:     ar.exited,
		attached:   ar,
	}
	fail := func(err error) (*incarnation, error) {
		if cur.proto != nil {
			cur.proto.Conn.Close()
		}
		ar.release()
		return nil, err
	}
	proto, err := client.Client()
	if err != nil {
		return fail(err)
	}
	cur.proto = proto.(*plugin.GRPCClient)
	if cur.raw, err = cur.proto.Dispense(i.kind.Dispense); err != nil {
		return fail(err)
	}
	actx, cancel := context.WithTimeout(ctx, reattachTimeout)
	err = i.negotiate(actx, cur)
	cancel()
	if err != nil {
		return fail(err)
	}
	// The log from where the last host stopped reading, if it said.
	offset := int64(-1)
	if rec.LogOffset != nil {
		offset = *rec.LogOffset
	}
	if fi, err := os.Stat(h.logPath(i.name)); err == nil && (offset < 0 || offset > fi.Size()) {
		offset = fi.Size()
	}
	cur.logs = startTailer(h.logPath(i.name), max(offset, 0), i.log.Handler(), ar.exited, &i.stderrBytes)

	if err := i.configure(ctx, cur); err != nil {
		cur.logs.stop(false)
		if errgrpc.IsPluginExited(err) || errors.Is(err, errdefs.ErrUnavailable) {
			return fail(err)
		}
		// The plugin answered and refused the configuration: it keeps
		// serving with its old one, as after any failed SetConfig.
		off := cur.logs.position()
		rec.LogOffset = &off
		h.writeRecord(rec)
		cur.proto.Conn.Close()
		ar.release()
		return nil, fmt.Errorf("%w (%w)", err, errKeptRunning)
	}
	rec.LogOffset = nil
	if err := h.writeRecord(rec); err != nil {
		i.log.Warn("cannot update the plugin record", "err", err)
	}
	i.log.Info("plugin reattached", "pid", rec.PID, "api_version", cur.apiVersion, "plugin_version", cur.info.Version)
	return cur, nil
}

// stopRecorded stops a recorded process that is not to be reattached to:
// gracefully if it answers, else by SIGKILL.
func (i *Instance) stopRecorded(ctx context.Context, rec *record) {
	ar, err := attach(rec.PID, rec.StartTime)
	if err != nil {
		return
	}
	defer ar.release()
	stopped := false
	if tlsCfg, err := rec.tlsConfig(); err == nil {
		if plugins, ok := i.kind.Plugins[rec.ProtocolVersion]; ok {
			client := plugin.NewClient(i.reattachConfig(rec, plugins, tlsCfg, ar))
			// Connected, Kill asks the plugin to shut down and gives it
			// 2s before SIGKILL.
			if _, err := client.Client(); err == nil {
				cur := &incarnation{client: client, rec: rec, attached: ar}
				kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				cur.kill(kctx)
				cancel()
				stopped = true
			}
		}
	}
	if !stopped {
		ar.Kill(ctx)
		select {
		case <-ar.exited:
		case <-time.After(5 * time.Second):
		}
	}
	i.log.Info("stopped the recorded plugin process", "pid", rec.PID)
}

// startFresh starts a new process of the plugin, negotiates and configures
// it.
func (i *Instance) startFresh(ctx context.Context) (*incarnation, error) {
	h := i.host
	logPath := h.logPath(i.name)
	// Keep the previous process's log for a human to read.
	os.Rename(logPath, logPath+".1")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the plugin has its own copy
	pr := newProcRunner(i.path, h.pluginStateDir(i.name), logFile, &i.stdoutBytes)
	var socketDir string
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  i.kind.Handshake,
		VersionedPlugins: i.kind.pluginSets(),
		RunnerFunc: func(_ hclog.Logger, cmd *exec.Cmd, tmpDir string) (runner.Runner, error) {
			socketDir = tmpDir
			pr.prepare(cmd.Env)
			return pr, nil
		},
		// go-plugin makes the socket directory (0700) in TempDir, tells
		// the plugin through PLUGIN_UNIX_SOCKET_DIR, and removes it on
		// Kill.
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: h.socketsDir()},
		AutoMTLS:         true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		// Not managed: plugin.CleanupClients, were anything to call it,
		// must not kill plugins that are to outlive the host.
		Managed:         false,
		StartTimeout:    h.cfg.HandshakeTimeout,
		Logger:          newHCLogAdapter(i.log.Handler(), "go-plugin", slog.LevelDebug),
		GRPCDialOptions: i.kind.dialOptions(),
		SyncStdout:      &lineWriter{e: lineEmitter{h: i.log.Handler(), stream: "stdout"}, count: &i.stdoutBytes},
		SyncStderr:      &lineWriter{e: lineEmitter{h: i.log.Handler(), stream: "stderr"}, count: &i.stderrBytes},
	}
	client := plugin.NewClient(cfg)
	cur := &incarnation{client: client, started: time.Now(), exited: pr.exited, proc: pr}

	startErr := startClient(ctx, client, pr)
	if pr.ID() != "" {
		// From the start, so that what a failing plugin says reaches the
		// log; the tailer stops at the process's exit.
		cur.logs = startTailer(logPath, 0, i.log.Handler(), pr.exited, &i.stderrBytes)
	}
	if startErr != nil {
		client.Kill() // ends go-plugin's goroutines
		h.removeSocketDir(socketDir)
		pr.release()
		if cur.logs != nil {
			cur.logs.wait()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, i.handshakeError(startErr, pr)
	}
	rc := client.ReattachConfig()
	cur.rec = &record{
		Kind:            i.kind.Name,
		Name:            i.name,
		Path:            i.path,
		PID:             pr.pid,
		StartTime:       pr.startTime,
		Network:         rc.Addr.Network(),
		Addr:            rc.Addr.String(),
		Protocol:        string(rc.Protocol),
		ProtocolVersion: client.NegotiatedVersion(),
		SocketDir:       socketDir,
		Started:         cur.started,
	}
	fail := func(err error) (*incarnation, error) {
		cur.kill(context.Background())
		h.removeSocketDir(socketDir)
		h.removeRecord(i.name)
		return nil, err
	}
	if err := cur.rec.setTLS(cfg.TLSConfig, pr.handshake()); err != nil {
		return fail(fmt.Errorf("plugin %q at %s: %w", i.name, i.path, err))
	}
	// Recorded at once, so that a host that dies from here on leaves a
	// process the next host can find.
	if err := h.writeRecord(cur.rec); err != nil {
		return fail(err)
	}
	proto, err := client.Client()
	if err != nil {
		return fail(errdefs.New(errdefs.ErrUnavailable, fmt.Sprintf("plugin %q at %s: connect: %v", i.name, i.path, err)))
	}
	cur.proto = proto.(*plugin.GRPCClient)
	if cur.raw, err = cur.proto.Dispense(i.kind.Dispense); err != nil {
		return fail(errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("plugin %q at %s: %v", i.name, i.path, err)))
	}
	if err := i.negotiate(ctx, cur); err != nil {
		return fail(err)
	}
	if err := i.configure(ctx, cur); err != nil {
		return fail(err)
	}
	if err := h.writeRecord(cur.rec); err != nil {
		return fail(err)
	}
	i.log.Info("plugin started", "pid", cur.pid(), "path", i.path, "api_version", cur.apiVersion, "plugin_version", cur.info.Version)
	return cur, nil
}

// startClient runs go-plugin's Start (the process and the handshake),
// which takes no context: when ctx ends first, the process is killed.
func startClient(ctx context.Context, client *plugin.Client, pr *procRunner) error {
	done := make(chan error, 1)
	go func() {
		_, err := client.Start()
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		pr.Kill(ctx)
		<-done
		return ctx.Err()
	}
}

// negotiate asks the plugin for its Info and picks the API version.
func (i *Instance) negotiate(ctx context.Context, cur *incarnation) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	info, err := i.kind.Info(cctx, cur.raw)
	if err != nil {
		return i.callError("Info", err)
	}
	v, ok := negotiate(i.kind.APIVersions, info.APIVersions)
	if !ok {
		return errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf(
			"plugin %q at %s speaks API versions %v; this host speaks %v: upgrade the plugin or the host",
			i.name, i.path, info.APIVersions, i.kind.APIVersions))
	}
	if cur.rec.APIVersion != "" && cur.rec.APIVersion != v {
		i.log.Info("plugin API version changed", "was", cur.rec.APIVersion, "now", v)
	}
	cur.info, cur.apiVersion, cur.rec.APIVersion = info, v, v
	return nil
}

// configure hands the plugin its configuration.
func (i *Instance) configure(ctx context.Context, cur *incarnation) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := i.kind.SetConfig(cctx, cur.raw, cur.apiVersion, i.config, i.host.pluginStateDir(i.name)); err != nil {
		if errors.Is(err, errdefs.ErrInvalidArgument) {
			return fmt.Errorf("plugin %q rejected its configuration: %w", i.name, err)
		}
		return i.callError("SetConfig", err)
	}
	return nil
}

// callError describes a failed negotiation call.
func (i *Instance) callError(call string, err error) error {
	switch {
	case errgrpc.IsPluginExited(err):
		return fmt.Errorf("plugin %q at %s exited during %s: %w", i.name, i.path, call, err)
	case errors.Is(err, context.DeadlineExceeded):
		return errdefs.New(errdefs.ErrUnavailable, fmt.Sprintf("plugin %q at %s did not answer %s in time", i.name, i.path, call))
	}
	return fmt.Errorf("plugin %q at %s: %s: %w", i.name, i.path, call, err)
}

// handshakeError turns go-plugin's start errors into ones that say what
// is wrong with the binary.
func (i *Instance) handshakeError(err error, pr *procRunner) error {
	// The process has been killed if it still ran; wait for its exit
	// status (and the last of its log).
	if pr.ID() != "" {
		select {
		case <-pr.exited:
		case <-time.After(2 * time.Second):
		}
	}
	what := fmt.Sprintf("plugin %q at %s", i.name, i.path)
	msg, line := err.Error(), pr.handshake()
	stderr := tailOf(i.host.logPath(i.name))
	said := ""
	if stderr != "" {
		said = "; it said: " + stderr
	}
	fail := func(class error, format string, args ...any) error {
		return errdefs.New(class, what+" "+fmt.Sprintf(format, args...))
	}
	switch {
	case pr.ID() == "":
		return fail(errdefs.ErrFailedPrecondition, "cannot be started: %v", err)
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fail(errdefs.ErrUnavailable, "did not print the go-plugin handshake within %s: is it a %s plugin?%s", i.host.cfg.HandshakeTimeout, i.kind.Name, said)
	case strings.Contains(msg, "incompatible API version"):
		return fail(errdefs.ErrFailedPrecondition, "speaks another go-plugin protocol version than this host's %v (handshake %q): upgrade the plugin or the host", versions(i.kind), line)
	case strings.Contains(msg, "incompatible core API version"):
		return fail(errdefs.ErrFailedPrecondition, "was built with an incompatible go-plugin (handshake %q): rebuild it", line)
	case strings.Contains(msg, "unsupported plugin protocol"):
		return fail(errdefs.ErrFailedPrecondition, "serves go-plugin's net/rpc protocol; %s plugins must serve gRPC", i.kind.Name)
	case line != "" && strings.Contains(msg, "Unrecognized remote plugin message"):
		return fail(errdefs.ErrFailedPrecondition, "printed %q instead of the go-plugin handshake: it is not a %s plugin", truncate(line, 80), i.kind.Name)
	case strings.Contains(stderr, "This binary is a plugin"):
		return fail(errdefs.ErrFailedPrecondition, "exited (%s) without a handshake: it does not know the %s plugin magic cookie (%s), so it is a plugin of another kind%s", pr.exitStatus(), i.kind.Name, i.kind.Handshake.MagicCookieKey, said)
	}
	select {
	case <-pr.exited:
		return fail(errdefs.ErrFailedPrecondition, "exited (%s) before printing the go-plugin handshake: it is not a %s plugin, or it failed to start%s", pr.exitStatus(), i.kind.Name, said)
	default:
	}
	return fail(errdefs.ErrFailedPrecondition, "failed the go-plugin handshake: %s%s", strings.ReplaceAll(msg, "\n", " "), said)
}

func versions(k Kind) []int {
	var vs []int
	for v := range k.Plugins {
		vs = append(vs, v)
	}
	return vs
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
