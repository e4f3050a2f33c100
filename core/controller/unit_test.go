package controller

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
)

func TestDeletionOrder(t *testing.T) {
	at := func(s int) *api.Time { return api.NewTime(time.Unix(int64(1000+s), 0)) }
	pod := func(name, node string, phase api.PodPhase, ready bool, created int) *api.Pod {
		p := &api.Pod{Metadata: api.ObjectMeta{Name: name, CreationTimestamp: at(created)}, Spec: api.PodSpec{NodeName: node}, Status: api.PodStatus{Phase: phase}}
		if ready {
			p.Status.Conditions = []api.Condition{{Type: "Ready", Status: "True"}}
		}
		return p
	}
	pods := []*api.Pod{
		pod("ready-old", "n1", api.PodRunning, true, 1),
		pod("ready-new", "n1", api.PodRunning, true, 5),
		pod("running-not-ready", "n1", api.PodRunning, false, 2),
		pod("pending-bound", "n1", api.PodPending, false, 3),
		pod("unknown", "n1", api.PodUnknown, false, 3),
		pod("unscheduled", "", api.PodPending, false, 0),
	}
	slices.SortStableFunc(pods, deletionOrder)
	want := []string{"unscheduled", "pending-bound", "unknown", "running-not-ready", "ready-new", "ready-old"}
	if got := podNames(pods); !slices.Equal(got, want) {
		t.Errorf("deletion order = %v, want %v", got, want)
	}
}

func podNames(pods []*api.Pod) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = p.Metadata.Name
	}
	return out
}

func rsAt(replicas, available int32) *api.ReplicaSet {
	return &api.ReplicaSet{Spec: api.ReplicaSetSpec{Replicas: &replicas}, Status: api.ReplicaSetStatus{Replicas: replicas, AvailableReplicas: available}}
}

func TestRollingBounds(t *testing.T) {
	tests := []struct {
		replicas       int32
		surge, unavail *api.IntOrString
		wantSurge      int32
		wantUnavail    int32
	}{
		{4, api.FromString("25%"), api.FromString("25%"), 1, 1},
		{5, api.FromString("25%"), api.FromString("25%"), 2, 1}, // surge rounds up, unavailable down
		{1, api.FromString("25%"), api.FromString("25%"), 1, 0},
		{3, api.FromInt(0), api.FromInt(0), 0, 1}, // never both zero
		{2, api.FromInt(0), api.FromInt(5), 0, 2}, // unavailable at most replicas
		{10, api.FromString("100%"), api.FromInt(0), 10, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d %s %s", tt.replicas, tt.surge, tt.unavail), func(t *testing.T) {
			d := &api.Deployment{Spec: api.DeploymentSpec{Replicas: &tt.replicas, Strategy: api.DeploymentStrategy{
				Type: api.RollingUpdate, RollingUpdate: &api.RollingUpdateDeployment{MaxSurge: tt.surge, MaxUnavailable: tt.unavail}}}}
			s, u := rollingBounds(d)
			if s != tt.wantSurge || u != tt.wantUnavail {
				t.Errorf("rollingBounds = surge %d, unavailable %d; want %d, %d", s, u, tt.wantSurge, tt.wantUnavail)
			}
		})
	}
}

// TestRollingUpdateSteps drives newRSReplicas and scaleDownOld as the
// controller does, with replica sets that act at once and new pods that
// become available one round later, and checks the bounds after every
// step and that the rollout finishes.
func TestRollingUpdateSteps(t *testing.T) {
	for _, want := range []int32{1, 2, 3, 5, 10} {
		for _, b := range [][2]int32{{1, 0}, {0, 1}, {1, 1}, {2, 0}, {0, 3}, {3, 3}} {
			surge, unavail := b[0], min(b[1], want)
			if surge == 0 && unavail == 0 {
				continue
			}
			t.Run(fmt.Sprintf("replicas %d surge %d unavailable %d", want, surge, unavail), func(t *testing.T) {
				old := []*api.ReplicaSet{rsAt(want, want)}
				newRS := rsAt(0, 0)
				check := func(step string) {
					total, avail := *newRS.Spec.Replicas, newRS.Status.AvailableReplicas
					for _, rs := range old {
						total += *rs.Spec.Replicas
						avail += rs.Status.AvailableReplicas
					}
					if total > want+surge {
						t.Fatalf("%s: %d pods, want at most %d", step, total, want+surge)
					}
					if avail < want-unavail {
						t.Fatalf("%s: %d available, want at least %d", step, avail, want-unavail)
					}
				}
				for round := 0; round < 100; round++ {
					if *old[0].Spec.Replicas == 0 && newRS.Status.AvailableReplicas == want && *newRS.Spec.Replicas == want {
						return
					}
					all := []*api.ReplicaSet{old[0], newRS}
					if n := newRSReplicas(want, surge, all, newRS); n != *newRS.Spec.Replicas {
						newRS.Spec.Replicas = &n // new pods start unavailable
						check(fmt.Sprintf("round %d scale up", round))
					} else {
						for _, s := range scaleDownOld(want, unavail, newRS, old) {
							rs := old[s.index]
							rs.Spec.Replicas = &s.replicas
							rs.Status.AvailableReplicas = min(rs.Status.AvailableReplicas, s.replicas)
						}
						check(fmt.Sprintf("round %d scale down", round))
					}
					newRS.Status.AvailableReplicas = *newRS.Spec.Replicas // the pods become ready
				}
				t.Fatalf("rollout not finished after 100 rounds: old %d, new %d (%d available)", *old[0].Spec.Replicas, *newRS.Spec.Replicas, newRS.Status.AvailableReplicas)
			})
		}
	}
}

func TestScaleDownOld(t *testing.T) {
	tests := []struct {
		name          string
		want, unavail int32
		newRS         *api.ReplicaSet
		old           []*api.ReplicaSet
		wantReplicas  []int32 // of the old sets
	}{
		// 5 pods for 4 wanted, 3 available: only 1 may go, and it is
		// an unavailable one.
		{"unavailable first, within the budget", 4, 0, rsAt(1, 1), []*api.ReplicaSet{rsAt(4, 2)}, []int32{3}},
		{"available ones down to the minimum", 4, 1, rsAt(2, 2), []*api.ReplicaSet{rsAt(4, 4)}, []int32{1}},
		{"nothing below the minimum", 4, 0, rsAt(1, 0), []*api.ReplicaSet{rsAt(4, 4)}, []int32{4}},
		{"oldest first", 4, 2, rsAt(0, 0), []*api.ReplicaSet{rsAt(2, 2), rsAt(2, 2)}, []int32{0, 2}},
		{"old sets already at zero", 3, 1, rsAt(3, 3), []*api.ReplicaSet{rsAt(0, 0)}, []int32{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make([]int32, len(tt.old))
			for i, rs := range tt.old {
				got[i] = *rs.Spec.Replicas
			}
			for _, s := range scaleDownOld(tt.want, tt.unavail, tt.newRS, tt.old) {
				got[s.index] = s.replicas
			}
			if !slices.Equal(got, tt.wantReplicas) {
				t.Errorf("old replica sets scaled to %v, want %v", got, tt.wantReplicas)
			}
		})
	}
}

func TestTemplateHash(t *testing.T) {
	a := api.PodTemplateSpec{Metadata: api.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: api.PodSpec{Containers: []api.Container{{Name: "c", Image: "busybox:v1"}}}}
	b := WithoutHash(&a)
	b.Metadata.Labels[TemplateHashLabel] = "whatever"
	c := WithoutHash(&a)
	c.Spec.Containers[0].Image = "busybox:v2"
	h := TemplateHash(&a)
	if len(h) != 10 || strings.Trim(h, suffixAlphabet) != "" {
		t.Errorf("TemplateHash = %q, want 10 characters of %q", h, suffixAlphabet)
	}
	if TemplateHash(&b) != h || !TemplatesEqual(&a, &b) {
		t.Errorf("the %s label changed the hash", TemplateHashLabel)
	}
	if TemplateHash(&c) == h || TemplatesEqual(&a, &c) {
		t.Errorf("a new image kept the hash %s", h)
	}
	if _, ok := WithoutHash(&b).Metadata.Labels[TemplateHashLabel]; ok {
		t.Errorf("WithoutHash kept the %s label", TemplateHashLabel)
	}
}

func TestExpectations(t *testing.T) {
	e := newExpectations()
	now := time.Unix(1000, 0)
	e.now = func() time.Time { return now }
	if !e.satisfied("a") {
		t.Fatal("nothing expected: want satisfied")
	}
	e.expectAdds("a", 2)
	e.expectDelete("a", "p1")
	for i, step := range []func(){func() { e.observeAdd("a") }, func() { e.observeAdd("a") }, func() { e.observeDelete("a", "p2") }} {
		step()
		if e.satisfied("a") {
			t.Fatalf("after step %d: satisfied with a delete outstanding", i)
		}
	}
	e.observeDelete("a", "p1")
	if !e.satisfied("a") {
		t.Fatal("all observed: want satisfied")
	}
	e.expectAdds("b", 1)
	now = now.Add(expectationsTTL + time.Second)
	if !e.satisfied("b") {
		t.Fatal("expectations older than their TTL: want satisfied")
	}
}
