package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/plugins/errgrpc"
	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// Instance is one launched plugin: whichever process currently serves it.
// Its methods are safe for concurrent use.
type Instance struct {
	host   *Host
	kind   Kind
	name   string
	path   string
	config []byte
	log    *slog.Logger

	restarts atomic.Int64
	// What the plugin's processes wrote: to stdout after their
	// handshakes, and to stderr (the log file and go-plugin's stderr
	// stream).
	stdoutBytes, stderrBytes atomic.Int64

	mu      sync.Mutex
	cur     *incarnation  // nil while the plugin is down
	changed chan struct{} // closed and replaced when cur or ended changes
	ended   string        // "killed" or "closed" once the Instance is finished
	last    Info
	lastAPI string

	stopSupervisor context.CancelFunc
	supervisorDone chan struct{}
}

// incarnation is one plugin process and the host's connection to it.
type incarnation struct {
	client     *plugin.Client
	proto      *plugin.GRPCClient
	raw        any // the kind's dispensed client
	info       Info
	apiVersion string
	rec        *record
	reattached bool
	started    time.Time
	exited     <-chan struct{}
	logs       *tailer
	// Exactly one of these is set.
	proc     *procRunner
	attached *attachedRunner
}

func (c *incarnation) pid() int { return c.rec.PID }

// running reports whether the process has not been seen to exit.
func (c *incarnation) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// detach lets go of the process, leaving it running.
func (c *incarnation) detach() {
	// Closing the connection directly, not through go-plugin's Close or
	// Kill: those tell the plugin to shut down.
	c.proto.Conn.Close()
	if c.proc != nil {
		c.proc.detach()
		c.proc.release()
	} else {
		c.attached.release()
	}
	if c.logs != nil {
		c.logs.stop(false)
	}
}

// kill shuts the process down: gracefully through go-plugin (the plugin's
// gRPC server stops and the process exits; go-plugin gives it 2s before
// SIGKILL), or at once with SIGKILL when ctx ends first.
func (c *incarnation) kill(ctx context.Context) error {
	err := ctx.Err()
	if err != nil {
		c.forceKill()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.client.Kill()
	}()
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		c.forceKill()
		<-done
	}
	c.release()
	return err
}

// forceKill sends SIGKILL.
func (c *incarnation) forceKill() {
	if c.proc != nil {
		c.proc.Kill(context.Background())
	} else {
		c.attached.Kill(context.Background())
	}
}

// release frees what the host holds of a process that has exited.
func (c *incarnation) release() {
	if c.logs != nil {
		c.logs.stop(true)
	}
	if c.proc != nil {
		c.proc.release()
	} else {
		c.attached.release()
	}
}

// Name returns the plugin's name.
func (i *Instance) Name() string { return i.name }

// Kind returns the plugin's kind.
func (i *Instance) Kind() Kind { return i.kind }

// Path returns the plugin's binary.
func (i *Instance) Path() string { return i.path }

// Restarts returns how many times the host has started the plugin again
// after its process exited.
func (i *Instance) Restarts() int { return int(i.restarts.Load()) }

// PID returns the pid of the plugin's process, or 0 while it is down.
func (i *Instance) PID() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cur == nil {
		return 0
	}
	return i.cur.pid()
}

// SocketPath returns the unix socket the current process serves on, or ""
// while the plugin is down.
func (i *Instance) SocketPath() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cur == nil {
		return ""
	}
	return i.cur.rec.Addr
}

// Config returns the configuration (JSON) the plugin is handed.
func (i *Instance) Config() []byte { return slices.Clone(i.config) }

// Output is how much a plugin's processes have written since Launch.
type Output struct {
	// Stdout counts bytes written to stdout after the go-plugin handshake
	// line: by the process itself, and by plugin code through go-plugin's
	// stdio stream. A plugin should write nothing there.
	Stdout int64
	// Stderr counts the plugin's log: its stderr file as the host reads
	// it, and go-plugin's stderr stream.
	Stderr int64
}

// Output returns how much the plugin's processes have written since
// Launch. The counts are for the conformance suite's output hygiene case.
func (i *Instance) Output() Output {
	return Output{Stdout: i.stdoutBytes.Load(), Stderr: i.stderrBytes.Load()}
}

// Reattached reports whether the current process was started by an
// earlier host and reattached to rather than started by this one.
func (i *Instance) Reattached() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.cur != nil && i.cur.reattached
}

// Info returns what the plugin said about itself at the last negotiation.
func (i *Instance) Info() Info {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.last
}

// APIVersion returns the negotiated API version.
func (i *Instance) APIVersion() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.lastAPI
}

// Client returns the kind's client of the current process. While the
// plugin is down (between a crash and its restart) it returns an
// errdefs.ErrUnavailable error that errgrpc.IsPluginExited recognises.
// Ask for the client for each use rather than keeping it: after a restart
// the old one reaches a dead process.
func (i *Instance) Client() (any, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	switch {
	case i.ended != "":
		return nil, errdefs.New(errdefs.ErrUnavailable, fmt.Sprintf("plugin %q was %s", i.name, i.ended))
	case i.cur == nil || !i.cur.running():
		return nil, fmt.Errorf("%w: plugin %q is down and being restarted (%w)", errdefs.ErrUnavailable, i.name, errgrpc.ErrPluginExited)
	}
	return i.cur.raw, nil
}

// Runtime returns the runtime client of the current process; see Client.
func (i *Instance) Runtime() (*runtimev1.Client, error) { return instanceClient[*runtimev1.Client](i) }

// Network returns the network client of the current process; see Client.
func (i *Instance) Network() (*networkv1.Client, error) { return instanceClient[*networkv1.Client](i) }

// instanceClient returns i's client of the current process as the kind's
// client type C, refusing a plugin of another kind.
func instanceClient[C any](i *Instance) (C, error) {
	var zero C
	raw, err := i.Client()
	if err != nil {
		return zero, err
	}
	c, ok := raw.(C)
	if !ok {
		return zero, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("plugin %q is a %s plugin, not the kind whose client is %T", i.name, i.kind.Name, zero))
	}
	return c, nil
}

// WaitReady returns once the plugin is up: at once, or after a pending
// restart. It fails when ctx ends or the Instance is killed or closed.
func (i *Instance) WaitReady(ctx context.Context) error {
	for {
		i.mu.Lock()
		cur, ended, changed := i.cur, i.ended, i.changed
		i.mu.Unlock()
		switch {
		case ended != "":
			return errdefs.New(errdefs.ErrUnavailable, fmt.Sprintf("plugin %q was %s", i.name, ended))
		case cur != nil && cur.running():
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// setCurrent makes c (nil: none) the current process.
func (i *Instance) setCurrent(c *incarnation) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.cur = c
	if c != nil {
		i.last, i.lastAPI = c.info, c.apiVersion
	}
	close(i.changed)
	i.changed = make(chan struct{})
}

// finish marks the Instance ended, stops the supervisor and returns the
// current process; false if it had already ended.
func (i *Instance) finish(how string) (*incarnation, bool) {
	i.mu.Lock()
	if i.ended != "" {
		i.mu.Unlock()
		return nil, false
	}
	i.ended = how
	close(i.changed)
	i.changed = make(chan struct{})
	i.mu.Unlock()

	i.stopSupervisor()
	<-i.supervisorDone

	i.mu.Lock()
	defer i.mu.Unlock()
	cur := i.cur
	i.cur = nil
	return cur, true
}

// Kill stops the plugin for good: its process exits (gracefully if it
// can within 2s or before ctx ends, else by SIGKILL), and its socket, log
// and record are removed. The plugin's state directory is kept. Kill of a
// finished Instance does nothing.
func (i *Instance) Kill(ctx context.Context) error {
	cur, ok := i.finish("killed")
	if !ok {
		return nil
	}
	defer i.host.forget(i)
	var errs []error
	if cur != nil {
		errs = append(errs, cur.kill(ctx))
		i.host.removeSocketDir(cur.rec.SocketDir)
		i.log.Info("plugin killed", "pid", cur.pid())
	}
	errs = append(errs, i.host.removeRecord(i.name))
	if err := os.Remove(i.host.logPath(i.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Close detaches from the plugin and leaves its process running, for a
// later host to reattach to; its record stays. Close of a finished
// Instance does nothing.
func (i *Instance) Close() error {
	cur, ok := i.finish("closed")
	if !ok {
		return nil
	}
	defer i.host.forget(i)
	if cur == nil {
		return nil
	}
	cur.detach()
	// Tell the next host how far the log has been read.
	if cur.logs != nil {
		off := cur.logs.position()
		cur.rec.LogOffset = &off
		if err := i.host.writeRecord(cur.rec); err != nil {
			return err
		}
	}
	i.log.Info("plugin detached", "pid", cur.pid())
	return nil
}

// supervise restarts the plugin whenever its process exits, until ctx
// ends (Kill, Close).
func (i *Instance) supervise(ctx context.Context) {
	defer close(i.supervisorDone)
	b := i.host.cfg.Backoff
	delay := b.Initial
	for {
		i.mu.Lock()
		cur := i.cur
		i.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-cur.exited:
		}
		uptime := time.Since(cur.started)
		i.setCurrent(nil)
		status := "unknown"
		if cur.proc != nil {
			status = cur.proc.exitStatus()
		}
		// go-plugin's Kill of an exited process only cleans up: its
		// goroutines, and the socket directory of a process it started.
		cur.client.Kill()
		cur.release()
		i.host.removeSocketDir(cur.rec.SocketDir)
		i.log.Warn("plugin exited", "pid", cur.pid(), "status", status, "uptime", uptime.Round(time.Millisecond))
		i.host.emit(Event{Type: EventExited, Plugin: i.name, Kind: i.kind.Name, PID: cur.pid(), Restarts: i.Restarts(), Instance: i})
		if uptime >= b.ResetAfter {
			delay = b.Initial
		}
		for {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			waited := delay
			delay = min(2*delay, b.Max)
			next, err := i.startFresh(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				i.log.Error("plugin restart failed", "err", err, "retry_in", delay)
				i.host.emit(Event{Type: EventRestartFailed, Plugin: i.name, Kind: i.kind.Name, Err: err, Restarts: i.Restarts(), Instance: i})
				continue
			}
			n := i.restarts.Add(1)
			i.setCurrent(next)
			i.log.Info("plugin restarted", "pid", next.pid(), "restarts", n, "after", waited)
			i.host.emit(Event{Type: EventRestarted, Plugin: i.name, Kind: i.kind.Name, PID: next.pid(), Restarts: int(n), Instance: i})
			break
		}
	}
}

// EventType says what happened to a plugin.
type EventType int

const (
	// EventExited: the plugin's process exited unasked; a restart
	// follows.
	EventExited EventType = iota + 1
	// EventRestarted: a new process serves the plugin, configured. The
	// agent calls Recover for the sandboxes it knows.
	EventRestarted
	// EventRestartFailed: a restart attempt failed (Err says why); the
	// next follows after a longer back-off.
	EventRestartFailed
)

func (t EventType) String() string {
	switch t {
	case EventExited:
		return "exited"
	case EventRestarted:
		return "restarted"
	case EventRestartFailed:
		return "restart-failed"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is something that happened to a plugin's process.
type Event struct {
	Type     EventType
	Plugin   string // the plugin's name
	Kind     string // the kind's name
	PID      int    // the process that exited or was started
	Restarts int    // Instance.Restarts after the event
	Err      error  // why a restart failed
	Instance *Instance
}
