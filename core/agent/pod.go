package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// Labels the agent puts on sandboxes and containers; they are how it
// finds its pods in what a runtime reports.
const (
	labelManaged   = "paddock.dev/managed"
	labelPodUID    = "paddock.dev/pod-uid"
	labelContainer = "paddock.dev/container"
	labelRestarts  = "paddock.dev/restart-count"
)

// orphanGrace is how long the containers of a pod that no longer exists
// (it was removed without waiting for this node) get to stop.
const orphanGrace = 2 * time.Second

var podKind, _ = api.KindFor("pods")

// found is a sandbox of a pod in one of the runtimes.
type found struct {
	plugin string
	rc     *runtimev1.Client
	sb     *runtimev1.Sandbox
}

func splitKey(key string) (tenant, name string) {
	tenant, name, _ = strings.Cut(key, "/")
	return tenant, name
}

// syncPod brings the runtime in line with the pod named key; see the
// package documentation. retry > 0 asks for another sync after it.
func (a *Agent) syncPod(ctx context.Context, key string) (retry time.Duration, err error) {
	tenant, name := splitKey(key)
	var pod *api.Pod
	if o, ok := a.pods.Get(key); ok {
		pod = o.(*api.Pod)
	}
	all, err := a.sandboxesOf(ctx, tenant, name)
	if err != nil {
		return 0, err
	}
	var mine []found
	for _, f := range all {
		if pod == nil || f.sb.GetConfig().GetUid() != pod.Metadata.UID {
			a.log.Info("removing the sandbox of a pod that is gone", "pod", key, "sandbox", f.sb.Id)
			if err := a.teardown(ctx, f, orphanGrace); err != nil {
				return 0, err
			}
			continue
		}
		mine = append(mine, f)
	}
	switch {
	case pod == nil:
		a.forget(key)
		return 0, nil
	case pod.Metadata.DeletionTimestamp != nil:
		return 0, a.terminate(ctx, key, pod, mine)
	case api.PodFinished(pod):
		// Its containers stay (for logs) until the pod is deleted.
		for _, f := range mine {
			if f.sb.State == runtimev1.SandboxState_SANDBOX_READY {
				if _, err := f.rc.StopSandbox(ctx, &runtimev1.StopSandboxRequest{Id: f.sb.Id}); err != nil {
					return 0, err
				}
			}
		}
		a.stateOf(key, pod.Metadata.UID).stopProbes()
		return 0, nil
	}
	return a.runPod(ctx, key, pod, mine)
}

// sandboxesOf lists the sandboxes of the pod tenant/name in every runtime.
func (a *Agent) sandboxesOf(ctx context.Context, tenant, name string) ([]found, error) {
	var out []found
	err := a.rt.each(func(plugin string, rc *runtimev1.Client) error {
		resp, err := rc.ListSandboxes(ctx, &runtimev1.ListSandboxesRequest{Labels: map[string]string{labelManaged: "true"}})
		if err != nil {
			return err
		}
		for _, sb := range resp.Sandboxes {
			if c := sb.GetConfig(); c != nil && c.Tenant == tenant && c.Name == name {
				out = append(out, found{plugin: plugin, rc: rc, sb: sb})
			}
		}
		return nil
	})
	return out, err
}

// teardown stops a sandbox's containers within grace, then removes the
// sandbox, its network namespace and its record.
func (a *Agent) teardown(ctx context.Context, f found, grace time.Duration) error {
	if err := a.stopContainers(ctx, f, grace); err != nil {
		return err
	}
	if _, err := f.rc.StopSandbox(ctx, &runtimev1.StopSandboxRequest{Id: f.sb.Id}); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", f.sb.Id, err)
	}
	if _, err := f.rc.RemoveSandbox(ctx, &runtimev1.RemoveSandboxRequest{Id: f.sb.Id}); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", f.sb.Id, err)
	}
	ns := a.netnsPath(f.sb.GetConfig().GetUid(), f.sb.GetConfig().GetAttempt())
	if r, ok := a.record(f.sb.Id); ok {
		if err := a.detachRecord(ctx, r); err != nil {
			return err
		}
		a.removeNetns(r.Netns)
	} else if err := a.detach(ctx, filepath.Base(ns), ns); err != nil {
		return err
	}
	a.removeNetns(ns)
	a.dropRecord(f.sb.Id)
	return nil
}

// stopContainers stops a sandbox's running containers at once, each
// with grace between its stop signal and SIGKILL.
func (a *Agent) stopContainers(ctx context.Context, f found, grace time.Duration) error {
	resp, err := f.rc.ListContainers(ctx, &runtimev1.ListContainersRequest{SandboxId: f.sb.Id})
	if err != nil {
		return err
	}
	secs := int64(math.Ceil(max(grace, 0).Seconds()))
	var wg sync.WaitGroup
	errs := make([]error, len(resp.Containers))
	for i, c := range resp.Containers {
		if c.State != runtimev1.ContainerState_CONTAINER_RUNNING {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.rc.StopContainer(ctx, &runtimev1.StopContainerRequest{Id: c.Id, TimeoutSeconds: secs}); err != nil {
				errs[i] = fmt.Errorf("stop container %s: %w", c.Id, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// terminate stops a pod being deleted within the grace period left, then
// finishes its deletion through the API.
func (a *Agent) terminate(ctx context.Context, key string, pod *api.Pod, mine []found) error {
	grace := 30 * time.Second
	if g := pod.Metadata.DeletionGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	left := time.Until(pod.Metadata.DeletionTimestamp.Add(grace))
	if len(mine) > 0 {
		a.events.pod(pod, "Normal", "Killing", fmt.Sprintf("Stopping the pod's containers (grace period %s)", left.Round(time.Second)))
	}
	for _, f := range mine {
		if err := a.teardown(ctx, f, left); err != nil {
			return err
		}
	}
	a.forget(key)
	tenant, name := splitKey(key)
	_, err := a.c.Delete(ctx, podKind, tenant, name)
	switch {
	case err == nil, errdefs.IsNotFound(err):
		return nil
	case errors.Is(err, errdefs.ErrPermissionDenied):
		// A node is told "not bound here" for a pod that is gone (or
		// another's): either way, not this node's to finish.
		return nil
	}
	return fmt.Errorf("finish deleting the pod: %w", err)
}

// runPod makes the pod's sandbox and containers run and writes its
// status.
func (a *Agent) runPod(ctx context.Context, key string, pod *api.Pod, mine []found) (time.Duration, error) {
	st := a.stateOf(key, pod.Metadata.UID)
	if st.startTime == nil {
		st.startTime = api.NewTime(time.Now())
		if pod.Status.StartTime != nil {
			st.startTime = pod.Status.StartTime
		}
	}
	plugin, rc, handler, err := a.runtimeFor(pod)
	if err != nil {
		st.podWaiting = &api.ContainerStateWaiting{Reason: "RuntimeUnavailable", Message: err.Error()}
		return 10 * time.Second, a.writeStatus(ctx, pod, st, nil)
	}
	st.podWaiting = nil
	var sb, prev *runtimev1.Sandbox
	attempt := uint32(0)
	for _, f := range mine {
		attempt = max(attempt, f.sb.GetConfig().GetAttempt()+1)
		if f.plugin != plugin {
			continue
		}
		newer := func(than *runtimev1.Sandbox) bool {
			return than == nil || f.sb.GetConfig().GetAttempt() > than.GetConfig().GetAttempt()
		}
		if f.sb.State == runtimev1.SandboxState_SANDBOX_READY && newer(sb) {
			sb = f.sb
		} else if f.sb.State != runtimev1.SandboxState_SANDBOX_READY && newer(prev) {
			prev = f.sb
		}
	}
	// A sandbox that died (a gVisor pod over its memory limit ends whole)
	// ran the pod's containers: how they ended decides, per restartPolicy,
	// whether the pod is done — then its dead sandbox stays, for the
	// status, until the pod is deleted — or runs again in a new sandbox,
	// restarts counted on from the old containers.
	var before map[string][]*runtimev1.Container
	if prev != nil {
		if resp, err := rc.ListContainers(ctx, &runtimev1.ListContainersRequest{SandboxId: prev.Id}); err == nil {
			before = groupContainers(resp.Containers)
			if sb == nil && podDone(pod, before) {
				sb = prev
			}
		}
	}
	for _, f := range mine {
		if before != nil && f.sb.Id == prev.Id {
			continue // until the new sandbox's containers supersede it
		}
		if sb == nil || f.sb.Id != sb.Id {
			a.log.Info("removing a sandbox that is not ready", "pod", key, "sandbox", f.sb.Id)
			if err := a.teardown(ctx, f, orphanGrace); err != nil {
				return 0, err
			}
		}
	}
	if sb == nil {
		if sb, err = a.createSandbox(ctx, pod, plugin, rc, handler, attempt); err != nil {
			reason := "CreatePodSandboxError"
			if a.net != nil && a.nodeNetworkReady() != nil {
				reason = "NetworkNotReady"
			} else {
				a.events.pod(pod, "Warning", "FailedCreatePodSandbox", err.Error())
			}
			st.podWaiting = &api.ContainerStateWaiting{Reason: reason, Message: err.Error()}
			a.writeStatus(ctx, pod, st, nil)
			return 0, err
		}
	}
	if st.sandboxID != sb.Id {
		st.sandboxID, st.podIP = sb.Id, ""
		if r, ok := a.record(sb.Id); ok && r.Attachment != nil {
			st.podIP = r.Attachment.IP
		}
	}
	resp, err := rc.ListContainers(ctx, &runtimev1.ListContainersRequest{SandboxId: sb.Id})
	if err != nil {
		return 0, err
	}
	byName := groupContainers(resp.Containers)
	var retry time.Duration
	for i := range pod.Spec.Containers {
		spec := &pod.Spec.Containers[i]
		existing := byName[spec.Name]
		if len(existing) == 0 {
			existing = before[spec.Name] // ran in the sandbox that died
		}
		r, err := a.syncContainer(ctx, key, pod, st, rc, sb, spec, existing)
		if err != nil {
			return 0, err
		}
		if r > 0 && (retry == 0 || r < retry) {
			retry = r
		}
	}
	if resp, err = rc.ListContainers(ctx, &runtimev1.ListContainersRequest{SandboxId: sb.Id}); err != nil {
		return 0, err
	}
	now := groupContainers(resp.Containers)
	if before != nil && sb.Id != prev.Id && !superseded(pod, now) {
		for name, list := range before {
			if len(now[name]) == 0 {
				now[name] = list // still waiting to run again: report how it ended
			}
		}
	} else if before != nil && sb.Id != prev.Id {
		for name, list := range before {
			st.lastTerminated[name] = terminated(list[0])
		}
		a.log.Info("removing a sandbox that is not ready", "pod", key, "sandbox", prev.Id)
		for _, f := range mine {
			if f.sb.Id == prev.Id {
				if err := a.teardown(ctx, f, orphanGrace); err != nil {
					return 0, err
				}
			}
		}
	}
	return retry, a.writeStatus(ctx, pod, st, now)
}

// superseded says whether every container of the pod has an instance in
// cs, so that those of a sandbox before are not needed any more.
func superseded(pod *api.Pod, cs map[string][]*runtimev1.Container) bool {
	for _, spec := range pod.Spec.Containers {
		if len(cs[spec.Name]) == 0 {
			return false
		}
	}
	return true
}

// groupContainers files containers by the pod container they run, newest
// (highest restart count) first.
func groupContainers(cs []*runtimev1.Container) map[string][]*runtimev1.Container {
	out := map[string][]*runtimev1.Container{}
	for _, c := range cs {
		name := c.GetConfig().GetLabels()[labelContainer]
		out[name] = append(out[name], c)
	}
	for _, list := range out {
		sortNewestFirst(list)
	}
	return out
}

// sortNewestFirst orders instances of one container by restart count,
// then creation, newest first.
func sortNewestFirst(list []*runtimev1.Container) {
	slices.SortFunc(list, func(x, y *runtimev1.Container) int {
		if d := restartsOf(y) - restartsOf(x); d != 0 {
			return d
		}
		return int(y.CreatedAt - x.CreatedAt)
	})
}

func restartsOf(c *runtimev1.Container) int {
	n, _ := strconv.Atoi(c.GetConfig().GetLabels()[labelRestarts])
	return n
}

// createSandbox makes the pod's network namespace and sandbox, and
// records the sandbox's handle.
func (a *Agent) createSandbox(ctx context.Context, pod *api.Pod, plugin string, rc *runtimev1.Client, handler string, attempt uint32) (*runtimev1.Sandbox, error) {
	ns := a.netnsPath(pod.Metadata.UID, attempt)
	a.removeNetns(ns) // left by a crash between making it and the sandbox
	if err := a.createNetns(ns); err != nil {
		return nil, err
	}
	at, err := a.attach(ctx, pod, ns)
	if err != nil {
		a.removeNetns(ns)
		return nil, err
	}
	hostname := pod.Spec.Hostname
	if hostname == "" {
		hostname = pod.Metadata.Name
	}
	cfg := &runtimev1.SandboxConfig{
		Name:      pod.Metadata.Name,
		Tenant:    pod.Metadata.Tenant,
		Uid:       pod.Metadata.UID,
		Attempt:   attempt,
		Hostname:  truncateLabel(hostname),
		NetnsPath: ns,
		Dns: &runtimev1.DNSConfig{
			Servers:  a.cfg.DNSServers,
			Searches: []string{pod.Metadata.Tenant + ".svc." + a.cfg.ClusterDomain, "svc." + a.cfg.ClusterDomain, a.cfg.ClusterDomain},
			Options:  []string{"ndots:5"},
		},
		Resources:   podResources(pod, a.cfg.PodPidsLimit),
		Labels:      map[string]string{labelManaged: "true", labelPodUID: pod.Metadata.UID},
		Annotations: map[string]string{"paddock.dev/node": a.cfg.NodeName},
		Handler:     handler,
	}
	resp, err := rc.CreateSandbox(ctx, &runtimev1.CreateSandboxRequest{Config: cfg})
	if err != nil {
		if derr := a.detach(ctx, filepath.Base(ns), ns); derr != nil {
			a.log.Warn("detach the network of a sandbox not made", "pod", pod.Metadata.Tenant+"/"+pod.Metadata.Name, "error", derr)
		}
		a.removeNetns(ns)
		return nil, fmt.Errorf("create sandbox: %w", err)
	}
	sb := resp.Sandbox
	rec := sandboxRecord{Plugin: plugin, ID: sb.Id, Handle: sb.Handle, Pod: pod.Metadata.Tenant + "/" + pod.Metadata.Name, UID: pod.Metadata.UID, Netns: ns, Attachment: at}
	if err := a.saveRecord(rec); err != nil {
		a.log.Warn("record sandbox", "sandbox", sb.Id, "error", err)
	}
	return sb, nil
}

// truncateLabel cuts a hostname to a DNS label's 63 characters.
func truncateLabel(s string) string {
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-.")
	}
	return s
}

// netnsPath is where the network namespace of a pod's sandbox attempt is
// bind-mounted.
func (a *Agent) netnsPath(uid string, attempt uint32) string {
	return filepath.Join(a.cfg.DataDir, "netns", fmt.Sprintf("%s-%d", uid, attempt))
}

// syncContainer makes one of the pod's containers run, or restarts it
// per restartPolicy once its back-off has passed. existing are its
// containers in the runtime, newest first.
func (a *Agent) syncContainer(ctx context.Context, key string, pod *api.Pod, st *podState, rc *runtimev1.Client, sb *runtimev1.Sandbox, spec *api.Container, existing []*runtimev1.Container) (time.Duration, error) {
	if len(existing) == 0 {
		return a.startContainer(ctx, key, pod, st, rc, sb, spec, 0)
	}
	latest := existing[0]
	switch latest.State {
	case runtimev1.ContainerState_CONTAINER_RUNNING:
		a.watchExit(ctx, rc, key, latest.Id)
		st.ensureProbes(a, key, pod, rc, spec, latest, a.netnsOf(sb))
		return 0, nil
	case runtimev1.ContainerState_CONTAINER_CREATED:
		// Created by an agent that stopped before starting it.
		if _, err := rc.StartContainer(ctx, &runtimev1.StartContainerRequest{Id: latest.Id}); err != nil {
			a.events.pod(pod, "Warning", "Failed", fmt.Sprintf("Error starting container %s: %v", spec.Name, err))
		}
		a.watchExit(ctx, rc, key, latest.Id)
		return 0, nil
	}
	st.stopProbe(latest.Id)
	if !shouldRestart(pod.Spec.RestartPolicy, latest.GetExit()) {
		return 0, nil
	}
	n := restartsOf(latest) + 1
	delay := a.cfg.RestartBackoff.delay(n)
	finished := time.Unix(0, latest.GetExit().GetFinishedAt())
	if latest.GetExit().GetFinishedAt() == 0 {
		finished = time.Now()
	}
	if wait := time.Until(finished.Add(delay)); wait > 0 {
		msg := fmt.Sprintf("back-off %s restarting failed container %s", delay.Round(time.Millisecond), spec.Name)
		if prev := st.waiting[spec.Name]; prev == nil || prev.Reason != "CrashLoopBackOff" {
			a.events.pod(pod, "Warning", "BackOff", "Back-off restarting failed container "+spec.Name)
		}
		st.waiting[spec.Name] = &api.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: msg}
		return wait, nil
	}
	// Keep the newest exited container (for logs --previous); remove the
	// older ones.
	for _, old := range existing[1:] {
		if _, err := rc.RemoveContainer(ctx, &runtimev1.RemoveContainerRequest{Id: old.Id, Force: true}); err != nil {
			return 0, fmt.Errorf("remove old container %s: %w", old.Id, err)
		}
	}
	return a.startContainer(ctx, key, pod, st, rc, sb, spec, n)
}

// podDone says whether every container of the pod ran (its newest
// instance in cs has exited) and its restart policy restarts none.
func podDone(pod *api.Pod, cs map[string][]*runtimev1.Container) bool {
	for _, spec := range pod.Spec.Containers {
		list := cs[spec.Name]
		if len(list) == 0 || list[0].State != runtimev1.ContainerState_CONTAINER_EXITED || shouldRestart(pod.Spec.RestartPolicy, list[0].GetExit()) {
			return false
		}
	}
	return true
}

// shouldRestart applies a restart policy to how a container ended.
func shouldRestart(policy api.RestartPolicy, exit *runtimev1.ExitStatus) bool {
	switch policy {
	case api.RestartNever:
		return false
	case api.RestartOnFailure:
		return exit == nil || exit.ExitCode != 0 || exit.Signal != 0
	}
	return true
}

// startContainer pulls the image if needed, then creates and starts the
// container as restart number restarts.
func (a *Agent) startContainer(ctx context.Context, key string, pod *api.Pod, st *podState, rc *runtimev1.Client, sb *runtimev1.Sandbox, spec *api.Container, restarts int) (time.Duration, error) {
	if retry, err := a.ensureImage(ctx, pod, st, rc, spec); err != nil || retry > 0 {
		return retry, err
	}
	cfg, err := a.containerConfig(ctx, pod, spec, restarts)
	if err != nil {
		st.waiting[spec.Name] = &api.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
		a.events.pod(pod, "Warning", "Failed", fmt.Sprintf("Error: %v", err))
		return a.cfg.RestartBackoff.Initial, nil
	}
	resp, err := rc.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: sb.Id, Config: cfg})
	if err != nil {
		st.waiting[spec.Name] = &api.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
		a.events.pod(pod, "Warning", "Failed", fmt.Sprintf("Error creating container %s: %v", spec.Name, err))
		return a.cfg.RestartBackoff.Initial, nil
	}
	delete(st.waiting, spec.Name)
	a.events.pod(pod, "Normal", "Created", "Created container "+spec.Name)
	id := resp.Container.Id
	if _, err := rc.StartContainer(ctx, &runtimev1.StartContainerRequest{Id: id}); err != nil {
		// The runtime reports it exited with reason StartError; the next
		// sync restarts it per restartPolicy, with back-off.
		a.events.pod(pod, "Warning", "Failed", fmt.Sprintf("Error starting container %s: %v", spec.Name, err))
		a.queue.Add(key)
		return 0, nil
	}
	a.events.pod(pod, "Normal", "Started", "Started container "+spec.Name)
	a.watchExit(ctx, rc, key, id)
	return 0, nil
}

// podResources is the pod's total limits, for its cgroup: cpu and memory
// are limited only if every container limits them; pids is the node's
// per-pod limit (0: none).
func podResources(pod *api.Pod, pids int64) *runtimev1.Resources {
	var cpu, mem int64
	cpuAll, memAll := true, true
	for _, c := range pod.Spec.Containers {
		if q, ok := c.Resources.Limits[api.ResourceCPU]; ok {
			cpu += q.MilliValue()
		} else {
			cpuAll = false
		}
		if q, ok := c.Resources.Limits[api.ResourceMemory]; ok {
			mem += q.Value()
		} else {
			memAll = false
		}
	}
	r := &runtimev1.Resources{Pids: pids}
	if cpuAll {
		r.CpuMillis = cpu
	}
	if memAll {
		r.MemoryBytes = mem
	}
	return r
}

// containerConfig is the runtime's view of a pod container.
func (a *Agent) containerConfig(ctx context.Context, pod *api.Pod, spec *api.Container, restarts int) (*runtimev1.ContainerConfig, error) {
	env, err := a.resolveEnv(ctx, pod, spec)
	if err != nil {
		return nil, err
	}
	res := &runtimev1.Resources{}
	if q, ok := spec.Resources.Limits[api.ResourceCPU]; ok {
		res.CpuMillis = q.MilliValue()
	}
	if q, ok := spec.Resources.Requests[api.ResourceCPU]; ok {
		res.CpuSharesMillis = q.MilliValue()
	}
	if q, ok := spec.Resources.Limits[api.ResourceMemory]; ok {
		res.MemoryBytes = q.Value()
	}
	return &runtimev1.ContainerConfig{
		Name:       fmt.Sprintf("%s-%d", spec.Name, restarts),
		Image:      spec.Image,
		Command:    spec.Command,
		Args:       spec.Args,
		Env:        env,
		WorkingDir: spec.WorkingDir,
		Resources:  res,
		Tty:        spec.TTY,
		Stdin:      spec.Stdin,
		Labels: map[string]string{
			labelManaged:   "true",
			labelPodUID:    pod.Metadata.UID,
			labelContainer: spec.Name,
			labelRestarts:  strconv.Itoa(restarts),
		},
	}, nil
}
