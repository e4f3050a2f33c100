package controller

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// garbageCollector deletes dependents (pods, replica sets) whose
// controlling owner (a replica set, a deployment, in the same tenant) no
// longer exists: deleted, or replaced by a new object of the same name
// (another uid). Before it deletes anything it reads both the owner and
// the dependent afresh from the API server.
type garbageCollector struct {
	c    *client.Client
	deps map[*api.Kind]*client.Informer // dependents by kind
	ownr map[string]*client.Informer    // owners by Kind name
	ctl  *Controller
	log  *slog.Logger
}

func newGarbageCollector(c *client.Client, inf *Informers, workers int, log *slog.Logger) *garbageCollector {
	g := &garbageCollector{
		c:    c,
		deps: map[*api.Kind]*client.Informer{podKind: inf.For(podKind), rsKind: inf.For(rsKind)},
		ownr: map[string]*client.Informer{rsKind.Kind: inf.For(rsKind), deployKind.Kind: inf.For(deployKind)},
		log:  log.With("controller", "garbagecollector"),
	}
	g.ctl = New("garbagecollector", workers, log, g.reconcile)
	for k, i := range g.deps {
		enqueue := func(o api.Object) {
			if controllerRef(o.GetObjectMeta()) != nil {
				g.ctl.Enqueue(k.Resource + "/" + client.Key(o))
			}
		}
		i.AddHandler(client.Handler{OnAdd: enqueue, OnUpdate: func(_, o api.Object) { enqueue(o) }})
	}
	for _, i := range g.ownr {
		i.AddHandler(client.Handler{OnDelete: g.ownerDeleted})
	}
	return g
}

// Run implements the controller's lifecycle.
func (g *garbageCollector) Run(ctx context.Context) { g.ctl.Run(ctx) }

// ownerDeleted queues the dependents of a deleted owner.
func (g *garbageCollector) ownerDeleted(owner api.Object) {
	om := owner.GetObjectMeta()
	for k, i := range g.deps {
		for _, o := range i.List() {
			m := o.GetObjectMeta()
			if ref := controllerRef(m); ref != nil && ref.UID == om.UID && m.Tenant == om.Tenant {
				g.ctl.Enqueue(k.Resource + "/" + client.Key(o))
			}
		}
	}
}

func (g *garbageCollector) reconcile(ctx context.Context, key string) error {
	resource, rest, _ := strings.Cut(key, "/")
	k, ok := api.KindFor(resource)
	if !ok || g.deps[k] == nil {
		return nil
	}
	o, ok := g.deps[k].Get(rest)
	if !ok {
		return nil
	}
	m := o.GetObjectMeta()
	ref := controllerRef(m)
	if ref == nil || m.DeletionTimestamp != nil {
		return nil
	}
	ownerInf, ok := g.ownr[ref.Kind]
	if !ok {
		return nil // not an owner kind the collector knows
	}
	if cur, ok := ownerInf.Get(m.Tenant + "/" + ref.Name); ok && cur.GetObjectMeta().UID == ref.UID {
		return nil
	}
	ownerKind, _ := api.KindFor(ref.Kind)
	if gone, err := g.ownerGone(ctx, ownerKind, m.Tenant, ref); !gone || err != nil {
		return err
	}
	fresh, err := g.c.Get(ctx, k, m.Tenant, m.Name)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if fr := controllerRef(fresh.GetObjectMeta()); fr == nil || fr.UID != ref.UID || fresh.GetObjectMeta().DeletionTimestamp != nil {
		return nil
	}
	if _, err := g.c.Delete(ctx, k, m.Tenant, m.Name); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete %s %s/%s: %w", k.Singular, m.Tenant, m.Name, err)
	}
	g.log.Info("deleted dependent of a deleted owner", "tenant", m.Tenant, "kind", k.Kind, "name", m.Name, "ownerKind", ref.Kind, "owner", ref.Name, "ownerUID", ref.UID)
	return nil
}

// ownerGone asks the API server whether the owner ref names is gone.
func (g *garbageCollector) ownerGone(ctx context.Context, k *api.Kind, tenant string, ref *api.OwnerReference) (bool, error) {
	cur, err := g.c.Get(ctx, k, tenant, ref.Name)
	switch {
	case errdefs.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, err
	}
	return cur.GetObjectMeta().UID != ref.UID, nil
}
