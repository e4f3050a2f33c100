package scheduler

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// cacheModel is what a Cache should count, kept the simple way: the pods
// that count and where.
type cacheModel struct {
	nodes   map[string]bool
	counted map[string]modelPod // by tenant/name
}

type modelPod struct {
	pod     *api.Pod
	node    string
	assumed bool
}

// snapshot copies what counts where.
func (m *cacheModel) snapshot() map[string]modelPod { return maps.Clone(m.counted) }

// frees reports whether going from before to the model's state freed room
// a filter looks at: a pod no longer counted, or counted on another node
// or with other requests or ports.
func (m *cacheModel) frees(before map[string]modelPod) bool {
	for key, old := range before {
		now, ok := m.counted[key]
		if !ok || now.node != old.node {
			return true
		}
		a, b := resourcesOf(old.pod), resourcesOf(now.pod)
		if !a.equal(b) {
			return true
		}
	}
	return false
}

// nodeTotals is one node's aggregates, recomputed from scratch.
type nodeTotals struct {
	requested, nonzero Resources
	ports              map[hostPort]int32
	owners             map[string]int32
}

func (m *cacheModel) totals() map[string]*nodeTotals {
	out := map[string]*nodeTotals{}
	for _, mp := range m.counted {
		nt := out[mp.node]
		if nt == nil {
			nt = &nodeTotals{ports: map[hostPort]int32{}, owners: map[string]int32{}}
			out[mp.node] = nt
		}
		nt.requested.Pods++
		nt.nonzero.Pods++
		for _, c := range mp.pod.Spec.Containers {
			cpu := c.Resources.Requests[api.ResourceCPU].MilliValue()
			mem := c.Resources.Requests[api.ResourceMemory].Value()
			nt.requested.MilliCPU += cpu
			nt.requested.Memory += mem
			if cpu == 0 {
				cpu = 100
			}
			if mem == 0 {
				mem = 200 << 20
			}
			nt.nonzero.MilliCPU += cpu
			nt.nonzero.Memory += mem
			for _, p := range c.Ports {
				if p.HostPort != 0 {
					nt.ports[hostPort{p.HostPort, cmp.Or(p.Protocol, api.ProtocolTCP)}]++
				}
			}
		}
		if k := ownerKey(mp.pod); k != "" {
			nt.owners[k]++
		}
	}
	return out
}

// check compares the cache's aggregates with the model's.
func (m *cacheModel) check(t *testing.T, c *Cache, op string) {
	t.Helper()
	want := m.totals()
	c.mu.Lock()
	defer c.mu.Unlock()

	var listed []string
	for _, ni := range c.list {
		listed = append(listed, ni.name)
	}
	wantListed := slices.Sorted(maps.Keys(m.nodes))
	if !slices.Equal(listed, wantListed) {
		t.Fatalf("after %s: node list %v, want %v", op, listed, wantListed)
	}
	for name := range c.nodes {
		if !m.nodes[name] && want[name] == nil {
			t.Fatalf("after %s: cache keeps node %s with no node object and no pods", op, name)
		}
	}
	owners := map[string]map[string]int32{} // node -> owner -> count, from the groups
	for key, g := range c.groups {
		total, nodes := 0, 0
		c.eachInGroup(g, func(ni *NodeInfo, n int32) {
			if n <= 0 || c.nodes[ni.name] != ni {
				t.Fatalf("after %s: group %q holds count %d for node %s (known %v)", op, key, n, ni.name, c.nodes[ni.name] == ni)
			}
			if g.count(ni) != n {
				t.Fatalf("after %s: group %q count(%s) = %d, iteration says %d", op, key, ni.name, g.count(ni), n)
			}
			if owners[ni.name] == nil {
				owners[ni.name] = map[string]int32{}
			}
			owners[ni.name][key] = n
			total += int(n)
			nodes++
		})
		if total != g.total || total == 0 || nodes != g.nodes {
			t.Fatalf("after %s: group %q total %d on %d nodes, iteration says %d on %d", op, key, g.total, g.nodes, total, nodes)
		}
	}
	for name := range m.nodes {
		if want[name] == nil {
			want[name] = &nodeTotals{ports: map[hostPort]int32{}, owners: map[string]int32{}}
		}
	}
	for name, w := range want {
		ni := c.nodes[name]
		if ni == nil {
			t.Fatalf("after %s: cache lost node %s", op, name)
		}
		if ni.requested != w.requested || ni.nonzero != w.nonzero {
			t.Fatalf("after %s: node %s requested %+v nonzero %+v, want %+v and %+v", op, name, ni.requested, ni.nonzero, w.requested, w.nonzero)
		}
		if !maps.Equal(ni.ports, w.ports) && len(ni.ports)+len(w.ports) > 0 {
			t.Fatalf("after %s: node %s host ports %v, want %v", op, name, ni.ports, w.ports)
		}
		if got := owners[name]; !maps.Equal(got, w.owners) && len(got)+len(w.owners) > 0 {
			t.Fatalf("after %s: node %s owner counts %v, want %v", op, name, got, w.owners)
		}
	}
	if len(c.pods) != len(m.counted) {
		t.Fatalf("after %s: cache counts %d pods, want %d", op, len(c.pods), len(m.counted))
	}
	for key, mp := range m.counted {
		ps := c.pods[key]
		if ps == nil || ps.node.name != mp.node || ps.assumed != mp.assumed {
			t.Fatalf("after %s: pod %s is %+v, want on %s assumed %v", op, key, ps, mp.node, mp.assumed)
		}
	}
}

// randomPod makes a pod from a small space, so that operations collide.
func randomPod(r *rand.Rand) *api.Pod {
	quantities := []string{"", "0", "100m", "250m", "1", "1500m", "64Mi", "1Gi"}
	p := &api.Pod{Metadata: api.ObjectMeta{
		Name:   fmt.Sprintf("p%d", r.IntN(8)),
		Tenant: []string{"t1", "t2"}[r.IntN(2)],
	}}
	switch r.IntN(4) {
	case 0:
		p.Metadata.OwnerReferences = []api.OwnerReference{{Kind: "ReplicaSet", Name: "a", UID: "rs-a", Controller: true}}
	case 1:
		p.Metadata.OwnerReferences = []api.OwnerReference{{Kind: "Job", Name: "j", UID: "job-j"}, {Kind: "ReplicaSet", Name: "b", UID: "rs-b", Controller: true}}
	case 2:
		p.Metadata.Labels = map[string]string{"app": []string{"x", "y"}[r.IntN(2)], "tier": "web"}
	}
	for i := range 1 + r.IntN(2) {
		c := api.Container{Name: fmt.Sprintf("c%d", i), Image: "x", Resources: api.ResourceRequirements{Requests: api.ResourceList{}}}
		if q := quantities[r.IntN(len(quantities))]; q != "" {
			c.Resources.Requests[api.ResourceCPU] = api.MustParseQuantity(q)
		}
		if q := quantities[r.IntN(len(quantities))]; q != "" {
			c.Resources.Requests[api.ResourceMemory] = api.MustParseQuantity(q)
		}
		if r.IntN(3) == 0 {
			c.Ports = []api.ContainerPort{{ContainerPort: 80, HostPort: []int32{80, 8080}[r.IntN(2)], Protocol: []api.Protocol{"", api.ProtocolTCP, api.ProtocolUDP}[r.IntN(3)]}}
		}
		p.Spec.Containers = append(p.Spec.Containers, c)
	}
	switch r.IntN(4) {
	case 0: // unbound
	case 1:
		p.Spec.NodeName = fmt.Sprintf("n%d", r.IntN(4))
		p.Status.Phase = []api.PodPhase{api.PodSucceeded, api.PodFailed}[r.IntN(2)]
	default:
		p.Spec.NodeName = fmt.Sprintf("n%d", r.IntN(4))
	}
	return p
}

func randomNode(r *rand.Rand) *api.Node {
	n := &api.Node{Metadata: api.ObjectMeta{Name: fmt.Sprintf("n%d", r.IntN(4))}}
	n.Status.Allocatable = api.ResourceList{api.ResourceCPU: api.MustParseQuantity("4"), api.ResourcePods: api.MustParseQuantity("10")}
	if r.IntN(2) == 0 {
		n.Spec.Taints = []api.Taint{{Key: "k", Effect: api.TaintNoSchedule}}
	}
	return n
}

// TestCacheRandomOperations applies random operations to a Cache and, after
// each, compares every aggregate with a recomputation from scratch.
func TestCacheRandomOperations(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 42))
			c := NewCache()
			// Small thresholds move owner groups between map and slice.
			c.denseGroupNodes = []int{256, 1, 2}[seed%3]
			m := &cacheModel{nodes: map[string]bool{}, counted: map[string]modelPod{}}
			for i := range 2000 {
				gen, retry := c.Generation(), c.RetryGeneration()
				before := m.snapshot()
				op, mutated := m.apply(t, r, c)
				if mutated && c.Generation() == gen {
					t.Fatalf("op %d %s: generation did not move", i, op)
				}
				if (m.frees(before) || strings.HasPrefix(op, "AddNode")) && c.RetryGeneration() == retry {
					t.Fatalf("op %d %s: room was freed or a node changed, but the retry generation did not move", i, op)
				}
				if strings.HasPrefix(op, "Assume") && c.RetryGeneration() != retry {
					t.Fatalf("op %d %s: an assumption moved the retry generation", i, op)
				}
				m.check(t, c, fmt.Sprintf("op %d %s", i, op))
			}
		})
	}
}

// apply performs one random operation on c and on the model. It reports
// whether the cache must have changed.
func (m *cacheModel) apply(t *testing.T, r *rand.Rand, c *Cache) (string, bool) {
	t.Helper()
	switch r.IntN(10) {
	case 0:
		n := randomNode(r)
		must(t, c.AddNode(n))
		m.nodes[n.Metadata.Name] = true
		return "AddNode " + n.Metadata.Name, true
	case 1:
		name := fmt.Sprintf("n%d", r.IntN(4))
		c.RemoveNode(name)
		delete(m.nodes, name)
		return "RemoveNode " + name, true
	case 2, 3, 4:
		p := randomPod(r)
		must(t, c.UpdatePod(p))
		key := p.Metadata.Tenant + "/" + p.Metadata.Name
		old, had := m.counted[key]
		switch {
		case p.Spec.NodeName != "" && !api.PodFinished(p):
			m.counted[key] = modelPod{pod: p, node: p.Spec.NodeName}
		case had && old.assumed && p.Spec.NodeName == "" && !api.PodFinished(p):
			// a stale event: the assumption stays
		default:
			delete(m.counted, key)
		}
		return fmt.Sprintf("UpdatePod %s node %q phase %q", key, p.Spec.NodeName, p.Status.Phase), true
	case 5:
		p := randomPod(r)
		must(t, c.RemovePod(p))
		key := p.Metadata.Tenant + "/" + p.Metadata.Name
		delete(m.counted, key)
		return "RemovePod " + key, true
	case 6, 7:
		p := randomPod(r)
		p.Spec.NodeName, p.Status.Phase = "", ""
		node := fmt.Sprintf("n%d", r.IntN(4))
		key := p.Metadata.Tenant + "/" + p.Metadata.Name
		err := c.Assume(p, node)
		_, had := m.counted[key]
		switch {
		case had:
			if !errors.Is(err, errdefs.ErrAlreadyExists) {
				t.Fatalf("Assume(%s) of a counted pod = %v, want already exists", key, err)
			}
			return "Assume (refused) " + key, false
		case !m.nodes[node]:
			if !errors.Is(err, errdefs.ErrNotFound) {
				t.Fatalf("Assume(%s, %s) on a missing node = %v, want not found", key, node, err)
			}
			return "Assume (no node) " + key, false
		}
		must(t, err)
		m.counted[key] = modelPod{pod: p, node: node, assumed: true}
		return "Assume " + key + " on " + node, true
	default:
		p := randomPod(r)
		key := p.Metadata.Tenant + "/" + p.Metadata.Name
		err := c.Forget(p)
		if mp, had := m.counted[key]; had && mp.assumed {
			must(t, err)
			delete(m.counted, key)
			return "Forget " + key, true
		}
		if !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Fatalf("Forget(%s) of a pod not assumed = %v, want failed precondition", key, err)
		}
		return "Forget (refused) " + key, false
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCacheAssumeThenConfirmOnAnotherNode checks that a bound event naming
// another node than the assumed one moves the pod there.
func TestCacheAssumeThenConfirmOnAnotherNode(t *testing.T) {
	c := NewCache()
	for _, name := range []string{"a", "b"} {
		must(t, c.AddNode(&api.Node{Metadata: api.ObjectMeta{Name: name}}))
	}
	p := &api.Pod{Metadata: api.ObjectMeta{Name: "p", Tenant: "t"}, Spec: api.PodSpec{Containers: []api.Container{{
		Name: "c", Resources: api.ResourceRequirements{Requests: api.ResourceList{api.ResourceCPU: api.MustParseQuantity("1")}},
	}}}}
	must(t, c.Assume(p, "a"))
	if !c.IsAssumed(p) {
		t.Fatalf("IsAssumed after Assume = false")
	}
	bound := api.Clone(p)
	bound.Spec.NodeName = "b"
	must(t, c.UpdatePod(bound))
	if c.IsAssumed(p) {
		t.Errorf("IsAssumed after the bound event = true")
	}
	if got := c.nodes["a"].Requested(); got != (Resources{}) {
		t.Errorf("node a requested %+v after the pod moved, want nothing", got)
	}
	if got, want := c.nodes["b"].Requested(), (Resources{MilliCPU: 1000, Pods: 1}); got != want {
		t.Errorf("node b requested %+v, want %+v", got, want)
	}
}

func TestCacheRejectsNamelessObjects(t *testing.T) {
	c := NewCache()
	if err := c.AddNode(&api.Node{}); !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != "metadata.name" {
		t.Errorf("AddNode(no name) = %v, want invalid metadata.name", err)
	}
	if err := c.AddPod(&api.Pod{}); !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != "metadata.name" {
		t.Errorf("AddPod(no name) = %v, want invalid metadata.name", err)
	}
	if err := c.AddPod(nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("AddPod(nil) = %v, want invalid", err)
	}
}
