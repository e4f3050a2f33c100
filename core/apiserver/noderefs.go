package apiserver

import (
	"context"
	"fmt"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/store"
)

// A node reads a secret or config map only while a pod bound to it uses
// it (in an environment variable): its agent needs the value to start the
// container, and nothing else. Like every refusal, the answer does not
// depend on whether the object exists.

// nodeMayRead reports whether u, a node, may read the secret or config
// map req names.
func (s *Server) nodeMayRead(ctx context.Context, u *User, req *Request) error {
	sel, err := api.ParseFieldSelector("spec.nodeName=" + u.Node)
	if err != nil {
		return err
	}
	pods, err := s.store.List(ctx, podKind, req.Tenant, store.ListOptions{Fields: sel})
	if err != nil {
		return err
	}
	for _, o := range pods.Items {
		if podUses(o.(*api.Pod), req.Kind.Kind, req.Name) {
			return nil
		}
	}
	return forbidden(u, req, fmt.Sprintf("no pod on node %q uses %s %q", u.Node, req.Kind.Singular, req.Name))
}

// podUses reports whether a pod's containers read the secret or config
// map (kind "Secret" or "ConfigMap") called name.
func podUses(p *api.Pod, kind, name string) bool {
	for _, c := range p.Spec.Containers {
		for _, e := range c.Env {
			switch {
			case e.ValueFrom == nil:
			case kind == "Secret" && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == name:
				return true
			case kind == "ConfigMap" && e.ValueFrom.ConfigMapKeyRef != nil && e.ValueFrom.ConfigMapKeyRef.Name == name:
				return true
			}
		}
	}
	return false
}

// isNodeRef reports whether req is a node's read of a secret or config
// map, which nodeMayRead decides.
func isNodeRef(u *User, req *Request) bool {
	return u.Role == api.RoleNode && req.Verb == VerbGet && (req.Kind.Resource == "secrets" || req.Kind.Resource == "configmaps")
}
