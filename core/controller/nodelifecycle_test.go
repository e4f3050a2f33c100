package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/controller"
	"github.com/paddock-dev/paddock/core/controller/controllertest"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

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
	if _, err := agent.Create(ctx, controllertest.NodeObject("n1", "4", "8Gi")); err != nil {
		t.Fatal(err)
	}
	stopHeartbeat := controllertest.Heartbeat(t, agent, "n1", 300*time.Millisecond)

	// Two pods of a replica set run on n1, where the scheduler puts them.
	if _, err := cl.Admin.Create(ctx, newReplicaSet("acme", "web", 2)); err != nil {
		t.Fatal(err)
	}
	var onN1 []*api.Pod
	eventually(t, 30*time.Second, "two pods bound to n1", func() (bool, string) {
		onN1 = activePods(listPods(t, cl.Admin, "acme", "app=web"))
		bound := 0
		for _, p := range onN1 {
			if p.Spec.NodeName == "n1" {
				bound++
			}
		}
		return len(onN1) == 2 && bound == 2, fmt.Sprintf("%d pods, %d bound to n1", len(onN1), bound)
	})
	for _, p := range onN1 {
		if _, err := agent.UpdateStatus(ctx, controllertest.Running(getAs[*api.Pod](t, cl.Admin, "acme", p.Metadata.Name), time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	waitReplicas(t, cl, "acme", "web", 2)

	t.Run("a heartbeating node stays ready", func(t *testing.T) {
		staysReady(t, cl.Admin, "n1", 2*grace)
	})
	t.Run("a silent node becomes Unknown", func(t *testing.T) {
		stopHeartbeat()
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
		controllertest.Heartbeat(t, agent, "n1", 300*time.Millisecond)
		if r := nodeReady(t, cl.Admin, "n1"); r.Status != "Unknown" {
			t.Fatalf("Ready=%s before the agent wrote it; the controller must only ever set Unknown", r.Status)
		}
		setNodeReady(t, agent, "n1")
		staysReady(t, cl.Admin, "n1", 2*grace)
	})
}
