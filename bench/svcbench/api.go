package svcbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/proxy"
	"github.com/paddock-dev/paddock/core/proxy/proxytest"
	"github.com/paddock-dev/paddock/core/server"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

// creators is the number of goroutines creating the API objects.
const creators = 16

// measureAPI makes the size's services and endpoints API objects of a
// real control plane (controllers off: no endpoints controller rewrites
// the bench's endpoints), runs the proxy against it with informers, and
// times the changes made by updating the Endpoints object.
func (b *bed) measureAPI(ctx context.Context, cfg Config, n int, res *sizeResult) (err error) {
	dir, err := os.MkdirTemp(cfg.DataDir, "paddock-b6-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.Log.Info("starting a control plane for the API phase", "dir", dir)
	cp, err := testcluster.Launch(ctx, server.Config{DataDir: dir, AuditLog: "off", Log: cfg.Log.With("component", "server")})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cp.Stop()) }()
	admin := cp.Admin
	if _, err := admin.Create(ctx, &api.Tenant{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Tenant"}, Metadata: api.ObjectMeta{Name: tenant}}); err != nil {
		return fmt.Errorf("create tenant: %w", err)
	}
	svcs, eps := b.services(n, cfg.Endpoints)
	cfg.Log.Info("creating the services and endpoints through the API", "services", n)
	if err := createAll(ctx, admin, svcs, eps); err != nil {
		return err
	}

	p, err := proxy.New(proxy.Config{Table: table, NetNS: b.topo.Node, ClusterCIDR: proxytest.ClusterCIDR, Log: cfg.Log})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, p.Close()) }()
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	start := time.Now()
	wg.Go(func() {
		if err := p.Run(runCtx, admin); err != nil {
			cfg.Log.Error("proxy stopped", "error", err)
		}
	})
	for len(p.Services()) < n {
		if time.Since(start) > syncTimeout {
			return fmt.Errorf("the proxy programmed %d of %d services in %v", len(p.Services()), n, syncTimeout)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	res.apiRamp = time.Since(start)

	endpointsKind, _ := api.KindFor("endpoints")
	target := measured(n)
	o, err := admin.Get(ctx, endpointsKind, tenant, serviceName(target))
	if err != nil {
		return err
	}
	cur := o.(*api.Endpoints)
	update := func(_ *api.Service, ep *api.Endpoints) error {
		cur.Subsets = ep.Subsets
		o, err := admin.Update(ctx, cur)
		if err != nil {
			return fmt.Errorf("update endpoints %s: %w", serviceName(target), err)
		}
		cur = o.(*api.Endpoints)
		return nil
	}
	return b.measure(ctx, cfg, n, res, update, &res.apiChanges, nil)
}

// syncTimeout bounds the proxy's first sync of the API phase.
const syncTimeout = 10 * time.Minute

// createAll creates the services and their endpoints from creators
// goroutines.
func createAll(ctx context.Context, c *client.Client, svcs []*api.Service, eps []*api.Endpoints) error {
	work := make(chan int)
	errc := make(chan error, creators)
	var wg sync.WaitGroup
	for range creators {
		wg.Go(func() {
			for i := range work {
				svcs[i].TypeMeta = api.TypeMeta{APIVersion: api.Version, Kind: "Service"}
				eps[i].TypeMeta = api.TypeMeta{APIVersion: api.Version, Kind: "Endpoints"}
				if _, err := c.Create(ctx, svcs[i]); err != nil {
					errc <- fmt.Errorf("create service %s: %w", svcs[i].Metadata.Name, err)
					return
				}
				if _, err := c.Create(ctx, eps[i]); err != nil {
					errc <- fmt.Errorf("create endpoints %s: %w", eps[i].Metadata.Name, err)
					return
				}
			}
		})
	}
	var err error
feed:
	for i := range svcs {
		select {
		case work <- i:
		case err = <-errc:
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}
