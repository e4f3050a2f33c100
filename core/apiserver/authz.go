package apiserver

import (
	"fmt"
	"slices"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// User is an authenticated caller.
type User struct {
	// Name identifies the caller in audit records: "token:ID".
	Name   string
	Role   api.Role
	Tenant string // for admin, edit and view
	Node   string // for node
}

func (u *User) tenantRole() bool {
	return u.Role == api.RoleAdmin || u.Role == api.RoleEdit || u.Role == api.RoleView
}

func (u *User) String() string {
	switch {
	case u.tenantRole():
		return fmt.Sprintf("%s (role %s in tenant %q)", u.Name, u.Role, u.Tenant)
	case u.Role == api.RoleNode:
		return fmt.Sprintf("%s (node %q)", u.Name, u.Node)
	}
	return fmt.Sprintf("%s (role %s)", u.Name, u.Role)
}

func (r *Request) describe() string {
	what := r.Kind.Resource
	if r.Subresource != "" {
		what += "/" + r.Subresource
	}
	if r.Name != "" {
		what += fmt.Sprintf(" %q", r.Name)
	}
	switch {
	case r.Tenant != "":
		what += fmt.Sprintf(" in tenant %q", r.Tenant)
	case r.Kind.TenantScoped:
		what += " across all tenants"
	}
	return fmt.Sprintf("%s %s", r.Verb, what)
}

func forbidden(u *User, r *Request, why string) error {
	return errdefs.New(errdefs.ErrPermissionDenied, fmt.Sprintf("%s may not %s: %s", u, r.describe(), why))
}

// readVerbs are the verbs that change nothing.
var readVerbs = []Verb{VerbGet, VerbList, VerbWatch}

// authorize decides a request from what the URL says; it is called before
// anything is read, so the answer never depends on whether the object
// exists. Some requests also need authorizeObject once the object is known
// (a node's pods, a tenant admin's tokens). It may narrow r's field
// selector (tenant users listing tenants see only their own).
func authorize(u *User, r *Request) error {
	if isBindingSubresource(r.Kind, r.Subresource) {
		return authorizeBinding(u, r)
	}
	read := slices.Contains(readVerbs, r.Verb)
	if r.Kind == allocKind && !read {
		return forbidden(u, r, "service allocations are kept by the API server as services are created, changed and deleted")
	}
	switch u.Role {
	case api.RoleClusterAdmin:
		return nil
	case api.RoleNode:
		return authorizeNode(u, r, read)
	case api.RoleAdmin, api.RoleEdit, api.RoleView:
	default:
		return forbidden(u, r, "unknown role")
	}
	// Tenant roles.
	k := r.Kind
	if k.TenantScoped {
		if r.Tenant != u.Tenant {
			return forbidden(u, r, fmt.Sprintf("the credential is for tenant %q only", u.Tenant))
		}
		if r.Subresource == "status" && !read {
			return forbidden(u, r, "status is written by the control plane and node agents")
		}
		if u.Role == api.RoleView && !read {
			return forbidden(u, r, "role view is read-only")
		}
		if u.Role == api.RoleView && k.Resource == "secrets" {
			return forbidden(u, r, "role view may not read secrets")
		}
		if k.Resource == "endpoints" && !read {
			return forbidden(u, r, "endpoints are kept by the control plane from the services' selectors and the pods")
		}
		return nil
	}
	switch k.Resource {
	case "tenants":
		if !read {
			return forbidden(u, r, "tenants are changed by cluster admins only")
		}
		if r.Name != "" && r.Name != u.Tenant {
			return forbidden(u, r, fmt.Sprintf("the credential is for tenant %q only", u.Tenant))
		}
		return nil // lists are narrowed to the own tenant by scopeList
	case "runtimeclasses":
		if read {
			return nil
		}
		return forbidden(u, r, "runtime classes are changed by cluster admins only")
	case "tokens":
		if u.Role != api.RoleAdmin {
			return forbidden(u, r, "only a tenant's admin manages its tokens")
		}
		if r.Verb == VerbUpdate {
			return forbidden(u, r, "tokens cannot be changed; create a new one and delete the old")
		}
		return nil // narrowed by scopeList and checked per object
	}
	return forbidden(u, r, fmt.Sprintf("%s are cluster-scoped and visible to cluster admins only", k.Resource))
}

func authorizeNode(u *User, r *Request, read bool) error {
	switch r.Kind.Resource {
	case "nodes":
		if r.Verb == VerbDelete {
			return forbidden(u, r, "a node may not delete nodes")
		}
		if r.Name != "" && r.Name != u.Node {
			return forbidden(u, r, fmt.Sprintf("the credential is for node %q only", u.Node))
		}
		return nil // create is checked per object; lists are narrowed
	case "pods":
		if isStreamSubresource(r.Kind, r.Subresource) {
			return forbidden(u, r, "a node neither reads logs nor runs commands through the API")
		}
		switch r.Verb {
		case VerbList, VerbWatch:
			if v, ok := r.fieldValue("spec.nodeName"); !ok || v != u.Node {
				return forbidden(u, r, fmt.Sprintf("a node lists only its own pods: add fieldSelector=spec.nodeName=%s", u.Node))
			}
			return nil
		case VerbCreate:
			return forbidden(u, r, "pods are created through the API by users and controllers")
		}
		return nil // get, update status, delete: checked per object
	case "events":
		if r.Verb == VerbCreate || r.Verb == VerbUpdate {
			return nil
		}
	case "secrets", "configmaps":
		if r.Verb == VerbGet && r.Name != "" {
			return nil // only those its pods use: Server.nodeMayRead
		}
	case "runtimeclasses", "services", "endpoints", "networkpolicies":
		if read {
			return nil // a node's proxy and network plugin need every tenant's
		}
	case "leases":
		if r.Verb == VerbCreate || (r.Name == api.NodeLeaseName(u.Node) && r.Verb != VerbDelete) {
			return nil // create is checked per object
		}
		return forbidden(u, r, fmt.Sprintf("a node holds only its own lease %q", api.NodeLeaseName(u.Node)))
	}
	return forbidden(u, r, "not allowed for role node")
}

// authorizeObject completes authorize for requests whose answer depends on
// the object: a node may only touch pods bound to it and its own Node; a
// tenant admin only its tenant's tokens. obj is the stored object or, for
// a create, the object sent. A nil obj (the object does not exist) is
// refused exactly like someone else's, so that existence does not leak.
func authorizeObject(u *User, r *Request, obj api.Object) error {
	switch {
	case u.Role == api.RoleNode && r.Kind.Resource == "pods":
		p, _ := obj.(*api.Pod)
		if p == nil || p.Spec.NodeName != u.Node {
			return forbidden(u, r, fmt.Sprintf("the pod is not bound to node %q", u.Node))
		}
		if r.Verb == VerbUpdate && r.Subresource != "status" {
			return forbidden(u, r, "a node writes only pod status")
		}
	case u.Role == api.RoleNode && r.Kind.Resource == "leases":
		// Its own lease, existing or not (its name is no secret to it).
		name := r.Name
		if obj != nil {
			name = obj.GetObjectMeta().Name
		}
		if name != api.NodeLeaseName(u.Node) {
			return forbidden(u, r, fmt.Sprintf("a node holds only its own lease %q", api.NodeLeaseName(u.Node)))
		}
	case u.Role == api.RoleNode && r.Kind.Resource == "nodes":
		if obj == nil || obj.GetObjectMeta().Name != u.Node {
			return forbidden(u, r, fmt.Sprintf("the credential is for node %q only", u.Node))
		}
	case u.tenantRole() && r.Kind.Resource == "tokens":
		t, _ := obj.(*api.Token)
		if t == nil || t.Spec.Tenant != u.Tenant {
			return forbidden(u, r, fmt.Sprintf("the credential manages tokens of tenant %q only", u.Tenant))
		}
		if t.Spec.Role != api.RoleAdmin && t.Spec.Role != api.RoleEdit && t.Spec.Role != api.RoleView {
			return forbidden(u, r, "a tenant admin issues only admin, edit and view tokens")
		}
	}
	return nil
}

// checkPodCIDR refuses a node's own credential setting or changing its
// Node's spec.podCIDR: the control plane hands out the ranges, and a node
// that picked its own could take another node's pods' addresses. obj is
// the object sent (an empty pod CIDR keeps the stored one), cur the
// stored Node, nil for a create.
func checkPodCIDR(u *User, obj, cur api.Object) error {
	n, ok := obj.(*api.Node)
	if !ok || u.Role != api.RoleNode {
		return nil
	}
	was := ""
	if c, ok := cur.(*api.Node); ok {
		was = c.Spec.PodCIDR
	}
	if n.Spec.PodCIDR != "" && n.Spec.PodCIDR != was {
		return errdefs.Field(errdefs.ErrPermissionDenied, "spec.podCIDR",
			fmt.Sprintf("%s may not set its pod CIDR: the control plane allocates it from the cluster CIDR", u))
	}
	return nil
}

// needsObjectCheck reports whether authorizeObject has anything to say
// about r.
func needsObjectCheck(u *User, r *Request) bool {
	switch {
	case u.Role == api.RoleNode:
		return r.Kind.Resource == "pods" || r.Kind.Resource == "nodes" || r.Kind.Resource == "leases"
	case u.tenantRole():
		return r.Kind.Resource == "tokens"
	}
	return false
}

// scopeList narrows a list or watch to what u may see: its own tenant's
// Tenant object, its tenant's tokens, its own Node.
func scopeList(u *User, r *Request) (field, value string) {
	switch {
	case u.tenantRole() && r.Kind.Resource == "tenants":
		return "metadata.name", u.Tenant
	case u.tenantRole() && r.Kind.Resource == "tokens":
		return "spec.tenant", u.Tenant
	case u.Role == api.RoleNode && r.Kind.Resource == "nodes":
		return "metadata.name", u.Node
	}
	return "", ""
}

// fieldValue returns the value of an equality requirement on field in the
// request's field selector.
func (r *Request) fieldValue(field string) (string, bool) {
	fs, err := api.ParseFieldSelector(r.Query.Get("fieldSelector"))
	if err != nil {
		return "", false
	}
	return fs.Value(field)
}
