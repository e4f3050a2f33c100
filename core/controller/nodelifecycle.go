package controller

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// NodeStatusUnknown is the reason of the Ready=Unknown condition the node
// lifecycle controller sets on a node whose agent went silent.
const NodeStatusUnknown = "NodeStatusUnknown"

// nodeLifecycleController watches node agents' heartbeats (their leases,
// api.NodeLeaseName): a node whose lease was not seen renewed for the
// grace period gets Ready=Unknown; once it has been Unknown for the
// eviction timeout, its pods are deleted at once (they cannot terminate
// gracefully on a dead node) so that their replica sets replace them. It
// never sets Ready=True: the agent does, once it is back.
//
// Heartbeats are timed on this process's clock from when a lease change
// was seen, as Kubernetes does, so that clock skew between nodes and the
// server does not matter; a new leader gives every node a full grace
// period before it judges it.
type nodeLifecycleController struct {
	c        *client.Client
	nodeInf  *client.Informer
	leaseInf *client.Informer
	podInf   *client.Informer
	ctl      *Controller
	grace    time.Duration
	evict    time.Duration
	log      *slog.Logger
	now      func() time.Time

	mu   sync.Mutex
	seen map[string]heartbeat // by node name
}

// heartbeat is a lease's resourceVersion and when it was first seen.
type heartbeat struct {
	rv string
	at time.Time
}

func newNodeLifecycleController(c *client.Client, inf *Informers, grace, evict time.Duration, log *slog.Logger) *nodeLifecycleController {
	n := &nodeLifecycleController{
		c: c, nodeInf: inf.For(nodeKind), leaseInf: inf.For(leaseKind), podInf: inf.For(podKind),
		grace: grace, evict: evict, log: log.With("controller", "nodelifecycle"), now: time.Now,
		seen: map[string]heartbeat{},
	}
	// One worker: nodes are few and each pass is cheap.
	n.ctl = New("nodelifecycle", 1, log, n.reconcile)
	n.nodeInf.AddHandler(n.ctl.ObjectHandler())
	onLease := func(o api.Object) {
		if node, ok := strings.CutPrefix(o.GetObjectMeta().Name, "node-"); ok {
			n.observe(node)
			n.ctl.Enqueue(node)
		}
	}
	n.leaseInf.AddHandler(client.Handler{OnAdd: onLease, OnUpdate: func(_, o api.Object) { onLease(o) }, OnDelete: onLease})
	return n
}

// Run implements the controller's lifecycle.
func (n *nodeLifecycleController) Run(ctx context.Context) { n.ctl.Run(ctx) }

// observe records the node's lease as seen now if it changed, and
// returns when it was last seen to change.
func (n *nodeLifecycleController) observe(node string) time.Time {
	rv := ""
	if l, ok := n.leaseInf.Get(api.NodeLeaseName(node)); ok {
		rv = l.GetObjectMeta().ResourceVersion
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	hb, ok := n.seen[node]
	if !ok || hb.rv != rv {
		hb = heartbeat{rv: rv, at: n.now()}
		n.seen[node] = hb
	}
	return hb.at
}

func (n *nodeLifecycleController) reconcile(ctx context.Context, name string) error {
	o, ok := n.nodeInf.Get(name)
	if !ok {
		n.mu.Lock()
		delete(n.seen, name)
		n.mu.Unlock()
		return nil
	}
	node := o.(*api.Node)
	now := n.now()
	silent := now.Sub(n.observe(name))
	if silent < n.grace {
		n.ctl.EnqueueAfter(name, n.grace-silent)
		return nil
	}
	ready := findCondition(node.Status.Conditions, "Ready")
	if ready == nil || ready.Status != "Unknown" {
		if err := n.markUnknown(ctx, node, silent); err != nil {
			return err
		}
		n.ctl.EnqueueAfter(name, n.evict)
		return nil
	}
	since := n.grace + silent // not stamped: count from when it went silent
	if ready.LastTransitionTime != nil {
		since = now.Sub(ready.LastTransitionTime.Time)
	}
	if since < n.evict {
		n.ctl.EnqueueAfter(name, n.evict-since)
		return nil
	}
	if err := n.evictPods(ctx, name); err != nil {
		return err
	}
	n.ctl.EnqueueAfter(name, n.grace) // pods bound to it since
	return nil
}

// markUnknown sets the node's Ready condition to Unknown.
func (n *nodeLifecycleController) markUnknown(ctx context.Context, node *api.Node, silent time.Duration) error {
	next := api.Clone(node)
	c := api.Condition{
		Type: "Ready", Status: "Unknown", Reason: NodeStatusUnknown,
		Message:            fmt.Sprintf("the node agent stopped renewing its lease %s: not heard from for %s", api.NodeLeaseName(node.Metadata.Name), silent.Round(time.Second)),
		LastTransitionTime: api.NewTime(n.now()),
	}
	if prev := findCondition(next.Status.Conditions, "Ready"); prev != nil {
		c.LastHeartbeatTime = prev.LastHeartbeatTime
		*prev = c
	} else {
		next.Status.Conditions = append(next.Status.Conditions, c)
	}
	if _, err := n.c.UpdateStatus(ctx, next); err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("mark node %s Ready=Unknown: %w", node.Metadata.Name, err)
	}
	n.log.Warn("node stopped heartbeating; marked Ready=Unknown", "node", node.Metadata.Name, "silentFor", silent.Round(time.Second))
	return nil
}

// evictPods deletes the pods bound to the node, without waiting for the
// node to stop them.
func (n *nodeLifecycleController) evictPods(ctx context.Context, node string) error {
	zero := int64(0)
	for _, o := range n.podInf.List() {
		p := o.(*api.Pod)
		if p.Spec.NodeName != node || api.PodFinished(p) {
			continue
		}
		_, err := n.c.DeleteWith(ctx, podKind, p.Metadata.Tenant, p.Metadata.Name, client.DeleteOptions{GracePeriodSeconds: &zero})
		if err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("evict pod %s/%s from node %s: %w", p.Metadata.Tenant, p.Metadata.Name, node, err)
		}
		n.log.Warn("evicted pod from an unresponsive node", "node", node, "tenant", p.Metadata.Tenant, "pod", p.Metadata.Name)
	}
	return nil
}
