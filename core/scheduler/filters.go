package scheduler

import (
	"github.com/paddock-dev/paddock/core/api"
)

// The filters' fixed reasons, made once.
var (
	reasonUnschedulable      = []string{"node unschedulable"}
	reasonNotReady           = []string{"node not ready"}
	reasonNodeSelector       = []string{"node selector mismatch"}
	reasonTenantNodeSelector = []string{"tenant node selector mismatch"}
	fitReasons               = makeFitReasons()
)

// Bits of the resources a pod is short of, indexing fitReasons.
const (
	shortCPU = 1 << iota
	shortMemory
	shortPods
)

func makeFitReasons() [8][]string {
	var r [8][]string
	for mask := 1; mask < 8; mask++ {
		if mask&shortCPU != 0 {
			r[mask] = append(r[mask], "insufficient cpu")
		}
		if mask&shortMemory != 0 {
			r[mask] = append(r[mask], "insufficient memory")
		}
		if mask&shortPods != 0 {
			r[mask] = append(r[mask], "too many pods")
		}
	}
	return r
}

// NodeReady passes nodes whose Ready condition is True and that are not
// marked unschedulable (cordoned).
type NodeReady struct{}

// Name implements FilterPlugin.
func (NodeReady) Name() string { return "NodeReady" }

// Filter implements FilterPlugin.
func (NodeReady) Filter(_ *PodInfo, nodes []*NodeInfo, reject func(int, []string)) {
	for i, n := range nodes {
		switch {
		case n.unschedulable:
			reject(i, reasonUnschedulable)
		case !n.ready:
			reject(i, reasonNotReady)
		}
	}
}

// NodeResourcesFit passes nodes with room for the pod: for cpu and memory,
// the pod's requests must fit in the node's allocatable minus what the
// pods counted there request (a pod requesting none of a resource always
// fits it); and the node's allocatable pods must exceed the pods counted.
// A node that reports no allocatable amount of a resource offers none.
type NodeResourcesFit struct{}

// Name implements FilterPlugin.
func (NodeResourcesFit) Name() string { return "NodeResourcesFit" }

// Filter implements FilterPlugin.
func (NodeResourcesFit) Filter(pod *PodInfo, nodes []*NodeInfo, reject func(int, []string)) {
	req := pod.res.req
	for i, n := range nodes {
		free := n.allocatable
		free.sub(n.requested)
		mask := 0
		if req.MilliCPU > 0 && req.MilliCPU > free.MilliCPU {
			mask |= shortCPU
		}
		if req.Memory > 0 && req.Memory > free.Memory {
			mask |= shortMemory
		}
		if free.Pods < 1 {
			mask |= shortPods
		}
		if mask != 0 {
			reject(i, fitReasons[mask])
		}
	}
}

// TenantNodeSelector passes the nodes whose labels carry every label of
// the tenant's spec.nodeSelector (its dedicated nodes). The API server
// also merges that selector into each pod's nodeSelector; this filter runs
// before NodeSelector so that the message names the tenant's rule, and it
// applies the tenant's current selector to pods admitted before it
// changed.
type TenantNodeSelector struct{}

// Name implements FilterPlugin.
func (TenantNodeSelector) Name() string { return "TenantNodeSelector" }

// Skip implements Skipper.
func (TenantNodeSelector) Skip(pod *PodInfo) bool {
	return pod.Tenant == nil || len(pod.Tenant.Spec.NodeSelector) == 0
}

// Filter implements FilterPlugin.
func (TenantNodeSelector) Filter(pod *PodInfo, nodes []*NodeInfo, reject func(int, []string)) {
	if pod.Tenant != nil {
		filterLabels(pod.Tenant.Spec.NodeSelector, nodes, reject, reasonTenantNodeSelector)
	}
}

// NodeSelector passes the nodes whose labels carry every label of the
// pod's spec.nodeSelector.
type NodeSelector struct{}

// Name implements FilterPlugin.
func (NodeSelector) Name() string { return "NodeSelector" }

// Skip implements Skipper.
func (NodeSelector) Skip(pod *PodInfo) bool { return len(pod.Pod.Spec.NodeSelector) == 0 }

// Filter implements FilterPlugin.
func (NodeSelector) Filter(pod *PodInfo, nodes []*NodeInfo, reject func(int, []string)) {
	filterLabels(pod.Pod.Spec.NodeSelector, nodes, reject, reasonNodeSelector)
}

// filterLabels rejects, with reason, the nodes whose labels lack one of
// selector's.
func filterLabels(selector map[string]string, nodes []*NodeInfo, reject func(int, []string), reason []string) {
	for i, n := range nodes {
		for k, v := range selector {
			if got, ok := n.labels[k]; !ok || got != v {
				reject(i, reason)
				break
			}
		}
	}
}

// TaintToleration, as a filter, passes the nodes whose NoSchedule and
// NoExecute taints the pod all tolerates. As a score, it prefers nodes
// with fewer PreferNoSchedule taints the pod does not tolerate.
type TaintToleration struct{}

// Name implements FilterPlugin and ScorePlugin.
func (TaintToleration) Name() string { return "TaintToleration" }

// Filter implements FilterPlugin.
func (TaintToleration) Filter(pod *PodInfo, nodes []*NodeInfo, reject func(int, []string)) {
	for i, n := range nodes {
		for j := range n.taints {
			t := &n.taints[j]
			if t.Effect != api.TaintPreferNoSchedule && !tolerated(pod.Pod.Spec.Tolerations, &t.Taint) {
				reject(i, t.reason)
				break
			}
		}
	}
}

// Score implements ScorePlugin: the fewer PreferNoSchedule taints the pod
// does not tolerate, the higher, scaled over the nodes.
func (TaintToleration) Score(pod *PodInfo, nodes []*NodeInfo, scores []int64) {
	for i, n := range nodes {
		var count int64
		for j := range n.taints {
			t := &n.taints[j]
			if t.Effect == api.TaintPreferNoSchedule && !tolerated(pod.Pod.Spec.Tolerations, &t.Taint) {
				count++
			}
		}
		scores[i] = count
	}
	normalizeReverse(scores)
}

// tolerated reports whether any of tols tolerates taint, with Kubernetes'
// rules: an empty effect matches every effect, an empty key (with operator
// Exists) every key, Exists any value and Equal (the default) the same
// value.
func tolerated(tols []api.Toleration, taint *api.Taint) bool {
	for i := range tols {
		if tolerates(&tols[i], taint) {
			return true
		}
	}
	return false
}

func tolerates(t *api.Toleration, taint *api.Taint) bool {
	if t.Effect != "" && t.Effect != taint.Effect {
		return false
	}
	if t.Key != "" && t.Key != taint.Key {
		return false
	}
	switch t.Operator {
	case "", api.TolerationEqual:
		return t.Value == taint.Value
	case api.TolerationExists:
		return true
	}
	return false
}

// RuntimeClass passes the nodes whose plugins offer the pod's runtime
// class (status.runtimeClasses).
type RuntimeClass struct{}

// Name implements FilterPlugin.
func (RuntimeClass) Name() string { return "RuntimeClass" }

// Filter implements FilterPlugin.
func (RuntimeClass) Filter(pod *PodInfo, nodes []*NodeInfo, reject func(int, []string)) {
	for i, n := range nodes {
		if !n.offers(pod.RuntimeClass, pod.classBit) {
			reject(i, pod.noRuntimeClassReason())
		}
	}
}

// HostPorts passes the nodes where none of the pod's host ports (port and
// protocol) is taken by a pod counted there.
type HostPorts struct{}

// Name implements FilterPlugin.
func (HostPorts) Name() string { return "HostPorts" }

// Skip implements Skipper.
func (HostPorts) Skip(pod *PodInfo) bool { return len(pod.res.ports) == 0 }

// Filter implements FilterPlugin.
func (HostPorts) Filter(pod *PodInfo, nodes []*NodeInfo, reject func(int, []string)) {
	for i, n := range nodes {
		if len(n.ports) == 0 {
			continue
		}
		for j, hp := range pod.res.ports {
			if n.ports[hp] > 0 {
				reject(i, pod.portReasons[j])
				break
			}
		}
	}
}
