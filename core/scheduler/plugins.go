package scheduler

import (
	"github.com/paddock-dev/paddock/core/api"
)

// MaxNodeScore is the most a score plugin gives a node.
const MaxNodeScore = 100

// A FilterPlugin decides which nodes can run a pod. Plugins see nodes in
// batches, so that a decision makes one call per plugin rather than one
// per node.
type FilterPlugin interface {
	// Name names the plugin in per-node verdicts.
	Name() string
	// Filter calls reject(i, reasons) once for each of nodes that cannot
	// run pod, with the short reasons why ("insufficient memory"), which
	// the unschedulable message counts; it is silent about the nodes that
	// can. Filter must not keep or change the nodes or the pod, and should
	// give reasons made once (per plugin, pod or node) rather than per
	// node.
	Filter(pod *PodInfo, nodes []*NodeInfo, reject func(i int, reasons []string))
}

// A ScorePlugin ranks the nodes that can run a pod.
type ScorePlugin interface {
	// Name names the plugin in Config.ScoreWeights.
	Name() string
	// Score sets scores[i] to nodes[i]'s score for pod, from 0 to
	// MaxNodeScore, higher being better. nodes are all the feasible nodes
	// of the decision, so a plugin can scale its scores over them.
	Score(pod *PodInfo, nodes []*NodeInfo, scores []int64)
}

// A Skipper is a filter or score plugin that knows, before looking at any
// node, that it has nothing to say about a pod (a pod without host ports
// cannot conflict on one). A skipped filter passes every node; a skipped
// score adds nothing.
type Skipper interface {
	Skip(pod *PodInfo) bool
}

// WeightedScore is a score plugin and its weight in a profile.
type WeightedScore struct {
	Plugin ScorePlugin
	Weight int64
}

// Profile is the plugins a Scheduler runs: filters in order, and scores.
type Profile struct {
	Filters []FilterPlugin
	Scores  []WeightedScore
}

// DefaultProfile returns the default plugins and score weights (the
// weights Kubernetes gives its equivalents).
func DefaultProfile() Profile {
	return Profile{
		Filters: []FilterPlugin{
			NodeReady{},
			NodeResourcesFit{},
			TenantNodeSelector{},
			NodeSelector{},
			TaintToleration{},
			RuntimeClass{},
			HostPorts{},
		},
		Scores: []WeightedScore{
			{LeastAllocated{}, 1},
			{BalancedAllocation{}, 1},
			{ReplicaSpread{}, 2},
			{TaintToleration{}, 3},
		},
	}
}

// The default plugins implement their interfaces.
var (
	_ FilterPlugin = NodeReady{}
	_ FilterPlugin = NodeResourcesFit{}
	_ FilterPlugin = TenantNodeSelector{}
	_ FilterPlugin = NodeSelector{}
	_ FilterPlugin = TaintToleration{}
	_ FilterPlugin = RuntimeClass{}
	_ FilterPlugin = HostPorts{}
	_ ScorePlugin  = LeastAllocated{}
	_ ScorePlugin  = BalancedAllocation{}
	_ ScorePlugin  = ReplicaSpread{}
	_ ScorePlugin  = TaintToleration{}
	_ Skipper      = TenantNodeSelector{}
	_ Skipper      = NodeSelector{}
	_ Skipper      = HostPorts{}
	_ Skipper      = ReplicaSpread{}
)

// PodInfo is a pod being scheduled, with what the plugins need worked out
// once per decision.
type PodInfo struct {
	// Pod is the pod; plugins must not change it.
	Pod *api.Pod
	// Tenant is the pod's tenant, or nil if the caller gave none.
	Tenant *api.Tenant
	// RuntimeClass is the pod's runtime class: spec.runtimeClassName, or
	// the tenant's default class when that is empty.
	RuntimeClass string

	res            podResources
	portReasons    [][]string // parallel to res.ports
	noRuntimeClass []string
	classBit       uint64      // RuntimeClass's bit in Cache.classBits, or 0
	group          *ownerGroup // nil if the pod has no group or it has no pods yet
}

// Requests returns what the pod requests, as fitting counts it.
func (p *PodInfo) Requests() Resources { return p.res.req }

// setPodInfo works out pi for p, reusing pi's memory. The caller holds
// c.mu.
func (c *Cache) setPodInfo(pi *PodInfo, p *api.Pod, t *api.Tenant) {
	*pi = PodInfo{Pod: p, Tenant: t, res: resourcesOf(p), portReasons: pi.portReasons[:0]}
	pi.RuntimeClass = p.Spec.RuntimeClassName
	if pi.RuntimeClass == "" {
		// The API server's admission fills in the tenant's default class;
		// do the same for a pod that did not pass through it.
		var dt api.Tenant
		if t != nil {
			dt.Spec = t.Spec
		}
		api.Default(&dt)
		pi.RuntimeClass = dt.Spec.DefaultRuntimeClass
	}
	pi.classBit = c.classBits[pi.RuntimeClass]
	for _, hp := range pi.res.ports {
		pi.portReasons = append(pi.portReasons, []string{"host port " + hp.String() + " in use"})
	}
	if k := ownerKey(p); k != "" {
		pi.group = c.groups[k]
	}
}

// noRuntimeClassReason returns the RuntimeClass filter's reason, made on
// first use.
func (pi *PodInfo) noRuntimeClassReason() []string {
	if pi.noRuntimeClass == nil {
		pi.noRuntimeClass = []string{"no runtime class " + pi.RuntimeClass}
	}
	return pi.noRuntimeClass
}
