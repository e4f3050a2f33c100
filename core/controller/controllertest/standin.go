// Package controllertest holds what the tests of the controllers, and of
// the commands that drive them, need while Paddock has no scheduler loop
// or node agent to run against: a stand-in node that binds pending pods
// to itself (as the scheduler would), reports them running and ready and
// finishes their graceful deletion (as the agent would) — through the
// API, with a node credential for everything the agent writes.
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

var podKind, _ = api.KindFor("pods")

// Node runs a stand-in for node name until tb ends: it binds every
// unbound pod of the cluster to name (with the admin client, in place of
// the scheduler), and for the pods bound to name it writes phase Running
// and Ready=True and deletes those being deleted gracefully (with a node
// credential, in place of the agent). Pods bound to other nodes are left
// alone.
func Node(tb testing.TB, cl *testcluster.Cluster, name string) {
	tb.Helper()
	n := &node{name: name, admin: cl.Admin, agent: cl.Client(tb, api.RoleNode, "", name)}
	ctx, cancel := context.WithCancel(context.Background())
	inf := client.NewInformer(cl.Admin, podKind, "", client.ListOptions{}, slog.New(slog.DiscardHandler))
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
	name         string
	admin, agent *client.Client
}

func (n *node) step(ctx context.Context, p *api.Pod) error {
	m := &p.Metadata
	var err error
	switch {
	case p.Spec.NodeName == "" && m.DeletionTimestamp == nil:
		next := api.Clone(p)
		next.Spec.NodeName = n.name
		_, err = n.admin.Update(ctx, next)
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
