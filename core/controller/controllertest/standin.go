// Package controllertest holds what the tests of the controllers, and of
// the commands that drive them, need in place of a node agent: a stand-in
// node that registers a Node object (Ready, with room for many pods and
// the runc runtime class), renews its lease, and for the pods the
// scheduler binds to it reports them running and ready and finishes
// their graceful deletion — all through the API with the node's own
// credential, as the agent would. The scheduler loop (one of the
// controllers) does the binding.
package controllertest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/workqueue"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

var (
	podKind, _   = api.KindFor("pods")
	leaseKind, _ = api.KindFor("leases")
)

// NodeObject returns a Node named name as an agent registers it: Ready,
// offering runtime classes (runc when none are given) and the given cpu
// and memory (quantities such as "4" and "32Gi") for up to 110 pods.
func NodeObject(name, cpu, memory string, classes ...string) *api.Node {
	if len(classes) == 0 {
		classes = []string{"runc"}
	}
	now := api.NewTime(time.Now())
	alloc := api.ResourceList{
		api.ResourceCPU:    api.MustParseQuantity(cpu),
		api.ResourceMemory: api.MustParseQuantity(memory),
		api.ResourcePods:   api.MustParseQuantity("110"),
	}
	return &api.Node{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Node"},
		Metadata: api.ObjectMeta{Name: name},
		Status: api.NodeStatus{
			Capacity:       alloc,
			Allocatable:    alloc,
			Conditions:     []api.Condition{{Type: "Ready", Status: "True", Reason: "AgentReady", LastHeartbeatTime: now, LastTransitionTime: now}},
			RuntimeClasses: classes,
		},
	}
}

// Node runs a stand-in for node name until tb ends: it registers the
// node (NodeObject with 8 cpus and 64Gi), heartbeats its lease, and for
// the pods bound to it writes phase Running and Ready=True and deletes
// those being deleted gracefully. Pods bound to other nodes are left
// alone; binding is the scheduler's.
func Node(tb testing.TB, cl *testcluster.Cluster, name string) {
	tb.Helper()
	agent := cl.Client(tb, api.RoleNode, "", name)
	if _, err := agent.Create(context.Background(), NodeObject(name, "8", "64Gi")); err != nil && !errdefs.IsAlreadyExists(err) {
		tb.Fatalf("register node %s: %v", name, err)
	}
	Heartbeat(tb, agent, name, time.Second)
	n := &node{name: name, agent: agent}
	ctx, cancel := context.WithCancel(context.Background())
	inf := client.NewInformer(agent, podKind, "", client.ListOptions{FieldSelector: "spec.nodeName=" + name}, slog.New(slog.DiscardHandler))
	q := workqueue.New(20*time.Millisecond, time.Second)
	add := func(o api.Object) { q.Add(client.Key(o)) }
	inf.AddHandler(client.Handler{OnAdd: add, OnUpdate: func(_, o api.Object) { add(o) }})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		inf.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		for {
			key, ok := q.Get()
			if !ok {
				return
			}
			if o, ok := inf.Get(key); ok {
				if err := n.step(ctx, o.(*api.Pod)); err != nil && ctx.Err() == nil {
					q.Retry(key)
				} else {
					q.Forget(key)
				}
			}
			q.Done(key)
		}
	}()
	tb.Cleanup(func() {
		cancel()
		q.ShutDown()
		wg.Wait()
	})
}

type node struct {
	name  string
	agent *client.Client
}

func (n *node) step(ctx context.Context, p *api.Pod) error {
	m := &p.Metadata
	var err error
	switch {
	case p.Spec.NodeName != n.name:
	case m.DeletionTimestamp != nil:
		_, err = n.agent.Delete(ctx, podKind, m.Tenant, m.Name)
	case !Ready(p):
		_, err = n.agent.UpdateStatus(ctx, Running(p, time.Now()))
	}
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// Heartbeat renews node's lease (api.NodeLeaseName) every period through
// c, the node's credential, as its agent does, until the returned stop is
// called or tb ends.
func Heartbeat(tb testing.TB, c *client.Client, node string, every time.Duration) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	name := api.NodeLeaseName(node)
	created := false
	renew := func() error {
		now := api.NewTime(time.Now())
		if !created {
			// A node may not read a lease it does not hold yet: create it.
			_, err := c.Create(ctx, &api.Lease{
				TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Lease"},
				Metadata: api.ObjectMeta{Name: name},
				Spec:     api.LeaseSpec{HolderIdentity: node, LeaseDurationSeconds: 40, AcquireTime: now, RenewTime: now},
			})
			if err != nil && !errdefs.IsAlreadyExists(err) {
				return err
			}
			created = true
		}
		o, err := c.Get(ctx, leaseKind, "", name)
		if err != nil {
			return err
		}
		l := o.(*api.Lease)
		l.Spec.RenewTime = now
		_, err = c.Update(ctx, l)
		return err
	}
	if err := renew(); err != nil {
		tb.Fatalf("create lease %s: %v", name, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_ = renew() // a missed renewal is what the lifecycle tests look for
			}
		}
	}()
	stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	tb.Cleanup(stop)
	return stop
}

// Running returns a copy of p with the status a node agent writes for a
// pod whose containers run and pass their readiness checks.
func Running(p *api.Pod, now time.Time) *api.Pod {
	next := api.Clone(p)
	t := api.NewTime(now)
	next.Status.Phase = api.PodRunning
	next.Status.StartTime = t
	next.Status.Conditions = []api.Condition{
		{Type: "PodScheduled", Status: "True", LastTransitionTime: t},
		{Type: "Ready", Status: "True", LastTransitionTime: t},
	}
	return next
}

// Ready reports whether p's Ready condition is True.
func Ready(p *api.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}
