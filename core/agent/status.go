package agent

import (
	"context"
	"encoding/json"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// writeStatus computes the pod's status from what the runtime reports
// and what the agent knows, and writes it if it changed.
func (a *Agent) writeStatus(ctx context.Context, pod *api.Pod, st *podState, byName map[string][]*runtimev1.Container) error {
	status := a.podStatus(pod, st, byName)
	keepTransitions(&status, &pod.Status)
	if sameStatus(&status, &pod.Status) {
		return nil
	}
	for attempt := 0; ; attempt++ {
		next := *pod
		next.Status = status
		_, err := a.c.UpdateStatus(ctx, &next)
		if errdefs.IsConflict(err) && attempt < 3 {
			o, gerr := a.c.Get(ctx, podKind, pod.Metadata.Tenant, pod.Metadata.Name)
			if gerr != nil {
				return gerr
			}
			pod = o.(*api.Pod)
			if pod.Metadata.UID != st.uid {
				return nil // replaced meanwhile; the next sync sees it
			}
			continue
		}
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
}

// podStatus is the pod's status now.
func (a *Agent) podStatus(pod *api.Pod, st *podState, byName map[string][]*runtimev1.Container) api.PodStatus {
	s := api.PodStatus{HostIP: a.nodeIP, PodIP: pod.Status.PodIP, StartTime: st.startTime}
	if st.podIP != "" {
		s.PodIP = st.podIP
	}
	var neverRan, running, restarting, failed int
	allReady := true
	for i := range pod.Spec.Containers {
		spec := &pod.Spec.Containers[i]
		cs := a.containerStatus(st, spec, byName[spec.Name])
		term := cs.State.Terminated
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Waiting != nil && cs.LastTerminationState.Terminated != nil:
			restarting++
		case cs.State.Waiting != nil:
			neverRan++
		case term != nil && shouldRestart(pod.Spec.RestartPolicy, &runtimev1.ExitStatus{ExitCode: term.ExitCode, Signal: term.Signal}):
			// Exited a moment ago and about to restart: not the end.
			restarting++
		case term != nil && (term.ExitCode != 0 || term.Signal != 0):
			failed++
		}
		allReady = allReady && cs.Ready
		s.ContainerStatuses = append(s.ContainerStatuses, cs)
	}
	switch {
	case neverRan > 0:
		s.Phase = api.PodPending
		if st.podWaiting != nil {
			s.Reason, s.Message = st.podWaiting.Reason, st.podWaiting.Message
		}
	case running > 0 || restarting > 0:
		s.Phase = api.PodRunning
	case failed > 0:
		s.Phase = api.PodFailed
	default:
		s.Phase = api.PodSucceeded
	}
	ready := boolStatus(allReady && s.Phase == api.PodRunning)
	s.Conditions = []api.Condition{
		{Type: "PodScheduled", Status: "True"},
		{Type: "Initialized", Status: "True"},
		{Type: "ContainersReady", Status: ready},
		{Type: "Ready", Status: ready},
	}
	return s
}

// containerStatus is one container's status; list is its containers in
// the runtime, newest first.
func (a *Agent) containerStatus(st *podState, spec *api.Container, list []*runtimev1.Container) api.ContainerStatus {
	cs := api.ContainerStatus{Name: spec.Name, Image: spec.Image}
	if len(list) == 0 {
		w := st.waiting[spec.Name]
		if w == nil {
			w = st.podWaiting
		}
		if w == nil {
			w = &api.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
		cs.State.Waiting = w
		return cs
	}
	latest := list[0]
	cs.RestartCount = int32(restartsOf(latest))
	cs.ContainerID = latest.Id
	cs.ImageID = latest.ImageDigest
	switch latest.State {
	case runtimev1.ContainerState_CONTAINER_RUNNING:
		cs.State.Running = &api.ContainerStateRunning{StartedAt: nanoTime(latest.StartedAt)}
		cs.Ready = st.ready(latest.Id, spec)
		if len(list) > 1 {
			cs.LastTerminationState.Terminated = terminated(list[1])
		} else {
			cs.LastTerminationState.Terminated = st.lastTerminated[spec.Name]
		}
	case runtimev1.ContainerState_CONTAINER_CREATED:
		cs.State.Waiting = &api.ContainerStateWaiting{Reason: "ContainerCreating"}
	default:
		term := terminated(latest)
		if w := st.waiting[spec.Name]; w != nil {
			cs.State.Waiting, cs.LastTerminationState.Terminated = w, term
		} else {
			cs.State.Terminated = term
		}
	}
	return cs
}

// terminated is how a container ended.
func terminated(c *runtimev1.Container) *api.ContainerStateTerminated {
	e := c.GetExit()
	t := &api.ContainerStateTerminated{
		ExitCode:   e.GetExitCode(),
		Signal:     e.GetSignal(),
		Reason:     e.GetReason(),
		Message:    e.GetMessage(),
		StartedAt:  nanoTime(c.StartedAt),
		FinishedAt: nanoTime(e.GetFinishedAt()),
	}
	switch {
	case e.GetOomKilled():
		t.Reason = "OOMKilled"
	case t.Reason != "":
	case t.ExitCode == 0 && t.Signal == 0:
		t.Reason = "Completed"
	default:
		t.Reason = "Error"
	}
	return t
}

func nanoTime(ns int64) *api.Time {
	if ns == 0 {
		return nil
	}
	return api.NewTime(time.Unix(0, ns))
}

func boolStatus(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// keepTransitions carries over when each condition last changed, and
// stamps the ones that change now.
func keepTransitions(next, prev *api.PodStatus) {
	now := api.NewTime(time.Now())
	for i := range next.Conditions {
		c := &next.Conditions[i]
		c.LastTransitionTime = now
		for _, p := range prev.Conditions {
			if p.Type == c.Type && p.Status == c.Status {
				c.LastTransitionTime = p.LastTransitionTime
			}
		}
	}
}

// sameStatus compares two statuses as they would be stored.
func sameStatus(x, y *api.PodStatus) bool {
	bx, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return string(bx) == string(by)
}
