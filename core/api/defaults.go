package api

import (
	"bytes"
	"cmp"
	"encoding/json"
	"reflect"
)

// Default values filled in by Default.
const (
	DefaultGracePeriodSeconds   = 30
	DefaultRevisionHistoryLimit = 10
	DefaultRuntimeClassShared   = "runc"
	DefaultRuntimeClassSandbox  = "gvisor"
)

// Default fills in the defaults of obj's kind, in place. It is idempotent.
func Default(obj Object) {
	switch o := obj.(type) {
	case *Tenant:
		if o.Spec.Isolation == "" {
			o.Spec.Isolation = IsolationShared
		}
		if o.Spec.DefaultRuntimeClass == "" {
			switch {
			case len(o.Spec.AllowedRuntimeClasses) == 1:
				o.Spec.DefaultRuntimeClass = o.Spec.AllowedRuntimeClasses[0]
			case o.Spec.Isolation == IsolationSandboxed:
				o.Spec.DefaultRuntimeClass = DefaultRuntimeClassSandbox
			default:
				o.Spec.DefaultRuntimeClass = DefaultRuntimeClassShared
			}
		}
	case *Pod:
		defaultPodSpec(&o.Spec)
	case *Deployment:
		if o.Spec.Replicas == nil {
			o.Spec.Replicas = ptr[int32](1)
		}
		defaultSelector(&o.Spec.Selector, &o.Spec.Template)
		if o.Spec.Strategy.Type == "" {
			o.Spec.Strategy.Type = RollingUpdate
		}
		if o.Spec.Strategy.Type == RollingUpdate {
			if o.Spec.Strategy.RollingUpdate == nil {
				o.Spec.Strategy.RollingUpdate = &RollingUpdateDeployment{}
			}
			ru := o.Spec.Strategy.RollingUpdate
			if ru.MaxSurge == nil {
				ru.MaxSurge = FromString("25%")
			}
			if ru.MaxUnavailable == nil {
				ru.MaxUnavailable = FromString("25%")
			}
		}
		if o.Spec.RevisionHistoryLimit == nil {
			o.Spec.RevisionHistoryLimit = ptr[int32](DefaultRevisionHistoryLimit)
		}
		defaultPodSpec(&o.Spec.Template.Spec)
	case *ReplicaSet:
		if o.Spec.Replicas == nil {
			o.Spec.Replicas = ptr[int32](1)
		}
		defaultSelector(&o.Spec.Selector, &o.Spec.Template)
		defaultPodSpec(&o.Spec.Template.Spec)
	case *Service:
		if o.Spec.Type == "" {
			o.Spec.Type = ServiceClusterIP
		}
		for i := range o.Spec.Ports {
			p := &o.Spec.Ports[i]
			if p.Protocol == "" {
				p.Protocol = ProtocolTCP
			}
			if p.TargetPort == 0 {
				p.TargetPort = p.Port
			}
		}
	case *Endpoints:
		for i := range o.Subsets {
			for j := range o.Subsets[i].Ports {
				if o.Subsets[i].Ports[j].Protocol == "" {
					o.Subsets[i].Ports[j].Protocol = ProtocolTCP
				}
			}
		}
	case *NetworkPolicy:
		for i := range o.Spec.Ingress {
			for j := range o.Spec.Ingress[i].Ports {
				if o.Spec.Ingress[i].Ports[j].Protocol == "" {
					o.Spec.Ingress[i].Ports[j].Protocol = ProtocolTCP
				}
			}
		}
	case *Secret:
		if o.Type == "" {
			o.Type = "Opaque"
		}
		if len(o.StringData) > 0 {
			if o.Data == nil {
				o.Data = make(map[string][]byte, len(o.StringData))
			}
			for k, v := range o.StringData {
				o.Data[k] = []byte(v)
			}
			o.StringData = nil
		}
	case *Event:
		if o.Type == "" {
			o.Type = "Normal"
		}
		if o.Count == 0 {
			o.Count = 1
		}
	}
}

func defaultSelector(sel **LabelSelector, tmpl *PodTemplateSpec) {
	if (*sel == nil || len((*sel).MatchLabels) == 0) && len(tmpl.Metadata.Labels) > 0 {
		m := make(map[string]string, len(tmpl.Metadata.Labels))
		for k, v := range tmpl.Metadata.Labels {
			m[k] = v
		}
		*sel = &LabelSelector{MatchLabels: m}
	}
}

func defaultPodSpec(s *PodSpec) {
	if s.RestartPolicy == "" {
		s.RestartPolicy = RestartAlways
	}
	if s.TerminationGracePeriodSeconds == nil {
		s.TerminationGracePeriodSeconds = ptr[int64](DefaultGracePeriodSeconds)
	}
	for i := range s.Containers {
		c := &s.Containers[i]
		if c.ImagePullPolicy == "" {
			c.ImagePullPolicy = PullIfNotPresent
		}
		for j := range c.Ports {
			if c.Ports[j].Protocol == "" {
				c.Ports[j].Protocol = ProtocolTCP
			}
		}
		// As in Kubernetes, a limit without a request requests the limit.
		for name, lim := range c.Resources.Limits {
			if _, ok := c.Resources.Requests[name]; !ok {
				if c.Resources.Requests == nil {
					c.Resources.Requests = ResourceList{}
				}
				c.Resources.Requests[name] = lim
			}
		}
		defaultProbe(c.LivenessProbe)
		defaultProbe(c.ReadinessProbe)
	}
}

func defaultProbe(p *Probe) {
	if p == nil {
		return
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	if h := p.HTTPGet; h != nil {
		if h.Path == "" {
			h.Path = "/"
		}
		if h.Scheme == "" {
			h.Scheme = "HTTP"
		}
	}
}

func ptr[T any](v T) *T { return &v }

// PodRequests returns the sum of a pod's containers' cpu and memory
// requests, as quota and the scheduler count them.
func PodRequests(p *Pod) (cpu, memory Quantity) {
	for _, c := range p.Spec.Containers {
		cpu = cpu.Add(c.Resources.Requests[ResourceCPU])
		memory = memory.Add(c.Resources.Requests[ResourceMemory])
	}
	return cpu, memory
}

// PodFinished reports whether a pod has ended for good (and so no longer
// counts against its tenant's quota).
func PodFinished(p *Pod) bool {
	return p.Status.Phase == PodSucceeded || p.Status.Phase == PodFailed
}

// SpecChanged reports whether an update from old to obj changes what the
// object asks for (everything but metadata and status), which bumps
// metadata.generation.
func SpecChanged(obj, old Object) bool {
	return !jsonEqual(specOf(obj), specOf(old))
}

// specOf returns obj with metadata and status cleared, for comparison.
func specOf(obj Object) Object {
	c := Clone(obj)
	*c.GetObjectMeta() = ObjectMeta{}
	ClearStatus(c)
	return c
}

func jsonEqual(a, b any) bool {
	if reflect.DeepEqual(a, b) {
		return true
	}
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// KeepAssigned copies into obj, a manifest about to replace cur, the fields
// the control plane filled in when cur was created and the manifest leaves
// empty: a pod's node, runtime class and tenant node selector, a service's
// cluster IP and node ports (while it stays of type NodePort), a node's
// pod CIDR. Without them the replacement would read as a
// change of fields that may not change. The API server calls it on every
// update, as Kubernetes keeps a service's cluster IP.
func KeepAssigned(obj, cur Object) {
	switch o := obj.(type) {
	case *Pod:
		was, ok := cur.(*Pod)
		if !ok {
			return
		}
		if o.Spec.NodeName == "" {
			o.Spec.NodeName = was.Spec.NodeName
		}
		if o.Spec.RuntimeClassName == "" {
			o.Spec.RuntimeClassName = was.Spec.RuntimeClassName
		}
		for k, v := range was.Spec.NodeSelector {
			if _, set := o.Spec.NodeSelector[k]; !set {
				if o.Spec.NodeSelector == nil {
					o.Spec.NodeSelector = map[string]string{}
				}
				o.Spec.NodeSelector[k] = v
			}
		}
	case *Node:
		if was, ok := cur.(*Node); ok && o.Spec.PodCIDR == "" {
			o.Spec.PodCIDR = was.Spec.PodCIDR
		}
	case *Service:
		was, ok := cur.(*Service)
		if !ok {
			return
		}
		if o.Spec.ClusterIP == "" {
			o.Spec.ClusterIP = was.Spec.ClusterIP
		}
		if o.Spec.Type != ServiceNodePort {
			return
		}
		for i := range o.Spec.Ports {
			p := &o.Spec.Ports[i]
			if p.NodePort != 0 {
				continue
			}
			for _, wp := range was.Spec.Ports {
				if wp.Port == p.Port && cmp.Or(wp.Protocol, ProtocolTCP) == cmp.Or(p.Protocol, ProtocolTCP) {
					p.NodePort = wp.NodePort
				}
			}
		}
	}
}
