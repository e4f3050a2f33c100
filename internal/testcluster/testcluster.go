// Package testcluster runs a real Paddock control plane — embedded etcd
// and the API server, started by core/server exactly as `paddock server`
// starts them — for the tests of components that reach it through
// core/client (informers, the scheduler loop, controllers, the agent), and
// for the benchmark programs that measure them.
//
// Start runs one for the length of a test; Launch runs one until Stop, for
// programs. Both return once the API server serves.
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/server"
)

// Bounds of Launch's wait for the server to serve and of Stop's wait for
// it to end.
const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
)

// Cluster is a running control plane.
type Cluster struct {
	// Admin is a cluster-admin client.
	Admin *client.Client
	// AdminConfig is the cluster admin's client config.
	AdminConfig *client.Config
	// DataDir is the server's data directory.
	DataDir string

	cancel context.CancelFunc
	done   chan error // server.Run's result, put back once read
}

// Start runs a control plane on loopback until tb ends, with its data in
// a temporary directory of tb and no audit log. mutate, when set, adjusts
// the server's config before it starts.
func Start(tb testing.TB, mutate ...func(*server.Config)) *Cluster {
	tb.Helper()
	cfg := server.Config{DataDir: tb.TempDir(), AuditLog: "off"}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := Launch(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := c.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return c
}

// Launch runs server.Run(cfg) until Stop, listening on a loopback port
// unless cfg.Listen says otherwise, and returns once it serves (at most a
// minute) or ctx ends; ctx bounds only that wait. cfg.DataDir is
// required; cfg.Ready is Launch's own.
func Launch(ctx context.Context, cfg server.Config) (*Cluster, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("testcluster: DataDir: required")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	ready := make(chan string, 1)
	cfg.Ready = func(adminConfig string) { ready <- adminConfig }
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &Cluster{DataDir: cfg.DataDir, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- server.Run(sctx, cfg) }()
	var path string
	select {
	case path = <-ready:
	case err := <-c.done:
		cancel()
		return nil, fmt.Errorf("server exited before it was ready: %w", err)
	case <-time.After(readyTimeout):
		return nil, errors.Join(fmt.Errorf("server not ready within %v", readyTimeout), c.Stop())
	case <-ctx.Done():
		return nil, errors.Join(ctx.Err(), c.Stop())
	}
	conf, err := client.LoadConfig(path)
	if err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	admin, err := client.New(conf)
	if err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	c.Admin, c.AdminConfig = admin, conf
	return c, nil
}

// Stop stops the server and waits for it (at most 30 seconds). Further
// calls return the first one's result.
func (c *Cluster) Stop() error {
	c.cancel()
	select {
	case err := <-c.done:
		c.done <- err
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("server did not stop within %v", stopTimeout)
	}
}

// Client returns a client with a new token of role (for tenant, or for
// node with the node role).
func (c *Cluster) Client(tb testing.TB, role api.Role, tenant, node string) *client.Client {
	tb.Helper()
	cl, _, err := c.NewClient(context.Background(), role, tenant, node)
	if err != nil {
		tb.Fatal(err)
	}
	return cl
}

// NewClient is Client for programs: it mints a token of role through the
// admin client and returns a client with it and that client's config.
func (c *Cluster) NewClient(ctx context.Context, role api.Role, tenant, node string) (*client.Client, *client.Config, error) {
	tok := &api.Token{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Token"}, Spec: api.TokenSpec{Role: role, Tenant: tenant, Node: node}}
	out, err := c.Admin.Create(ctx, tok)
	if err != nil {
		return nil, nil, fmt.Errorf("create %s token: %w", role, err)
	}
	conf := *c.AdminConfig
	conf.Token, conf.Tenant, conf.Role = out.(*api.Token).Status.Token, tenant, string(role)
	cl, err := client.New(&conf)
	if err != nil {
		return nil, nil, err
	}
	return cl, &conf, nil
}
