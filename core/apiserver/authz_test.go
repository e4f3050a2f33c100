package apiserver

import (
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
)

func mustParse(t *testing.T, method, target string) *Request {
	t.Helper()
	r, err := parseRequest(httptest.NewRequest(method, target, nil))
	if err != nil {
		t.Fatalf("parseRequest(%s %s) = %v", method, target, err)
	}
	return r
}

func TestParseRequest(t *testing.T) {
	cases := []struct {
		method, target string
		verb           Verb
		resource       string
		tenant, name   string
		sub            string
	}{
		{"GET", "/api/v1/tenants", VerbList, "tenants", "", "", ""},
		{"GET", "/api/v1/tenants/acme", VerbGet, "tenants", "", "acme", ""},
		{"PUT", "/api/v1/tenants/acme/status", VerbUpdate, "tenants", "", "acme", "status"},
		{"GET", "/api/v1/tenants/acme/pods", VerbList, "pods", "acme", "", ""},
		{"GET", "/api/v1/tenants/acme/pods?watch=true", VerbWatch, "pods", "acme", "", ""},
		{"POST", "/api/v1/tenants/acme/pods", VerbCreate, "pods", "acme", "", ""},
		{"PUT", "/api/v1/tenants/acme/pods/web", VerbUpdate, "pods", "acme", "web", ""},
		{"PUT", "/api/v1/tenants/acme/pods/web/status", VerbUpdate, "pods", "acme", "web", "status"},
		{"DELETE", "/api/v1/tenants/acme/pods/web", VerbDelete, "pods", "acme", "web", ""},
		{"GET", "/api/v1/pods", VerbList, "pods", "", "", ""},
		{"GET", "/api/v1/nodes/n1", VerbGet, "nodes", "", "n1", ""},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			r := mustParse(t, tc.method, tc.target)
			if r.Verb != tc.verb || r.Kind.Resource != tc.resource || r.Tenant != tc.tenant || r.Name != tc.name || r.Subresource != tc.sub {
				t.Errorf("parseRequest = %s %s tenant=%q name=%q sub=%q, want %s %s tenant=%q name=%q sub=%q",
					r.Verb, r.Kind.Resource, r.Tenant, r.Name, r.Subresource, tc.verb, tc.resource, tc.tenant, tc.name, tc.sub)
			}
		})
	}
	bad := []struct {
		method, target string
		class          error
	}{
		{"GET", "/api/v1/podz", errdefs.ErrNotFound},
		{"GET", "/api/v1/pods/web", errdefs.ErrNotFound},                    // tenant-scoped needs a tenant
		{"GET", "/api/v1/tenants/acme/nodes", errdefs.ErrNotFound},          // cluster-scoped under a tenant
		{"GET", "/api/v1/tenants/acme/pods/web/log/x", errdefs.ErrNotFound}, // too deep
		{"GET", "/api/v1/tenants/acme/configmaps/x/status", errdefs.ErrNotFound},
		{"PATCH", "/api/v1/tenants/acme/pods/web", errdefs.ErrMethodNotAllowed},
		{"POST", "/api/v1/tenants/acme/pods/web", errdefs.ErrMethodNotAllowed},
		{"DELETE", "/api/v1/tenants/acme/pods", errdefs.ErrMethodNotAllowed},
		{"POST", "/api/v1/pods", errdefs.ErrNotFound},
		{"GET", "/api/v1/tenants/acme/pods/../secrets", errdefs.ErrNotFound},
	}
	for _, tc := range bad {
		t.Run("bad "+tc.method+" "+tc.target, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "/", nil)
			req.URL.Path = tc.target
			_, err := parseRequest(req)
			if !errors.Is(err, tc.class) {
				t.Errorf("parseRequest(%s %s) = %v, want class %v", tc.method, tc.target, err, tc.class)
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	admin := &User{Name: "a", Role: api.RoleClusterAdmin}
	acmeAdmin := &User{Name: "b", Role: api.RoleAdmin, Tenant: "acme"}
	acmeEdit := &User{Name: "c", Role: api.RoleEdit, Tenant: "acme"}
	acmeView := &User{Name: "d", Role: api.RoleView, Tenant: "acme"}
	node := &User{Name: "e", Role: api.RoleNode, Node: "n1"}
	cases := []struct {
		user           *User
		method, target string
		allow          bool
	}{
		{admin, "DELETE", "/api/v1/tenants/acme", true},
		{admin, "GET", "/api/v1/pods", true},

		{acmeAdmin, "GET", "/api/v1/tenants/acme/pods", true},
		{acmeAdmin, "POST", "/api/v1/tenants/acme/secrets", true},
		{acmeAdmin, "GET", "/api/v1/tenants/other/pods", false},
		{acmeAdmin, "GET", "/api/v1/tenants/other/pods/x", false},
		{acmeAdmin, "DELETE", "/api/v1/tenants/other/pods/x", false},
		{acmeAdmin, "GET", "/api/v1/pods", false},
		{acmeAdmin, "POST", "/api/v1/tenants", false},
		{acmeAdmin, "PUT", "/api/v1/tenants/acme", false},
		{acmeAdmin, "GET", "/api/v1/tenants/acme", true},
		{acmeAdmin, "GET", "/api/v1/tenants/other", false},
		{acmeAdmin, "GET", "/api/v1/tenants", true}, // narrowed to acme
		{acmeAdmin, "PUT", "/api/v1/tenants/acme/pods/x/status", false},
		{acmeAdmin, "GET", "/api/v1/nodes", false},
		{acmeAdmin, "GET", "/api/v1/runtimeclasses", true},
		{acmeAdmin, "POST", "/api/v1/runtimeclasses", false},
		{acmeAdmin, "POST", "/api/v1/tokens", true}, // checked per object
		{acmeAdmin, "PUT", "/api/v1/tokens/x", false},

		{acmeEdit, "POST", "/api/v1/tenants/acme/pods", true},
		{acmeEdit, "POST", "/api/v1/tokens", false},
		{acmeEdit, "GET", "/api/v1/tokens", false},

		{acmeView, "GET", "/api/v1/tenants/acme/pods", true},
		{acmeView, "GET", "/api/v1/tenants/acme/pods?watch=true", true},
		{acmeView, "POST", "/api/v1/tenants/acme/pods", false},
		{acmeView, "PUT", "/api/v1/tenants/acme/pods/x", false},
		{acmeView, "DELETE", "/api/v1/tenants/acme/pods/x", false},
		{acmeView, "GET", "/api/v1/tenants/acme/secrets", false},
		{acmeView, "GET", "/api/v1/tenants/acme/secrets/s", false},

		{node, "GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1", true},
		{node, "GET", "/api/v1/pods?watch=true&fieldSelector=spec.nodeName%3Dn1", true},
		{node, "GET", "/api/v1/pods", false},
		{node, "GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn2", false},
		{node, "GET", "/api/v1/pods?fieldSelector=spec.nodeName%21%3Dn1", false},
		{node, "POST", "/api/v1/tenants/acme/pods", false},
		{node, "GET", "/api/v1/nodes/n1", true},
		{node, "GET", "/api/v1/nodes/n2", false},
		{node, "DELETE", "/api/v1/nodes/n1", false},
		{node, "POST", "/api/v1/tenants/acme/events", true},
		{node, "GET", "/api/v1/tenants/acme/secrets/s", true}, // decided by what its pods use (nodeMayRead)
		{node, "GET", "/api/v1/tenants/acme/secrets", false},
		{node, "POST", "/api/v1/tenants", false},
		{node, "GET", "/api/v1/leases/node-n1", true},
		{node, "PUT", "/api/v1/leases/node-n1", true},
		{node, "POST", "/api/v1/leases", true}, // checked per object
		{node, "PUT", "/api/v1/leases/node-n2", false},
		{node, "PUT", "/api/v1/leases/paddock-controllers", false},
		{node, "DELETE", "/api/v1/leases/node-n1", false},
		{node, "GET", "/api/v1/leases", false},

		// Networking: nodes read every tenant's services, endpoints and
		// policies; tenants write their services and policies; endpoints
		// are the control plane's; allocations are the API server's.
		{node, "GET", "/api/v1/services", true},
		{node, "GET", "/api/v1/endpoints?watch=true", true},
		{node, "GET", "/api/v1/networkpolicies", true},
		{node, "GET", "/api/v1/networkpolicies?watch=true", true},
		{node, "GET", "/api/v1/tenants/acme/networkpolicies/p", true},
		{node, "POST", "/api/v1/tenants/acme/services", false},
		{node, "PUT", "/api/v1/tenants/acme/endpoints/web", false},
		{node, "POST", "/api/v1/tenants/acme/networkpolicies", false},
		{node, "DELETE", "/api/v1/tenants/acme/networkpolicies/p", false},
		{node, "GET", "/api/v1/serviceallocations", false},
		{acmeAdmin, "POST", "/api/v1/tenants/acme/services", true},
		{acmeAdmin, "POST", "/api/v1/tenants/acme/networkpolicies", true},
		{acmeEdit, "PUT", "/api/v1/tenants/acme/services/web", true},
		{acmeEdit, "DELETE", "/api/v1/tenants/acme/networkpolicies/p", true},
		{acmeEdit, "POST", "/api/v1/tenants/other/networkpolicies", false},
		{acmeEdit, "GET", "/api/v1/networkpolicies", false},
		{acmeEdit, "GET", "/api/v1/tenants/acme/endpoints", true},
		{acmeEdit, "POST", "/api/v1/tenants/acme/endpoints", false},
		{acmeAdmin, "PUT", "/api/v1/tenants/acme/endpoints/web", false},
		{acmeAdmin, "DELETE", "/api/v1/tenants/acme/endpoints/web", false},
		{acmeView, "GET", "/api/v1/tenants/acme/networkpolicies", true},
		{acmeView, "GET", "/api/v1/tenants/acme/services/web", true},
		{acmeView, "POST", "/api/v1/tenants/acme/networkpolicies", false},
		{acmeView, "PUT", "/api/v1/tenants/acme/services/web", false},
		{acmeAdmin, "GET", "/api/v1/serviceallocations", false},
		{admin, "GET", "/api/v1/serviceallocations", true},
		{admin, "POST", "/api/v1/serviceallocations", false},
		{admin, "DELETE", "/api/v1/serviceallocations/ip-10.96.0.1", false},
		{admin, "PUT", "/api/v1/tenants/acme/endpoints/web", true},
	}
	for _, tc := range cases {
		t.Run(string(tc.user.Role)+" "+tc.method+" "+tc.target, func(t *testing.T) {
			err := authorize(tc.user, mustParse(t, tc.method, tc.target))
			if tc.allow && err != nil {
				t.Errorf("authorize = %v, want allowed", err)
			}
			if !tc.allow && !errors.Is(err, errdefs.ErrPermissionDenied) {
				t.Errorf("authorize = %v, want permission denied", err)
			}
		})
	}
}

func TestCheckPodCIDR(t *testing.T) {
	node := &User{Name: "n", Role: api.RoleNode, Node: "n1"}
	admin := &User{Name: "a", Role: api.RoleClusterAdmin}
	unset := &api.Node{Metadata: api.ObjectMeta{Name: "n1"}}
	set := &api.Node{Metadata: api.ObjectMeta{Name: "n1"}, Spec: api.NodeSpec{PodCIDR: "10.244.1.0/24"}}
	other := &api.Node{Metadata: api.ObjectMeta{Name: "n1"}, Spec: api.NodeSpec{PodCIDR: "10.244.2.0/24"}}
	cases := []struct {
		name     string
		user     *User
		obj, cur api.Object
		allow    bool
	}{
		{"node registers without a range", node, unset, nil, true},
		{"node registers with a range", node, set, nil, false},
		{"node picks its range", node, set, unset, false},
		{"node changes its range", node, other, set, false},
		{"node keeps its range", node, set, set, true},
		{"node sends no range", node, unset, set, true},
		{"admin sets a range", admin, set, unset, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPodCIDR(tc.user, tc.obj, tc.cur)
			if tc.allow && err != nil {
				t.Errorf("checkPodCIDR = %v, want allowed", err)
			}
			if !tc.allow && (!errors.Is(err, errdefs.ErrPermissionDenied) || errdefs.FieldOf(err) != "spec.podCIDR") {
				t.Errorf("checkPodCIDR = %v, want permission denied on spec.podCIDR", err)
			}
		})
	}
}

func TestAuthorizeObject(t *testing.T) {
	node := &User{Name: "n", Role: api.RoleNode, Node: "n1"}
	acmeAdmin := &User{Name: "b", Role: api.RoleAdmin, Tenant: "acme"}
	mine := &api.Pod{Spec: api.PodSpec{NodeName: "n1"}}
	theirs := &api.Pod{Spec: api.PodSpec{NodeName: "n2"}}
	cases := []struct {
		name  string
		user  *User
		req   *Request
		obj   api.Object
		allow bool
	}{
		{"node reads its pod", node, mustParse(t, "GET", "/api/v1/tenants/acme/pods/p"), mine, true},
		{"node reads another node's pod", node, mustParse(t, "GET", "/api/v1/tenants/acme/pods/p"), theirs, false},
		{"node reads a missing pod", node, mustParse(t, "GET", "/api/v1/tenants/acme/pods/p"), nil, false},
		{"node writes its pod's status", node, mustParse(t, "PUT", "/api/v1/tenants/acme/pods/p/status"), mine, true},
		{"node writes its pod's spec", node, mustParse(t, "PUT", "/api/v1/tenants/acme/pods/p"), mine, false},
		{"node creates its lease", node, mustParse(t, "POST", "/api/v1/leases"), &api.Lease{Metadata: api.ObjectMeta{Name: "node-n1"}}, true},
		{"node reads its missing lease", node, mustParse(t, "GET", "/api/v1/leases/node-n1"), nil, true},
		{"node reads another's missing lease", node, mustParse(t, "GET", "/api/v1/leases/node-n2"), nil, false},
		{"node creates another's lease", node, mustParse(t, "POST", "/api/v1/leases"), &api.Lease{Metadata: api.ObjectMeta{Name: "node-n2"}}, false},
		{"node registers itself", node, mustParse(t, "POST", "/api/v1/nodes"), &api.Node{Metadata: api.ObjectMeta{Name: "n1"}}, true},
		{"node registers another", node, mustParse(t, "POST", "/api/v1/nodes"), &api.Node{Metadata: api.ObjectMeta{Name: "n2"}}, false},
		{"tenant admin makes an edit token", acmeAdmin, mustParse(t, "POST", "/api/v1/tokens"), &api.Token{Spec: api.TokenSpec{Role: api.RoleEdit, Tenant: "acme"}}, true},
		{"tenant admin makes a cluster-admin token", acmeAdmin, mustParse(t, "POST", "/api/v1/tokens"), &api.Token{Spec: api.TokenSpec{Role: api.RoleClusterAdmin}}, false},
		{"tenant admin makes a node token", acmeAdmin, mustParse(t, "POST", "/api/v1/tokens"), &api.Token{Spec: api.TokenSpec{Role: api.RoleNode, Node: "n1"}}, false},
		{"tenant admin makes another tenant's token", acmeAdmin, mustParse(t, "POST", "/api/v1/tokens"), &api.Token{Spec: api.TokenSpec{Role: api.RoleView, Tenant: "other"}}, false},
		{"tenant admin deletes a missing token", acmeAdmin, mustParse(t, "DELETE", "/api/v1/tokens/x"), nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !needsObjectCheck(tc.user, tc.req) {
				t.Fatalf("needsObjectCheck = false for %s", tc.req.describe())
			}
			err := authorizeObject(tc.user, tc.req, tc.obj)
			if tc.allow && err != nil {
				t.Errorf("authorizeObject = %v, want allowed", err)
			}
			if !tc.allow && !errors.Is(err, errdefs.ErrPermissionDenied) {
				t.Errorf("authorizeObject = %v, want permission denied", err)
			}
		})
	}
}
