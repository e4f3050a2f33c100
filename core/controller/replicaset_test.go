package controller_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/controller/controllertest"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

// waitReplicas waits until rs has want active pods, all owned by it and
// ready, and its status says so for its current generation.
func waitReplicas(t *testing.T, cl *testcluster.Cluster, tenant, name string, want int) []*api.Pod {
	t.Helper()
	var pods []*api.Pod
	eventually(t, 30*time.Second, fmt.Sprintf("replica set %s at %d ready replicas", name, want), func() (bool, string) {
		rs := getAs[*api.ReplicaSet](t, cl.Admin, tenant, name)
		pods = activePods(listPods(t, cl.Admin, tenant, "app="+name))
		for _, p := range pods {
			if !ownedBy(p, rs.Metadata.UID) || !controllertest.Ready(p) {
				return false, fmt.Sprintf("pod %s not owned by the replica set or not ready", p.Metadata.Name)
			}
		}
		st := rs.Status
		ok := len(pods) == want && st.Replicas == int32(want) && st.ReadyReplicas == int32(want) && st.AvailableReplicas == int32(want) &&
			st.ObservedGeneration == rs.Metadata.Generation
		return ok, fmt.Sprintf("%d active pods %v; %s", len(pods), names(pods), describeRS(rs))
	})
	return pods
}

func TestReplicaSetKeepsReplicas(t *testing.T) {
	cl := startCluster(t)
	ctx := context.Background()

	if _, err := cl.Admin.Create(ctx, newReplicaSet("acme", "web", 3)); err != nil {
		t.Fatal(err)
	}
	pods := waitReplicas(t, cl, "acme", "web", 3)
	nameRe := regexp.MustCompile(`^web-[bcdfghjklmnpqrstvwxz2456789]{5}$`)
	for _, p := range pods {
		if !nameRe.MatchString(p.Metadata.Name) {
			t.Errorf("pod name %q, want web-xxxxx", p.Metadata.Name)
		}
	}

	t.Run("replaces a deleted pod", func(t *testing.T) {
		victim := pods[0].Metadata.Name
		if _, err := cl.Admin.Delete(ctx, podKind, "acme", victim); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "replacement pod", func() (bool, string) {
			got := activePods(listPods(t, cl.Admin, "acme", "app=web"))
			return len(got) == 3 && !slices.Contains(names(got), victim), fmt.Sprintf("active pods %v", names(got))
		})
		waitReplicas(t, cl, "acme", "web", 3)
	})
	t.Run("scales up", func(t *testing.T) {
		update(t, cl.Admin, "acme", "web", func(rs *api.ReplicaSet) { *rs.Spec.Replicas = 5 })
		waitReplicas(t, cl, "acme", "web", 5)
	})
	t.Run("scales down", func(t *testing.T) {
		update(t, cl.Admin, "acme", "web", func(rs *api.ReplicaSet) { *rs.Spec.Replicas = 2 })
		waitReplicas(t, cl, "acme", "web", 2)
	})
	t.Run("adopts an orphan", func(t *testing.T) {
		update(t, cl.Admin, "acme", "web", func(rs *api.ReplicaSet) { *rs.Spec.Replicas = 3 })
		// Created while the set is at 3: adopted, or a surplus pod is
		// deleted; either way the set ends with 3 pods it owns.
		if _, err := cl.Admin.Create(ctx, newPod("acme", "stray", "web")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "orphan adopted", func() (bool, string) {
			p, err := cl.Admin.Get(ctx, podKind, "acme", "stray")
			if err != nil {
				return true, "" // deleted as surplus after adoption
			}
			ref := controllerOf(p.GetObjectMeta())
			return ref != nil && ref.Name == "web", fmt.Sprintf("owner references %+v", p.GetObjectMeta().OwnerReferences)
		})
		waitReplicas(t, cl, "acme", "web", 3)
	})
	t.Run("pods in another tenant are not counted", func(t *testing.T) {
		createTenant(t, cl, "other")
		if _, err := cl.Admin.Create(ctx, newPod("other", "lookalike", "web")); err != nil {
			t.Fatal(err)
		}
		waitReplicas(t, cl, "acme", "web", 3)
		p := getAs[*api.Pod](t, cl.Admin, "other", "lookalike")
		if len(p.Metadata.OwnerReferences) != 0 {
			t.Errorf("pod of tenant other got owner references %+v", p.Metadata.OwnerReferences)
		}
	})
}
