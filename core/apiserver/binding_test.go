package apiserver

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

func TestBinding(t *testing.T) {
	admin, _ := testServer(t)
	ctx := t.Context()
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "acme"}})
	created := mustCreate(t, admin, newPod("acme", "web")).(*api.Pod)

	bound, err := admin.Bind(ctx, "acme", "web", "n1")
	if err != nil {
		t.Fatalf("Bind(acme/web, n1) = %v", err)
	}
	if bound.Spec.NodeName != "n1" || bound.Metadata.ResourceVersion == created.Metadata.ResourceVersion {
		t.Errorf("Bind returned nodeName %q rv %s (created at rv %s), want n1 and a new rv", bound.Spec.NodeName, bound.Metadata.ResourceVersion, created.Metadata.ResourceVersion)
	}
	stored := getPod(t, admin, "acme", "web")
	if stored.Spec.NodeName != "n1" {
		t.Errorf("stored nodeName = %q, want n1", stored.Spec.NodeName)
	}
	if c := podCondition(stored, "PodScheduled"); c == nil || c.Status != "True" || c.LastTransitionTime == nil {
		t.Errorf("PodScheduled = %+v, want True with a transition time", c)
	}

	for _, node := range []string{"n1", "n2"} {
		_, err := admin.Bind(ctx, "acme", "web", node)
		if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), `already bound to node "n1"`) {
			t.Errorf("second Bind(acme/web, %s) = %v, want 409 naming n1", node, err)
		}
	}
	if got := getPod(t, admin, "acme", "web"); got.Metadata.ResourceVersion != stored.Metadata.ResourceVersion {
		t.Errorf("a refused bind changed the pod: rv %s, was %s", got.Metadata.ResourceVersion, stored.Metadata.ResourceVersion)
	}
	if _, err := admin.Bind(ctx, "acme", "missing", "n1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Bind(missing pod) = %v, want 404", err)
	}

	// An unschedulable pod's PodScheduled=False is replaced, not doubled.
	pending := mustCreate(t, admin, newPod("acme", "pending")).(*api.Pod)
	pending.Status.Conditions = []api.Condition{{Type: "PodScheduled", Status: "False", Reason: "Unschedulable", Message: "0/0 nodes are available."}}
	if _, err := admin.UpdateStatus(ctx, pending); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Bind(ctx, "acme", "pending", "n2"); err != nil {
		t.Fatal(err)
	}
	got := getPod(t, admin, "acme", "pending")
	if len(got.Status.Conditions) != 1 || got.Status.Conditions[0].Status != "True" || got.Status.Conditions[0].Reason != "" {
		t.Errorf("conditions after binding an unschedulable pod = %+v, want one PodScheduled=True", got.Status.Conditions)
	}
}

func TestBindingConcurrent(t *testing.T) {
	admin, _ := testServer(t)
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "acme"}})
	mustCreate(t, admin, newPod("acme", "web"))
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = admin.Bind(t.Context(), "acme", "web", fmt.Sprintf("n%d", i)) })
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won < 0:
			won = i
		case err == nil:
			t.Errorf("binds to n%d and n%d both succeeded", won, i)
		case !errors.Is(err, errdefs.ErrConflict):
			t.Errorf("losing bind to n%d = %v, want 409", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no bind succeeded")
	}
	if got := getPod(t, admin, "acme", "web").Spec.NodeName; got != fmt.Sprintf("n%d", won) {
		t.Errorf("pod bound to %q, want the winner n%d", got, won)
	}
}

func TestBindingRequests(t *testing.T) {
	admin, _ := testServer(t)
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "acme"}})
	mustCreate(t, admin, newPod("acme", "web"))
	path := "/api/v1/tenants/acme/pods/web/binding"
	cases := []struct {
		name   string
		method string
		path   string
		body   string
		class  error
		field  string
	}{
		{"no target", http.MethodPost, path, `{}`, errdefs.ErrInvalidArgument, "target"},
		{"bad node name", http.MethodPost, path, `{"target":"Not A Node"}`, errdefs.ErrInvalidArgument, "target"},
		{"unknown field", http.MethodPost, path, `{"target":"n1","node":"n1"}`, errdefs.ErrBadRequest, "node"},
		{"wrong type", http.MethodPost, path, `{"target":1}`, errdefs.ErrBadRequest, "target"},
		{"not JSON", http.MethodPost, path, `target=n1`, errdefs.ErrBadRequest, ""},
		{"trailing data", http.MethodPost, path, `{"target":"n1"} {}`, errdefs.ErrBadRequest, ""},
		{"GET", http.MethodGet, path, ``, errdefs.ErrMethodNotAllowed, ""},
		{"PUT", http.MethodPut, path, `{"target":"n1"}`, errdefs.ErrMethodNotAllowed, ""},
		{"other kind", http.MethodPost, "/api/v1/tenants/acme/services/web/binding", `{"target":"n1"}`, errdefs.ErrNotFound, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			_, err := admin.Do(t.Context(), tc.method, tc.path, nil, body)
			if !errors.Is(err, tc.class) || errdefs.FieldOf(err) != tc.field {
				t.Errorf("%s %s %s = %v (field %q), want %v with field %q", tc.method, tc.path, tc.body, err, errdefs.FieldOf(err), tc.class, tc.field)
			}
		})
	}
	if p := getPod(t, admin, "acme", "web"); p.Spec.NodeName != "" {
		t.Errorf("a refused binding bound the pod to %q", p.Spec.NodeName)
	}
}

// TestBindingAuthorization: only cluster admins bind; tenants may not name
// a node in a pod or pod template; nobody changes spec.nodeName by update.
func TestBindingAuthorization(t *testing.T) {
	admin, mk := testServer(t)
	ctx := t.Context()
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "acme"}})
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "other"}})
	mustCreate(t, admin, newPod("acme", "web"))
	roles := []struct {
		name string
		c    *client.Client
	}{
		{"tenant admin", mk(api.RoleAdmin, "acme", "")},
		{"tenant edit", mk(api.RoleEdit, "acme", "")},
		{"tenant view", mk(api.RoleView, "acme", "")},
		{"other tenant's admin", mk(api.RoleAdmin, "other", "")},
		{"node", mk(api.RoleNode, "", "n1")},
	}
	for _, r := range roles {
		t.Run("bind as "+r.name, func(t *testing.T) {
			_, err := r.c.Bind(ctx, "acme", "web", "n1")
			if !errors.Is(err, errdefs.ErrPermissionDenied) {
				t.Errorf("Bind as %s = %v, want 403", r.name, err)
			}
			// The answer does not depend on whether the pod exists.
			if _, err := r.c.Bind(ctx, "acme", "missing", "n1"); !errors.Is(err, errdefs.ErrPermissionDenied) {
				t.Errorf("Bind of a missing pod as %s = %v, want 403", r.name, err)
			}
		})
	}
	if p := getPod(t, admin, "acme", "web"); p.Spec.NodeName != "" {
		t.Fatalf("a refused bind bound the pod to %q", p.Spec.NodeName)
	}

	rs := func(name, node string) *api.ReplicaSet {
		one := int32(1)
		return &api.ReplicaSet{
			Metadata: api.ObjectMeta{Name: name, Tenant: "acme"},
			Spec: api.ReplicaSetSpec{
				Replicas: &one,
				Selector: &api.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Template: api.PodTemplateSpec{
					Metadata: api.ObjectMeta{Labels: map[string]string{"app": name}},
					Spec:     api.PodSpec{NodeName: node, Containers: []api.Container{{Name: "c", Image: "busybox"}}},
				},
			},
		}
	}
	deploy := func(name, node string) *api.Deployment {
		r := rs(name, node)
		return &api.Deployment{Metadata: r.Metadata, Spec: api.DeploymentSpec{Replicas: r.Spec.Replicas, Selector: r.Spec.Selector, Template: r.Spec.Template}}
	}
	withNode := func(name string) *api.Pod {
		p := newPod("acme", name)
		p.Spec.NodeName = "n1"
		return p
	}
	for _, role := range []api.Role{api.RoleAdmin, api.RoleEdit} {
		c := mk(role, "acme", "")
		for _, obj := range []api.Object{withNode("pinned-" + string(role)), rs("rs-"+string(role), "n1"), deploy("deploy-"+string(role), "n1")} {
			t.Run(fmt.Sprintf("tenant %s creates %T naming a node", role, obj), func(t *testing.T) {
				_, err := c.Create(ctx, obj)
				field, _ := nodeNameOf(obj)
				if !errors.Is(err, errdefs.ErrPermissionDenied) || errdefs.FieldOf(err) != field || !strings.Contains(err.Error(), "set by the scheduler") {
					t.Errorf("create = %v (field %q), want 403 on %s saying it is set by the scheduler", err, errdefs.FieldOf(err), field)
				}
			})
		}
		// Without a node name the same objects are fine.
		if _, err := c.Create(ctx, rs("plain-"+string(role), "")); err != nil {
			t.Errorf("tenant %s creates a replica set without a node: %v", role, err)
		}
	}

	t.Run("tenant sets a node in a template by update", func(t *testing.T) {
		edit := mk(api.RoleEdit, "acme", "")
		o, err := client.GetAs[*api.ReplicaSet](ctx, edit, "acme", "plain-edit")
		if err != nil {
			t.Fatal(err)
		}
		o.Spec.Template.Spec.NodeName = "n1"
		if _, err := edit.Update(ctx, o); !errors.Is(err, errdefs.ErrPermissionDenied) || errdefs.FieldOf(err) != "spec.template.spec.nodeName" {
			t.Errorf("update = %v, want 403 on spec.template.spec.nodeName", err)
		}
	})

	t.Run("cluster admin creates a pod on a node", func(t *testing.T) {
		out, err := admin.Create(ctx, withNode("operator"))
		if err != nil || out.(*api.Pod).Spec.NodeName != "n1" {
			t.Errorf("admin create with spec.nodeName = %v, want the pod on n1", err)
		}
	})

	for _, u := range []struct {
		name string
		c    *client.Client
	}{{"cluster admin", admin}, {"tenant edit", mk(api.RoleEdit, "acme", "")}} {
		t.Run(u.name+" binds by update", func(t *testing.T) {
			p := getPod(t, u.c, "acme", "web")
			p.Spec.NodeName = "n1"
			_, err := u.c.Update(ctx, p)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != "spec.nodeName" || !strings.Contains(err.Error(), "binding") {
				t.Errorf("update setting spec.nodeName = %v (field %q), want 422 on spec.nodeName pointing at the binding", err, errdefs.FieldOf(err))
			}
		})
	}
	t.Run("an update of a bound pod keeps its node", func(t *testing.T) {
		if _, err := admin.Bind(ctx, "acme", "web", "n2"); err != nil {
			t.Fatal(err)
		}
		edit := mk(api.RoleEdit, "acme", "")
		p := getPod(t, edit, "acme", "web")
		p.Spec.NodeName = ""
		p.Metadata.Labels = map[string]string{"touched": "yes"}
		out, err := edit.Update(ctx, p)
		if err != nil || out.(*api.Pod).Spec.NodeName != "n2" {
			t.Errorf("update without spec.nodeName = %v, want it kept on n2", err)
		}
		p = getPod(t, admin, "acme", "web")
		p.Spec.NodeName = "n1"
		if _, err := admin.Update(ctx, p); !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != "spec.nodeName" {
			t.Errorf("moving a bound pod by update = %v, want 422 on spec.nodeName", err)
		}
	})
}

func getPod(t *testing.T, c *client.Client, tenant, name string) *api.Pod {
	t.Helper()
	p, err := client.GetAs[*api.Pod](t.Context(), c, tenant, name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func podCondition(p *api.Pod, typ string) *api.Condition {
	for i, c := range p.Status.Conditions {
		if c.Type == typ {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}
