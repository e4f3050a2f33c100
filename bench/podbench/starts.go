package podbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddock-dev/paddock/bench/runtimebench"
	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

var podKind, _ = api.KindFor("pods")

// podStart is one pod's start.
type podStart struct {
	Name string
	// Create is the Create call's own round trip, before the timed
	// window.
	Create time.Duration
	// Bound and Running are when the watch showed the pod bound to the
	// node and Running with its container running, from the Create
	// call's return. Bound is zero if the binding came first.
	Bound, Running time.Duration
	// At is the wall-clock time Running was seen.
	At time.Time
}

// podPhase is one phase's pod starts.
type podPhase struct {
	Concurrency int
	Starts      []podStart
	// Elapsed is, for the concurrent phase, from the first Create call
	// to the last pod seen Running; for the sequential one, the sum of
	// the starts.
	Elapsed time.Duration
}

// Rate is the phase's starts per second.
func (p *podPhase) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(len(p.Starts)) / p.Elapsed.Seconds()
}

// track is what the watch saw of one pod a start waits for.
type track struct {
	bound, running time.Time
	last           *api.Pod // the latest event's object
	err            error    // why it will not run
	done           chan struct{}
}

// bench starts pods on the cluster and floor containers. The watch's
// reader fills in the tracks of the pods being started.
type bench struct {
	cfg   Config
	c     *cluster
	floor *runtimebench.Floor
	log   *slog.Logger

	watch   *client.Watcher
	watched chan struct{} // closed when the watch's reader returns

	mu       sync.Mutex
	tracks   map[string]*track // by pod name
	watchErr error             // why the watch ended
}

// openWatch opens the one watch on the tenant's pods, from the
// resourceVersion of a list, on a connection of its own.
func (b *bench) openWatch(ctx context.Context) error {
	list, err := b.c.cp.Admin.List(ctx, podKind, tenant, client.ListOptions{Limit: 1})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	wc, err := client.New(b.c.cp.AdminConfig)
	if err != nil {
		return err
	}
	if b.watch, err = wc.Watch(ctx, podKind, tenant, client.WatchOptions{ResourceVersion: list.Metadata.ResourceVersion}); err != nil {
		return fmt.Errorf("watch pods: %w", err)
	}
	b.tracks, b.watched = map[string]*track{}, make(chan struct{})
	go b.readWatch()
	return nil
}

// closeWatch stops the watch and waits for its reader.
func (b *bench) closeWatch() {
	if b.watch != nil {
		b.watch.Stop()
		<-b.watched
	}
}

// readWatch takes each event's arrival time and fills in its pod's track
// until the watch ends; then every start still waiting fails.
func (b *bench) readWatch() {
	defer close(b.watched)
	for ev := range b.watch.Events() {
		now := time.Now()
		if ev.Type == api.Error {
			b.mu.Lock()
			b.watchErr = fmt.Errorf("the pods' watch ended with an error event: %+v", ev.Object)
			b.mu.Unlock()
			break
		}
		pod, ok := ev.Object.(*api.Pod)
		if !ok {
			continue
		}
		b.mu.Lock()
		if t := b.tracks[pod.Metadata.Name]; t != nil && t.err == nil && t.running.IsZero() {
			t.last = pod
			if t.bound.IsZero() && pod.Spec.NodeName != "" {
				t.bound = now
			}
			switch {
			case ev.Type == api.Deleted:
				t.err = errors.New("deleted before it ran")
				close(t.done)
			case api.PodFinished(pod):
				t.err = fmt.Errorf("finished (%s) before it was seen running", pod.Status.Phase)
				close(t.done)
			case running(pod):
				t.running = now
				close(t.done)
			}
		}
		b.mu.Unlock()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.watchErr == nil {
		b.watchErr = errors.Join(errors.New("the pods' watch ended"), b.watch.Err())
	}
	for _, t := range b.tracks {
		if t.err == nil && t.running.IsZero() {
			t.err = b.watchErr
			close(t.done)
		}
	}
}

// running says whether the pod is Running with every container running.
func running(p *api.Pod) bool {
	if p.Status.Phase != api.PodRunning || len(p.Status.ContainerStatuses) != len(p.Spec.Containers) {
		return false
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running == nil {
			return false
		}
	}
	return true
}

// pod is the pod every start creates: `sleep 3600` in the image, left to
// the scheduler to place.
func (b *bench) pod(name string) *api.Pod {
	return &api.Pod{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Pod"},
		Metadata: api.ObjectMeta{Name: name, Tenant: tenant},
		Spec: api.PodSpec{
			Containers: []api.Container{{Name: "main", Image: b.cfg.Image, Command: []string{"sleep", "3600"}}},
		},
	}
}

// startPod creates the pod name and waits until the watch shows it
// running.
func (b *bench) startPod(ctx context.Context, name string) (podStart, error) {
	t := &track{done: make(chan struct{})}
	b.mu.Lock()
	if b.watchErr != nil {
		defer b.mu.Unlock()
		return podStart{}, b.watchErr
	}
	b.tracks[name] = t
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.tracks, name)
		b.mu.Unlock()
	}()

	t0 := time.Now()
	if _, err := b.c.cp.Admin.Create(ctx, b.pod(name)); err != nil {
		return podStart{}, fmt.Errorf("create pod %s: %w", name, err)
	}
	created := time.Now()
	timer := time.NewTimer(b.cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-t.done:
	case <-timer.C:
		b.mu.Lock()
		defer b.mu.Unlock()
		return podStart{}, fmt.Errorf("pod %s: not seen running %v after its creation; last seen: %s", name, b.cfg.StartTimeout, describe(t.last))
	case <-ctx.Done():
		return podStart{}, ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.err != nil {
		return podStart{}, fmt.Errorf("pod %s: %w; last seen: %s", name, t.err, describe(t.last))
	}
	return podStart{
		Name:    name,
		Create:  created.Sub(t0),
		Bound:   max(0, t.bound.Sub(created)),
		Running: t.running.Sub(created),
		At:      t.running,
	}, nil
}

// describe says what the watch last showed of a pod, for an error.
func describe(p *api.Pod) string {
	if p == nil {
		return "nothing"
	}
	s := fmt.Sprintf("node %q, phase %q", p.Spec.NodeName, p.Status.Phase)
	if p.Status.Reason != "" {
		s += fmt.Sprintf(", reason %s: %s", p.Status.Reason, p.Status.Message)
	}
	for _, c := range p.Status.ContainerStatuses {
		switch st := c.State; {
		case st.Waiting != nil:
			s += fmt.Sprintf("; container %s waiting: %s %s", c.Name, st.Waiting.Reason, st.Waiting.Message)
		case st.Terminated != nil:
			s += fmt.Sprintf("; container %s terminated: %s, exit code %d", c.Name, st.Terminated.Reason, st.Terminated.ExitCode)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Status != "True" {
			s += fmt.Sprintf("; condition %s %s: %s %s", c.Type, c.Status, c.Reason, c.Message)
		}
	}
	return s
}

// deletePods deletes the pods at once (grace period 0: the API removes
// them without waiting for the node) and waits until the agent has
// removed their sandboxes, so that the next start finds the node idle.
func (b *bench) deletePods(ctx context.Context, names ...string) error {
	zero := int64(0)
	for _, name := range names {
		_, err := b.c.cp.Admin.DeleteWith(ctx, podKind, tenant, name, client.DeleteOptions{GracePeriodSeconds: &zero})
		if err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete pod %s: %w", name, err)
		}
	}
	deadline := time.Now().Add(b.cfg.StartTimeout)
	for {
		n, err := b.c.sandboxRecords()
		if err != nil || n == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the agent still has %d sandboxes %v after the pods were deleted", n, b.cfg.StartTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// sequential runs n rounds of one pod start and one floor start, which
// goes first alternating from round to round; each pod and container is
// removed, untimed, before the next start. Pod names and floor tags are
// prefix and the round.
func (b *bench) sequential(ctx context.Context, prefix string, n int) (*podPhase, []time.Duration, error) {
	pods := &podPhase{Concurrency: 1}
	var floor []time.Duration
	startPod := func(i int) error {
		name := fmt.Sprintf("%s-%d", prefix, i)
		s, err := b.startPod(ctx, name)
		if err != nil {
			return err
		}
		pods.Starts = append(pods.Starts, s)
		pods.Elapsed += s.Running
		return b.deletePods(ctx, name)
	}
	startFloor := func(i int) error {
		tag := fmt.Sprintf("f-%s%d", prefix, i)
		d, err := b.floor.Start(ctx, tag)
		if err != nil {
			return err
		}
		floor = append(floor, d)
		return b.floor.Remove(ctx, tag)
	}
	for i := range n {
		first, second := startPod, startFloor
		if i%2 == 1 {
			first, second = startFloor, startPod
		}
		if err := first(i); err != nil {
			return nil, nil, err
		}
		if err := second(i); err != nil {
			return nil, nil, err
		}
		if (i+1)%10 == 0 {
			b.log.Info("sequential starts", "done", i+1, "of", n)
		}
	}
	return pods, floor, nil
}

// concurrent starts n pods from c workers at once, each creating the next
// pod when its last one runs. The pods stay until the last has run; then
// all are deleted (untimed).
func (b *bench) concurrent(ctx context.Context, prefix string, n, c int) (*podPhase, error) {
	p := &podPhase{Concurrency: c, Starts: make([]podStart, n)}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	t0 := time.Now()
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || wctx.Err() != nil {
					return
				}
				s, err := b.startPod(wctx, names[i])
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					cancel()
					return
				}
				p.Starts[i] = s
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, s := range p.Starts {
		p.Elapsed = max(p.Elapsed, s.At.Sub(t0))
	}
	return p, b.deletePods(ctx, names...)
}
