package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// A pod is bound to a node through its binding subresource, as in
// Kubernetes:
//
//	POST /api/v1/tenants/T/pods/P/binding   {"target":"NODE"}
//
// sets spec.nodeName and the PodScheduled=True condition in one
// compare-and-swap update, only if the pod is still unbound; a bound pod
// answers 409. Only cluster admins (the scheduler's credential) may bind.
// spec.nodeName is otherwise set only at creation, and only by cluster
// admins: a tenant's pod (or pod template) naming a node would bypass the
// scheduler and the tenant's node selector, and no update may change it.

// bindingSubresource is the pods subresource that binds a pod to a node.
const bindingSubresource = "binding"

func isBindingSubresource(k *api.Kind, sub string) bool {
	return k.Resource == "pods" && sub == bindingSubresource
}

// bindingRequest sets the verb of a pods/binding request: binding is a
// create of the binding, as in Kubernetes.
func bindingRequest(r *http.Request, req *Request) (*Request, error) {
	if r.Method != http.MethodPost {
		return nil, errdefs.New(errdefs.ErrMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s: bind a pod with POST", r.Method, r.URL.Path))
	}
	if req.Tenant == "" {
		return nil, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("pods are tenant-scoped: use /api/v1/tenants/TENANT/pods/%s/binding", req.Name))
	}
	req.Verb = VerbCreate
	return req, nil
}

// authorizeBinding lets only cluster admins bind pods.
func authorizeBinding(u *User, r *Request) error {
	if u.Role == api.RoleClusterAdmin {
		return nil
	}
	return forbidden(u, r, "pods are bound to nodes by the scheduler (cluster-admin credentials) only")
}

// Binding is the body of a pods/binding request.
type Binding struct {
	// Target is the name of the node the pod is bound to.
	Target string `json:"target"`
}

// serveBinding binds the pod a request names to the node its body names.
func (s *Server) serveBinding(w http.ResponseWriter, r *http.Request, req *Request) error {
	b, err := decodeBinding(r)
	if err != nil {
		return err
	}
	out, err := s.bind(r.Context(), req.Tenant, req.Name, b.Target, time.Now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// decodeBinding strictly decodes a binding body.
func decodeBinding(r *http.Request) (Binding, error) {
	var b Binding
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 64<<10))
	if err != nil {
		return b, errdefs.New(errdefs.ErrBadRequest, "reading the binding: "+err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return b, errdefs.Field(errdefs.ErrBadRequest, strings.Trim(f, `"`), `unknown field: a binding is {"target":"NODE"}`)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return b, errdefs.Field(errdefs.ErrBadRequest, te.Field, fmt.Sprintf("want %s, got JSON %s", te.Type, te.Value))
		}
		return b, errdefs.New(errdefs.ErrBadRequest, `malformed binding: want {"target":"NODE"}: `+strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return b, errdefs.New(errdefs.ErrBadRequest, "malformed binding: data after the JSON object")
	}
	if b.Target == "" {
		return b, errdefs.Field(errdefs.ErrInvalidArgument, "target", "required: the name of the node to bind the pod to")
	}
	if errs := api.IsDNS1123Subdomain(b.Target); len(errs) > 0 {
		return b, errdefs.Field(errdefs.ErrInvalidArgument, "target", fmt.Sprintf("%q is not a node name: %s", b.Target, strings.Join(errs, "; ")))
	}
	return b, nil
}

// bind sets a pod's spec.nodeName to node and its PodScheduled condition
// to True, in one compare-and-swap update that fails with ErrConflict if
// the pod is bound already (to whatever node) or finished.
func (s *Server) bind(ctx context.Context, tenant, name, node string, now time.Time) (api.Object, error) {
	return s.store.GuaranteedUpdate(ctx, podKind, tenant, name, func(cur api.Object) (api.Object, error) {
		p := cur.(*api.Pod)
		switch {
		case p.Spec.NodeName != "":
			return nil, errdefs.New(errdefs.ErrConflict, fmt.Sprintf("pod %q is already bound to node %q", name, p.Spec.NodeName))
		case p.Metadata.DeletionTimestamp != nil:
			return nil, errdefs.New(errdefs.ErrConflict, fmt.Sprintf("pod %q is being deleted", name))
		case api.PodFinished(p):
			return nil, errdefs.New(errdefs.ErrConflict, fmt.Sprintf("pod %q has finished (phase %s)", name, p.Status.Phase))
		}
		next := *p // the store's copy is ours: change only what is replaced
		next.Spec.NodeName = node
		next.Status.Conditions = setCondition(p.Status.Conditions, api.Condition{Type: "PodScheduled", Status: "True", LastTransitionTime: api.NewTime(now)})
		return &next, nil
	})
}

// setCondition returns conds with c in place of the condition of its type
// (appended if there is none), in a new slice.
func setCondition(conds []api.Condition, c api.Condition) []api.Condition {
	out := make([]api.Condition, 0, len(conds)+1)
	found := false
	for _, old := range conds {
		if old.Type == c.Type {
			if old.Status == c.Status {
				c.LastTransitionTime = old.LastTransitionTime
			}
			old, found = c, true
		}
		out = append(out, old)
	}
	if !found {
		out = append(out, c)
	}
	return out
}

// checkNodeName refuses spec.nodeName where only the scheduler may set
// it: in a pod or pod template a tenant creates, or changed by any update
// (cur is the stored object, nil for a create). Pod templates may keep a
// node name a cluster admin put there.
func checkNodeName(u *User, obj, cur api.Object) error {
	field, name := nodeNameOf(obj)
	was := ""
	if cur != nil {
		_, was = nodeNameOf(cur)
	}
	if name == "" || name == was {
		return nil
	}
	if _, isPod := obj.(*api.Pod); isPod && cur != nil {
		return errdefs.Field(errdefs.ErrInvalidArgument, field,
			"cannot be set by an update: the scheduler binds pods through POST .../pods/NAME/binding")
	}
	if u.tenantRole() {
		return errdefs.Field(errdefs.ErrPermissionDenied, field,
			fmt.Sprintf("%s may not name a node: spec.nodeName is set by the scheduler, which also applies the tenant's node selector", u))
	}
	return nil
}

// nodeNameOf returns the path and value of obj's node name field ("" for
// kinds without one).
func nodeNameOf(obj api.Object) (field, value string) {
	switch o := obj.(type) {
	case *api.Pod:
		return "spec.nodeName", o.Spec.NodeName
	case *api.ReplicaSet:
		return "spec.template.spec.nodeName", o.Spec.Template.Spec.NodeName
	case *api.Deployment:
		return "spec.template.spec.nodeName", o.Spec.Template.Spec.NodeName
	}
	return "", ""
}
