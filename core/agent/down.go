package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/paddock-dev/paddock/core/proxy"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// Down stops every pod the agent with cfg's data directory runs —
// containers, sandboxes, network namespaces — and then its plugins. The
// agent itself must not be running. It is `paddock down`; cfg needs no
// client.
func Down(ctx context.Context, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	a := &Agent{cfg: cfg, log: cfg.Log.With("node", cfg.NodeName)}
	if err := a.launchRuntimes(ctx); err != nil {
		return err
	}
	if err := a.launchNetwork(ctx); err != nil {
		a.rt.host.Close()
		return err
	}
	var errs []error
	err := a.rt.each(func(plugin string, rc *runtimev1.Client) error {
		resp, err := rc.ListSandboxes(ctx, &runtimev1.ListSandboxesRequest{Labels: map[string]string{labelManaged: "true"}})
		if err != nil {
			return err
		}
		for _, sb := range resp.Sandboxes {
			a.log.Info("stopping pod", "pod", sb.GetConfig().GetTenant()+"/"+sb.GetConfig().GetName(), "sandbox", sb.Id)
			if err := a.teardown(ctx, found{plugin: plugin, rc: rc, sb: sb}, orphanGrace); err != nil {
				errs = append(errs, err)
			}
		}
		return nil
	})
	errs = append(errs, err)
	// Attachments whose sandbox no runtime knows any more.
	for _, r := range a.loadRecords() {
		if err := a.detachRecord(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range a.rt.names() {
		a.rt.mu.Lock()
		inst := a.rt.byName[name]
		a.rt.mu.Unlock()
		if err := inst.Kill(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop plugin %s: %w", name, err))
		}
	}
	if a.net != nil && cfg.ProxyTable != "off" {
		// The service rules go with the pods.
		p, err := proxy.New(proxy.Config{Table: cfg.ProxyTable})
		if err == nil {
			err = p.Close()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove the service proxy's rules: %w", err))
		}
	}
	if a.net != nil {
		if err := a.net.inst.Kill(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop network plugin %s: %w", a.cfg.Network.Name, err))
		}
	}
	errs = append(errs, a.rt.host.Close())
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// What is left are records of sandboxes no plugin knows and their
	// network namespaces.
	for _, r := range a.loadRecords() {
		a.removeNetns(r.Netns)
		a.dropRecord(r.ID)
	}
	nsDir := filepath.Join(cfg.DataDir, "netns")
	entries, _ := os.ReadDir(nsDir)
	for _, e := range entries {
		a.removeNetns(filepath.Join(nsDir, e.Name()))
	}
	return nil
}
