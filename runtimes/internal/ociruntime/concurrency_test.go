package ociruntime

import (
	"fmt"
	"sync"
	"testing"

	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// RT-ID-004: 50 goroutines create, start, stop and remove 50 containers
// across 5 sandboxes while others list and inspect; every call succeeds
// and nothing is left.
func TestConcurrentLifecycles(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := t.Context()
	var sandboxes []string
	for i := range 5 {
		sandboxes = append(sandboxes, h.sandbox(&runtimev1.SandboxConfig{Name: fmt.Sprintf("pod-%d", i)}).Id)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 50 {
		wg.Go(func() {
			sb := sandboxes[i%5]
			resp, err := h.p.CreateContainer(ctx, &runtimev1.CreateContainerRequest{SandboxId: sb, Config: &runtimev1.ContainerConfig{
				Name: fmt.Sprintf("c-%d", i), Image: "busybox", Command: []string{"sleep", "1000"}}})
			if err != nil {
				errs <- fmt.Errorf("create %d: %w", i, err)
				return
			}
			id := resp.Container.Id
			if _, err := h.p.StartContainer(ctx, &runtimev1.StartContainerRequest{Id: id}); err != nil {
				errs <- fmt.Errorf("start %d: %w", i, err)
			}
			if _, err := h.p.ListContainers(ctx, &runtimev1.ListContainersRequest{SandboxId: sb}); err != nil {
				errs <- fmt.Errorf("list %d: %w", i, err)
			}
			if c, err := h.p.InspectContainer(ctx, &runtimev1.InspectContainerRequest{Id: id}); err != nil || c.State != runtimev1.ContainerState_CONTAINER_RUNNING {
				errs <- fmt.Errorf("inspect %d: %v, %w", i, c.GetState(), err)
			}
			if _, err := h.p.StopContainer(ctx, &runtimev1.StopContainerRequest{Id: id}); err != nil {
				errs <- fmt.Errorf("stop %d: %w", i, err)
			}
			if _, err := h.p.RemoveContainer(ctx, &runtimev1.RemoveContainerRequest{Id: id}); err != nil {
				errs <- fmt.Errorf("remove %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := h.p.ListContainers(ctx, &runtimev1.ListContainersRequest{})
	if err != nil || len(list.Containers) != 0 {
		t.Errorf("ListContainers at the end = %v, %v; want none", list.GetContainers(), err)
	}
}
