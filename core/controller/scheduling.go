package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/scheduler"
	"github.com/paddock-dev/paddock/core/workqueue"
)

// Defaults of SchedulerConfig.
const (
	DefaultBinders    = 64
	DefaultRetryDelay = 200 * time.Millisecond
	// unschedulableResync is how long a pod stays parked at most without
	// a change of the cluster before it is tried again anyway.
	unschedulableResync = 5 * time.Minute
)

// SchedulerConfig configures the scheduling loop.
type SchedulerConfig struct {
	// Config tunes placement: score weights and sampling.
	Config scheduler.Config
	// Binders is the most API writes (binds and Unschedulable
	// conditions) in flight at once; 0 means DefaultBinders. Decisions
	// are made one at a time; only the round trips overlap.
	Binders int
	// RetryDelay is how often the loop looks whether the cluster changed
	// in a way that may let unschedulable pods fit, and if so retries
	// them all; 0 means DefaultRetryDelay. It debounces retries during a
	// burst of changes.
	RetryDelay time.Duration
	// Bound, when set, is called after each binding is committed, with
	// when the loop first queued the pod. Benchmarks use it; it must not
	// block.
	Bound func(tenant, name, node string, queued time.Time)
}

func (c SchedulerConfig) withDefaults() (SchedulerConfig, error) {
	if c.Binders <= 0 {
		c.Binders = DefaultBinders
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = DefaultRetryDelay
	}
	if err := c.Config.Validate(scheduler.DefaultProfile()); err != nil {
		return c, fmt.Errorf("scheduler config: %w", err)
	}
	return c, nil
}

// RunScheduler runs the scheduling loop alone, without leader election,
// with informers of its own, until ctx ends. The caller makes sure that
// it is the only scheduler of the cluster (Run does so by leader
// election); benchmarks use it to measure the loop by itself.
func RunScheduler(ctx context.Context, c *client.Client, cfg SchedulerConfig, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	inf := NewInformers(c, log)
	l, err := newSchedulingLoop(c, inf, cfg, log)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	inf.Start(ctx, &wg)
	if err := inf.WaitSynced(ctx); err != nil {
		return nil // ctx ended
	}
	l.Run(ctx)
	return nil
}

// schedulingLoop binds pending pods to nodes. Its informers feed a
// scheduler.Cache: pods bound to a node count against it, unbound pending
// pods queue up (FIFO, deduplicated). One goroutine takes pods off the
// queue and decides (Schedule, then Assume so that the next decision sees
// it); the binds go to the API server concurrently, up to Binders at once.
// A failed bind is forgotten in the cache and the pod retried with
// back-off. A pod no node can run gets PodScheduled=False with the
// scheduler's explanation (written only when it changed) and is parked
// until the cache's RetryGeneration moves (a node added or changed, a pod
// gone...) or a tenant changes; then every parked pod is tried again.
type schedulingLoop struct {
	c         *client.Client
	podInf    *client.Informer
	nodeInf   *client.Informer
	tenantInf *client.Informer
	cache     *scheduler.Cache
	sched     *scheduler.Scheduler
	queue     *workqueue.Queue
	cfg       SchedulerConfig
	log       *slog.Logger
	slots     chan struct{} // one per write in flight
	// tenantChanges counts tenant changes: a tenant's node selector or
	// runtime classes may let its parked pods fit.
	tenantChanges atomic.Uint64

	mu         sync.Mutex
	parked     map[string]bool      // unschedulable pods waiting for a change
	flushedGen uint64               // retryGen when the parked pods were last retried
	queuedAt   map[string]time.Time // when pending pods were first queued (only with cfg.Bound)
}

func newSchedulingLoop(c *client.Client, inf *Informers, cfg SchedulerConfig, log *slog.Logger) (*schedulingLoop, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cache := scheduler.NewCache()
	sched, err := scheduler.New(cache, scheduler.DefaultProfile(), cfg.Config)
	if err != nil {
		return nil, fmt.Errorf("scheduler config: %w", err)
	}
	l := &schedulingLoop{
		c: c, podInf: inf.For(podKind), nodeInf: inf.For(nodeKind), tenantInf: inf.For(tenantKind),
		cache: cache, sched: sched, queue: workqueue.New(retryBase, retryMax), cfg: cfg,
		log: log.With("controller", "scheduler"), slots: make(chan struct{}, cfg.Binders),
		parked: map[string]bool{}, queuedAt: map[string]time.Time{},
	}
	l.nodeInf.AddHandler(client.Handler{
		OnAdd:    func(o api.Object) { l.nodeChanged(nil, o.(*api.Node)) },
		OnUpdate: func(old, o api.Object) { l.nodeChanged(old.(*api.Node), o.(*api.Node)) },
		OnDelete: func(o api.Object) { l.cache.RemoveNode(o.GetObjectMeta().Name) },
	})
	l.tenantInf.AddHandler(client.Handler{
		OnAdd:    func(api.Object) { l.tenantChanges.Add(1) },
		OnUpdate: func(api.Object, api.Object) { l.tenantChanges.Add(1) },
	})
	l.podInf.AddHandler(client.Handler{
		OnAdd:    func(o api.Object) { l.podChanged(nil, o.(*api.Pod)) },
		OnUpdate: func(old, o api.Object) { l.podChanged(old.(*api.Pod), o.(*api.Pod)) },
		OnDelete: func(o api.Object) { l.podDeleted(o.(*api.Pod)) },
	})
	return l, nil
}

// pending reports whether p waits for a node.
func pending(p *api.Pod) bool {
	return p.Spec.NodeName == "" && p.Metadata.DeletionTimestamp == nil && !api.PodFinished(p)
}

// nodeChanged records a node in the cache, unless only what placement
// does not read changed (heartbeat times, addresses...), so that
// heartbeats do not retry every unschedulable pod.
func (l *schedulingLoop) nodeChanged(old, n *api.Node) {
	if old != nil && !schedulingChanged(old, n) {
		return
	}
	if err := l.cache.UpdateNode(n); err != nil {
		l.log.Warn("cannot cache node", "node", n.Metadata.Name, "error", err)
	}
}

// schedulingChanged reports whether placement may see a difference
// between two versions of a node.
func schedulingChanged(a, b *api.Node) bool {
	readyOf := func(n *api.Node) string {
		if c := findCondition(n.Status.Conditions, "Ready"); c != nil {
			return c.Status
		}
		return ""
	}
	return readyOf(a) != readyOf(b) ||
		!reflect.DeepEqual(a.Spec, b.Spec) ||
		!reflect.DeepEqual(a.Metadata.Labels, b.Metadata.Labels) ||
		!reflect.DeepEqual(a.Status.Allocatable, b.Status.Allocatable) ||
		!reflect.DeepEqual(a.Status.RuntimeClasses, b.Status.RuntimeClasses)
}

func (l *schedulingLoop) podChanged(old, p *api.Pod) {
	if err := l.cache.UpdatePod(p); err != nil {
		l.log.Warn("cannot cache pod", "tenant", p.Metadata.Tenant, "pod", p.Metadata.Name, "error", err)
		return
	}
	key := client.Key(p)
	if !pending(p) {
		l.mu.Lock()
		delete(l.parked, key)
		delete(l.queuedAt, key)
		l.mu.Unlock()
		return
	}
	l.mu.Lock()
	if l.parked[key] {
		if old != nil && old.Metadata.Generation == p.Metadata.Generation {
			// Its status (our own condition) or labels changed: nothing
			// that makes it fit. It stays parked.
			l.mu.Unlock()
			return
		}
		delete(l.parked, key)
	}
	if l.cfg.Bound != nil {
		if _, ok := l.queuedAt[key]; !ok {
			l.queuedAt[key] = time.Now()
		}
	}
	l.mu.Unlock()
	l.queue.Add(key)
}

func (l *schedulingLoop) podDeleted(p *api.Pod) {
	if err := l.cache.RemovePod(p); err != nil {
		l.log.Warn("cannot uncache pod", "tenant", p.Metadata.Tenant, "pod", p.Metadata.Name, "error", err)
	}
	key := client.Key(p)
	l.mu.Lock()
	delete(l.parked, key)
	delete(l.queuedAt, key)
	l.mu.Unlock()
}

// retryGen moves whenever a change may let an unschedulable pod fit.
func (l *schedulingLoop) retryGen() uint64 {
	return l.cache.RetryGeneration() + l.tenantChanges.Load()
}

// Run decides and binds until ctx ends, and returns once every write in
// flight has finished.
func (l *schedulingLoop) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.retryParked(ctx)
	}()
	go func() {
		<-ctx.Done()
		l.queue.ShutDown()
	}()
	l.log.Info("scheduler started", "nodes", l.cache.NodeCount(), "pending", l.queue.Len())
	for {
		key, ok := l.queue.Get()
		if !ok {
			break
		}
		l.scheduleOne(ctx, key, &wg)
	}
	wg.Wait()
}

// scheduleOne decides where the pod of key goes. It ends the key's
// processing (queue.Done) itself, or leaves that to the write it starts.
func (l *schedulingLoop) scheduleOne(ctx context.Context, key string, wg *sync.WaitGroup) {
	o, ok := l.podInf.Get(key)
	if !ok {
		l.queue.Done(key)
		return
	}
	p := o.(*api.Pod)
	if !pending(p) || l.cache.IsAssumed(p) {
		// Bound (or being bound) meanwhile, finished or going away.
		l.queue.Forget(key)
		l.queue.Done(key)
		return
	}
	t, ok := l.tenantInf.Get(p.Metadata.Tenant)
	if !ok {
		// The tenant's informer lags behind the pod's, or the tenant is
		// being deleted with its pods.
		l.queue.Retry(key)
		l.queue.Done(key)
		return
	}
	gen := l.retryGen()
	res, err := l.sched.Schedule(p, t.(*api.Tenant))
	var u *scheduler.Unschedulable
	switch {
	case errors.As(err, &u):
		l.unschedulable(ctx, key, p, u, gen, wg)
	case err != nil:
		l.log.Warn("cannot schedule pod", "tenant", p.Metadata.Tenant, "pod", p.Metadata.Name, "error", err)
		l.queue.Done(key)
	default:
		if err := l.cache.Assume(p, res.Node); err != nil {
			l.log.Warn("cannot assume pod", "tenant", p.Metadata.Tenant, "pod", p.Metadata.Name, "node", res.Node, "error", err)
			l.queue.Retry(key)
			l.queue.Done(key)
			return
		}
		queued := l.takeQueuedAt(key)
		l.write(ctx, key, wg, func() { l.bind(ctx, key, p, res.Node, queued) })
	}
}

// write runs f, an API write about key, on its own goroutine once fewer
// than Binders writes are in flight, and ends key's processing after it.
func (l *schedulingLoop) write(ctx context.Context, key string, wg *sync.WaitGroup, f func()) {
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		f() // fails at once: ctx is done
		l.queue.Done(key)
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { <-l.slots }()
		defer l.queue.Done(key)
		f()
	}()
}

// bind writes the binding of an assumed pod, first queued at queued; on
// failure it forgets the assumption and retries the pod with back-off.
func (l *schedulingLoop) bind(ctx context.Context, key string, p *api.Pod, node string, queued time.Time) {
	tenant, name := p.Metadata.Tenant, p.Metadata.Name
	_, err := l.c.Bind(ctx, tenant, name, node)
	if err == nil {
		l.queue.Forget(key)
		l.log.Debug("pod bound", "tenant", tenant, "pod", name, "node", node)
		if l.cfg.Bound != nil && !queued.IsZero() {
			l.cfg.Bound(tenant, name, node, queued)
		}
		return
	}
	// The watch confirms a binding that did commit; this one did not (or
	// its answer was lost, and the watch will count the pod again).
	_ = l.cache.Forget(p) // fails only if the pod was removed or confirmed meanwhile
	switch {
	case ctx.Err() != nil:
	case errdefs.IsNotFound(err):
		// Deleted meanwhile: the informer drops it.
	case errdefs.IsConflict(err):
		// Bound by someone else, or being deleted: the informer will say
		// so; look again then.
		l.log.Debug("pod changed before its binding", "tenant", tenant, "pod", name, "node", node, "error", err)
		l.requeue(key, queued)
	default:
		d := l.requeue(key, queued)
		l.log.Warn("binding failed; retrying", "tenant", tenant, "pod", name, "node", node, "error", err, "in", d)
	}
}

// takeQueuedAt returns and forgets when key was first queued (zero
// without cfg.Bound).
func (l *schedulingLoop) takeQueuedAt(key string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	at := l.queuedAt[key]
	delete(l.queuedAt, key)
	return at
}

// requeue retries key with back-off, keeping when it was first queued.
func (l *schedulingLoop) requeue(key string, queued time.Time) time.Duration {
	if !queued.IsZero() {
		l.mu.Lock()
		if _, ok := l.queuedAt[key]; !ok {
			l.queuedAt[key] = queued
		}
		l.mu.Unlock()
	}
	return l.queue.Retry(key)
}

// unschedulable records why no node can run p on the pod, if that is
// news, and parks it until the cluster changes.
func (l *schedulingLoop) unschedulable(ctx context.Context, key string, p *api.Pod, u *scheduler.Unschedulable, gen uint64, wg *sync.WaitGroup) {
	cond := u.Condition()
	cur := findCondition(p.Status.Conditions, cond.Type)
	if cur != nil && cur.Status == cond.Status && cur.Reason == cond.Reason && cur.Message == cond.Message {
		l.park(key, gen)
		l.queue.Done(key)
		return
	}
	l.write(ctx, key, wg, func() {
		next := api.Clone(p)
		cond.LastTransitionTime = api.NewTime(time.Now())
		if cur != nil && cur.Status == cond.Status {
			cond.LastTransitionTime = cur.LastTransitionTime
		}
		if c := findCondition(next.Status.Conditions, cond.Type); c != nil {
			*c = cond
		} else {
			next.Status.Conditions = append(next.Status.Conditions, cond)
		}
		_, err := l.c.UpdateStatus(ctx, next)
		switch {
		case err == nil:
			l.log.Info("pod unschedulable", "tenant", p.Metadata.Tenant, "pod", p.Metadata.Name, "reason", cond.Message)
			l.park(key, gen)
		case ctx.Err() != nil, errdefs.IsNotFound(err):
		case errdefs.IsConflict(err):
			l.queue.Add(key) // changed meanwhile: decide again on the new version
		default:
			d := l.queue.Retry(key)
			l.log.Warn("cannot record that a pod is unschedulable; retrying", "tenant", p.Metadata.Tenant, "pod", p.Metadata.Name, "error", err, "in", d)
		}
	})
}

// park keeps an unschedulable pod aside until retryGen moves past gen,
// its value when the decision began; if it has moved already, the pod is
// tried again at once.
func (l *schedulingLoop) park(key string, gen uint64) {
	l.queue.Forget(key)
	l.mu.Lock()
	defer l.mu.Unlock()
	if gen != l.retryGen() {
		l.queue.Add(key)
		return
	}
	l.parked[key] = true
}

// retryParked queues every parked pod again whenever retryGen has moved,
// looking every RetryDelay, and at least every unschedulableResync.
func (l *schedulingLoop) retryParked(ctx context.Context) {
	tick := time.NewTicker(l.cfg.RetryDelay)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if l.flush(now.Sub(last) >= unschedulableResync) {
				last = now
			}
		}
	}
}

// flush queues the parked pods if retryGen moved (or always, with force)
// and reports whether it did.
func (l *schedulingLoop) flush(force bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.retryGen()
	if g == l.flushedGen && !force {
		return false
	}
	l.flushedGen = g
	for key := range l.parked {
		l.queue.Add(key)
	}
	clear(l.parked)
	return true
}
