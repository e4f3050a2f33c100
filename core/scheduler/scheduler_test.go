package scheduler

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
)

func TestTolerates(t *testing.T) {
	taint := api.Taint{Key: "dedicated", Value: "gpu", Effect: api.TaintNoSchedule}
	tests := []struct {
		tol  api.Toleration
		want bool
	}{
		{api.Toleration{Key: "dedicated", Operator: api.TolerationEqual, Value: "gpu", Effect: api.TaintNoSchedule}, true},
		{api.Toleration{Key: "dedicated", Value: "gpu"}, true}, // operator defaults to Equal, effect to all
		{api.Toleration{Key: "dedicated", Value: "cpu"}, false},
		{api.Toleration{Key: "dedicated"}, false}, // Equal with an empty value
		{api.Toleration{Key: "dedicated", Operator: api.TolerationExists}, true},
		{api.Toleration{Key: "other", Operator: api.TolerationExists}, false},
		{api.Toleration{Operator: api.TolerationExists}, true}, // empty key: every taint
		{api.Toleration{Operator: api.TolerationExists, Effect: api.TaintNoExecute}, false},
		{api.Toleration{Key: "dedicated", Operator: api.TolerationExists, Effect: api.TaintPreferNoSchedule}, false},
		{api.Toleration{Key: "dedicated", Operator: "Bogus"}, false},
	}
	for _, tt := range tests {
		if got := tolerates(&tt.tol, &taint); got != tt.want {
			t.Errorf("tolerates(%+v, %+v) = %v, want %v", tt.tol, taint, got, tt.want)
		}
	}
}

func TestUnschedulableMessageOrder(t *testing.T) {
	verdicts := []NodeVerdict{
		{Node: "a", Reasons: []string{"zeta"}},
		{Node: "b", Reasons: []string{"alpha", "zeta"}},
		{Node: "c", Reasons: []string{"beta"}},
		{Node: "d", Reasons: []string{"alpha"}},
	}
	got := unschedulableMessage(4, verdicts)
	want := "0/4 nodes are available: 2 alpha, 2 zeta, 1 beta."
	if got != want {
		t.Errorf("unschedulableMessage = %q, want %q", got, want)
	}
	u := &Unschedulable{msg: got}
	if c := u.Condition(); c.Type != "PodScheduled" || c.Status != "False" || c.Reason != "Unschedulable" || c.Message != want {
		t.Errorf("Condition() = %+v", c)
	}
}

func readyNode(name string, classes ...string) *api.Node {
	return &api.Node{
		Metadata: api.ObjectMeta{Name: name},
		Status: api.NodeStatus{
			Allocatable: api.ResourceList{
				api.ResourceCPU:    api.MustParseQuantity("4"),
				api.ResourceMemory: api.MustParseQuantity("8Gi"),
				api.ResourcePods:   api.MustParseQuantity("110"),
			},
			Conditions:     []api.Condition{{Type: "Ready", Status: "True"}},
			RuntimeClasses: classes,
		},
	}
}

func plainPod(name, class string) *api.Pod {
	return &api.Pod{
		Metadata: api.ObjectMeta{Name: name, Tenant: "t"},
		Spec:     api.PodSpec{RuntimeClassName: class, Containers: []api.Container{{Name: "c", Image: "x"}}},
	}
}

func newScheduler(t *testing.T, c *Cache, p Profile) *Scheduler {
	t.Helper()
	s, err := New(c, p, Config{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestScheduleRefusesBadArguments(t *testing.T) {
	c := NewCache()
	must(t, c.AddNode(readyNode("n1", "runc")))
	s := newScheduler(t, c, DefaultProfile())

	if _, err := s.Schedule(nil, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Schedule(nil) = %v, want invalid argument", err)
	}
	bound := plainPod("p", "runc")
	bound.Spec.NodeName = "n1"
	if _, err := s.Schedule(bound, nil); !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != "spec.nodeName" {
		t.Errorf("Schedule(bound pod) = %v, want invalid spec.nodeName", err)
	}
	other := &api.Tenant{Metadata: api.ObjectMeta{Name: "other"}}
	if _, err := s.Schedule(plainPod("p", "runc"), other); !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != "metadata.tenant" {
		t.Errorf("Schedule(pod, another tenant) = %v, want invalid metadata.tenant", err)
	}
	if _, err := New(nil, DefaultProfile(), Config{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("New(nil cache) = %v, want invalid argument", err)
	}
	if err := c.Assume(plainPod("p", "runc"), "nowhere"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Assume on an unknown node = %v, want not found", err)
	}
}

// TestManyRuntimeClasses checks the RuntimeClass filter past the 64
// classes the cache numbers, where it compares names.
func TestManyRuntimeClasses(t *testing.T) {
	c := NewCache()
	for i := range 70 {
		must(t, c.AddNode(readyNode(fmt.Sprintf("n%02d", i), fmt.Sprintf("class-%02d", i))))
	}
	s := newScheduler(t, c, DefaultProfile())
	for _, i := range []int{0, 63, 64, 69} {
		res, err := s.Schedule(plainPod(fmt.Sprintf("p%d", i), fmt.Sprintf("class-%02d", i)), nil)
		if want := fmt.Sprintf("n%02d", i); err != nil || res.Node != want {
			t.Errorf("Schedule(pod of class-%02d) = %+v, %v; want %s", i, res, err, want)
		}
	}
	_, err := s.Schedule(plainPod("none", "class-99"), nil)
	var u *Unschedulable
	if !errors.As(err, &u) || u.Error() != "0/70 nodes are available: 70 no runtime class class-99." {
		t.Errorf("Schedule(pod of an unknown class) = %v", err)
	}
}

// sloppyFilter rejects every node twice and reports nonsense indexes, as a
// careless third-party filter might. Its reasons are shared slices.
type sloppyFilter struct{}

var sloppyFirst, sloppySecond = []string{"first"}, []string{"second"}

func (sloppyFilter) Name() string { return "Sloppy" }

func (sloppyFilter) Filter(_ *PodInfo, nodes []*NodeInfo, reject func(int, []string)) {
	reject(-1, []string{"nonsense"})
	reject(len(nodes), []string{"nonsense"})
	for i := len(nodes) - 1; i >= 0; i-- {
		if nodes[i].Name() != "keep" {
			reject(i, sloppyFirst)
			reject(i, sloppySecond)
			reject(i, nil)
		}
	}
}

func TestCustomProfileFilterOrderAndDuplicates(t *testing.T) {
	c := NewCache()
	for _, name := range []string{"a", "b", "keep"} {
		must(t, c.AddNode(readyNode(name, "runc")))
	}
	p := Profile{Filters: []FilterPlugin{sloppyFilter{}}, Scores: []WeightedScore{{LeastAllocated{}, 1}}}
	s := newScheduler(t, c, p)
	res, err := s.Schedule(plainPod("p", "runc"), nil)
	if err != nil || res.Node != "keep" {
		t.Fatalf("Schedule = %+v, %v; want keep", res, err)
	}
	c.RemoveNode("keep")
	_, err = s.Schedule(plainPod("p", "runc"), nil)
	var u *Unschedulable
	if !errors.As(err, &u) {
		t.Fatalf("Schedule without keep = %v, want unschedulable", err)
	}
	if want := "0/2 nodes are available: 2 first."; u.Error() != want {
		t.Errorf("message %q, want %q", u.Error(), want)
	}
	if len(u.Verdicts) != 2 || u.Verdicts[0].Node != "a" || u.Verdicts[0].Filter != "Sloppy" {
		t.Errorf("verdicts %+v", u.Verdicts)
	}
	// Verdicts are the caller's: changing them must not change the next.
	u.Verdicts[0].Reasons[0] = "changed"
	_, err = s.Schedule(plainPod("p", "runc"), nil)
	if !errors.As(err, &u) || u.Error() != "0/2 nodes are available: 2 first." {
		t.Errorf("after changing a verdict, Schedule = %v", err)
	}
}

// TestConcurrentUse runs decisions while another goroutine feeds the
// cache; under -race it proves the locking, and the cache's aggregates
// must come out exact.
func TestConcurrentUse(t *testing.T) {
	c := NewCache()
	for i := range 20 {
		must(t, c.AddNode(readyNode(fmt.Sprintf("n%02d", i), "runc")))
	}
	s := newScheduler(t, c, DefaultProfile())
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		for i := range 500 {
			p := plainPod(fmt.Sprintf("s%d", i), "runc")
			res, err := s.Schedule(p, nil)
			if err == nil {
				err = c.Assume(p, res.Node)
			}
			if err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Go(func() {
		for i := range 500 {
			p := plainPod(fmt.Sprintf("b%d", i), "runc")
			p.Spec.NodeName = fmt.Sprintf("n%02d", i%20)
			if err := c.AddPod(p); err != nil {
				errs <- err
				return
			}
			if i%2 == 0 {
				if err := c.RemovePod(p); err != nil {
					errs <- err
					return
				}
			}
			c.Generation()
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var pods int64
	for _, ni := range c.list {
		pods += ni.Requested().Pods
	}
	if pods != 500+250 {
		t.Errorf("nodes count %d pods, want 750", pods)
	}
}

func TestNormalizeReverse(t *testing.T) {
	tests := []struct{ in, want []int64 }{
		{[]int64{0, 0}, []int64{100, 100}},
		{[]int64{0, 1, 2, 3}, []int64{100, 66, 33, 0}},
		{[]int64{7, 0, 3}, []int64{0, 100, 57}},
		{[]int64{1000, 1, 999}, []int64{0, 99, 0}},
		{[]int64{63, 64, 0}, []int64{1, 0, 100}},
	}
	for _, tt := range tests {
		got := slices.Clone(tt.in)
		normalizeReverse(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("normalizeReverse(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
