package podbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/paddock-dev/paddock/core/agent"
	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/server"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

// The run's tenant and node.
const (
	tenant   = "bench"
	nodeName = "bench-node"
)

// Bounds of the agent's start and stop and of the final clean-up.
const (
	agentReadyTimeout = time.Minute
	agentStopTimeout  = 30 * time.Second
	cleanupTimeout    = 5 * time.Minute
)

// cluster is the one-node cluster the pods start on: a control plane with
// its controllers and one node agent with the runc plugin.
type cluster struct {
	cp       *testcluster.Cluster
	agentCfg agent.Config
	stop     context.CancelFunc // the agent's
	done     chan error         // the agent's Run result
}

// startCluster starts the control plane (data in dir/server) and the
// agent (state in dir/a, short: the plugin's socket path lies below it),
// and returns once the node is registered. On error it has undone what it
// did.
func startCluster(ctx context.Context, cfg Config, dir string) (c *cluster, err error) {
	c = &cluster{}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.close())
			c = nil
		}
	}()
	serverLog, agentLog := componentLog(cfg.Log, "server"), componentLog(cfg.Log, "agent")
	c.cp, err = testcluster.Launch(ctx, server.Config{
		DataDir:     filepath.Join(dir, "server"),
		Log:         serverLog,
		Version:     "paddock-bench",
		Controllers: server.ControllerConfig{Enabled: true},
	})
	if err != nil {
		return c, fmt.Errorf("control plane: %w", err)
	}
	if _, err := c.cp.Admin.Create(ctx, &api.Tenant{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Tenant"}, Metadata: api.ObjectMeta{Name: tenant}}); err != nil {
		return c, fmt.Errorf("create tenant %s: %w", tenant, err)
	}
	node, _, err := c.cp.NewClient(ctx, api.RoleNode, "", nodeName)
	if err != nil {
		return c, fmt.Errorf("node credential: %w", err)
	}

	agentDir := filepath.Join(dir, "a")
	if err := os.MkdirAll(filepath.Join(agentDir, "import"), 0o700); err != nil {
		return c, err
	}
	if err := os.Symlink(cfg.ImageArchive, filepath.Join(agentDir, "import", filepath.Base(cfg.ImageArchive))); err != nil {
		return c, err
	}
	pluginCfg, err := json.Marshal(map[string]string{"runcPath": cfg.Runc})
	if err != nil {
		return c, err
	}
	// The agent's defaults, as `paddock agent` runs it, but for the
	// addresses: everything on loopback.
	c.agentCfg = agent.Config{
		Client:        node,
		NodeName:      nodeName,
		DataDir:       agentDir,
		Runtimes:      []agent.RuntimePlugin{{Name: "runc", Path: cfg.Plugin, Config: pluginCfg}},
		NodeIP:        "127.0.0.1",
		StreamsListen: "127.0.0.1:0",
		ClientCA:      []byte(c.cp.AdminConfig.CertificateAuthority),
		Version:       "paddock-bench",
		Log:           agentLog,
	}
	a, err := agent.New(c.agentCfg)
	if err != nil {
		return c, err
	}
	actx, stop := context.WithCancel(context.WithoutCancel(ctx))
	c.stop, c.done = stop, make(chan error, 1)
	go func() { c.done <- a.Run(actx) }()
	select {
	case <-a.Ready():
		return c, nil
	case err := <-c.done:
		stop()
		c.stop = nil // it has returned
		return c, fmt.Errorf("node agent: %w", err)
	case <-time.After(agentReadyTimeout):
		return c, fmt.Errorf("node agent: not ready within %v", agentReadyTimeout)
	case <-ctx.Done():
		return c, ctx.Err()
	}
}

// sandboxRecords counts the pods the agent has a sandbox of: it records
// each under DATA_DIR/sandboxes and drops the record once the sandbox is
// removed (core/agent's package documentation).
func (c *cluster) sandboxRecords() (int, error) {
	m, err := filepath.Glob(filepath.Join(c.agentCfg.DataDir, "sandboxes", "*.json"))
	return len(m), err
}

// close stops the agent, removes every pod's containers, sandbox and
// network namespace and the plugin (agent.Down), then stops the control
// plane. It goes on past errors and returns them all.
func (c *cluster) close() error {
	var errs []error
	if c.stop != nil {
		c.stop()
		select {
		case err := <-c.done:
			errs = append(errs, err)
		case <-time.After(agentStopTimeout):
			errs = append(errs, fmt.Errorf("node agent: still running %v after it was told to stop", agentStopTimeout))
		}
	}
	if c.agentCfg.DataDir != "" {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := agent.Down(ctx, c.agentCfg); err != nil {
			errs = append(errs, fmt.Errorf("remove the pods' containers and the plugin: %w", err))
		}
	}
	if c.cp != nil {
		errs = append(errs, c.cp.Stop())
	}
	return errors.Join(errs...)
}

// componentLog is log for a component's own messages when log shows
// debug; otherwise they are dropped, so that the progress stays
// readable.
func componentLog(log *slog.Logger, component string) *slog.Logger {
	if log.Enabled(context.Background(), slog.LevelDebug) {
		return log.With("component", component)
	}
	return slog.New(slog.DiscardHandler)
}
