package agent

import (
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/api"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// A node offers a runtime class only when the class's plugin runs its
// handler and that handler isolates at least as strongly as the class
// claims: a class that promises a sandbox never lands on runc.
func TestOffers(t *testing.T) {
	r := &runtimes{caps: map[string]*runtimev1.CapabilitiesResponse{
		"runc": {IsolationClass: runtimev1.IsolationClass_ISOLATION_CLASS_NAMESPACE},
		"runsc": {
			IsolationClass: runtimev1.IsolationClass_ISOLATION_CLASS_USERSPACE_KERNEL,
			Handlers:       []string{"runsc"},
		},
		"containerd": {
			IsolationClass:   runtimev1.IsolationClass_ISOLATION_CLASS_NAMESPACE,
			Handlers:         []string{"runc", "runsc"},
			HandlerIsolation: map[string]runtimev1.IsolationClass{"runsc": runtimev1.IsolationClass_ISOLATION_CLASS_USERSPACE_KERNEL},
		},
		"old-containerd": {
			IsolationClass: runtimev1.IsolationClass_ISOLATION_CLASS_NAMESPACE,
			Handlers:       []string{"runc", "runsc"},
		},
	}}
	class := func(plugin, handler string, iso api.IsolationClass) *api.RuntimeClass {
		return &api.RuntimeClass{Metadata: api.ObjectMeta{Name: "c"}, Spec: api.RuntimeClassSpec{Plugin: plugin, Handler: handler, Isolation: iso}}
	}
	for _, tc := range []struct {
		rc   *api.RuntimeClass
		want string // "" = offered; else a part of the reason
	}{
		{class("runc", "", api.IsolationNamespace), ""},
		{class("runc", "", api.IsolationUserspaceKernel), "isolates with namespace only"},
		{class("runc", "fast", api.IsolationNamespace), `has no handler "fast"`},
		{class("runsc", "", api.IsolationUserspaceKernel), ""},
		{class("runsc", "", api.IsolationNamespace), ""},
		{class("runsc", "", api.IsolationVM), "claims isolation vm"},
		{class("containerd", "runc", api.IsolationNamespace), ""},
		{class("containerd", "runsc", api.IsolationUserspaceKernel), ""},
		{class("containerd", "runc", api.IsolationUserspaceKernel), "isolates with namespace only"},
		{class("old-containerd", "runsc", api.IsolationUserspaceKernel), "isolates with namespace only"},
		{class("kata", "", api.IsolationVM), `plugin "kata" is not run by this node`},
	} {
		err := r.offers(tc.rc)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v, want offered", tc.rc.Spec, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: %v, want not offered because %q", tc.rc.Spec, err, tc.want)
		}
	}
}
