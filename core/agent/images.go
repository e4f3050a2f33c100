package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	runtimev1 "github.com/paddock-dev/paddock/plugins/runtime/v1"
)

// progressEvery is how often a long pull reports progress as an event.
const progressEvery = 5 * time.Second

// ensureImage makes sure the container's image is in the runtime, per
// its pull policy. A failed pull is retried with back-off; meanwhile the
// container waits with reason ErrImagePull, then ImagePullBackOff.
func (a *Agent) ensureImage(ctx context.Context, pod *api.Pod, st *podState, rc *runtimev1.Client, spec *api.Container) (time.Duration, error) {
	_, err := rc.ImageStatus(ctx, &runtimev1.ImageStatusRequest{Ref: spec.Image})
	present := err == nil
	if err != nil && !errdefs.IsNotFound(err) {
		return 0, fmt.Errorf("image status of %s: %w", spec.Image, err)
	}
	switch {
	case spec.ImagePullPolicy == api.PullNever && !present:
		msg := fmt.Sprintf("image %s is not present on node %s and imagePullPolicy is Never", spec.Image, a.cfg.NodeName)
		st.waiting[spec.Name] = &api.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: msg}
		a.events.pod(pod, "Warning", "ErrImageNeverPull", msg)
		return a.cfg.RestartBackoff.Initial, nil
	case present && spec.ImagePullPolicy != api.PullAlways:
		return 0, nil
	}
	if n := st.pullFailures[spec.Name]; n > 0 {
		if w := st.waiting[spec.Name]; w != nil && w.Reason == "ErrImagePull" {
			w.Reason = "ImagePullBackOff"
		}
		if wait := time.Until(st.lastPullFailure[spec.Name].Add(a.cfg.RestartBackoff.delay(n))); wait > 0 {
			return wait, nil
		}
	}
	st.waiting[spec.Name] = &api.ContainerStateWaiting{Reason: "ContainerCreating", Message: "pulling image " + spec.Image}
	a.events.pod(pod, "Normal", "Pulling", "Pulling image "+spec.Image)
	start := time.Now()
	img, err := a.pull(ctx, pod, rc, spec.Image)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		st.pullFailures[spec.Name]++
		st.lastPullFailure[spec.Name] = time.Now()
		msg := fmt.Sprintf("Failed to pull image %s: %v", spec.Image, err)
		st.waiting[spec.Name] = &api.ContainerStateWaiting{Reason: "ErrImagePull", Message: msg}
		a.events.pod(pod, "Warning", "Failed", msg)
		return a.cfg.RestartBackoff.delay(st.pullFailures[spec.Name]), nil
	}
	delete(st.pullFailures, spec.Name)
	a.events.pod(pod, "Normal", "Pulled", fmt.Sprintf("Successfully pulled image %s in %s (%s)", spec.Image, time.Since(start).Round(time.Millisecond), humanBytes(img.GetSize())))
	return 0, nil
}

// pull pulls ref through the runtime, reporting progress as pod events.
func (a *Agent) pull(ctx context.Context, pod *api.Pod, rc *runtimev1.Client, ref string) (*runtimev1.Image, error) {
	stream, err := rc.PullImage(ctx, &runtimev1.PullImageRequest{Ref: ref})
	if err != nil {
		return nil, err
	}
	type layer struct{ done, total int64 }
	layers := map[string]*layer{}
	last := time.Now()
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the runtime ended the pull without a result")
		}
		if err != nil {
			return nil, err
		}
		if p.Finished {
			return p.Image, nil
		}
		if p.Layer != "" {
			l := layers[p.Layer]
			if l == nil {
				l = &layer{}
				layers[p.Layer] = l
			}
			l.done, l.total = p.DoneBytes, p.TotalBytes
		}
		if time.Since(last) >= progressEvery {
			var done, total int64
			for _, l := range layers {
				done, total = done+l.done, total+l.total
			}
			a.events.pod(pod, "Normal", "Pulling", fmt.Sprintf("Pulling image %s: %s of %s (%d layers)", ref, humanBytes(done), humanBytes(total), len(layers)))
			last = time.Now()
		}
	}
}

// humanBytes renders n bytes as "12.3 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
