package runtimetest

import (
	"context"
	"errors"
	"fmt"
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
func (t *hostTarget) Client() *runtimev1.Client {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := t.inst.WaitReady(ctx); err != nil {
		return nil
	}
	c, err := t.inst.Runtime()
	if err != nil {
		return nil
	}
	return c
}

func (t *hostTarget) PluginPID() int { return t.inst.PID() }

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
