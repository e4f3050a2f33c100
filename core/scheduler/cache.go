package scheduler

import (
	"cmp"
	"fmt"
	"slices"
	"sync"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// Resources is an amount of cpu (in thousandths of a core), memory (in
// bytes) and pods.
type Resources struct {
	MilliCPU int64
	Memory   int64
	Pods     int64
}

func (r *Resources) add(o Resources) {
	r.MilliCPU += o.MilliCPU
	r.Memory += o.Memory
	r.Pods += o.Pods
}

func (r *Resources) sub(o Resources) {
	r.MilliCPU -= o.MilliCPU
	r.Memory -= o.Memory
	r.Pods -= o.Pods
}

// maxAccounted caps every amount the cache adds up (2^50: a million
// billion millicores, a pebibyte of memory), so that sums of many pods
// cannot overflow. No node offers that much, so a capped request still
// does not fit.
const maxAccounted = 1 << 50

func accounted(v int64) int64 { return min(v, maxAccounted) }

// Scoring counts a container that requests no cpu or no memory as
// requesting these amounts, as Kubernetes does, so that pods which request
// nothing still spread out. Fitting counts requests as they are.
const (
	defaultMilliCPURequest = 100
	defaultMemoryRequest   = 200 << 20
)

// hostPort is a port a pod takes on its node's addresses.
type hostPort struct {
	port     int32
	protocol api.Protocol
}

func (p hostPort) String() string { return fmt.Sprintf("%d/%s", p.port, p.protocol) }

// NodeInfo is the cache's view of one node: the node object's facts the
// filters and scores need, and the aggregates of the pods counted on it.
// It is owned by the Cache; plugins read it during a decision and must not
// keep it.
type NodeInfo struct {
	// The fields every decision reads come first, to share cache lines.
	ready         bool
	unschedulable bool
	id            int32  // index in Cache.byID, for dense owner counts
	classMask     uint64 // the offered runtime classes Cache.classBits numbers
	allocatable   Resources
	requested     Resources // sum of the counted pods' requests; Pods counts them
	nonzero       Resources // the same with scoring's defaults for empty requests
	taints        []taintInfo
	ports         map[hostPort]int32
	labels        map[string]string
	classes       []string

	name string
	// node is nil for a node the cache knows only from pods bound to it
	// (the pods' events came before the node's, or the node was removed
	// before its pods). Such a node is never a candidate.
	node *api.Node
}

// offers reports whether the node offers a runtime class; bit is the
// class's bit in Cache.classBits, 0 if it has none.
func (n *NodeInfo) offers(class string, bit uint64) bool {
	if bit != 0 {
		return n.classMask&bit != 0
	}
	return slices.Contains(n.classes, class)
}

// taintInfo is a node's taint with the reason a pod that does not tolerate
// it is given, made once per node update.
type taintInfo struct {
	api.Taint
	reason []string
}

// Name returns the node's name.
func (n *NodeInfo) Name() string { return n.name }

// Node returns the node object, or nil if the cache knows the node only
// from pods bound to it.
func (n *NodeInfo) Node() *api.Node { return n.node }

// Allocatable returns what the node offers to pods.
func (n *NodeInfo) Allocatable() Resources { return n.allocatable }

// Requested returns what the pods counted on the node request.
func (n *NodeInfo) Requested() Resources { return n.requested }

// podState is one pod counted against a node.
type podState struct {
	node    *NodeInfo
	assumed bool
	res     podResources
	group   *ownerGroup
}

// podResources is what a pod takes from its node.
type podResources struct {
	req     Resources // Pods is 1
	nonzero Resources
	ports   []hostPort
}

// ownerGroup counts the pods of one owner per node, for spreading. A group
// on few nodes keeps its counts in a map; once it spans more than
// Cache.denseGroupNodes nodes, in a slice indexed by NodeInfo.id, which a
// decision reads much faster. Either way the memory is bounded by the
// group's pods.
type ownerGroup struct {
	key    string
	total  int                 // pods
	nodes  int                 // nodes with a count
	sparse map[*NodeInfo]int32 // while dense is nil
	dense  []int32             // by NodeInfo.id; may be shorter than Cache.byID
}

// count returns the number of the group's pods on n.
func (g *ownerGroup) count(n *NodeInfo) int32 {
	if g.dense != nil {
		if int(n.id) < len(g.dense) {
			return g.dense[n.id]
		}
		return 0
	}
	return g.sparse[n]
}

// Cache is an incremental, in-memory view of the cluster's nodes and of the
// pods bound to them. The zero Cache is not usable; call NewCache. A Cache
// is safe for concurrent use.
type Cache struct {
	mu       sync.Mutex
	gen      uint64
	retryGen uint64
	nodes    map[string]*NodeInfo   // every node known, including those known only from pods
	list     []*NodeInfo            // the nodes with a node object, sorted by name
	pods     map[string]*podState   // the counted pods, by tenant/name
	groups   map[string]*ownerGroup // by owner key
	byID     []*NodeInfo            // every node known, by NodeInfo.id; nil where free
	freeID   []int32
	// classBits numbers up to 64 runtime classes, in the order nodes
	// offered them, for NodeInfo.classMask.
	classBits map[string]uint64
	// denseGroupNodes is the span past which an owner group's counts go
	// into a slice (and at half of which back into a map).
	denseGroupNodes int
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{
		nodes:           map[string]*NodeInfo{},
		pods:            map[string]*podState{},
		groups:          map[string]*ownerGroup{},
		classBits:       map[string]uint64{},
		denseGroupNodes: 256,
	}
}

// nodeInfo returns the NodeInfo of a node, making one if the cache does
// not know the node. The caller holds c.mu.
func (c *Cache) nodeInfo(name string) *NodeInfo {
	if ni := c.nodes[name]; ni != nil {
		return ni
	}
	ni := &NodeInfo{name: name}
	if k := len(c.freeID); k > 0 {
		ni.id = c.freeID[k-1]
		c.freeID = c.freeID[:k-1]
		c.byID[ni.id] = ni
	} else {
		ni.id = int32(len(c.byID))
		c.byID = append(c.byID, ni)
	}
	c.nodes[name] = ni
	return ni
}

// dropIfUnused forgets a node that has no node object and no pods.
func (c *Cache) dropIfUnused(ni *NodeInfo) {
	if ni.node == nil && ni.requested.Pods == 0 {
		delete(c.nodes, ni.name)
		c.byID[ni.id] = nil
		c.freeID = append(c.freeID, ni.id)
	}
}

// Generation returns a number that changes whenever the cache changes. A
// loop that failed to place a pod retries it once the generation has moved.
func (c *Cache) Generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// RetryGeneration returns a number that changes whenever a change may let
// a pod that found no node fit now: a node added or updated, or a counted
// pod removed, finished, moved, shrunk or forgotten. Assumptions, their
// confirmations and new bound pods, which only take room, leave it as it
// is, so that a loop which retries unschedulable pods when it moves does
// not retry them after every decision.
func (c *Cache) RetryGeneration() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.retryGen
}

// NodeCount returns the number of nodes (those with a node object).
func (c *Cache) NodeCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.list)
}

// AddNode adds a node or, if the cache has it, replaces it: the same as
// UpdateNode, so that replaying a list after a watch restarts is harmless.
func (c *Cache) AddNode(n *api.Node) error { return c.UpdateNode(n) }

// UpdateNode records the current state of a node, adding it if it is new.
// The cache keeps n (its labels and runtime classes): the caller must not
// change it afterwards, as watch events, which bring a new object each
// time, do not.
func (c *Cache) UpdateNode(n *api.Node) error {
	if n == nil || n.Metadata.Name == "" {
		return errdefs.Field(errdefs.ErrInvalidArgument, "metadata.name", "a node must have a name")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.retryGen++
	ni := c.nodeInfo(n.Metadata.Name)
	if ni.node == nil {
		i, _ := slices.BinarySearchFunc(c.list, ni.name, compareNodeName)
		c.list = slices.Insert(c.list, i, ni)
	}
	c.setNode(ni, n)
	return nil
}

func compareNodeName(n *NodeInfo, name string) int { return cmp.Compare(n.name, name) }

// setNode copies what the plugins need out of n. The caller holds c.mu.
func (c *Cache) setNode(ni *NodeInfo, n *api.Node) {
	ni.node = n
	ni.unschedulable = n.Spec.Unschedulable
	ni.ready = false
	for _, cond := range n.Status.Conditions {
		if cond.Type == "Ready" {
			ni.ready = cond.Status == "True"
		}
	}
	a := n.Status.Allocatable
	ni.allocatable = Resources{
		MilliCPU: accounted(a[api.ResourceCPU].MilliValue()),
		Memory:   accounted(a[api.ResourceMemory].Value()),
		Pods:     accounted(a[api.ResourcePods].Value()),
	}
	ni.labels = n.Metadata.Labels
	ni.classes = n.Status.RuntimeClasses
	ni.classMask = 0
	for _, class := range ni.classes {
		bit, ok := c.classBits[class]
		if !ok && len(c.classBits) < 64 {
			bit = 1 << len(c.classBits)
			c.classBits[class] = bit
		}
		ni.classMask |= bit
	}
	ni.taints = ni.taints[:0]
	for _, t := range n.Spec.Taints {
		reason := "untolerated taint " + t.Key
		if t.Value != "" {
			reason += "=" + t.Value
		}
		reason += ":" + string(t.Effect)
		ni.taints = append(ni.taints, taintInfo{Taint: t, reason: []string{reason}})
	}
}

// RemoveNode removes a node. Pods still bound to it keep counting until
// they are removed, so that the node's aggregates are right if it returns.
func (c *Cache) RemoveNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	ni := c.nodes[name]
	if ni == nil || ni.node == nil {
		return
	}
	if i, found := slices.BinarySearchFunc(c.list, name, compareNodeName); found {
		c.list = slices.Delete(c.list, i, i+1)
	}
	*ni = NodeInfo{name: ni.name, id: ni.id, requested: ni.requested, nonzero: ni.nonzero, ports: ni.ports}
	c.dropIfUnused(ni)
}

// AddPod records a pod; the same as UpdatePod.
func (c *Cache) AddPod(p *api.Pod) error { return c.UpdatePod(p) }

// UpdatePod records the current state of a pod. A pod counts against its
// node while it is bound (spec.nodeName is set) and not finished. An
// update of an assumed pod that binds it to the assumed node confirms the
// assumption; one that leaves it unbound is taken to be older than the
// binding and leaves the assumption in place.
func (c *Cache) UpdatePod(p *api.Pod) error {
	return c.podOp(p, func(key string) error {
		c.gen++
		old := c.pods[key]
		counts := p.Spec.NodeName != "" && !api.PodFinished(p)
		if !counts {
			if old != nil && !(old.assumed && p.Spec.NodeName == "" && !api.PodFinished(p)) {
				c.uncount(key, old)
				c.retryGen++
			}
			return nil
		}
		res := resourcesOf(p)
		if old != nil {
			if old.node.name != p.Spec.NodeName || !old.res.equal(res) {
				c.retryGen++
			}
			c.uncount(key, old)
		}
		c.count(key, p, res, p.Spec.NodeName, false)
		return nil
	})
}

// RemovePod forgets a pod, assumed or bound.
func (c *Cache) RemovePod(p *api.Pod) error {
	return c.podOp(p, func(key string) error {
		c.gen++
		if old := c.pods[key]; old != nil {
			c.uncount(key, old)
			c.retryGen++
		}
		return nil
	})
}

// Assume counts pod against node at once, before its binding is written,
// so that the next decision sees it. The pod's watch event, once bound,
// confirms the assumption; call Forget if the binding fails. The pod must
// not already count against a node, and the node must be known.
func (c *Cache) Assume(p *api.Pod, node string) error {
	return c.podOp(p, func(key string) error {
		if old := c.pods[key]; old != nil {
			return errdefs.New(errdefs.ErrAlreadyExists, fmt.Sprintf("pod %s already counts against node %s", key, old.node.name))
		}
		if ni := c.nodes[node]; ni == nil || ni.node == nil {
			return errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("cannot assume pod %s on node %q: no such node", key, node))
		}
		c.gen++
		c.count(key, p, resourcesOf(p), node, true)
		return nil
	})
}

// Forget undoes Assume after a failed binding. It is an error of class
// ErrFailedPrecondition if the pod is not assumed: it was never assumed, it
// was removed, or its bound event already confirmed it (then it stays).
func (c *Cache) Forget(p *api.Pod) error {
	return c.podOp(p, func(key string) error {
		old := c.pods[key]
		if old == nil || !old.assumed {
			return errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("pod %s is not assumed", key))
		}
		c.gen++
		c.retryGen++
		c.uncount(key, old)
		return nil
	})
}

// IsAssumed reports whether a pod is assumed and not yet confirmed.
func (c *Cache) IsAssumed(p *api.Pod) bool {
	var assumed bool
	c.podOp(p, func(key string) error {
		ps := c.pods[key]
		assumed = ps != nil && ps.assumed
		return nil
	})
	return assumed
}

// podOp runs f with p's key while holding c.mu, or fails if p has no name.
func (c *Cache) podOp(p *api.Pod, f func(key string) error) error {
	key, err := podKey(p)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return f(key)
}

func podKey(p *api.Pod) (string, error) {
	if p == nil || p.Metadata.Name == "" {
		return "", errdefs.Field(errdefs.ErrInvalidArgument, "metadata.name", "a pod must have a name")
	}
	return p.Metadata.Tenant + "/" + p.Metadata.Name, nil
}

// count adds a pod's contribution, res, to node. The caller holds c.mu.
func (c *Cache) count(key string, p *api.Pod, res podResources, node string, assumed bool) {
	ni := c.nodeInfo(node)
	ps := &podState{node: ni, assumed: assumed, res: res}
	ni.requested.add(ps.res.req)
	ni.nonzero.add(ps.res.nonzero)
	for _, hp := range ps.res.ports {
		if ni.ports == nil {
			ni.ports = map[hostPort]int32{}
		}
		ni.ports[hp]++
	}
	if gk := ownerKey(p); gk != "" {
		g := c.groups[gk]
		if g == nil {
			g = &ownerGroup{key: gk, sparse: map[*NodeInfo]int32{}}
			c.groups[gk] = g
		}
		c.addToGroup(g, ni, 1)
		ps.group = g
	}
	c.pods[key] = ps
}

// uncount removes a pod's contribution. The caller holds c.mu.
func (c *Cache) uncount(key string, ps *podState) {
	ni := ps.node
	ni.requested.sub(ps.res.req)
	ni.nonzero.sub(ps.res.nonzero)
	for _, hp := range ps.res.ports {
		if ni.ports[hp]--; ni.ports[hp] == 0 {
			delete(ni.ports, hp)
		}
	}
	if g := ps.group; g != nil {
		c.addToGroup(g, ni, -1)
		if g.total == 0 {
			delete(c.groups, g.key)
		}
	}
	delete(c.pods, key)
	c.dropIfUnused(ni)
}

func (r *podResources) equal(o podResources) bool {
	return r.req == o.req && r.nonzero == o.nonzero && slices.Equal(r.ports, o.ports)
}

// resourcesOf returns what p takes from its node: its containers' summed
// requests (for fitting as they are, for scoring with defaults for empty
// ones), one pod, and its host ports. Paddock pods have no init
// containers.
func resourcesOf(p *api.Pod) podResources {
	r := podResources{req: Resources{Pods: 1}, nonzero: Resources{Pods: 1}}
	for i := range p.Spec.Containers {
		ct := &p.Spec.Containers[i]
		cpu := accounted(ct.Resources.Requests[api.ResourceCPU].MilliValue())
		mem := accounted(ct.Resources.Requests[api.ResourceMemory].Value())
		r.req.MilliCPU += cpu
		r.req.Memory += mem
		r.nonzero.MilliCPU += cmp.Or(cpu, defaultMilliCPURequest)
		r.nonzero.Memory += cmp.Or(mem, defaultMemoryRequest)
		for _, port := range ct.Ports {
			if port.HostPort > 0 {
				r.ports = append(r.ports, hostPort{port: port.HostPort, protocol: cmp.Or(port.Protocol, api.ProtocolTCP)})
			}
		}
	}
	r.req.MilliCPU = accounted(r.req.MilliCPU)
	r.req.Memory = accounted(r.req.Memory)
	r.nonzero.MilliCPU = accounted(r.nonzero.MilliCPU)
	r.nonzero.Memory = accounted(r.nonzero.Memory)
	return r
}

// ownerKey returns the key of the group of pods p is spread with: its
// controller (or else first) owner's uid, or, for a pod without owners,
// its tenant and labels. A pod with neither has no group ("").
func ownerKey(p *api.Pod) string {
	m := &p.Metadata
	if len(m.OwnerReferences) > 0 {
		ref := m.OwnerReferences[0]
		for _, r := range m.OwnerReferences {
			if r.Controller {
				ref = r
				break
			}
		}
		if ref.UID != "" {
			return "uid:" + ref.UID
		}
		return "owner:" + m.Tenant + "/" + ref.Kind + "/" + ref.Name
	}
	if len(m.Labels) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m.Labels))
	for k := range m.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := []byte("labels:" + m.Tenant)
	for _, k := range keys {
		b = append(b, 0)
		b = append(b, k...)
		b = append(b, '=')
		b = append(b, m.Labels[k]...)
	}
	return string(b)
}

// addToGroup adds delta (1 or -1) to g's count on ni, switching g between
// its map and its slice as its span crosses the thresholds. The caller
// holds c.mu.
func (c *Cache) addToGroup(g *ownerGroup, ni *NodeInfo, delta int32) {
	g.total += int(delta)
	var now int32
	if g.dense != nil {
		if int(ni.id) >= len(g.dense) {
			g.dense = append(g.dense, make([]int32, len(c.byID)-len(g.dense))...)
		}
		g.dense[ni.id] += delta
		now = g.dense[ni.id]
	} else {
		now = g.sparse[ni] + delta
		if now == 0 {
			delete(g.sparse, ni)
		} else {
			g.sparse[ni] = now
		}
	}
	switch {
	case now == 1 && delta > 0:
		g.nodes++
	case now == 0:
		g.nodes--
	}
	switch {
	case g.dense == nil && g.nodes > c.denseGroupNodes:
		g.dense = make([]int32, len(c.byID))
		for n, k := range g.sparse {
			g.dense[n.id] = k
		}
		g.sparse = nil
	case g.dense != nil && g.nodes <= c.denseGroupNodes/2:
		g.sparse = make(map[*NodeInfo]int32, g.nodes)
		for id, k := range g.dense {
			if k != 0 {
				g.sparse[c.byID[id]] = k
			}
		}
		g.dense = nil
	}
}

// eachInGroup calls f with every node where g has pods and the count
// there. The caller holds c.mu.
func (c *Cache) eachInGroup(g *ownerGroup, f func(*NodeInfo, int32)) {
	if g.dense == nil {
		for n, k := range g.sparse {
			f(n, k)
		}
		return
	}
	for id, k := range g.dense {
		if k != 0 {
			f(c.byID[id], k)
		}
	}
}
