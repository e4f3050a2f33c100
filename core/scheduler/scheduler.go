package scheduler

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// Scheduler places pods on the nodes of a Cache with a Profile's plugins.
// It is safe for concurrent use; decisions are serialised.
type Scheduler struct {
	cache   *Cache
	cfg     Config
	filters []FilterPlugin
	weights []WeightedScore // weight > 0 only

	mu   sync.Mutex
	next int // where the next decision starts examining nodes
	// scratch, reused across decisions
	pod          PodInfo
	active       []FilterPlugin
	activeScores []WeightedScore
	batch        []*NodeInfo
	offsets      []int32 // each batch node's place in its batch
	marks        []mark
	reject       func(int, []string) // s.rejectNode, made once
	feasible     []*NodeInfo
	rejections   []rejection
	scores       []int64
	total        []int64
}

// rejection is one node's verdict during a decision.
type rejection struct {
	node    *NodeInfo
	filter  int // index into Scheduler.active
	reasons []string
}

// New returns a Scheduler that places pods on c's nodes with p's plugins,
// tuned by cfg. It fails if cfg does not fit p (Config.Validate).
func New(c *Cache, p Profile, cfg Config) (*Scheduler, error) {
	if c == nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "scheduler: no cache")
	}
	if err := cfg.Validate(p); err != nil {
		return nil, err
	}
	s := &Scheduler{cache: c, cfg: cfg, filters: slices.Clone(p.Filters)}
	s.reject = s.rejectNode
	for _, ws := range p.Scores {
		if w, ok := cfg.ScoreWeights[ws.Plugin.Name()]; ok {
			ws.Weight = w
		}
		if ws.Weight > 0 {
			s.weights = append(s.weights, ws)
		}
	}
	return s, nil
}

// Result is a successful decision.
type Result struct {
	// Node is the chosen node's name.
	Node string
	// Score is its weighted score.
	Score int64
	// Evaluated is the number of nodes filtered, Feasible the number that
	// passed and were scored.
	Evaluated, Feasible int
}

// NodeVerdict is why one node cannot run a pod.
type NodeVerdict struct {
	Node string
	// Filter is the plugin that rejected the node, Reasons its reasons.
	Filter  string
	Reasons []string
}

// Unschedulable is the error of a decision that found no node for a pod.
// Its message counts the nodes' reasons, most frequent first:
// "0/3 nodes are available: 2 insufficient memory, 1 no runtime class gvisor."
type Unschedulable struct {
	// Pod is the pod's tenant/name.
	Pod string
	// Nodes is the number of nodes in the cluster, all of which were
	// examined.
	Nodes int
	// Verdicts holds every node's verdict, sorted by node name.
	Verdicts []NodeVerdict
	msg      string
}

func (u *Unschedulable) Error() string { return u.msg }

// Unwrap makes errors.Is(err, errdefs.ErrUnavailable) hold: no node is
// available for the pod now.
func (u *Unschedulable) Unwrap() error { return errdefs.ErrUnavailable }

// Condition returns the PodScheduled condition that records the failure
// on the pod, as Kubernetes writes it.
func (u *Unschedulable) Condition() api.Condition {
	return api.Condition{Type: "PodScheduled", Status: "False", Reason: "Unschedulable", Message: u.msg}
}

// unschedulableMessage counts reasons: "0/N nodes are available: 2 a, 1 b."
func unschedulableMessage(nodes int, verdicts []NodeVerdict) string {
	counts := map[string]int{}
	for _, v := range verdicts {
		for _, r := range v.Reasons {
			counts[r]++
		}
	}
	type reasonCount struct {
		reason string
		n      int
	}
	list := make([]reasonCount, 0, len(counts))
	for r, n := range counts {
		list = append(list, reasonCount{r, n})
	}
	slices.SortFunc(list, func(a, b reasonCount) int {
		return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.reason, b.reason))
	})
	var b strings.Builder
	b.WriteString("0/" + strconv.Itoa(nodes) + " nodes are available")
	for i, rc := range list {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(rc.n) + " " + rc.reason)
	}
	b.WriteString(".")
	return b.String()
}

// Schedule picks a node for pod, which must not be bound, from the cache's
// current state. tenant is the pod's tenant, or nil to skip the tenant's
// node selector and default the runtime class as for a tenant with
// default settings. When no node can run the pod the error is an
// *Unschedulable (of class errdefs.ErrUnavailable); other errors are of
// class errdefs.ErrInvalidArgument. Schedule does not change the cache:
// the caller Assumes the decision.
func (s *Scheduler) Schedule(pod *api.Pod, tenant *api.Tenant) (Result, error) {
	if pod == nil {
		return Result{}, errdefs.New(errdefs.ErrInvalidArgument, "schedule: no pod")
	}
	if pod.Spec.NodeName != "" {
		return Result{}, errdefs.Field(errdefs.ErrInvalidArgument, "spec.nodeName",
			fmt.Sprintf("pod %s/%s is already bound to node %s", pod.Metadata.Tenant, pod.Metadata.Name, pod.Spec.NodeName))
	}
	if tenant != nil && tenant.Metadata.Name != pod.Metadata.Tenant {
		return Result{}, errdefs.Field(errdefs.ErrInvalidArgument, "metadata.tenant",
			fmt.Sprintf("pod %s/%s is not of tenant %q", pod.Metadata.Tenant, pod.Metadata.Name, tenant.Metadata.Name))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cache
	c.mu.Lock()
	defer c.mu.Unlock()

	pi := &s.pod
	c.setPodInfo(pi, pod, tenant)
	defer func() { pi.Pod, pi.Tenant, pi.group = nil, nil, nil }() // keep nothing alive
	nodes := c.list
	n := len(nodes)
	if n == 0 {
		return Result{}, &Unschedulable{Pod: podName(pod), msg: unschedulableMessage(0, nil)}
	}

	s.active = s.active[:0]
	for _, f := range s.filters {
		if sk, ok := f.(Skipper); !ok || !sk.Skip(pi) {
			s.active = append(s.active, f)
		}
	}
	s.activeScores = s.activeScores[:0]
	for _, ws := range s.weights {
		if sk, ok := ws.Plugin.(Skipper); !ok || !sk.Skip(pi) {
			s.activeScores = append(s.activeScores, ws)
		}
	}

	// Filter nodes, in batches, from where the last decision stopped
	// until enough are feasible.
	want := s.cfg.feasibleNodesToFind(n)
	start := s.next % n
	s.feasible = s.feasible[:0]
	s.rejections = s.rejections[:0]
	examined := 0
	for examined < n && len(s.feasible) < want {
		size := min(n-examined, max(want-len(s.feasible), minBatch))
		s.batch = s.batch[:0]
		s.offsets = s.offsets[:0]
		for i := range size {
			j := start + examined + i
			if j >= n {
				j -= n
			}
			s.batch = append(s.batch, nodes[j])
			s.offsets = append(s.offsets, int32(i))
		}
		s.filterBatch(pi)
		if need := want - len(s.feasible); len(s.batch) > need {
			// Stop right after the last node needed, so that the next
			// decision starts with the nodes this one did not use.
			s.batch = s.batch[:need]
			size = int(s.offsets[need-1]) + 1
		}
		s.feasible = append(s.feasible, s.batch...)
		examined += size
	}
	s.next = (start + examined) % n
	if len(s.feasible) == 0 {
		return Result{}, s.unschedulable(pod, n)
	}
	best, score := s.pick(pi)
	return Result{Node: s.feasible[best].name, Score: score, Evaluated: examined, Feasible: len(s.feasible)}, nil
}

// minBatch is the fewest nodes filtered together when few feasible nodes
// are still wanted, so that a cluster where most nodes fail is still
// filtered in large batches.
const minBatch = 64

// filterBatch runs the active filters over s.batch, in order, each on the
// nodes the ones before passed, and leaves in s.batch (and s.offsets) the
// nodes that pass all, recording the others in s.rejections.
func (s *Scheduler) filterBatch(pi *PodInfo) {
	for fi, f := range s.active {
		if len(s.batch) == 0 {
			return
		}
		s.marks = s.marks[:0]
		f.Filter(pi, s.batch, s.reject)
		if len(s.marks) == 0 {
			continue
		}
		byNode := func(a, b mark) int { return cmp.Compare(a.i, b.i) }
		if !slices.IsSortedFunc(s.marks, byNode) {
			slices.SortStableFunc(s.marks, byNode)
		}
		kept, m := 0, 0
		for i, ni := range s.batch {
			if m < len(s.marks) && s.marks[m].i == i {
				s.rejections = append(s.rejections, rejection{node: ni, filter: fi, reasons: s.marks[m].reasons})
				for m < len(s.marks) && s.marks[m].i == i {
					m++ // a node rejected twice counts once
				}
				continue
			}
			s.batch[kept] = ni
			s.offsets[kept] = s.offsets[i]
			kept++
		}
		s.batch = s.batch[:kept]
		s.offsets = s.offsets[:kept]
	}
}

// mark is a filter's rejection of the i-th node of a batch.
type mark struct {
	i       int
	reasons []string
}

// rejectNode is the callback filters reject nodes through; it ignores
// nonsense (an index out of range, no reason).
func (s *Scheduler) rejectNode(i int, reasons []string) {
	if i >= 0 && i < len(s.batch) && len(reasons) > 0 {
		s.marks = append(s.marks, mark{i, reasons})
	}
}

// pick scores the feasible nodes, weighs and adds up the scores, and
// returns the index of the best node, the first examined among equals,
// and its score.
func (s *Scheduler) pick(pi *PodInfo) (int, int64) {
	m := len(s.feasible)
	s.total = slices.Grow(s.total[:0], m)[:m]
	clear(s.total)
	s.scores = slices.Grow(s.scores[:0], m)[:m]
	for _, ws := range s.activeScores {
		ws.Plugin.Score(pi, s.feasible, s.scores)
		for i, v := range s.scores {
			s.total[i] += ws.Weight * v
		}
	}
	best := 0
	for i, v := range s.total {
		if v > s.total[best] {
			best = i
		}
	}
	return best, s.total[best]
}

// unschedulable builds the error of a decision that examined all n nodes
// and found none feasible.
func (s *Scheduler) unschedulable(pod *api.Pod, n int) *Unschedulable {
	verdicts := make([]NodeVerdict, len(s.rejections))
	for i, r := range s.rejections {
		verdicts[i] = NodeVerdict{Node: r.node.name, Filter: s.active[r.filter].Name(), Reasons: slices.Clone(r.reasons)}
	}
	slices.SortFunc(verdicts, func(a, b NodeVerdict) int { return cmp.Compare(a.Node, b.Node) })
	return &Unschedulable{Pod: podName(pod), Nodes: n, Verdicts: verdicts, msg: unschedulableMessage(n, verdicts)}
}

func podName(p *api.Pod) string { return p.Metadata.Tenant + "/" + p.Metadata.Name }
