package apiserver

import (
	"errors"
	"testing"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// A node reads exactly the secrets and config maps its pods use, and
// nothing about the others — not even whether they exist.
func TestNodeReadsOnlyWhatItsPodsUse(t *testing.T) {
	admin, mk := testServer(t)
	ctx := t.Context()
	mustCreate(t, admin, &api.Tenant{Metadata: api.ObjectMeta{Name: "acme"}})
	for _, name := range []string{"used", "unused", "elsewhere"} {
		mustCreate(t, admin, &api.Secret{Metadata: api.ObjectMeta{Name: name, Tenant: "acme"}, StringData: map[string]string{"k": "v"}})
	}
	mustCreate(t, admin, &api.ConfigMap{Metadata: api.ObjectMeta{Name: "settings", Tenant: "acme"}, Data: map[string]string{"k": "v"}})
	pod := func(name, node, secret string) *api.Pod {
		p := newPod("acme", name)
		p.Spec.NodeName = node
		p.Spec.Containers[0].Env = []api.EnvVar{
			{Name: "S", ValueFrom: &api.EnvVarSource{SecretKeyRef: &api.KeySelector{Name: secret, Key: "k"}}},
			{Name: "C", ValueFrom: &api.EnvVarSource{ConfigMapKeyRef: &api.KeySelector{Name: "settings", Key: "k"}}},
		}
		return p
	}
	mustCreate(t, admin, pod("mine", "n1", "used"))
	mustCreate(t, admin, pod("theirs", "n2", "elsewhere"))
	node := mk(api.RoleNode, "", "n1")
	secrets, _ := api.KindFor("secrets")
	configmaps, _ := api.KindFor("configmaps")

	o, err := node.Get(ctx, secrets, "acme", "used")
	if err != nil || string(o.(*api.Secret).Data["k"]) != "v" {
		t.Errorf("node reads the secret its pod uses: %v", err)
	}
	if _, err := node.Get(ctx, configmaps, "acme", "settings"); err != nil {
		t.Errorf("node reads the config map its pod uses: %v", err)
	}
	for _, name := range []string{"unused", "elsewhere", "missing"} {
		if _, err := node.Get(ctx, secrets, "acme", name); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("node reads secret %q: %v, want 403", name, err)
		}
	}
	if _, err := node.List(ctx, secrets, "acme", client.ListOptions{}); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("node lists secrets: %v, want 403", err)
	}
	// Once the pod is gone, so is the access.
	zero := int64(0)
	if _, err := admin.DeleteWith(ctx, podKind, "acme", "mine", client.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Get(ctx, secrets, "acme", "used"); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("node reads a secret after its pod left: %v, want 403", err)
	}
}
