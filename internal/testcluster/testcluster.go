// Package testcluster runs a real Paddock control plane — embedded etcd
// and the API server, started by core/server exactly as `paddock server`
// starts them — for the tests of components that reach it through
// core/client (informers, the scheduler loop, controllers, the agent).
package testcluster

import (
	"context"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/server"
)

// Cluster is a running control plane.
type Cluster struct {
	// Admin is a cluster-admin client.
	Admin *client.Client
	// AdminConfig is the cluster admin's client config.
	AdminConfig *client.Config
	// DataDir is the server's data directory.
	DataDir string
}

// Start runs a control plane on loopback until tb ends. mutate, when
// set, adjusts the server's config before it starts.
func Start(tb testing.TB, mutate ...func(*server.Config)) *Cluster {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	cfg := server.Config{
		DataDir:  tb.TempDir(),
		Listen:   "127.0.0.1:0",
		AuditLog: "off",
		Ready:    func(adminConfig string) { ready <- adminConfig },
	}
	for _, m := range mutate {
		m(&cfg)
	}
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, cfg) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("server: %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Errorf("server did not stop within 30s")
		}
	})
	var path string
	select {
	case path = <-ready:
	case err := <-done:
		tb.Fatalf("server exited before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		tb.Fatal("server not ready within 60s")
	}
	conf, err := client.LoadConfig(path)
	if err != nil {
		tb.Fatal(err)
	}
	admin, err := client.New(conf)
	if err != nil {
		tb.Fatal(err)
	}
	return &Cluster{Admin: admin, AdminConfig: conf, DataDir: cfg.DataDir}
}

// Client returns a client with a new token of role (for tenant, or for
// node with the node role).
func (c *Cluster) Client(tb testing.TB, role api.Role, tenant, node string) *client.Client {
	tb.Helper()
	tok := &api.Token{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Token"}, Spec: api.TokenSpec{Role: role, Tenant: tenant, Node: node}}
	out, err := c.Admin.Create(context.Background(), tok)
	if err != nil {
		tb.Fatalf("create %s token: %v", role, err)
	}
	conf := *c.AdminConfig
	conf.Token, conf.Tenant, conf.Role = out.(*api.Token).Status.Token, tenant, string(role)
	cl, err := client.New(&conf)
	if err != nil {
		tb.Fatal(err)
	}
	return cl
}
