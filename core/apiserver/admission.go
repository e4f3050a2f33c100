package apiserver

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/store"
)

var (
	tenantKind, _       = api.KindFor("tenants")
	podKind, _          = api.KindFor("pods")
	runtimeClassKind, _ = api.KindFor("runtimeclasses")
)

// maxQuotaAttempts bounds retries of a quota-counted write when another
// process changed the tenant in between.
const maxQuotaAttempts = 32

// create admits and stores a new object.
func (s *Server) create(ctx context.Context, u *User, req *Request, obj api.Object) (api.Object, error) {
	m := obj.GetObjectMeta()
	var secret string
	switch o := obj.(type) {
	case *api.Token:
		if u.tenantRole() && o.Spec.Tenant == "" && o.Spec.Role != api.RoleClusterAdmin && o.Spec.Role != api.RoleNode {
			o.Spec.Tenant = u.Tenant
		}
		var id string
		id, secret = NewTokenSecret()
		m.Name = id
		o.Status = api.TokenStatus{SecretHash: HashSecret(secret)}
	case *api.Node:
		// A node registers with its status; keep it.
	default:
		api.ClearStatus(obj)
	}
	m.UID, m.ResourceVersion, m.Generation, m.CreationTimestamp, m.DeletionTimestamp, m.DeletionGracePeriodSeconds = "", "", 0, nil, nil, nil
	// Who may create this object is decided before whether it is valid:
	// a refusal must not depend on the details of the request.
	if needsObjectCheck(u, req) {
		if err := authorizeObject(u, req, obj); err != nil {
			return nil, err
		}
	}
	if err := checkNodeName(u, obj, nil); err != nil {
		return nil, err
	}
	if err := checkPodCIDR(u, obj, nil); err != nil {
		return nil, err
	}
	api.Default(obj)
	if err := api.Validate(obj); err != nil {
		return nil, err
	}
	switch o := obj.(type) {
	case *api.Tenant:
		if err := s.checkTenantPolicy(ctx, o); err != nil {
			return nil, err
		}
	case *api.Pod:
		return s.createPod(ctx, o)
	case *api.Service:
		return s.createService(ctx, u, o)
	case *api.Deployment:
		if err := s.admitTemplate(ctx, m.Tenant, &o.Spec.Template.Spec); err != nil {
			return nil, err
		}
	case *api.ReplicaSet:
		if err := s.admitTemplate(ctx, m.Tenant, &o.Spec.Template.Spec); err != nil {
			return nil, err
		}
	case *api.Token:
		if o.Spec.Tenant != "" {
			out, err := s.store.Commit(ctx, store.OpCheckExists(tenantKind, "", o.Spec.Tenant), store.OpCreate(obj))
			if err != nil {
				return nil, err
			}
			return withToken(out[0].(*api.Token), secret), nil
		}
		out, err := s.store.Create(ctx, obj)
		if err != nil {
			return nil, err
		}
		return withToken(out.(*api.Token), secret), nil
	}
	if req.Kind.TenantScoped {
		out, err := s.store.Commit(ctx, store.OpCheckExists(tenantKind, "", m.Tenant), store.OpCreate(obj))
		if err != nil {
			return nil, tenantNotFound(err, m.Tenant)
		}
		return out[0], nil
	}
	return s.store.Create(ctx, obj)
}

// withToken returns the created token as the API answers it: with the
// bearer token, once, and without the hash.
func withToken(t *api.Token, secret string) *api.Token {
	c := *t
	c.Status = api.TokenStatus{Token: t.Metadata.Name + "." + secret}
	return &c
}

// tenantNotFound rewrites "tenant not found" from a commit into a message
// that says what to do.
func tenantNotFound(err error, tenant string) error {
	if errdefs.IsNotFound(err) && err.Error() == store.NotFound(tenantKind, "", tenant).Error() {
		return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("tenant %q not found: create it first (paddock tenant create %s)", tenant, tenant))
	}
	return err
}

// checkTenantPolicy checks a tenant's runtime class settings against the
// runtime classes that exist: a sandboxed tenant's default class must be a
// sandboxing one.
func (s *Server) checkTenantPolicy(ctx context.Context, t *api.Tenant) error {
	if t.Spec.Isolation != api.IsolationSandboxed {
		return nil
	}
	rc, err := s.store.Get(ctx, runtimeClassKind, "", t.Spec.DefaultRuntimeClass)
	if errdefs.IsNotFound(err) {
		return nil // it may be created later; pods are checked when admitted
	}
	if err != nil {
		return err
	}
	if rc.(*api.RuntimeClass).Spec.Isolation == api.IsolationNamespace {
		return errdefs.Field(errdefs.ErrInvalidArgument, "spec.defaultRuntimeClass",
			fmt.Sprintf("runtime class %q isolates with Linux namespaces only, which a sandboxed tenant may not use: name a class with isolation userspace-kernel or vm (e.g. gvisor)", t.Spec.DefaultRuntimeClass))
	}
	return nil
}

// admitTemplate applies the tenant's policy to a controller's pod template,
// so that a deployment that could never run is refused up front.
func (s *Server) admitTemplate(ctx context.Context, tenant string, spec *api.PodSpec) error {
	t, err := s.store.Get(ctx, tenantKind, "", tenant)
	if err != nil {
		return tenantNotFound(err, tenant)
	}
	return s.admitPodSpec(ctx, t.(*api.Tenant), spec, "spec.template.spec")
}

// admitPodSpec applies a tenant's policy to a pod spec: it refuses what
// pod security forbids (admitPodSecurity), fills in the default runtime
// class, refuses classes the tenant may not use, and merges the tenant's
// node selector.
func (s *Server) admitPodSpec(ctx context.Context, t *api.Tenant, spec *api.PodSpec, field string) error {
	if err := admitPodSecurity(spec, field); err != nil {
		return err
	}
	name := t.Metadata.Name
	if spec.RuntimeClassName == "" {
		spec.RuntimeClassName = t.Spec.DefaultRuntimeClass
	}
	class := spec.RuntimeClassName
	allowed := t.Spec.AllowedRuntimeClasses
	if len(allowed) > 0 && !slices.Contains(allowed, class) {
		return errdefs.Field(errdefs.ErrPermissionDenied, field+".runtimeClassName",
			fmt.Sprintf("tenant %q may not use runtime class %q: allowed are %s", name, class, strings.Join(allowed, ", ")))
	}
	o, err := s.store.Get(ctx, runtimeClassKind, "", class)
	if errdefs.IsNotFound(err) {
		return errdefs.Field(errdefs.ErrInvalidArgument, field+".runtimeClassName",
			fmt.Sprintf("runtime class %q does not exist: see paddock get runtimeclasses", class))
	}
	if err != nil {
		return err
	}
	if t.Spec.Isolation == api.IsolationSandboxed && o.(*api.RuntimeClass).Spec.Isolation == api.IsolationNamespace {
		usable, err := s.sandboxedClasses(ctx, t)
		if err != nil {
			return err
		}
		return errdefs.Field(errdefs.ErrPermissionDenied, field+".runtimeClassName",
			fmt.Sprintf("tenant %q is sandboxed and runtime class %q isolates with Linux namespaces only: use one of %s, or leave runtimeClassName empty for %q",
				name, class, strings.Join(usable, ", "), t.Spec.DefaultRuntimeClass))
	}
	for k, v := range t.Spec.NodeSelector {
		if cur, ok := spec.NodeSelector[k]; ok && cur != v {
			return errdefs.Field(errdefs.ErrPermissionDenied, field+".nodeSelector",
				fmt.Sprintf("tenant %q runs only on nodes with %s=%s, not %s=%s", name, k, v, k, cur))
		}
		if spec.NodeSelector == nil {
			spec.NodeSelector = map[string]string{}
		}
		spec.NodeSelector[k] = v
	}
	return nil
}

// sandboxedClasses lists the runtime classes a sandboxed tenant may use.
func (s *Server) sandboxedClasses(ctx context.Context, t *api.Tenant) ([]string, error) {
	list, err := s.store.List(ctx, runtimeClassKind, "", store.ListOptions{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, o := range list.Items {
		rc := o.(*api.RuntimeClass)
		if rc.Spec.Isolation == api.IsolationNamespace {
			continue
		}
		if len(t.Spec.AllowedRuntimeClasses) > 0 && !slices.Contains(t.Spec.AllowedRuntimeClasses, rc.Metadata.Name) {
			continue
		}
		names = append(names, rc.Metadata.Name)
	}
	if len(names) == 0 {
		names = []string{"(none: ask a cluster admin for a gvisor runtime class)"}
	}
	return names, nil
}

// createPod admits a pod against its tenant's policy and quota and stores
// it in the same transaction that counts it against the quota.
func (s *Server) createPod(ctx context.Context, p *api.Pod) (api.Object, error) {
	tenant := p.Metadata.Tenant
	lock := s.tenantLock(tenant)
	lock.Lock()
	defer lock.Unlock()
	cpu, mem := api.PodRequests(p)
	admitted := false
	for attempt := 0; ; attempt++ {
		o, err := s.store.Get(ctx, tenantKind, "", tenant)
		if err != nil {
			return nil, tenantNotFound(err, tenant)
		}
		t := o.(*api.Tenant)
		if !admitted {
			if err := s.admitPodSpec(ctx, t, &p.Spec, "spec"); err != nil {
				return nil, err
			}
			admitted = true
		}
		used := &t.Status.Used
		if err := checkQuota(t, 1, cpu, mem); err != nil {
			return nil, err
		}
		used.Pods++
		used.CPU = used.CPU.Add(cpu)
		used.Memory = used.Memory.Add(mem)
		out, err := s.store.Commit(ctx, store.OpUpdate(t), store.OpCreate(p))
		if errdefs.IsConflict(err) && attempt < maxQuotaAttempts {
			continue
		}
		if err != nil {
			return nil, tenantNotFound(err, tenant)
		}
		return out[1], nil
	}
}

// checkQuota refuses adding pods, cpu and memory to t's usage beyond its
// quota, naming the quota, the request and what is left.
func checkQuota(t *api.Tenant, pods int64, cpu, mem api.Quantity) error {
	q := t.Spec.Quota
	if q == nil {
		return nil
	}
	used := t.Status.Used
	name := t.Metadata.Name
	if q.Pods != nil && used.Pods+pods > *q.Pods {
		return errdefs.New(errdefs.ErrResourceExhausted, fmt.Sprintf(
			"exceeded quota of tenant %q: pods: requested %d, used %d of %d, %d left", name, pods, used.Pods, *q.Pods, max(*q.Pods-used.Pods, 0)))
	}
	for _, r := range []struct {
		name      string
		limit     *api.Quantity
		used, req api.Quantity
	}{{"cpu", q.CPU, used.CPU, cpu}, {"memory", q.Memory, used.Memory, mem}} {
		if r.limit == nil || r.used.Add(r.req).Cmp(*r.limit) <= 0 {
			continue
		}
		left := r.limit.Sub(r.used)
		if left.MilliValue() < 0 {
			left = api.Quantity{}
		}
		return errdefs.New(errdefs.ErrResourceExhausted, fmt.Sprintf(
			"exceeded quota of tenant %q: %s: requested %s, used %s of %s, %s left", name, r.name, r.req.String(), r.used.String(), r.limit.String(), left.String()))
	}
	return nil
}

// releasePod is the tenant usage change of a pod leaving the quota.
func releasePod(t *api.Tenant, p *api.Pod) {
	cpu, mem := api.PodRequests(p)
	u := &t.Status.Used
	u.Pods = max(u.Pods-1, 0)
	u.CPU = u.CPU.Sub(cpu)
	u.Memory = u.Memory.Sub(mem)
	if u.CPU.MilliValue() < 0 {
		u.CPU = api.Quantity{}
	}
	if u.Memory.MilliValue() < 0 {
		u.Memory = api.Quantity{}
	}
}

// update admits and stores a changed object (or its status).
func (s *Server) update(ctx context.Context, u *User, req *Request, obj api.Object) (api.Object, error) {
	if _, ok := obj.(*api.Token); ok {
		return nil, errdefs.New(errdefs.ErrMethodNotAllowed, "tokens cannot be changed: create a new one and delete the old")
	}
	if req.Kind == podKind && req.Subresource == "status" {
		return s.updatePodStatus(ctx, u, req, obj.(*api.Pod))
	}
	if svc, ok := obj.(*api.Service); ok {
		return s.updateService(ctx, u, req, svc)
	}
	wantRV := obj.GetObjectMeta().ResourceVersion
	if req.Subresource == "" {
		api.Default(obj)
	}
	return s.store.GuaranteedUpdate(ctx, req.Kind, req.Tenant, req.Name, func(cur api.Object) (api.Object, error) {
		if needsObjectCheck(u, req) {
			if err := authorizeObject(u, req, cur); err != nil {
				return nil, err
			}
		}
		if wantRV != "" && wantRV != cur.GetObjectMeta().ResourceVersion {
			return nil, errdefs.New(errdefs.ErrConflict, fmt.Sprintf("%s %q was changed by someone else (resourceVersion %s, you sent %s): read it again and retry",
				req.Kind.Singular, req.Name, cur.GetObjectMeta().ResourceVersion, wantRV))
		}
		if req.Subresource == "" {
			if err := checkPodCIDR(u, obj, cur); err != nil {
				return nil, err
			}
		}
		next, err := s.merge(ctx, req, cur, obj)
		if err != nil {
			return nil, err
		}
		if err := checkNodeName(u, next, cur); err != nil {
			return nil, err
		}
		return next, nil
	})
}

// merge computes the object to store from the current one and the one sent:
// the main resource takes metadata and spec from the request and keeps the
// status; /status takes only the status.
func (s *Server) merge(ctx context.Context, req *Request, cur, sent api.Object) (api.Object, error) {
	cm := cur.GetObjectMeta()
	if req.Subresource == "status" {
		next := api.Clone(cur)
		api.CopyStatus(next, sent)
		if err := api.Validate(next); err != nil {
			return nil, err
		}
		return next, nil
	}
	next := api.Clone(sent)
	nm := next.GetObjectMeta()
	nm.UID, nm.CreationTimestamp, nm.Generation = cm.UID, cm.CreationTimestamp, cm.Generation
	nm.DeletionTimestamp, nm.DeletionGracePeriodSeconds = cm.DeletionTimestamp, cm.DeletionGracePeriodSeconds
	api.CopyStatus(next, cur)
	api.KeepAssigned(next, cur)
	if err := api.ValidateUpdate(next, cur); err != nil {
		return nil, err
	}
	if t, ok := next.(*api.Tenant); ok {
		if err := s.checkTenantPolicy(ctx, t); err != nil {
			return nil, err
		}
	}
	switch o := next.(type) {
	case *api.Deployment:
		if err := s.admitTemplate(ctx, nm.Tenant, &o.Spec.Template.Spec); err != nil {
			return nil, err
		}
	case *api.ReplicaSet:
		if err := s.admitTemplate(ctx, nm.Tenant, &o.Spec.Template.Spec); err != nil {
			return nil, err
		}
	}
	if api.SpecChanged(next, cur) {
		nm.Generation = cm.Generation + 1
	}
	return next, nil
}

// updatePodStatus writes a pod's status; a pod that finishes leaves its
// tenant's quota in the same transaction.
func (s *Server) updatePodStatus(ctx context.Context, u *User, req *Request, sent *api.Pod) (api.Object, error) {
	lock := s.tenantLock(req.Tenant)
	lock.Lock()
	defer lock.Unlock()
	wantRV := sent.Metadata.ResourceVersion
	for attempt := 0; ; attempt++ {
		o, err := s.get(ctx, u, req)
		if err != nil {
			return nil, err
		}
		cur := o.(*api.Pod)
		if wantRV != "" && wantRV != cur.Metadata.ResourceVersion {
			return nil, errdefs.New(errdefs.ErrConflict, fmt.Sprintf("pod %q was changed by someone else: read it again and retry", req.Name))
		}
		next, err := s.merge(ctx, req, cur, sent)
		if err != nil {
			return nil, err
		}
		np := next.(*api.Pod)
		ops := []store.Op{store.OpUpdate(np)}
		if api.PodFinished(np) && !api.PodFinished(cur) {
			to, err := s.store.Get(ctx, tenantKind, "", req.Tenant)
			if err != nil {
				return nil, err
			}
			t := to.(*api.Tenant)
			releasePod(t, cur)
			ops = append(ops, store.OpUpdate(t))
		}
		out, err := s.store.Commit(ctx, ops...)
		if errdefs.IsConflict(err) && wantRV == "" && attempt < maxQuotaAttempts {
			continue
		}
		if err != nil {
			return nil, err
		}
		return out[0], nil
	}
}

// delete removes an object: a pod leaves its tenant's quota in the same
// transaction, a service releases its cluster IP and node ports, and a
// tenant takes everything in it along.
func (s *Server) delete(ctx context.Context, u *User, req *Request) (api.Object, error) {
	rv, err := store.ParseResourceVersion(req.Query.Get("resourceVersion"))
	if err != nil {
		return nil, err
	}
	if needsObjectCheck(u, req) {
		if _, err := s.get(ctx, u, req); err != nil {
			return nil, err
		}
	}
	switch req.Kind {
	case podKind:
		return s.deletePod(ctx, u, req, rv)
	case tenantKind:
		return s.deleteTenant(ctx, req.Name, rv)
	case serviceKind:
		return s.deleteService(ctx, req, rv)
	}
	return s.store.Delete(ctx, req.Kind, req.Tenant, req.Name, rv)
}

// deleteTenant deletes a tenant with every object and token in it and
// its services' allocations, in one transaction.
func (s *Server) deleteTenant(ctx context.Context, name string, rv int64) (api.Object, error) {
	cur, err := s.store.Get(ctx, tenantKind, "", name)
	if err != nil {
		return nil, err
	}
	if rv == 0 {
		rv, _ = store.ParseResourceVersion(cur.GetObjectMeta().ResourceVersion)
	}
	fs, err := api.ParseFieldSelector("spec.tenant=" + name)
	if err != nil {
		return nil, err
	}
	tokens, err := s.store.List(ctx, tokenKind, "", store.ListOptions{Fields: fs})
	if err != nil {
		return nil, err
	}
	ops := []store.Op{store.OpDelete(tenantKind, "", name, rv)}
	for _, k := range api.Kinds {
		if k.TenantScoped {
			ops = append(ops, store.OpDeleteAll(k, name))
		}
	}
	for _, t := range tokens.Items {
		ops = append(ops, store.OpDelete(tokenKind, "", t.GetObjectMeta().Name, 0))
	}
	allocs, err := s.tenantAllocations(ctx, name)
	if err != nil {
		return nil, err
	}
	ops = append(ops, allocs...)
	if _, err := s.store.Commit(ctx, ops...); err != nil {
		return nil, err
	}
	return cur, nil
}
