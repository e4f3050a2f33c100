package agent

import (
	"errors"
	"testing"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
	"google.golang.org/protobuf/proto"
)

// A pod's sandbox carries the node's per-pod pids limit whatever its
// containers ask for, and cpu and memory only when every container
// limits them.
func TestPodResources(t *testing.T) {
	limits := func(cpu, mem string) api.Container {
		l := api.ResourceList{}
		if cpu != "" {
			l[api.ResourceCPU] = api.MustParseQuantity(cpu)
		}
		if mem != "" {
			l[api.ResourceMemory] = api.MustParseQuantity(mem)
		}
		return api.Container{Name: "c", Resources: api.ResourceRequirements{Limits: l}}
	}
	for _, tc := range []struct {
		name       string
		containers []api.Container
		pids       int64
		want       *runtimev1.Resources
	}{
		{"no limits, node pids limit", []api.Container{limits("", "")}, 1024, &runtimev1.Resources{Pids: 1024}},
		{"no pids limit", []api.Container{limits("500m", "32Mi")}, 0, &runtimev1.Resources{CpuMillis: 500, MemoryBytes: 32 << 20}},
		{"sums of every container", []api.Container{limits("500m", "32Mi"), limits("250m", "16Mi")}, 128, &runtimev1.Resources{CpuMillis: 750, MemoryBytes: 48 << 20, Pids: 128}},
		{"one container unlimited", []api.Container{limits("500m", "32Mi"), limits("", "16Mi")}, 128, &runtimev1.Resources{MemoryBytes: 48 << 20, Pids: 128}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &api.Pod{Spec: api.PodSpec{Containers: tc.containers}}
			if got := podResources(pod, tc.pids); !proto.Equal(got, tc.want) {
				t.Errorf("podResources(pod, %d) = %v, want %v", tc.pids, got, tc.want)
			}
		})
	}
}

// A negative pids limit is refused naming the flag; 0 means none.
func TestPodPidsLimitValidation(t *testing.T) {
	for _, tc := range []struct {
		limit int64
		ok    bool
	}{{-1, false}, {0, true}, {1024, true}} {
		cfg := Config{NodeName: "n1", DataDir: t.TempDir(), Runtimes: []RuntimePlugin{{Name: "runc", Path: "/p"}}, PodPidsLimit: tc.limit}
		err := cfg.setDefaults()
		switch {
		case tc.ok && err != nil:
			t.Errorf("PodPidsLimit %d: %v", tc.limit, err)
		case !tc.ok && (!errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != "pod-pids-limit"):
			t.Errorf("PodPidsLimit %d: error %v (field %q), want invalid argument on pod-pids-limit", tc.limit, err, errdefs.FieldOf(err))
		case tc.ok && cfg.PodPidsLimit != tc.limit:
			t.Errorf("PodPidsLimit %d became %d", tc.limit, cfg.PodPidsLimit)
		}
	}
}

// A pod whose sandbox died is done when every container ran and its
// restart policy restarts none of them; otherwise it runs again.
func TestPodDone(t *testing.T) {
	exited := func(code int32, oom bool) []*runtimev1.Container {
		return []*runtimev1.Container{{State: runtimev1.ContainerState_CONTAINER_EXITED, Exit: &runtimev1.ExitStatus{ExitCode: code, OomKilled: oom}}}
	}
	running := []*runtimev1.Container{{State: runtimev1.ContainerState_CONTAINER_RUNNING}}
	pod := func(policy api.RestartPolicy) *api.Pod {
		return &api.Pod{Spec: api.PodSpec{RestartPolicy: policy, Containers: []api.Container{{Name: "a"}, {Name: "b"}}}}
	}
	for _, tc := range []struct {
		policy api.RestartPolicy
		cs     map[string][]*runtimev1.Container
		want   bool
	}{
		{api.RestartNever, map[string][]*runtimev1.Container{"a": exited(137, true), "b": exited(0, false)}, true},
		{api.RestartNever, map[string][]*runtimev1.Container{"a": exited(137, true)}, false}, // b never ran
		{api.RestartNever, map[string][]*runtimev1.Container{"a": exited(137, true), "b": running}, false},
		{api.RestartOnFailure, map[string][]*runtimev1.Container{"a": exited(0, false), "b": exited(0, false)}, true},
		{api.RestartOnFailure, map[string][]*runtimev1.Container{"a": exited(137, true), "b": exited(0, false)}, false},
		{api.RestartAlways, map[string][]*runtimev1.Container{"a": exited(0, false), "b": exited(0, false)}, false},
	} {
		if got := podDone(pod(tc.policy), tc.cs); got != tc.want {
			t.Errorf("podDone(%s, %d containers) = %v, want %v", tc.policy, len(tc.cs), got, tc.want)
		}
	}
	if superseded(pod(api.RestartAlways), map[string][]*runtimev1.Container{"a": running}) {
		t.Error("superseded with container b not run yet")
	}
	if !superseded(pod(api.RestartAlways), map[string][]*runtimev1.Container{"a": running, "b": running}) {
		t.Error("not superseded with both containers running")
	}
}
