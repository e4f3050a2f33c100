package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/paddock-dev/paddock/core/agent/streams"
	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// The agent resolves the stream server's requests (logs, exec) to
// containers in its runtimes.
var _ streams.PreviousResolver = (*Agent)(nil)

// Resolve returns the newest instance of a pod's container.
func (a *Agent) Resolve(ctx context.Context, tenant, pod, container string) (streams.Target, error) {
	return a.resolve(ctx, tenant, pod, container, 0)
}

// ResolvePrevious returns the instance before the newest, for the logs
// of a container that restarted.
func (a *Agent) ResolvePrevious(ctx context.Context, tenant, pod, container string) (streams.Target, error) {
	return a.resolve(ctx, tenant, pod, container, 1)
}

func (a *Agent) resolve(ctx context.Context, tenant, name, container string, back int) (streams.Target, error) {
	o, ok := a.pods.Get(tenant + "/" + name)
	if !ok {
		return streams.Target{}, errdefs.New(errdefs.ErrNotFound, fmt.Sprintf("pod %q of tenant %q does not run on node %s", name, tenant, a.cfg.NodeName))
	}
	pod := o.(*api.Pod)
	if container == "" {
		if len(pod.Spec.Containers) != 1 {
			var names []string
			for _, c := range pod.Spec.Containers {
				names = append(names, c.Name)
			}
			return streams.Target{}, errdefs.Field(errdefs.ErrBadRequest, "container", fmt.Sprintf("pod %q has %d containers: name one of %s", name, len(names), strings.Join(names, ", ")))
		}
		container = pod.Spec.Containers[0].Name
	}
	_, rc, _, err := a.runtimeFor(pod)
	if err != nil {
		return streams.Target{}, err
	}
	found, err := a.sandboxesOf(ctx, tenant, name)
	if err != nil {
		return streams.Target{}, err
	}
	var newest []*runtimev1.Container
	for _, f := range found {
		if f.sb.GetConfig().GetUid() != pod.Metadata.UID {
			continue
		}
		resp, err := f.rc.ListContainers(ctx, &runtimev1.ListContainersRequest{SandboxId: f.sb.Id})
		if err != nil {
			return streams.Target{}, err
		}
		newest = append(newest, groupContainers(resp.Containers)[container]...)
	}
	sortNewestFirst(newest)
	if len(newest) <= back {
		what := "has not started yet"
		if back > 0 {
			what = "has not restarted: there is no previous instance"
		}
		return streams.Target{}, errdefs.New(errdefs.ErrFailedPrecondition, fmt.Sprintf("container %s of pod %s %s", container, name, what))
	}
	return streams.Target{Runtime: rc, ContainerID: newest[back].Id}, nil
}
