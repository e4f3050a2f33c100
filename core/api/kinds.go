package api

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Kind describes one resource kind: its names, its scope and how to make
// one. The table of kinds is fixed (Kinds); there is no registration.
type Kind struct {
	// Kind is the CamelCase kind name ("Pod").
	Kind string
	// Resource is the plural lower-case name used in URLs and etcd keys
	// ("pods").
	Resource string
	// Singular is the lower-case singular name ("pod").
	Singular string
	// ShortNames are CLI abbreviations ("po").
	ShortNames []string
	// TenantScoped kinds live inside a tenant; the others are cluster-scoped.
	TenantScoped bool
	// HasStatus kinds have a status written only through the /status
	// subresource.
	HasStatus bool

	newObject func() Object
	fields    func(Object) map[string]string
}

// New returns a new, empty object of the kind with its TypeMeta set.
func (k *Kind) New() Object {
	o := k.newObject()
	*o.GetTypeMeta() = TypeMeta{APIVersion: Version, Kind: k.Kind}
	return o
}

// Fields returns the values field selectors can match for obj:
// metadata.name and metadata.tenant for every kind, plus kind-specific ones
// (spec.nodeName and status.phase for pods).
func (k *Kind) Fields(obj Object) map[string]string {
	m := obj.GetObjectMeta()
	f := map[string]string{"metadata.name": m.Name}
	if k.TenantScoped {
		f["metadata.tenant"] = m.Tenant
	}
	if k.fields != nil {
		for key, v := range k.fields(obj) {
			f[key] = v
		}
	}
	return f
}

// FieldNames returns the field selector fields the kind supports, sorted.
func (k *Kind) FieldNames() []string {
	names := make([]string, 0, 4)
	for name := range k.Fields(k.New()) {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Kinds lists every resource kind the API serves.
var Kinds = []*Kind{
	{Kind: "Tenant", Resource: "tenants", Singular: "tenant", ShortNames: []string{"tn"}, HasStatus: true,
		newObject: func() Object { return &Tenant{} },
		fields: func(o Object) map[string]string {
			t := o.(*Tenant)
			return map[string]string{"spec.isolation": string(t.Spec.Isolation)}
		}},
	{Kind: "Node", Resource: "nodes", Singular: "node", ShortNames: []string{"no"}, HasStatus: true,
		newObject: func() Object { return &Node{} },
		fields: func(o Object) map[string]string {
			n := o.(*Node)
			return map[string]string{"spec.unschedulable": strconv.FormatBool(n.Spec.Unschedulable)}
		}},
	{Kind: "RuntimeClass", Resource: "runtimeclasses", Singular: "runtimeclass", ShortNames: []string{"rc"},
		newObject: func() Object { return &RuntimeClass{} },
		fields: func(o Object) map[string]string {
			r := o.(*RuntimeClass)
			return map[string]string{"spec.isolation": string(r.Spec.Isolation), "spec.plugin": r.Spec.Plugin}
		}},
	{Kind: "Token", Resource: "tokens", Singular: "token",
		newObject: func() Object { return &Token{} },
		fields: func(o Object) map[string]string {
			t := o.(*Token)
			return map[string]string{"spec.tenant": t.Spec.Tenant, "spec.role": string(t.Spec.Role), "spec.node": t.Spec.Node}
		}},
	{Kind: "Lease", Resource: "leases", Singular: "lease",
		newObject: func() Object { return &Lease{} },
		fields: func(o Object) map[string]string {
			return map[string]string{"spec.holderIdentity": o.(*Lease).Spec.HolderIdentity}
		}},
	{Kind: "Pod", Resource: "pods", Singular: "pod", ShortNames: []string{"po"}, TenantScoped: true, HasStatus: true,
		newObject: func() Object { return &Pod{} },
		fields: func(o Object) map[string]string {
			p := o.(*Pod)
			return map[string]string{
				"spec.nodeName":         p.Spec.NodeName,
				"spec.runtimeClassName": p.Spec.RuntimeClassName,
				"status.phase":          string(p.Status.Phase),
				"status.podIP":          p.Status.PodIP,
			}
		}},
	{Kind: "Deployment", Resource: "deployments", Singular: "deployment", ShortNames: []string{"deploy"}, TenantScoped: true, HasStatus: true,
		newObject: func() Object { return &Deployment{} }},
	{Kind: "ReplicaSet", Resource: "replicasets", Singular: "replicaset", ShortNames: []string{"rs"}, TenantScoped: true, HasStatus: true,
		newObject: func() Object { return &ReplicaSet{} }},
	{Kind: "Service", Resource: "services", Singular: "service", ShortNames: []string{"svc"}, TenantScoped: true,
		newObject: func() Object { return &Service{} },
		fields: func(o Object) map[string]string {
			s := o.(*Service)
			return map[string]string{"spec.type": string(s.Spec.Type), "spec.clusterIP": s.Spec.ClusterIP}
		}},
	{Kind: "Endpoints", Resource: "endpoints", Singular: "endpoints", ShortNames: []string{"ep"}, TenantScoped: true,
		newObject: func() Object { return &Endpoints{} }},
	{Kind: "NetworkPolicy", Resource: "networkpolicies", Singular: "networkpolicy", ShortNames: []string{"netpol"}, TenantScoped: true,
		newObject: func() Object { return &NetworkPolicy{} }},
	{Kind: "ServiceAllocation", Resource: "serviceallocations", Singular: "serviceallocation",
		newObject: func() Object { return &ServiceAllocation{} },
		fields: func(o Object) map[string]string {
			ref := o.(*ServiceAllocation).Spec.Service
			return map[string]string{"spec.service.tenant": ref.Tenant, "spec.service.name": ref.Name}
		}},
	{Kind: "Secret", Resource: "secrets", Singular: "secret", TenantScoped: true,
		newObject: func() Object { return &Secret{} },
		fields: func(o Object) map[string]string {
			return map[string]string{"type": o.(*Secret).Type}
		}},
	{Kind: "ConfigMap", Resource: "configmaps", Singular: "configmap", ShortNames: []string{"cm"}, TenantScoped: true,
		newObject: func() Object { return &ConfigMap{} }},
	{Kind: "Event", Resource: "events", Singular: "event", ShortNames: []string{"ev"}, TenantScoped: true,
		newObject: func() Object { return &Event{} },
		fields: func(o Object) map[string]string {
			e := o.(*Event)
			return map[string]string{
				"involvedObject.kind": e.InvolvedObject.Kind,
				"involvedObject.name": e.InvolvedObject.Name,
				"involvedObject.uid":  e.InvolvedObject.UID,
				"reason":              e.Reason,
				"type":                e.Type,
			}
		}},
}

// KindFor returns the kind named by s: a kind ("Pod"), a resource ("pods"),
// a singular ("pod") or a short name ("po"), in any letter case.
func KindFor(s string) (*Kind, bool) {
	l := strings.ToLower(s)
	for _, k := range Kinds {
		if l == strings.ToLower(k.Kind) || l == k.Resource || l == k.Singular {
			return k, true
		}
		for _, sn := range k.ShortNames {
			if l == sn {
				return k, true
			}
		}
	}
	return nil, false
}

// KindOf returns the kind of obj, found by its Go type.
func KindOf(obj Object) (*Kind, bool) {
	k, ok := kindByType[reflect.TypeOf(obj)]
	return k, ok
}

// kindByType indexes Kinds by Go type. It is built once and only read.
var kindByType = func() map[reflect.Type]*Kind {
	m := make(map[reflect.Type]*Kind, len(Kinds))
	for _, k := range Kinds {
		m[reflect.TypeOf(k.newObject())] = k
	}
	return m
}()

// KindNames returns every kind's resource name, for messages that list what
// is valid.
func KindNames() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = k.Resource
	}
	return strings.Join(names, ", ")
}

// GetObjectMeta implements Object.
func (t *Tenant) GetObjectMeta() *ObjectMeta { return &t.Metadata }

// GetObjectMeta implements Object.
func (t *Token) GetObjectMeta() *ObjectMeta { return &t.Metadata }

// GetObjectMeta implements Object.
func (n *Node) GetObjectMeta() *ObjectMeta { return &n.Metadata }

// GetObjectMeta implements Object.
func (r *RuntimeClass) GetObjectMeta() *ObjectMeta { return &r.Metadata }

// GetObjectMeta implements Object.
func (p *Pod) GetObjectMeta() *ObjectMeta { return &p.Metadata }

// GetObjectMeta implements Object.
func (d *Deployment) GetObjectMeta() *ObjectMeta { return &d.Metadata }

// GetObjectMeta implements Object.
func (r *ReplicaSet) GetObjectMeta() *ObjectMeta { return &r.Metadata }

// GetObjectMeta implements Object.
func (s *Service) GetObjectMeta() *ObjectMeta { return &s.Metadata }

// GetObjectMeta implements Object.
func (e *Endpoints) GetObjectMeta() *ObjectMeta { return &e.Metadata }

// GetObjectMeta implements Object.
func (n *NetworkPolicy) GetObjectMeta() *ObjectMeta { return &n.Metadata }

// GetObjectMeta implements Object.
func (a *ServiceAllocation) GetObjectMeta() *ObjectMeta { return &a.Metadata }

// GetObjectMeta implements Object.
func (s *Secret) GetObjectMeta() *ObjectMeta { return &s.Metadata }

// GetObjectMeta implements Object.
func (c *ConfigMap) GetObjectMeta() *ObjectMeta { return &c.Metadata }

// GetObjectMeta implements Object.
func (e *Event) GetObjectMeta() *ObjectMeta { return &e.Metadata }

// GetObjectMeta implements Object.
func (l *Lease) GetObjectMeta() *ObjectMeta { return &l.Metadata }

// statusField returns obj's Status field, or an invalid Value when its kind
// has none.
func statusField(obj Object) reflect.Value {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return reflect.Value{}
	}
	return v.Elem().FieldByName("Status")
}

// CopyStatus sets dst's status to src's. Both must be of the same kind.
// It does nothing for kinds without a status.
func CopyStatus(dst, src Object) {
	d, s := statusField(dst), statusField(src)
	if d.IsValid() && s.IsValid() && d.Type() == s.Type() {
		d.Set(s)
	}
}

// ClearStatus resets obj's status to its zero value.
func ClearStatus(obj Object) {
	if f := statusField(obj); f.IsValid() {
		f.Set(reflect.Zero(f.Type()))
	}
}
