package runtimetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"
	"time"

	"github.com/paddock-dev/paddock/plugins/pluginhost"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// HostTarget is a plugin launched through plugins/pluginhost, as the
// suite sees it: the way `paddock conformance` and the agent run plugins.
func HostTarget(inst *pluginhost.Instance) Target { return &hostTarget{inst: inst} }

type hostTarget struct {
	inst *pluginhost.Instance
}

// Client returns the current process's client, waiting up to 30 seconds
// for a restarting plugin.
func (t *hostTarget) Client() *runtimev1.Client { return readyClient(t.inst) }

func readyClient(inst *pluginhost.Instance) *runtimev1.Client {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := inst.WaitReady(ctx); err != nil {
		return nil
	}
	c, err := inst.Runtime()
	if err != nil {
		return nil
	}
	return c
}

func (t *hostTarget) PluginPID() int { return t.inst.PID() }

func (t *hostTarget) PluginPath() string { return t.inst.Path() }

func (t *hostTarget) SocketPath() string { return t.inst.SocketPath() }

func (t *hostTarget) Output() (stdout, stderr int64) {
	o := t.inst.Output()
	return o.Stdout, o.Stderr
}

// RestartPlugin kills the plugin with SIGKILL and waits for the host to
// have started it again.
func (t *hostTarget) RestartPlugin(ctx context.Context) error {
	old := t.inst.PID()
	if old <= 0 {
		return errors.New("the plugin has no process")
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill plugin pid %d: %w", old, err)
	}
	for {
		if pid := t.inst.PID(); pid > 0 && pid != old {
			return t.inst.WaitReady(ctx)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the plugin was not restarted: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Launch starts the same binary with the same configuration under a host
// of its own on stateDir.
func (t *hostTarget) Launch(ctx context.Context, stateDir string) (Instance, error) {
	host, err := pluginhost.New(pluginhost.Config{StateDir: stateDir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	inst, err := host.Launch(ctx, pluginhost.RuntimeKind, "second", t.inst.Path(), t.inst.Config())
	if err != nil {
		host.Close()
		return nil, err
	}
	return &hostInstance{host: host, inst: inst}, nil
}

// hostInstance is a second instance with a host of its own.
type hostInstance struct {
	host *pluginhost.Host
	inst *pluginhost.Instance
}

func (i *hostInstance) Client() *runtimev1.Client { return readyClient(i.inst) }
func (i *hostInstance) PluginPID() int            { return i.inst.PID() }
func (i *hostInstance) SocketPath() string        { return i.inst.SocketPath() }

func (i *hostInstance) Kill(ctx context.Context) error {
	return errors.Join(i.inst.Kill(ctx), i.host.Close())
}
