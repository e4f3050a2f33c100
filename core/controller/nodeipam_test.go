package controller_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/controller"
	"github.com/paddock-dev/paddock/core/controller/controllertest"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/server"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

var nodeKind, _ = api.KindFor("nodes")

// registerNode registers a node with its own credential, as its agent
// does, and returns that client.
func registerNode(t *testing.T, cl *testcluster.Cluster, name string) *client.Client {
	t.Helper()
	c := cl.Client(t, api.RoleNode, "", name)
	if _, err := c.Create(t.Context(), controllertest.NodeObject(name, "4", "8Gi")); err != nil {
		t.Fatalf("register node %s: %v", name, err)
	}
	return c
}

// podCIDRs returns every node's pod CIDR by node name.
func podCIDRs(t *testing.T, c *client.Client) map[string]string {
	t.Helper()
	l, err := c.ListAll(context.Background(), nodeKind, "", client.ListOptions{})
	if err != nil {
		t.Fatalf("list nodes: %v", err)
	}
	m := map[string]string{}
	for _, o := range l.Items {
		m[o.GetObjectMeta().Name] = o.(*api.Node).Spec.PodCIDR
	}
	return m
}

// waitCIDRs waits until the nodes named hold pod CIDRs that are all
// different, and returns them.
func waitCIDRs(t *testing.T, c *client.Client, nodes ...string) map[string]string {
	t.Helper()
	var m map[string]string
	eventually(t, 20*time.Second, "pod CIDRs of "+strings.Join(nodes, ", "), func() (bool, string) {
		m = podCIDRs(t, c)
		seen := map[string]string{}
		for _, n := range nodes {
			cidr := m[n]
			if cidr == "" {
				return false, fmt.Sprintf("%s has none yet: %v", n, m)
			}
			if other, dup := seen[cidr]; dup {
				t.Fatalf("nodes %s and %s both got %s", other, n, cidr)
			}
			seen[cidr] = n
		}
		return true, ""
	})
	return m
}

func TestNodeIPAM(t *testing.T) {
	// Four /24s in the cluster CIDR.
	network := api.NetworkConfig{ClusterCIDR: "10.250.0.0/22", NodeCIDRMaskSize: 24}
	cl := testcluster.Start(t, func(c *server.Config) { c.Network = network })
	withNetwork := func(c *controller.Config) { c.Network = network }
	m1 := startManager(t, cl.Admin, "m1", withNetwork)
	ctx := t.Context()

	n1 := registerNode(t, cl, "n1")
	registerNode(t, cl, "n2")
	registerNode(t, cl, "n3")
	got := waitCIDRs(t, cl.Admin, "n1", "n2", "n3")
	want := map[string]bool{"10.250.0.0/24": true, "10.250.1.0/24": true, "10.250.2.0/24": true}
	for _, n := range []string{"n1", "n2", "n3"} {
		if !want[got[n]] {
			t.Errorf("node %s got %s, want one of the first three /24s of %s", n, got[n], network.ClusterCIDR)
		}
	}

	// A node cannot pick its own range, nor change the one it was given.
	self, err := client.GetAs[*api.Node](ctx, n1, "", "n1")
	if err != nil {
		t.Fatal(err)
	}
	self.Spec.PodCIDR = "10.250.3.0/24"
	if _, err := n1.Update(ctx, self); !errors.Is(err, errdefs.ErrPermissionDenied) || errdefs.FieldOf(err) != "spec.podCIDR" {
		t.Errorf("node changing its own pod CIDR = %v, want permission denied on spec.podCIDR", err)
	}
	sneaky := controllertest.NodeObject("n9", "4", "8Gi")
	sneaky.Spec.PodCIDR = "10.250.3.0/24"
	if _, err := cl.Client(t, api.RoleNode, "", "n9").Create(ctx, sneaky); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("node registering with a pod CIDR = %v, want permission denied", err)
	}
	// The agent's own updates (labels, with the spec as read) keep it.
	self.Spec.PodCIDR = got["n1"]
	self.Metadata.Labels = map[string]string{"rack": "r1"}
	if _, err := n1.Update(ctx, self); err != nil {
		t.Errorf("node updating its labels: %v", err)
	}

	registerNode(t, cl, "n4")
	got = waitCIDRs(t, cl.Admin, "n1", "n2", "n3", "n4")
	if got["n4"] != "10.250.3.0/24" {
		t.Errorf("n4 got %q, want the last free range 10.250.3.0/24", got["n4"])
	}

	// The cluster CIDR is full: n5 waits until a node goes.
	registerNode(t, cl, "n5")
	freed := got["n2"]
	if _, err := cl.Admin.Delete(ctx, nodeKind, "", "n2"); err != nil {
		t.Fatal(err)
	}
	got = waitCIDRs(t, cl.Admin, "n1", "n3", "n4", "n5")
	if got["n5"] != freed {
		t.Errorf("n5 got %q, want the range %s freed by n2", got["n5"], freed)
	}

	// A new leader knows what is taken from the nodes alone.
	m1.stop()
	freed = got["n3"]
	if _, err := cl.Admin.Delete(ctx, nodeKind, "", "n3"); err != nil {
		t.Fatal(err)
	}
	startManager(t, cl.Admin, "m2", withNetwork)
	registerNode(t, cl, "n6")
	got = waitCIDRs(t, cl.Admin, "n1", "n4", "n5", "n6")
	if got["n6"] != freed {
		t.Errorf("n6 got %q under a new leader, want the range %s freed by n3", got["n6"], freed)
	}
}
