package controller

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/workqueue"
)

// Back-off of failed keys: from retryBase, doubling up to retryMax.
const (
	retryBase = 50 * time.Millisecond
	retryMax  = 30 * time.Second
)

// ReconcileFunc makes the world match the desired state of the object
// named by key. An error retries the key with back-off.
type ReconcileFunc func(ctx context.Context, key string) error

// Controller is a workqueue of keys and workers that reconcile them.
type Controller struct {
	name      string
	workers   int
	reconcile ReconcileFunc
	queue     *workqueue.Queue
	log       *slog.Logger
}

// New returns a controller named name (for logs) running workers
// workers over reconcile.
func New(name string, workers int, log *slog.Logger, reconcile ReconcileFunc) *Controller {
	return &Controller{
		name:      name,
		workers:   max(workers, 1),
		reconcile: reconcile,
		queue:     workqueue.New(retryBase, retryMax),
		log:       log.With("controller", name),
	}
}

// Enqueue queues key now.
func (c *Controller) Enqueue(key string) { c.queue.Add(key) }

// EnqueueAfter queues key once d has passed.
func (c *Controller) EnqueueAfter(key string, d time.Duration) { c.queue.AddAfter(key, d) }

// EnqueueObject queues the key of obj.
func (c *Controller) EnqueueObject(obj api.Object) { c.queue.Add(client.Key(obj)) }

// ObjectHandler returns an informer handler that queues the key of every
// object added, changed or deleted.
func (c *Controller) ObjectHandler() client.Handler {
	return client.Handler{
		OnAdd:    c.EnqueueObject,
		OnUpdate: func(_, obj api.Object) { c.EnqueueObject(obj) },
		OnDelete: c.EnqueueObject,
	}
}

// Run runs the workers until ctx ends and returns once they have exited.
func (c *Controller) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range c.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.processNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, ok := c.queue.Get()
	if !ok {
		return false
	}
	defer c.queue.Done(key)
	err := c.reconcile(ctx, key)
	switch {
	case ctx.Err() != nil:
	case err == nil:
		c.queue.Forget(key)
	default:
		d := c.queue.Retry(key)
		lvl := slog.LevelWarn
		if errdefs.IsConflict(err) || errdefs.IsNotFound(err) {
			lvl = slog.LevelDebug // someone else changed it first: read again
		}
		c.log.Log(ctx, lvl, "reconcile failed; retrying", "key", key, "error", err, "in", d)
	}
	return true
}

// splitKey splits an informer key into tenant and name ("" tenant for a
// cluster-scoped object).
func splitKey(key string) (tenant, name string) {
	if t, n, ok := strings.Cut(key, "/"); ok {
		return t, n
	}
	return "", key
}
