package apiserver

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// Verb is what a request does, as authorization and audit see it.
type Verb string

// Verbs.
const (
	VerbGet    Verb = "get"
	VerbList   Verb = "list"
	VerbWatch  Verb = "watch"
	VerbCreate Verb = "create"
	VerbUpdate Verb = "update"
	VerbDelete Verb = "delete"
)

// Request is a parsed resource request:
//
//	/api/v1/RESOURCE[/NAME[/SUBRESOURCE]]                  cluster-scoped kinds, or a tenant-scoped kind across tenants
//	/api/v1/tenants/TENANT/RESOURCE[/NAME[/SUBRESOURCE]]  tenant-scoped kinds
type Request struct {
	Verb        Verb
	Kind        *api.Kind
	Tenant      string // the tenant in the path; empty for cluster-scoped kinds and cross-tenant lists
	Name        string
	Subresource string // "", "status", or for pods "log", "exec" and "binding"
	Query       url.Values
}

// subresources lists the subresources each kind serves.
func subresourceAllowed(k *api.Kind, sub string) bool {
	return (sub == "status" && k.HasStatus) || isStreamSubresource(k, sub) || isBindingSubresource(k, sub)
}

// parseRequest parses a resource request path and method.
func parseRequest(r *http.Request) (*Request, error) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/")
	if !ok {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("no such path %q: the API lives under /api/v1/", r.URL.Path))
	}
	parts := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("no such path %q", r.URL.Path))
		}
	}
	req := &Request{Query: r.URL.Query()}
	// /api/v1/tenants/T/RESOURCE... addresses a tenant-scoped kind;
	// /api/v1/tenants/T/status is the tenant's own status.
	if len(parts) >= 3 && parts[0] == "tenants" && (len(parts) > 3 || parts[2] != "status") {
		req.Tenant = parts[1]
		parts = parts[2:]
		k, ok := kindForResource(parts[0])
		if !ok {
			return nil, unknownResource(parts[0])
		}
		if !k.TenantScoped {
			return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("%s are cluster-scoped: use /api/v1/%s", k.Resource, k.Resource))
		}
		req.Kind = k
	} else {
		k, ok := kindForResource(parts[0])
		if !ok {
			return nil, unknownResource(parts[0])
		}
		if k.TenantScoped && len(parts) > 1 {
			return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("%s are tenant-scoped: use /api/v1/tenants/TENANT/%s/%s", k.Resource, k.Resource, parts[1]))
		}
		req.Kind = k
	}
	if len(parts) > 3 {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("no such path %q", r.URL.Path))
	}
	if len(parts) >= 2 {
		req.Name = parts[1]
	}
	if len(parts) == 3 {
		req.Subresource = parts[2]
		if !subresourceAllowed(req.Kind, req.Subresource) {
			return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("%s have no subresource %q", req.Kind.Resource, req.Subresource))
		}
	}
	if isStreamSubresource(req.Kind, req.Subresource) {
		return streamRequest(r, req)
	}
	if isBindingSubresource(req.Kind, req.Subresource) {
		return bindingRequest(r, req)
	}
	watch := req.Query.Get("watch")
	switch {
	case r.Method == http.MethodGet && (watch == "true" || watch == "1"):
		req.Verb = VerbWatch
	case r.Method == http.MethodGet && req.Name == "":
		req.Verb = VerbList
	case r.Method == http.MethodGet:
		req.Verb = VerbGet
	case r.Method == http.MethodPost && req.Name == "":
		req.Verb = VerbCreate
	case r.Method == http.MethodPut && req.Name != "":
		req.Verb = VerbUpdate
	case r.Method == http.MethodDelete && req.Name != "" && req.Subresource == "":
		req.Verb = VerbDelete
	default:
		return nil, errdefs.New(errdefs.ErrMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path))
	}
	if req.Kind.TenantScoped && req.Tenant == "" && req.Verb != VerbList && req.Verb != VerbWatch {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("%s are tenant-scoped: use /api/v1/tenants/TENANT/%s", req.Kind.Resource, req.Kind.Resource))
	}
	return req, nil
}

func kindForResource(resource string) (*api.Kind, bool) {
	for _, k := range api.Kinds {
		if k.Resource == resource {
			return k, true
		}
	}
	return nil, false
}

func unknownResource(r string) error {
	return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("unknown resource %q: want one of %s", r, api.KindNames()))
}
