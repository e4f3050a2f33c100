package apiserver

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/store"
)

// testServer runs an API server on a real embedded etcd behind httptest
// and returns a cluster-admin client and a function making clients for
// other roles.
func testServer(t *testing.T) (*client.Client, func(role api.Role, tenant, node string) *client.Client) {
	t.Helper()
	mks, _ := testServers(t, 1, nil)
	mk := mks[0]
	admin := mk(api.RoleClusterAdmin, "", "")
	for _, rc := range []*api.RuntimeClass{
		{Metadata: api.ObjectMeta{Name: "runc"}, Spec: api.RuntimeClassSpec{Plugin: "runc", Isolation: api.IsolationNamespace}},
		{Metadata: api.ObjectMeta{Name: "gvisor"}, Spec: api.RuntimeClassSpec{Plugin: "runsc", Isolation: api.IsolationUserspaceKernel}},
	} {
		if _, err := admin.Create(t.Context(), rc); err != nil {
			t.Fatal(err)
		}
	}
	return admin, mk
}

// clientMaker makes a client with a new token of a role.
type clientMaker func(role api.Role, tenant, node string) *client.Client

// testServers runs n API servers (as n server processes would) on one
// real embedded etcd, each configured by mutate when set, and returns for
// each a function making clients of it, and the store.
func testServers(t *testing.T, n int, mutate func(*Config)) ([]clientMaker, *store.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	st := store.New(e.Client())
	st.ShareWatches(ctx, nil)
	makers := make([]clientMaker, n)
	for i := range makers {
		cfg := Config{Store: st}
		if mutate != nil {
			mutate(&cfg)
		}
		srv := New(cfg)
		go srv.RunCaches(ctx)
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)
		makers[i] = func(role api.Role, tenant, node string) *client.Client {
			t.Helper()
			id, secret := NewTokenSecret()
			tok := &api.Token{Metadata: api.ObjectMeta{Name: id}, Spec: api.TokenSpec{Role: role, Tenant: tenant, Node: node}, Status: api.TokenStatus{SecretHash: HashSecret(secret)}}
			if _, err := st.Create(ctx, tok); err != nil {
				t.Fatal(err)
			}
			c, err := client.New(&client.Config{Server: hs.URL, Token: id + "." + secret, Tenant: tenant})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	return makers, st
}

func newPod(tenant, name string) *api.Pod {
	return &api.Pod{Metadata: api.ObjectMeta{Name: name, Tenant: tenant}, Spec: api.PodSpec{Containers: []api.Container{{Name: "c", Image: "busybox"}}}}
}

func TestRuntimeClassPolicy(t *testing.T) {
	admin, _ := testServer(t)
	ctx := t.Context()
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "sbx"}, Spec: api.TenantSpec{Isolation: api.IsolationSandboxed, NodeSelector: map[string]string{"pool": "secure"}}})

	p, err := admin.Create(ctx, newPod("sbx", "defaulted"))
	if err != nil {
		t.Fatal(err)
	}
	pod := p.(*api.Pod)
	if pod.Spec.RuntimeClassName != "gvisor" || pod.Spec.NodeSelector["pool"] != "secure" {
		t.Errorf("sandboxed pod got class %q and node selector %v, want gvisor and pool=secure", pod.Spec.RuntimeClassName, pod.Spec.NodeSelector)
	}

	runc := newPod("sbx", "asks-runc")
	runc.Spec.RuntimeClassName = "runc"
	_, err = admin.Create(ctx, runc)
	if !errors.Is(err, errdefs.ErrPermissionDenied) || !strings.Contains(err.Error(), "gvisor") || errdefs.FieldOf(err) != "spec.runtimeClassName" {
		t.Errorf("sandboxed pod on runc = %v, want 403 naming spec.runtimeClassName and gvisor", err)
	}

	escape := newPod("sbx", "escape")
	escape.Spec.NodeSelector = map[string]string{"pool": "shared"}
	_, err = admin.Create(ctx, escape)
	if !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("pod overriding the tenant's node selector = %v, want 403", err)
	}

	// A sandboxed tenant whose default class is a namespace class is refused.
	_, err = admin.Create(ctx, &api.Tenant{Metadata: api.ObjectMeta{Name: "bad"}, Spec: api.TenantSpec{Isolation: api.IsolationSandboxed, DefaultRuntimeClass: "runc"}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != "spec.defaultRuntimeClass" {
		t.Errorf("sandboxed tenant defaulting to runc = %v, want 422 on spec.defaultRuntimeClass", err)
	}

	// Allowed classes bind deployments' templates too.
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "only-gvisor"}, Spec: api.TenantSpec{AllowedRuntimeClasses: []string{"gvisor"}}})
	d := &api.Deployment{Metadata: api.ObjectMeta{Name: "d", Tenant: "only-gvisor"}, Spec: api.DeploymentSpec{
		Template: api.PodTemplateSpec{Metadata: api.ObjectMeta{Labels: map[string]string{"app": "d"}}, Spec: api.PodSpec{RuntimeClassName: "runc", Containers: []api.Container{{Name: "c", Image: "x"}}}},
	}}
	_, err = admin.Create(ctx, d)
	if !errors.Is(err, errdefs.ErrPermissionDenied) || errdefs.FieldOf(err) != "spec.template.spec.runtimeClassName" {
		t.Errorf("deployment with a disallowed class = %v, want 403 on spec.template.spec.runtimeClassName", err)
	}
}

func mustCreate(t *testing.T, c *client.Client, obj api.Object) api.Object {
	t.Helper()
	o, err := c.Create(t.Context(), obj)
	if err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetObjectMeta().Name, err)
	}
	return o
}

func TestUpdateSemantics(t *testing.T) {
	admin, _ := testServer(t)
	ctx := t.Context()
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "u"}})
	dep := &api.Deployment{Metadata: api.ObjectMeta{Name: "web", Tenant: "u"}, Spec: api.DeploymentSpec{
		Template: api.PodTemplateSpec{Metadata: api.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: api.PodSpec{Containers: []api.Container{{Name: "c", Image: "v1"}}}},
	}}
	created := mustCreate(t, admin, dep).(*api.Deployment)
	if created.Metadata.Generation != 1 || created.Spec.Selector == nil || created.Spec.Selector.MatchLabels["app"] != "web" {
		t.Fatalf("created deployment: generation %d selector %v", created.Metadata.Generation, created.Spec.Selector)
	}

	// Status writes do not bump the generation and survive spec updates.
	st := api.Clone(created)
	st.Status.ReadyReplicas = 1
	if _, err := admin.UpdateStatus(ctx, st); err != nil {
		t.Fatal(err)
	}
	labelled, _ := client.GetAs[*api.Deployment](ctx, admin, "u", "web")
	labelled.Metadata.Labels = map[string]string{"team": "a"}
	labelled.Status.ReadyReplicas = 99 // ignored on the main resource
	out, err := admin.Update(ctx, labelled)
	if err != nil {
		t.Fatal(err)
	}
	d := out.(*api.Deployment)
	if d.Metadata.Generation != 1 || d.Status.ReadyReplicas != 1 {
		t.Errorf("label update: generation %d readyReplicas %d, want 1 and 1", d.Metadata.Generation, d.Status.ReadyReplicas)
	}
	d.Spec.Template.Spec.Containers[0].Image = "v2"
	out, err = admin.Update(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if g := out.(*api.Deployment).Metadata.Generation; g != 2 {
		t.Errorf("spec update: generation %d, want 2", g)
	}

	// A stale resourceVersion conflicts.
	_, err = admin.Update(ctx, d)
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("update with a stale resourceVersion = %v, want conflict", err)
	}
	// Without one, the last write wins.
	d.Metadata.ResourceVersion = ""
	if _, err := admin.Update(ctx, d); err != nil {
		t.Errorf("update without resourceVersion = %v", err)
	}
}

func TestDeleteTenantCascades(t *testing.T) {
	admin, mk := testServer(t)
	ctx := t.Context()
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "gone"}})
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "stays"}})
	mustCreate(t, admin, newPod("gone", "p"))
	mustCreate(t, admin, newPod("stays", "p"))
	mustCreate(t, admin, &api.ConfigMap{Metadata: api.ObjectMeta{Name: "c", Tenant: "gone"}})
	user := mk(api.RoleEdit, "gone", "")
	if _, err := admin.Delete(ctx, kindOf(t, "tenants"), "", "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Get(ctx, kindOf(t, "pods"), "gone", "p"); !errdefs.IsNotFound(err) {
		t.Errorf("pod of a deleted tenant: %v, want not found", err)
	}
	if _, err := admin.Get(ctx, kindOf(t, "pods"), "stays", "p"); err != nil {
		t.Errorf("pod of another tenant: %v", err)
	}
	if _, err := admin.Create(ctx, newPod("gone", "late")); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "tenant create") {
		t.Errorf("create in a deleted tenant = %v, want not found saying to create the tenant", err)
	}
	waitFor(t, "the deleted tenant's token to stop working", func() bool {
		_, err := user.List(ctx, kindOf(t, "pods"), "gone", client.ListOptions{})
		return errors.Is(err, errdefs.ErrUnauthenticated)
	})
}

func TestNodeRole(t *testing.T) {
	admin, mk := testServer(t)
	ctx := t.Context()
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "n"}})
	mine, theirs := newPod("n", "mine"), newPod("n", "theirs")
	mine.Spec.NodeName, theirs.Spec.NodeName = "node-1", "node-2"
	mustCreate(t, admin, mine)
	mustCreate(t, admin, theirs)
	node := mk(api.RoleNode, "", "node-1")

	list, err := node.List(ctx, kindOf(t, "pods"), "", client.ListOptions{FieldSelector: "spec.nodeName=node-1"})
	if err != nil || len(list.Items) != 1 || list.Items[0].GetObjectMeta().Name != "mine" {
		t.Fatalf("node lists its pods = %v, %v; want only mine", list, err)
	}
	if _, err := node.List(ctx, kindOf(t, "pods"), "", client.ListOptions{}); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("node lists all pods = %v, want 403", err)
	}
	p, err := client.GetAs[*api.Pod](ctx, node, "n", "mine")
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = api.PodRunning
	if _, err := node.UpdateStatus(ctx, p); err != nil {
		t.Errorf("node writes its pod's status: %v", err)
	}
	if _, err := node.Get(ctx, kindOf(t, "pods"), "n", "theirs"); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("node reads another node's pod = %v, want 403", err)
	}
	if _, err := node.Create(ctx, &api.Node{Metadata: api.ObjectMeta{Name: "node-1"}}); err != nil {
		t.Errorf("node registers itself: %v", err)
	}
	if _, err := node.Create(ctx, &api.Node{Metadata: api.ObjectMeta{Name: "node-2"}}); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("node registers another = %v, want 403", err)
	}
}

func TestTokenSecretNeverReturned(t *testing.T) {
	admin, mk := testServer(t)
	ctx := t.Context()
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "tk"}})
	tenantAdmin := mk(api.RoleAdmin, "tk", "")
	w, err := admin.Watch(ctx, kindOf(t, "tokens"), "", client.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	created, err := tenantAdmin.Create(ctx, &api.Token{Spec: api.TokenSpec{Role: api.RoleView}})
	if err != nil {
		t.Fatal(err)
	}
	tok := created.(*api.Token)
	if tok.Spec.Tenant != "tk" || !strings.HasPrefix(tok.Status.Token, tok.Metadata.Name+".") || tok.Status.SecretHash != "" {
		t.Errorf("created token = %+v, want tenant tk, the bearer token once and no hash", tok)
	}
	got, _ := client.GetAs[*api.Token](ctx, admin, "", tok.Metadata.Name)
	list, _ := tenantAdmin.List(ctx, kindOf(t, "tokens"), "", client.ListOptions{})
	var ev api.WatchEvent
	select {
	case ev = <-w.Events():
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event for the token")
	}
	for what, o := range map[string]api.Object{"get": got, "list": list.Items[0], "watch": ev.Object} {
		tt := o.(*api.Token)
		if tt.Status.SecretHash != "" || tt.Status.Token != "" {
			t.Errorf("%s returns secret material: %+v", what, tt.Status)
		}
	}
	for _, o := range list.Items {
		if tt := o.(*api.Token); tt.Spec.Tenant != "tk" {
			t.Errorf("tenant admin sees a token of tenant %q", tt.Spec.Tenant)
		}
	}
	if len(list.Items) != 2 {
		t.Errorf("tenant admin sees %d tokens, want its tenant's 2 (its own and the new one)", len(list.Items))
	}
}

func kindOf(t *testing.T, name string) *api.Kind {
	t.Helper()
	k, ok := api.KindFor(name)
	if !ok {
		t.Fatalf("no kind %s", name)
	}
	return k
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
