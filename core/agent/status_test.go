package agent

import (
	"testing"

	"github.com/paddock-dev/paddock/core/api"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// A container that has just exited is terminal only if its restart
// policy will not restart it: the phase must not turn Failed or
// Succeeded (which ends the pod for good) while a restart is due.
func TestPhaseOfExitedContainers(t *testing.T) {
	a := &Agent{}
	exited := func(code int32) map[string][]*runtimev1.Container {
		return map[string][]*runtimev1.Container{"c": {{
			Id:     "x",
			State:  runtimev1.ContainerState_CONTAINER_EXITED,
			Config: &runtimev1.ContainerConfig{Labels: map[string]string{labelContainer: "c", labelRestarts: "0"}},
			Exit:   &runtimev1.ExitStatus{ExitCode: code},
		}}}
	}
	for _, tc := range []struct {
		policy api.RestartPolicy
		code   int32
		want   api.PodPhase
	}{
		{api.RestartAlways, 0, api.PodRunning},
		{api.RestartAlways, 3, api.PodRunning},
		{api.RestartOnFailure, 3, api.PodRunning},
		{api.RestartOnFailure, 0, api.PodSucceeded},
		{api.RestartNever, 3, api.PodFailed},
		{api.RestartNever, 0, api.PodSucceeded},
	} {
		pod := &api.Pod{Spec: api.PodSpec{RestartPolicy: tc.policy, Containers: []api.Container{{Name: "c"}}}}
		st := &podState{waiting: map[string]*api.ContainerStateWaiting{}}
		if got := a.podStatus(pod, st, exited(tc.code)).Phase; got != tc.want {
			t.Errorf("policy %s, exit %d: phase %s, want %s", tc.policy, tc.code, got, tc.want)
		}
	}
}
