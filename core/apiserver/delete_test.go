package apiserver

import (
	"errors"
	"testing"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// A pod bound to a node terminates gracefully: the first delete marks it
// (its quota still held), a repeated delete changes nothing, a shorter
// grace period shortens it, the node's own delete removes it; --force and
// unbound pods go at once.
func TestGracefulPodDeletion(t *testing.T) {
	admin, mk := testServer(t)
	ctx := t.Context()
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "acme"}})
	node := mk(api.RoleNode, "", "n1")
	pods, _ := api.KindFor("pods")
	tenants, _ := api.KindFor("tenants")
	used := func() int64 {
		t.Helper()
		o, err := admin.Get(ctx, tenants, "", "acme")
		if err != nil {
			t.Fatal(err)
		}
		return o.(*api.Tenant).Status.Used.Pods
	}
	bound := newPod("acme", "bound")
	bound.Spec.NodeName = "n1"
	mustCreate(t, admin, bound)
	mustCreate(t, admin, newPod("acme", "pending"))

	out, err := admin.Delete(ctx, pods, "acme", "bound")
	if err != nil {
		t.Fatal(err)
	}
	m := out.GetObjectMeta()
	if m.DeletionTimestamp == nil || m.DeletionGracePeriodSeconds == nil || *m.DeletionGracePeriodSeconds != 30 {
		t.Fatalf("delete of a bound pod returned deletionTimestamp %v grace %v, want set and 30", m.DeletionTimestamp, m.DeletionGracePeriodSeconds)
	}
	if _, err := admin.Get(ctx, pods, "acme", "bound"); err != nil {
		t.Fatalf("terminating pod is gone already: %v", err)
	}
	if n := used(); n != 2 {
		t.Errorf("used pods while terminating = %d, want 2 (released when removed)", n)
	}
	again, err := admin.Delete(ctx, pods, "acme", "bound")
	if err != nil || again.GetObjectMeta().ResourceVersion != m.ResourceVersion {
		t.Errorf("second delete = %v (rv %s, first %s), want no change", err, again.GetObjectMeta().ResourceVersion, m.ResourceVersion)
	}
	five := int64(5)
	shorter, err := admin.DeleteWith(ctx, pods, "acme", "bound", client.DeleteOptions{GracePeriodSeconds: &five})
	if err != nil || *shorter.GetObjectMeta().DeletionGracePeriodSeconds != 5 {
		t.Errorf("delete with a shorter grace = %v, want grace 5", err)
	}
	// An update cannot take the deletion back.
	cur, _ := admin.Get(ctx, pods, "acme", "bound")
	cur.GetObjectMeta().DeletionTimestamp = nil
	if upd, err := admin.Update(ctx, cur); err != nil || upd.GetObjectMeta().DeletionTimestamp == nil {
		t.Errorf("update clearing deletionTimestamp = %v, deletionTimestamp kept: %v", err, err == nil && upd.GetObjectMeta().DeletionTimestamp != nil)
	}
	if _, err := node.Delete(ctx, pods, "acme", "bound"); err != nil {
		t.Fatalf("node's final delete: %v", err)
	}
	if _, err := admin.Get(ctx, pods, "acme", "bound"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("after the node's delete: %v, want NotFound", err)
	}
	if n := used(); n != 1 {
		t.Errorf("used pods after removal = %d, want 1", n)
	}

	out, err = admin.Delete(ctx, pods, "acme", "pending")
	if err != nil || out.GetObjectMeta().DeletionTimestamp != nil {
		t.Errorf("delete of an unbound pod = %v (deletionTimestamp %v), want removed at once", err, out.GetObjectMeta().DeletionTimestamp)
	}
	forced := newPod("acme", "forced")
	forced.Spec.NodeName = "n1"
	mustCreate(t, admin, forced)
	zero := int64(0)
	if _, err := admin.DeleteWith(ctx, pods, "acme", "forced", client.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Get(ctx, pods, "acme", "forced"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("after a forced delete: %v, want NotFound", err)
	}
	if n := used(); n != 0 {
		t.Errorf("used pods at the end = %d, want 0", n)
	}
	// A node cannot force-remove a pod that is not terminating: its delete
	// starts a graceful one like anyone's.
	other := newPod("acme", "other")
	other.Spec.NodeName = "n1"
	mustCreate(t, admin, other)
	if out, err := node.Delete(ctx, pods, "acme", "other"); err != nil || out.GetObjectMeta().DeletionTimestamp == nil {
		t.Errorf("node delete of a running pod = %v, want a graceful deletion begun", err)
	}
	bad := "x"
	resp, err := admin.Do(ctx, "DELETE", client.Path(pods, "acme", "other"), map[string][]string{"gracePeriodSeconds": {bad}}, nil)
	if err == nil {
		resp.Body.Close()
	}
	if !errors.Is(err, errdefs.ErrBadRequest) || errdefs.FieldOf(err) != "gracePeriodSeconds" {
		t.Errorf("gracePeriodSeconds=x = %v, want 400 naming gracePeriodSeconds", err)
	}
}
