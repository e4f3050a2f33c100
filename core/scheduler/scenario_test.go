package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/api"
	"sigs.k8s.io/yaml"
)

// A scenario is a small cluster and a sequence of steps against it, read
// from testdata/scenarios/*.yaml. Embedded objects are decoded strictly
// with core/api's codec (kind may be left out).
type scenario struct {
	// Description says what the scenario proves.
	Description string `json:"description"`
	// Defs holds YAML anchors for the rest of the file; it is not read.
	Defs any `json:"defs"`
	// Config is the scheduler's config, decoded with DecodeConfig.
	Config json.RawMessage `json:"config"`
	// Tenant is passed to Schedule for pods of its tenant; pods without
	// a tenant are given its name (or "default").
	Tenant json.RawMessage `json:"tenant"`
	// Nodes are the cluster's nodes, and NodeSets more of them stamped
	// out of a template.
	Nodes    []json.RawMessage `json:"nodes"`
	NodeSets []nodeSet         `json:"nodeSets"`
	// Pods are pods already bound to nodes.
	Pods  []json.RawMessage `json:"pods"`
	Steps []step            `json:"steps"`
}

// nodeSet makes Count nodes named Prefix000, Prefix001, ... from Template.
type nodeSet struct {
	Count    int             `json:"count"`
	Prefix   string          `json:"prefix"`
	Template json.RawMessage `json:"template"`
}

// step is one action, with what must follow from it. Exactly one action
// field is set.
type step struct {
	// Schedule schedules a pod and, on success, assumes it on the chosen
	// node unless NoAssume is set. With Repeat n, n copies named NAME-1 to
	// NAME-n are scheduled (and assumed) one after the other.
	Schedule json.RawMessage `json:"schedule"`
	Repeat   int             `json:"repeat"`
	NoAssume bool            `json:"noAssume"`
	// Want is the node the (last) pod must go to; WantAnyOf the nodes it
	// may go to when several tie; WantError the exact unschedulable
	// message; WantEvaluated the number of nodes the (last) decision must
	// have filtered; WantCounts, with Repeat, how many copies each node
	// must get; WantVerdicts the filter that rejected each named node.
	Want          string            `json:"want"`
	WantAnyOf     []string          `json:"wantAnyOf"`
	WantError     string            `json:"wantError"`
	WantEvaluated int               `json:"wantEvaluated"`
	WantCounts    map[string]int    `json:"wantCounts"`
	WantVerdicts  map[string]string `json:"wantVerdicts"`

	// Forget undoes the assumption of the pod of that name (in the
	// scenario's tenant); WantForgetError says that it must fail.
	Forget          string `json:"forget"`
	WantForgetError bool   `json:"wantForgetError"`
	// AddPod records a pod (a bound one confirms an assumption),
	// RemovePod removes the pod of that name.
	AddPod    json.RawMessage `json:"addPod"`
	RemovePod string          `json:"removePod"`
	// AddNode adds or updates a node, RemoveNode removes one.
	AddNode    json.RawMessage `json:"addNode"`
	RemoveNode string          `json:"removeNode"`
}

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("found %d scenarios in testdata/scenarios, want at least 15", len(files))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var sc scenario
			if err := yaml.UnmarshalStrict(data, &sc); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if sc.Description == "" {
				t.Fatalf("%s: no description", file)
			}
			runScenario(t, &sc)
		})
	}
}

// scenarioRun is a scenario being run.
type scenarioRun struct {
	t      *testing.T
	cache  *Cache
	sched  *Scheduler
	tenant *api.Tenant
	tname  string
}

func runScenario(t *testing.T, sc *scenario) {
	r := &scenarioRun{t: t, cache: NewCache(), tname: "default"}
	cfg := Config{}
	if len(sc.Config) > 0 {
		var err error
		if cfg, err = DecodeConfig(sc.Config); err != nil {
			t.Fatalf("config: %v", err)
		}
	}
	if len(sc.Tenant) > 0 {
		r.tenant = decodeAs[*api.Tenant](t, "Tenant", sc.Tenant)
		r.tname = r.tenant.Metadata.Name
	}
	for _, raw := range sc.Nodes {
		r.must(r.cache.AddNode(decodeAs[*api.Node](t, "Node", raw)))
	}
	for _, set := range sc.NodeSets {
		for i := range set.Count {
			n := decodeAs[*api.Node](t, "Node", set.Template)
			n.Metadata.Name = fmt.Sprintf("%s%03d", set.Prefix, i)
			r.must(r.cache.AddNode(n))
		}
	}
	for _, raw := range sc.Pods {
		p := r.pod(raw)
		if p.Spec.NodeName == "" {
			t.Fatalf("pods: pod %s is not bound: set spec.nodeName (or schedule it in a step)", p.Metadata.Name)
		}
		r.must(r.cache.AddPod(p))
	}
	var err error
	if r.sched, err = New(r.cache, DefaultProfile(), cfg); err != nil {
		t.Fatalf("New: %v", err)
	}
	for i, st := range sc.Steps {
		r.step(i, &st)
	}
}

func (r *scenarioRun) must(err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
}

func decodeAs[T api.Object](t *testing.T, kind string, raw json.RawMessage) T {
	t.Helper()
	k, ok := api.KindFor(kind)
	if !ok {
		t.Fatalf("no kind %s", kind)
	}
	obj, err := api.DecodeAs(raw, k)
	if err != nil {
		t.Fatalf("decoding %s %s: %v", kind, raw, err)
	}
	return obj.(T)
}

// pod decodes a pod and puts it in the scenario's tenant if it names none.
func (r *scenarioRun) pod(raw json.RawMessage) *api.Pod {
	p := decodeAs[*api.Pod](r.t, "Pod", raw)
	if p.Metadata.Tenant == "" {
		p.Metadata.Tenant = r.tname
	}
	return p
}

func (r *scenarioRun) named(name string) *api.Pod {
	return &api.Pod{Metadata: api.ObjectMeta{Name: name, Tenant: r.tname}}
}

func (r *scenarioRun) step(i int, st *step) {
	t := r.t
	t.Helper()
	where := fmt.Sprintf("step %d", i+1)
	switch {
	case len(st.Schedule) > 0:
		r.schedule(where, st)
	case st.Forget != "":
		err := r.cache.Forget(r.named(st.Forget))
		if (err != nil) != st.WantForgetError {
			t.Fatalf("%s: Forget(%s) = %v, want error %v", where, st.Forget, err, st.WantForgetError)
		}
	case len(st.AddPod) > 0:
		r.must(r.cache.AddPod(r.pod(st.AddPod)))
	case st.RemovePod != "":
		r.must(r.cache.RemovePod(r.named(st.RemovePod)))
	case len(st.AddNode) > 0:
		r.must(r.cache.AddNode(decodeAs[*api.Node](t, "Node", st.AddNode)))
	case st.RemoveNode != "":
		r.cache.RemoveNode(st.RemoveNode)
	default:
		t.Fatalf("%s: no action", where)
	}
}

func (r *scenarioRun) schedule(where string, st *step) {
	t := r.t
	t.Helper()
	base := r.pod(st.Schedule)
	tenant := r.tenant
	if tenant != nil && base.Metadata.Tenant != tenant.Metadata.Name {
		tenant = nil
	}
	n := max(st.Repeat, 1)
	counts := map[string]int{}
	var res Result
	for k := 1; k <= n; k++ {
		p := api.Clone(base)
		if st.Repeat > 0 {
			p.Metadata.Name = fmt.Sprintf("%s-%d", base.Metadata.Name, k)
		}
		var err error
		res, err = r.sched.Schedule(p, tenant)
		if st.WantError != "" {
			var u *Unschedulable
			if !errors.As(err, &u) {
				t.Fatalf("%s: Schedule(%s) = %+v, %v; want unschedulable %q", where, p.Metadata.Name, res, err, st.WantError)
			}
			if u.Error() != st.WantError {
				t.Fatalf("%s: Schedule(%s) error\n got %q\nwant %q", where, p.Metadata.Name, u.Error(), st.WantError)
			}
			checkVerdicts(t, where, u, st.WantVerdicts)
			return
		}
		if err != nil {
			t.Fatalf("%s: Schedule(%s) error: %v", where, p.Metadata.Name, err)
		}
		counts[res.Node]++
		if !st.NoAssume {
			r.must(r.cache.Assume(p, res.Node))
		}
	}
	switch {
	case st.Want != "" && res.Node != st.Want:
		t.Errorf("%s: Schedule(%s) = %s, want %s", where, base.Metadata.Name, res.Node, st.Want)
	case len(st.WantAnyOf) > 0 && !slices.Contains(st.WantAnyOf, res.Node):
		t.Errorf("%s: Schedule(%s) = %s, want one of %v", where, base.Metadata.Name, res.Node, st.WantAnyOf)
	case st.Want == "" && len(st.WantAnyOf) == 0 && st.WantCounts == nil:
		t.Fatalf("%s: the step says nothing about the result", where)
	}
	if st.WantEvaluated != 0 && res.Evaluated != st.WantEvaluated {
		t.Errorf("%s: Schedule(%s) evaluated %d nodes, want %d", where, base.Metadata.Name, res.Evaluated, st.WantEvaluated)
	}
	if st.WantCounts != nil && !maps.Equal(counts, st.WantCounts) {
		t.Errorf("%s: %d copies of %s went to %v, want %v", where, n, base.Metadata.Name, counts, st.WantCounts)
	}
}

func checkVerdicts(t *testing.T, where string, u *Unschedulable, want map[string]string) {
	t.Helper()
	if len(u.Verdicts) != u.Nodes {
		t.Errorf("%s: %d verdicts for %d nodes", where, len(u.Verdicts), u.Nodes)
	}
	seen := 0
	for _, v := range u.Verdicts {
		if f, ok := want[v.Node]; ok {
			seen++
			if f != v.Filter {
				t.Errorf("%s: node %s rejected by %s (%v), want %s", where, v.Node, v.Filter, v.Reasons, f)
			}
		}
	}
	if seen != len(want) {
		t.Errorf("%s: verdicts %+v lack some of the nodes in %v", where, u.Verdicts, want)
	}
}
