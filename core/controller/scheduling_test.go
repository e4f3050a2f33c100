package controller_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
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

// schedCluster is a control plane with tenant acme, nodes and a
// controller manager (so the scheduling loop), started once the nodes
// exist so that its first list has them all.
func schedCluster(t *testing.T, nodes ...*api.Node) *testcluster.Cluster {
	t.Helper()
	cl := testcluster.Start(t)
	createTenant(t, cl, "acme")
	for _, n := range nodes {
		addNode(t, cl, n)
	}
	startManager(t, cl.Admin, "m1")
	return cl
}

// addNode creates a node object as an admin would for a simulated node.
func addNode(t *testing.T, cl *testcluster.Cluster, n *api.Node) {
	t.Helper()
	if _, err := cl.Admin.Create(context.Background(), n); err != nil {
		t.Fatalf("create node %s: %v", n.Metadata.Name, err)
	}
}

// labelled returns n with labels.
func labelled(n *api.Node, labels map[string]string) *api.Node {
	n.Metadata.Labels = labels
	return n
}

// requesting returns a pod of tenant acme requesting memory, in runtime
// class class ("" for the tenant's default).
func requesting(name, memory, class string) *api.Pod {
	p := newPod("acme", name, "req")
	p.Spec.RuntimeClassName = class
	p.Spec.Containers[0].Resources.Requests = api.ResourceList{api.ResourceCPU: api.MustParseQuantity("100m"), api.ResourceMemory: api.MustParseQuantity(memory)}
	return p
}

func createPod(t *testing.T, c *client.Client, p *api.Pod) *api.Pod {
	t.Helper()
	out, err := c.Create(context.Background(), p)
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", p.Metadata.Tenant, p.Metadata.Name, err)
	}
	return out.(*api.Pod)
}

// waitBound waits until the pod is bound and returns it.
func waitBound(t *testing.T, c *client.Client, tenant, name string) *api.Pod {
	t.Helper()
	var p *api.Pod
	eventually(t, 30*time.Second, "pod "+name+" bound", func() (bool, string) {
		p = getAs[*api.Pod](t, c, tenant, name)
		return p.Spec.NodeName != "", fmt.Sprintf("conditions %+v", p.Status.Conditions)
	})
	return p
}

// waitUnschedulable waits until the pod's PodScheduled condition is False
// with reason Unschedulable and message msg, and returns the pod.
func waitUnschedulable(t *testing.T, c *client.Client, name, msg string) *api.Pod {
	t.Helper()
	var p *api.Pod
	eventually(t, 30*time.Second, "pod "+name+" unschedulable with "+msg, func() (bool, string) {
		p = getAs[*api.Pod](t, c, "acme", name)
		cond := scheduledCondition(p)
		return p.Spec.NodeName == "" && cond != nil && cond.Status == "False" && cond.Reason == "Unschedulable" && cond.Message == msg,
			fmt.Sprintf("nodeName %q, PodScheduled %+v", p.Spec.NodeName, cond)
	})
	return p
}

func scheduledCondition(p *api.Pod) *api.Condition {
	for i, c := range p.Status.Conditions {
		if c.Type == "PodScheduled" {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// unchanged fails the test if the pod's resourceVersion moves during d.
func unchanged(t *testing.T, c *client.Client, p *api.Pod, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		now := getAs[*api.Pod](t, c, p.Metadata.Tenant, p.Metadata.Name)
		if now.Metadata.ResourceVersion != p.Metadata.ResourceVersion {
			t.Fatalf("pod %s changed (rv %s → %s, nodeName %q, conditions %+v) though nothing it depends on did",
				p.Metadata.Name, p.Metadata.ResourceVersion, now.Metadata.ResourceVersion, now.Spec.NodeName, now.Status.Conditions)
		}
	}
}

func TestSchedulerSpreadsPods(t *testing.T) {
	cl := schedCluster(t, controllertest.NodeObject("n1", "4", "32Gi"), controllertest.NodeObject("n2", "4", "32Gi"), controllertest.NodeObject("n3", "4", "32Gi"))
	const pods = 9
	for i := range pods {
		createPod(t, cl.Admin, requesting(fmt.Sprintf("web-%d", i), "500Mi", ""))
	}
	perNode := map[string]int{}
	for i := range pods {
		p := waitBound(t, cl.Admin, "acme", fmt.Sprintf("web-%d", i))
		perNode[p.Spec.NodeName]++
		if c := scheduledCondition(p); c == nil || c.Status != "True" {
			t.Errorf("pod %s bound with PodScheduled %+v, want True", p.Metadata.Name, c)
		}
	}
	if len(perNode) != 3 || slices.Max(slices.Collect(maps.Values(perNode)))-slices.Min(slices.Collect(maps.Values(perNode))) > 1 {
		t.Errorf("pods per node = %v, want 9 pods spread evenly over n1, n2, n3", perNode)
	}
}

func TestSchedulerUnschedulable(t *testing.T) {
	cl := schedCluster(t, controllertest.NodeObject("n1", "4", "4Gi"), controllertest.NodeObject("n2", "4", "4Gi"), controllertest.NodeObject("g1", "4", "64Gi", "gvisor"))

	t.Run("every filter's verdict is counted", func(t *testing.T) {
		createPod(t, cl.Admin, requesting("big", "16Gi", "runc"))
		p := waitUnschedulable(t, cl.Admin, "big", "0/3 nodes are available: 2 insufficient memory, 1 no runtime class runc.")
		// Written once: nothing changes while nothing else does.
		unchanged(t, cl.Admin, p, time.Second)
	})
	t.Run("a new node that does not fit changes only the message", func(t *testing.T) {
		before := scheduledCondition(getAs[*api.Pod](t, cl.Admin, "acme", "big"))
		addNode(t, cl, controllertest.NodeObject("n3", "4", "8Gi"))
		p := waitUnschedulable(t, cl.Admin, "big", "0/4 nodes are available: 3 insufficient memory, 1 no runtime class runc.")
		if after := scheduledCondition(p); !after.LastTransitionTime.Equal(before.LastTransitionTime.Time) {
			t.Errorf("lastTransitionTime moved from %v to %v though the status stayed False", before.LastTransitionTime, after.LastTransitionTime)
		}
		unchanged(t, cl.Admin, p, time.Second)
	})
	t.Run("it is bound once a node has room", func(t *testing.T) {
		addNode(t, cl, controllertest.NodeObject("n4", "4", "32Gi"))
		p := waitBound(t, cl.Admin, "acme", "big")
		if p.Spec.NodeName != "n4" {
			t.Errorf("pod bound to %s, want n4, the only node with room", p.Spec.NodeName)
		}
		if c := scheduledCondition(p); c == nil || c.Status != "True" || c.Reason != "" || c.Message != "" {
			t.Errorf("PodScheduled after binding = %+v, want True without the old reason", c)
		}
	})
	t.Run("a pod asking for gvisor on runc nodes stays pending", func(t *testing.T) {
		// Only g1 offers gvisor: cordon it (a node update, which retries
		// the parked pods) so that no node does.
		g1 := getAs[*api.Node](t, cl.Admin, "", "g1")
		g1.Spec.Unschedulable = true
		if _, err := cl.Admin.Update(context.Background(), g1); err != nil {
			t.Fatal(err)
		}
		createPod(t, cl.Admin, requesting("sandboxed", "100Mi", "gvisor"))
		p := waitUnschedulable(t, cl.Admin, "sandboxed", "0/5 nodes are available: 4 no runtime class gvisor, 1 node unschedulable.")
		// A node change retries it, to the same verdict: no write.
		n1 := getAs[*api.Node](t, cl.Admin, "", "n1")
		n1.Metadata.Labels = map[string]string{"touched": "yes"}
		if _, err := cl.Admin.Update(context.Background(), n1); err != nil {
			t.Fatal(err)
		}
		unchanged(t, cl.Admin, p, 2*time.Second)
		if cond := scheduledCondition(getAs[*api.Pod](t, cl.Admin, "acme", "sandboxed")); cond.Message != "0/5 nodes are available: 4 no runtime class gvisor, 1 node unschedulable." {
			t.Fatalf("message %q", cond.Message)
		}
	})
}

func TestSchedulerTenantNodeSelector(t *testing.T) {
	cl := schedCluster(t, labelled(controllertest.NodeObject("g1", "4", "32Gi"), map[string]string{"pool": "gold"}),
		controllertest.NodeObject("n1", "4", "32Gi"), controllertest.NodeObject("n2", "4", "32Gi"))
	if _, err := cl.Admin.Create(context.Background(), &api.Tenant{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Tenant"},
		Metadata: api.ObjectMeta{Name: "gold"},
		Spec:     api.TenantSpec{NodeSelector: map[string]string{"pool": "gold"}},
	}); err != nil {
		t.Fatal(err)
	}
	edit := cl.Client(t, api.RoleEdit, "gold", "")
	for i := range 4 {
		p := newPod("gold", fmt.Sprintf("p%d", i), "web")
		createPod(t, edit, p)
	}
	for i := range 4 {
		if p := waitBound(t, cl.Admin, "gold", fmt.Sprintf("p%d", i)); p.Spec.NodeName != "g1" {
			t.Errorf("pod %s of tenant gold bound to %s, want g1 (pool=gold)", p.Metadata.Name, p.Spec.NodeName)
		}
	}
	// Pods of other tenants go anywhere, including g1.
	seen := map[string]bool{}
	for i := range 6 {
		createPod(t, cl.Admin, newPod("acme", fmt.Sprintf("a%d", i), "web"))
	}
	for i := range 6 {
		seen[waitBound(t, cl.Admin, "acme", fmt.Sprintf("a%d", i)).Spec.NodeName] = true
	}
	if !seen["n1"] || !seen["n2"] {
		t.Errorf("acme's pods went to %v, want n1 and n2 used", seen)
	}
}

// TestSchedulerBindConflicts races the scheduler: pods are bound by hand
// or deleted right after they are created. Every pod must end up bound
// once and stay where its first binding put it, and the scheduler's
// accounting must come out exact: the nodes then take exactly as many
// more pods as they have room for.
func TestSchedulerBindConflicts(t *testing.T) {
	const perNode = 8
	small := func(name string) *api.Node {
		n := controllertest.NodeObject(name, "64", "256Gi")
		n.Status.Allocatable[api.ResourcePods] = api.MustParseQuantity(fmt.Sprint(perNode))
		return n
	}
	cl := schedCluster(t, small("n1"), small("n2"))
	ctx := context.Background()
	const racers = 6
	var wg sync.WaitGroup
	won := make([]bool, racers) // the hand binding won
	for i := range racers {
		wg.Go(func() {
			name := fmt.Sprintf("race-%d", i)
			if _, err := cl.Admin.Create(ctx, newPod("acme", name, "race")); err != nil {
				t.Errorf("create %s: %v", name, err)
				return
			}
			if i%2 == 0 {
				if err := forceDelete(ctx, cl.Admin, name); err != nil {
					t.Errorf("delete %s: %v", name, err)
				}
				return
			}
			_, err := cl.Admin.Bind(ctx, "acme", name, "n1")
			switch {
			case err == nil:
				won[i] = true
			case !errors.Is(err, errdefs.ErrConflict):
				t.Errorf("hand binding of %s = %v, want success or 409", name, err)
			}
		})
	}
	wg.Wait()
	live := 0
	for i := range racers {
		name := fmt.Sprintf("race-%d", i)
		if i%2 == 0 {
			eventually(t, 10*time.Second, name+" gone", func() (bool, string) {
				_, err := cl.Admin.Get(ctx, podKind, "acme", name)
				return errdefs.IsNotFound(err), fmt.Sprint(err)
			})
			continue
		}
		live++
		p := waitBound(t, cl.Admin, "acme", name)
		if won[i] && p.Spec.NodeName != "n1" {
			t.Errorf("pod %s was bound to n1 by hand and is now on %s", name, p.Spec.NodeName)
		}
	}
	// Fill the nodes exactly: a leaked assumption would leave one of
	// these pending, a missed count would let one more in.
	fill := 2*perNode - live
	for i := range fill {
		createPod(t, cl.Admin, newPod("acme", fmt.Sprintf("fill-%d", i), "fill"))
	}
	for i := range fill {
		waitBound(t, cl.Admin, "acme", fmt.Sprintf("fill-%d", i))
	}
	createPod(t, cl.Admin, newPod("acme", "one-too-many", "fill"))
	waitUnschedulable(t, cl.Admin, "one-too-many", "0/2 nodes are available: 2 too many pods.")
	counts := map[string]int{}
	for _, p := range listPods(t, cl.Admin, "acme", "") {
		counts[p.Spec.NodeName]++
	}
	if counts["n1"] != perNode || counts["n2"] != perNode || counts[""] != 1 {
		t.Errorf("pods per node = %v, want %d on n1 and n2 and 1 unbound", counts, perNode)
	}
	// Room again: the pending pod takes it.
	if err := forceDelete(ctx, cl.Admin, "fill-0"); err != nil {
		t.Fatal(err)
	}
	waitBound(t, cl.Admin, "acme", "one-too-many")
}

// TestSchedulerOnlyOnLeader runs two controller managers: only the leader
// binds, and the other takes over when it stops.
func TestSchedulerOnlyOnLeader(t *testing.T) {
	cl := testcluster.Start(t)
	createTenant(t, cl, "acme")
	addNode(t, cl, controllertest.NodeObject("n1", "4", "32Gi"))
	var mu sync.Mutex
	bound := map[string][]string{} // manager → pods it bound
	record := func(identity string) func(*controller.Config) {
		return func(c *controller.Config) {
			c.Scheduler.Bound = func(tenant, name, node string, _ time.Time) {
				mu.Lock()
				defer mu.Unlock()
				bound[identity] = append(bound[identity], name)
			}
		}
	}
	managers := []*manager{startManager(t, cl.Admin, "m1", record("m1")), startManager(t, cl.Admin, "m2", record("m2"))}
	var leader, other *manager
	eventually(t, 20*time.Second, "a leader", func() (bool, string) {
		for i, m := range managers {
			if m.isLeading() {
				leader, other = m, managers[1-i]
				return true, ""
			}
		}
		return false, "none leads"
	})
	for i := range 5 {
		createPod(t, cl.Admin, newPod("acme", fmt.Sprintf("first-%d", i), "web"))
	}
	for i := range 5 {
		waitBound(t, cl.Admin, "acme", fmt.Sprintf("first-%d", i))
	}
	eventually(t, 5*time.Second, "the leader's binds recorded", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(bound[leader.identity]) == 5, fmt.Sprintf("bound by manager: %v", bound)
	})
	mu.Lock()
	if n := len(bound[other.identity]); n != 0 {
		t.Errorf("the standby %s bound %d pods: %v", other.identity, n, bound[other.identity])
	}
	mu.Unlock()

	leader.stop()
	eventually(t, 20*time.Second, other.identity+" leading", func() (bool, string) { return other.isLeading(), "" })
	for i := range 3 {
		createPod(t, cl.Admin, newPod("acme", fmt.Sprintf("second-%d", i), "web"))
	}
	for i := range 3 {
		waitBound(t, cl.Admin, "acme", fmt.Sprintf("second-%d", i))
	}
	// A bind is reported once committed, a moment after it shows.
	eventually(t, 5*time.Second, "the new leader's binds recorded", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(bound[leader.identity]) == 5 && len(bound[other.identity]) == 3,
			fmt.Sprintf("bound by manager = %v, want the first 5 by %s and the next 3 by %s", bound, leader.identity, other.identity)
	})
}

// forceDelete removes a pod of acme at once, bound or not (no agent runs
// here to finish a graceful deletion).
func forceDelete(ctx context.Context, c *client.Client, name string) error {
	zero := int64(0)
	_, err := c.DeleteWith(ctx, podKind, "acme", name, client.DeleteOptions{GracePeriodSeconds: &zero})
	return err
}
