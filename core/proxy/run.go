package proxy

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
)

var (
	serviceKind, _   = api.KindFor("services")
	endpointsKind, _ = api.KindFor("endpoints")
)

// retryAfter is how long a service whose change failed waits before it
// is tried again.
const retryAfter = time.Second

// Run keeps the table in step with the Services and Endpoints of every
// tenant that c may read, until ctx ends. Once both informers have
// listed, it Syncs (taking over or removing what an earlier run left);
// then it applies each change as it comes, the changes that arrived
// together in one transaction. A failed change is logged and retried.
// The rules stay in place when Run returns.
func (p *Proxy) Run(ctx context.Context, c *client.Client) error {
	svcs := client.NewInformer(c, serviceKind, "", client.ListOptions{}, p.log)
	eps := client.NewInformer(c, endpointsKind, "", client.ListOptions{}, p.log)
	q := newDirtySet()
	h := client.Handler{
		OnAdd:    func(o api.Object) { q.add(client.Key(o)) },
		OnUpdate: func(_, o api.Object) { q.add(client.Key(o)) },
		OnDelete: func(o api.Object) { q.add(client.Key(o)) },
	}
	svcs.AddHandler(h)
	eps.AddHandler(h)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, inf := range []*client.Informer{svcs, eps} {
		wg.Go(func() { inf.Run(ctx) })
	}
	if svcs.WaitSynced(ctx) != nil || eps.WaitSynced(ctx) != nil {
		return nil
	}
	q.take() // Sync covers what the informers reported so far
	if err := p.Sync(listAs[*api.Service](svcs), listAs[*api.Endpoints](eps)); err != nil {
		p.log.Error("first sync of the service rules failed in part", "error", err)
	}
	p.log.Info("service proxy synced", "table", p.table.Name, "services", len(p.Services()))
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-q.ready:
		}
		keys := q.take()
		changes := make([]change, 0, len(keys))
		for _, key := range keys {
			o, ok := svcs.Get(key)
			if !ok {
				p.log.Debug("service gone: removing its rules", "service", key)
				changes = append(changes, change{key: key})
				continue
			}
			svc := o.(*api.Service)
			var ep *api.Endpoints
			if e, ok := eps.Get(key); ok {
				ep = e.(*api.Endpoints)
			}
			want, err := desiredPorts(svc, ep)
			if err != nil {
				p.log.Warn("service not programmed", "service", key, "error", err)
				continue
			}
			p.log.Debug("programming service", "service", key, "resourceVersion", svc.Metadata.ResourceVersion, "endpoints", ep != nil)
			changes = append(changes, change{key: key, want: want})
		}
		if err := p.apply(changes); err != nil {
			p.log.Error("service rules not applied; retrying", "error", err, "in", retryAfter)
			time.AfterFunc(retryAfter, func() {
				for _, c := range changes {
					q.add(c.key)
				}
			})
		}
	}
}

func listAs[T api.Object](inf *client.Informer) []T {
	items := inf.List()
	out := make([]T, 0, len(items))
	for _, o := range items {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// dirtySet collects the keys of services to look at again; ready has a
// value while it is not empty.
type dirtySet struct {
	mu    sync.Mutex
	keys  map[string]bool
	ready chan struct{}
}

func newDirtySet() *dirtySet {
	return &dirtySet{keys: map[string]bool{}, ready: make(chan struct{}, 1)}
}

func (d *dirtySet) add(key string) {
	d.mu.Lock()
	d.keys[key] = true
	d.mu.Unlock()
	select {
	case d.ready <- struct{}{}:
	default:
	}
}

func (d *dirtySet) take() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := slices.Collect(maps.Keys(d.keys))
	clear(d.keys)
	return out
}
