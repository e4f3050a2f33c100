package agent

import (
	"slices"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// Restart policies: OnFailure restarts a failing container with back-off
// (CrashLoopBackOff, last state kept); Never leaves a failed pod Failed;
// a container that exits 0 under OnFailure makes the pod Succeeded.
func TestRestartPolicies(t *testing.T) {
	h := newHarness(t)
	h.startAgent()

	crash := h.pod("crash", "sh", "-c", "echo boom; exit 3")
	crash.Spec.RestartPolicy = api.RestartOnFailure
	h.create(crash)
	sawBackOff := false
	p := h.waitPod("crash", "restarted twice", 60*time.Second, func(p *api.Pod) bool {
		if len(p.Status.ContainerStatuses) == 0 {
			return false
		}
		cs := p.Status.ContainerStatuses[0]
		if w := cs.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
			sawBackOff = true
		}
		return cs.RestartCount >= 2 && cs.LastTerminationState.Terminated != nil
	})
	cs := p.Status.ContainerStatuses[0]
	if last := cs.LastTerminationState.Terminated; last.ExitCode != 3 || last.Reason != "Error" {
		t.Errorf("last state = %+v, want exit 3 reason Error", last)
	}
	if p.Status.Phase != api.PodRunning {
		t.Errorf("phase of a restarting pod = %s, want Running", p.Status.Phase)
	}
	if !sawBackOff {
		t.Error("never saw the container waiting in CrashLoopBackOff between restarts")
	}
	if !slices.Contains(h.events("crash"), "BackOff") {
		t.Errorf("events %v, want a BackOff", h.events("crash"))
	}

	never := h.pod("never", "sh", "-c", "exit 7")
	never.Spec.RestartPolicy = api.RestartNever
	h.create(never)
	p = h.waitPod("never", "Failed", 60*time.Second, func(p *api.Pod) bool { return p.Status.Phase == api.PodFailed })
	if term := p.Status.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 7 || p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("Never: %s, want terminated exit 7 and no restart", statusLine(p, nil))
	}

	ok := h.pod("ok", "true")
	ok.Spec.RestartPolicy = api.RestartOnFailure
	h.create(ok)
	p = h.waitPod("ok", "Succeeded", 60*time.Second, func(p *api.Pod) bool { return p.Status.Phase == api.PodSucceeded })
	if term := p.Status.ContainerStatuses[0].State.Terminated; term == nil || term.Reason != "Completed" {
		t.Errorf("OnFailure exit 0: %s, want Completed", statusLine(p, nil))
	}
}

// An agent that restarts finds its running containers — same ids, same
// pids, not restarted — and removes the sandbox of a pod deleted while
// it was down.
func TestAgentRestartKeepsContainers(t *testing.T) {
	h := newHarness(t)
	h.startAgent()
	h.create(h.pod("keep", "sleep", "3600"))
	h.create(h.pod("gone", "sleep", "3600"))
	p := h.waitPod("keep", "running", 60*time.Second, running)
	h.waitPod("gone", "running", 60*time.Second, running)
	id := p.Status.ContainerStatuses[0].ContainerID
	pid := h.container(id).Pid

	h.stopAgent()
	// Removed at once while the agent is down (as an operator's --force).
	zero := int64(0)
	if _, err := h.admin.DeleteWith(t.Context(), podKind, h.tenant, "gone", deleteNow(zero)); err != nil {
		t.Fatal(err)
	}
	h.startAgent()
	deadline := time.Now().Add(30 * time.Second)
	for len(h.sandboxes()) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sandboxes after the restart, want 1 (the deleted pod's removed)", len(h.sandboxes()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	c := h.container(id)
	if c.State != runtimev1.ContainerState_CONTAINER_RUNNING || c.Pid != pid {
		t.Errorf("after the agent restarted: container %s is %v pid %d, want running pid %d", id, c.State, c.Pid, pid)
	}
	// A few syncs later it is still the same container, not restarted.
	time.Sleep(3 * h.cfg.ResyncInterval / 2)
	p = h.waitPod("keep", "running", 10*time.Second, running)
	if got := p.Status.ContainerStatuses[0]; got.ContainerID != id || got.RestartCount != 0 {
		t.Errorf("after the agent restarted: container %s restarts %d, want %s and 0", got.ContainerID, got.RestartCount, id)
	}
}
