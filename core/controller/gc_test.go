package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
)

func TestGarbageCollection(t *testing.T) {
	cl := startCluster(t)
	ctx := context.Background()

	gone := func(t *testing.T, k *api.Kind, name string) {
		t.Helper()
		eventually(t, 30*time.Second, k.Singular+" "+name+" collected", func() (bool, string) {
			_, err := cl.Admin.Get(ctx, k, "acme", name)
			return errdefs.IsNotFound(err), fmt.Sprintf("get: %v", err)
		})
	}
	pod := func(name string, owners ...api.OwnerReference) *api.Pod { return newPod("acme", name, name, owners...) }

	t.Run("pods of a deleted replica set", func(t *testing.T) {
		if _, err := cl.Admin.Create(ctx, newReplicaSet("acme", "web", 3)); err != nil {
			t.Fatal(err)
		}
		pods := waitReplicas(t, cl, "acme", "web", 3)
		if _, err := cl.Admin.Delete(ctx, rsKind, "acme", "web"); err != nil {
			t.Fatal(err)
		}
		for _, p := range pods {
			gone(t, podKind, p.Metadata.Name)
		}
	})
	t.Run("replica sets and pods of a deleted deployment", func(t *testing.T) {
		if _, err := cl.Admin.Create(ctx, newDeployment("acme", "api", 2, "busybox")); err != nil {
			t.Fatal(err)
		}
		d := waitRolledOut(t, cl, "acme", "api")
		rss := replicaSetsOf(t, cl.Admin, d)
		pods := listPods(t, cl.Admin, "acme", "app=api")
		if _, err := cl.Admin.Delete(ctx, deployKind, "acme", "api"); err != nil {
			t.Fatal(err)
		}
		for _, rs := range rss {
			gone(t, rsKind, rs.Metadata.Name)
		}
		for _, p := range pods {
			gone(t, podKind, p.Metadata.Name)
		}
	})
	t.Run("owner replaced by a new object of the same name", func(t *testing.T) {
		if _, err := cl.Admin.Create(ctx, newReplicaSet("acme", "db", 0)); err != nil {
			t.Fatal(err)
		}
		ghost := api.OwnerReference{APIVersion: api.Version, Kind: "ReplicaSet", Name: "db", UID: "an-old-uid", Controller: true}
		if _, err := cl.Admin.Create(ctx, pod("db-orphan", ghost)); err != nil {
			t.Fatal(err)
		}
		gone(t, podKind, "db-orphan")
	})
	t.Run("live owners and unknown owner kinds are left alone", func(t *testing.T) {
		rs, err := cl.Admin.Create(ctx, newReplicaSet("acme", "keep", 0))
		if err != nil {
			t.Fatal(err)
		}
		live := api.OwnerReference{APIVersion: api.Version, Kind: "ReplicaSet", Name: "keep", UID: rs.GetObjectMeta().UID}
		other := api.OwnerReference{APIVersion: "example.com/v1", Kind: "Widget", Name: "w", UID: "x", Controller: true}
		notController := api.OwnerReference{APIVersion: api.Version, Kind: "ReplicaSet", Name: "nope", UID: "y"}
		for name, ref := range map[string]api.OwnerReference{"keep-live": live, "keep-widget": other, "keep-plain": notController} {
			if _, err := cl.Admin.Create(ctx, pod(name, ref)); err != nil {
				t.Fatal(err)
			}
		}
		// A pod collected like db-orphan above goes within moments;
		// bound the wait by that plus a margin, then check these stay.
		if _, err := cl.Admin.Create(ctx, pod("marker", api.OwnerReference{APIVersion: api.Version, Kind: "ReplicaSet", Name: "m", UID: "z", Controller: true})); err != nil {
			t.Fatal(err)
		}
		gone(t, podKind, "marker")
		for _, name := range []string{"keep-live", "keep-widget", "keep-plain"} {
			if _, err := cl.Admin.Get(ctx, podKind, "acme", name); err != nil {
				t.Errorf("pod %s: %v; want it kept", name, err)
			}
		}
	})
}
