package scheduler

// Scores count what a node's pods request with scoring's defaults for
// containers that request no cpu or memory (100m, 200Mi), the pod being
// placed included.

// LeastAllocated prefers the nodes with the most room left after the pod
// is placed: the mean, over cpu and memory, of the unrequested share of
// allocatable. It spreads pods over the cluster.
type LeastAllocated struct{}

// Name implements ScorePlugin.
func (LeastAllocated) Name() string { return "LeastAllocated" }

// Score implements ScorePlugin.
func (LeastAllocated) Score(pod *PodInfo, nodes []*NodeInfo, scores []int64) {
	req := pod.res.nonzero
	for i, n := range nodes {
		cpu := leastAllocated(n.nonzero.MilliCPU+req.MilliCPU, n.allocatable.MilliCPU)
		mem := leastAllocated(n.nonzero.Memory+req.Memory, n.allocatable.Memory)
		scores[i] = (cpu + mem) / 2
	}
}

func leastAllocated(requested, allocatable int64) int64 {
	if allocatable <= 0 || requested > allocatable {
		return 0
	}
	return (allocatable - requested) * MaxNodeScore / allocatable
}

// BalancedAllocation prefers the nodes whose cpu and memory would be
// requested in the same proportion once the pod is placed, so that
// neither runs out while the other is idle: MaxNodeScore times one minus
// the standard deviation of the two requested shares.
type BalancedAllocation struct{}

// Name implements ScorePlugin.
func (BalancedAllocation) Name() string { return "BalancedAllocation" }

// Score implements ScorePlugin.
func (BalancedAllocation) Score(pod *PodInfo, nodes []*NodeInfo, scores []int64) {
	req := pod.res.nonzero
	for i, n := range nodes {
		scores[i] = balanced(n.nonzero.MilliCPU+req.MilliCPU, n.allocatable.MilliCPU, n.nonzero.Memory+req.Memory, n.allocatable.Memory)
	}
}

func balanced(cpu, allocCPU, mem, allocMem int64) int64 {
	if allocCPU <= 0 || allocMem <= 0 {
		return 0
	}
	cpuShare := min(float64(cpu)/float64(allocCPU), 1)
	memShare := min(float64(mem)/float64(allocMem), 1)
	diff := cpuShare - memShare
	if diff < 0 {
		diff = -diff
	}
	// The standard deviation of two values is half their difference.
	return int64((1 - diff/2) * MaxNodeScore)
}

// ReplicaSpread prefers the nodes that run fewer pods of the pod's owner
// (its controller, such as a ReplicaSet, or for a pod without owners the
// pods of its tenant with the same labels), so that one failing node takes
// down as few replicas as possible.
type ReplicaSpread struct{}

// Name implements ScorePlugin.
func (ReplicaSpread) Name() string { return "ReplicaSpread" }

// Skip implements Skipper: a pod whose owner has no pods placed has
// nothing to spread from.
func (ReplicaSpread) Skip(pod *PodInfo) bool { return pod.group == nil }

// Score implements ScorePlugin: the fewer of the owner's pods a node runs,
// the higher, scaled over the nodes.
func (ReplicaSpread) Score(pod *PodInfo, nodes []*NodeInfo, scores []int64) {
	g := pod.group
	for i, n := range nodes {
		if g == nil {
			scores[i] = 0
		} else {
			scores[i] = int64(g.count(n))
		}
	}
	normalizeReverse(scores)
}

// normalizeReverse maps counts to scores: the node with the most gets 0,
// one with none MaxNodeScore, and the others in proportion.
func normalizeReverse(scores []int64) {
	var most int64
	for _, s := range scores {
		most = max(most, s)
	}
	if most == 0 {
		for i := range scores {
			scores[i] = MaxNodeScore
		}
		return
	}
	// Counts are small: divide once per count, not once per node.
	var table [64]int64
	if most < int64(len(table)) {
		for k := range most + 1 {
			table[k] = (most - k) * MaxNodeScore / most
		}
		for i, s := range scores {
			scores[i] = table[s]
		}
		return
	}
	for i, s := range scores {
		scores[i] = (most - s) * MaxNodeScore / most
	}
}
