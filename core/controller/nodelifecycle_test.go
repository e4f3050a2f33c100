package controller_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/controller"
	"github.com/paddock-dev/paddock/core/controller/controllertest"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

// heartbeat renews a node's lease through the node's own credential,
// as its agent does, until stopped.
type heartbeat struct {
	stop func()
}

func startHeartbeat(t *testing.T, c *client.Client, node string, every time.Duration) *heartbeat {
	t.Helper()
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
		t.Fatalf("create lease %s: %v", name, err)
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
				renew()
			}
		}
	}()
	h := &heartbeat{stop: sync.OnceFunc(func() { cancel(); wg.Wait() })}
	t.Cleanup(h.stop)
	return h
}

var leaseKind, _ = api.KindFor("leases")

func nodeReady(t *testing.T, c *client.Client, name string) api.Condition {
	t.Helper()
	n := getAs[*api.Node](t, c, "", name)
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			return c
		}
	}
	return api.Condition{}
}

func setNodeReady(t *testing.T, c *client.Client, name string) {
	t.Helper()
	n := getAs[*api.Node](t, c, "", name)
	n.Status.Conditions = []api.Condition{{Type: "Ready", Status: "True", Reason: "AgentReady", LastHeartbeatTime: api.NewTime(time.Now()), LastTransitionTime: api.NewTime(time.Now())}}
	if _, err := c.UpdateStatus(context.Background(), n); err != nil {
		t.Fatalf("node %s writes Ready=True: %v", name, err)
	}
}

// staysReady fails the test if the node's Ready condition leaves True
// during d.
func staysReady(t *testing.T, c *client.Client, name string, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if r := nodeReady(t, c, name); r.Status != "True" {
			t.Fatalf("node %s Ready=%s (%s: %s) while its agent heartbeats", name, r.Status, r.Reason, r.Message)
		}
	}
}

func TestNodeLifecycle(t *testing.T) {
	const grace, eviction = 2 * time.Second, 2 * time.Second
	cl := testcluster.Start(t)
	createTenant(t, cl, "acme")
	startManager(t, cl.Admin, "m1", func(c *controller.Config) {
		c.NodeMonitorGracePeriod, c.PodEvictionTimeout = grace, eviction
	})
	ctx := context.Background()
	agent := cl.Client(t, api.RoleNode, "", "n1")
	if _, err := agent.Create(ctx, &api.Node{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Node"}, Metadata: api.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	setNodeReady(t, agent, "n1")
	hb := startHeartbeat(t, agent, "n1", 300*time.Millisecond)

	// Two pods of a replica set run on n1.
	if _, err := cl.Admin.Create(ctx, newReplicaSet("acme", "web", 2)); err != nil {
		t.Fatal(err)
	}
	var onN1 []*api.Pod
	eventually(t, 30*time.Second, "two pods", func() (bool, string) {
		onN1 = activePods(listPods(t, cl.Admin, "acme", "app=web"))
		return len(onN1) == 2, fmt.Sprintf("%d pods", len(onN1))
	})
	for _, p := range onN1 {
		p.Spec.NodeName = "n1"
		if _, err := cl.Admin.Update(ctx, p); err != nil {
			t.Fatalf("bind %s to n1: %v", p.Metadata.Name, err)
		}
		if _, err := agent.UpdateStatus(ctx, controllertest.Running(getAs[*api.Pod](t, cl.Admin, "acme", p.Metadata.Name), time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	waitReplicas(t, cl, "acme", "web", 2)

	t.Run("a heartbeating node stays ready", func(t *testing.T) {
		staysReady(t, cl.Admin, "n1", 2*grace)
	})
	t.Run("a silent node becomes Unknown", func(t *testing.T) {
		hb.stop()
		eventually(t, grace+10*time.Second, "n1 Ready=Unknown", func() (bool, string) {
			r := nodeReady(t, cl.Admin, "n1")
			return r.Status == "Unknown" && r.Reason == controller.NodeStatusUnknown, fmt.Sprintf("Ready %+v", r)
		})
	})
	t.Run("its pods are replaced elsewhere", func(t *testing.T) {
		controllertest.Node(t, cl, "n2")
		for _, p := range onN1 {
			eventually(t, eviction+10*time.Second, "pod "+p.Metadata.Name+" evicted", func() (bool, string) {
				_, err := cl.Admin.Get(ctx, podKind, "acme", p.Metadata.Name)
				return errdefs.IsNotFound(err), fmt.Sprintf("get: %v", err)
			})
		}
		for _, p := range waitReplicas(t, cl, "acme", "web", 2) {
			if p.Spec.NodeName != "n2" {
				t.Errorf("replacement pod %s on node %q, want n2", p.Metadata.Name, p.Spec.NodeName)
			}
		}
	})
	t.Run("a node back is ready when its agent says so", func(t *testing.T) {
		startHeartbeat(t, agent, "n1", 300*time.Millisecond)
		if r := nodeReady(t, cl.Admin, "n1"); r.Status != "Unknown" {
			t.Fatalf("Ready=%s before the agent wrote it; the controller must only ever set Unknown", r.Status)
		}
		setNodeReady(t, agent, "n1")
		staysReady(t, cl.Admin, "n1", 2*grace)
	})
}
