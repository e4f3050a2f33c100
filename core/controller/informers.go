package controller

import (
	"context"
	"log/slog"
	"sync"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
)

// Informers is the shared informer factory of one process: For returns
// the same informer of a kind to every caller, so that each kind is
// listed and watched once. Every informer watches all tenants. Ask for
// informers and add handlers before Start.
type Informers struct {
	c   *client.Client
	log *slog.Logger

	mu      sync.Mutex
	byKind  map[*api.Kind]*client.Informer
	started bool
}

// NewInformers returns a factory of informers that read through c.
func NewInformers(c *client.Client, log *slog.Logger) *Informers {
	return &Informers{c: c, log: log, byKind: map[*api.Kind]*client.Informer{}}
}

// For returns the informer of kind k, creating it on first use.
func (f *Informers) For(k *api.Kind) *client.Informer {
	f.mu.Lock()
	defer f.mu.Unlock()
	if inf, ok := f.byKind[k]; ok {
		return inf
	}
	if f.started {
		panic("controller: informer of " + k.Kind + " asked for after Start")
	}
	inf := client.NewInformer(f.c, k, "", client.ListOptions{}, f.log)
	f.byKind[k] = inf
	return inf
}

// Start runs every informer until ctx ends; wg tracks their goroutines.
func (f *Informers) Start(ctx context.Context, wg *sync.WaitGroup) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = true
	for _, inf := range f.byKind {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inf.Run(ctx)
		}()
	}
}

// WaitSynced waits until every informer has its first list.
func (f *Informers) WaitSynced(ctx context.Context) error {
	f.mu.Lock()
	infs := make([]*client.Informer, 0, len(f.byKind))
	for _, inf := range f.byKind {
		infs = append(infs, inf)
	}
	f.mu.Unlock()
	for _, inf := range infs {
		if err := inf.WaitSynced(ctx); err != nil {
			return err
		}
	}
	return nil
}
