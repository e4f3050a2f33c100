package networktest

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	networkv1 "github.com/paddock-dev/paddock/plugins/network/v1"
	"github.com/paddock-dev/paddock/plugins/pluginhost"
)

// RestartBackoff is how long the host of the plugin under test waits
// before it starts a killed plugin again: the window in which NP-RS-001
// probes the dataplane with the plugin down.
const RestartBackoff = 6 * time.Second

// HostConfig returns cfg with the restart back-off the suite needs (see
// RestartBackoff). Launch the plugin under test on a host made with it.
func HostConfig(cfg pluginhost.Config) pluginhost.Config {
	cfg.Backoff.Initial = max(cfg.Backoff.Initial, RestartBackoff)
	cfg.Backoff.Max = max(cfg.Backoff.Max, cfg.Backoff.Initial)
	return cfg
}

// HostTarget is a network plugin launched through plugins/pluginhost (on
// a host configured with HostConfig), as the suite sees it: the way
// `paddock conformance network` and the agent run plugins.
func HostTarget(inst *pluginhost.Instance) Target { return &hostTarget{inst: inst} }

type hostTarget struct {
	inst *pluginhost.Instance
}

// Client returns the current process's client, waiting for a restarting
// plugin a little longer than the restart back-off.
func (t *hostTarget) Client() *networkv1.Client {
	ctx, cancel := context.WithTimeout(context.Background(), RestartBackoff+30*time.Second)
	defer cancel()
	if err := t.inst.WaitReady(ctx); err != nil {
		return nil
	}
	c, err := t.inst.Network()
	if err != nil {
		return nil
	}
	return c
}

func (t *hostTarget) Config() []byte { return t.inst.Config() }

func (t *hostTarget) PluginPID() int { return t.inst.PID() }

func (t *hostTarget) WaitReady(ctx context.Context) error { return t.inst.WaitReady(ctx) }

// KillPlugin sends SIGKILL and waits until the host has seen the process
// exit.
func (t *hostTarget) KillPlugin(ctx context.Context) error {
	pid := t.inst.PID()
	if pid <= 0 {
		return errors.New("the plugin has no process")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill plugin pid %d: %w", pid, err)
	}
	for t.inst.PID() == pid {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the host did not see plugin pid %d exit: %w", pid, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
