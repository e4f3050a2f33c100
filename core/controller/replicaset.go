package controller

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// replicaSetController keeps spec.replicas active pods of each replica
// set: it adopts orphans its selector matches, creates pods from the
// template (named RSNAME-xxxxx) and deletes the surplus, least useful
// first, and reports the counts in the status.
type replicaSetController struct {
	c      *client.Client
	rsInf  *client.Informer
	podInf *client.Informer
	ctl    *Controller
	exp    *expectations
	log    *slog.Logger
	now    func() time.Time
}

func newReplicaSetController(c *client.Client, inf *Informers, workers int, log *slog.Logger) *replicaSetController {
	r := &replicaSetController{
		c: c, rsInf: inf.For(rsKind), podInf: inf.For(podKind),
		exp: newExpectations(), log: log.With("controller", "replicaset"), now: time.Now,
	}
	r.ctl = New("replicaset", workers, log, r.reconcile)
	r.rsInf.AddHandler(r.ctl.ObjectHandler())
	r.podInf.AddHandler(client.Handler{
		OnAdd: func(o api.Object) {
			if key, ok := ownerKey(o, rsKind); ok {
				r.exp.observeAdd(key)
			}
			r.enqueueFor(o)
		},
		OnUpdate: func(old, o api.Object) {
			if p := o.(*api.Pod); p.Metadata.DeletionTimestamp != nil && old.(*api.Pod).Metadata.DeletionTimestamp == nil {
				if key, ok := ownerKey(o, rsKind); ok {
					r.exp.observeDelete(key, p.Metadata.Name)
				}
			}
			r.enqueueFor(old)
			r.enqueueFor(o)
		},
		OnDelete: func(o api.Object) {
			if key, ok := ownerKey(o, rsKind); ok {
				r.exp.observeDelete(key, o.GetObjectMeta().Name)
			}
			r.enqueueFor(o)
		},
	})
	return r
}

// Run implements the controller's lifecycle.
func (r *replicaSetController) Run(ctx context.Context) { r.ctl.Run(ctx) }

// enqueueFor queues the replica set that owns pod o or, for an orphan,
// every replica set of its tenant that selects it.
func (r *replicaSetController) enqueueFor(o api.Object) {
	if p := o.(*api.Pod); controllerRef(&p.Metadata) == nil && !podActive(p) {
		return // not worth adopting
	}
	enqueueController(r.ctl, o, rsKind, r.rsInf, func(x api.Object) *api.LabelSelector { return x.(*api.ReplicaSet).Spec.Selector })
}

func (r *replicaSetController) reconcile(ctx context.Context, key string) error {
	o, ok := r.rsInf.Get(key)
	if !ok {
		r.exp.forget(key)
		return nil
	}
	rs := o.(*api.ReplicaSet)
	pods, err := r.claimPods(ctx, rs)
	if err != nil {
		return err
	}
	var scaleErr error
	if r.exp.satisfied(key) {
		scaleErr = r.scale(ctx, key, rs, pods)
	}
	status, wait := replicaSetStatus(rs, pods, r.now())
	if wait > 0 {
		r.ctl.EnqueueAfter(key, wait)
	}
	if status != rs.Status {
		next := api.Clone(rs)
		next.Status = status
		if _, err := r.c.UpdateStatus(ctx, next); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	return scaleErr
}

// claimPods returns the active pods rs controls, adopting the orphans its
// selector matches.
func (r *replicaSetController) claimPods(ctx context.Context, rs *api.ReplicaSet) ([]*api.Pod, error) {
	var out []*api.Pod
	for _, x := range r.podInf.List() {
		p := x.(*api.Pod)
		if p.Metadata.Tenant != rs.Metadata.Tenant || !podActive(p) {
			continue
		}
		ref := controllerRef(&p.Metadata)
		switch {
		case ref != nil && ref.UID == rs.Metadata.UID:
			out = append(out, p)
		case ref == nil && selects(rs.Spec.Selector, p.Metadata.Labels):
			adopted, err := adopt(ctx, r.c, p, rsKind, rs)
			if err != nil {
				return nil, err
			}
			if adopted != nil {
				r.log.Info("adopted pod", "tenant", p.Metadata.Tenant, "replicaset", rs.Metadata.Name, "pod", p.Metadata.Name)
				out = append(out, adopted)
			}
		}
	}
	return out, nil
}

// scale creates or deletes pods so that rs has spec.replicas active ones.
func (r *replicaSetController) scale(ctx context.Context, key string, rs *api.ReplicaSet, pods []*api.Pod) error {
	want := int(*rs.Spec.Replicas)
	switch diff := len(pods) - want; {
	case diff < 0:
		r.exp.expectAdds(key, -diff)
		for i := range -diff {
			if err := r.createPod(ctx, rs); err != nil {
				for range -diff - i {
					r.exp.observeAdd(key)
				}
				return err
			}
		}
	case diff > 0:
		victims := slices.Clone(pods)
		slices.SortStableFunc(victims, deletionOrder)
		for _, p := range victims[:diff] {
			r.exp.expectDelete(key, p.Metadata.Name)
			if _, err := r.c.Delete(ctx, podKind, p.Metadata.Tenant, p.Metadata.Name); err != nil {
				r.exp.observeDelete(key, p.Metadata.Name)
				if !errdefs.IsNotFound(err) {
					return fmt.Errorf("delete pod %s/%s: %w", p.Metadata.Tenant, p.Metadata.Name, err)
				}
			}
			r.log.Info("deleted pod", "tenant", rs.Metadata.Tenant, "replicaset", rs.Metadata.Name, "pod", p.Metadata.Name)
		}
	}
	return nil
}

// createPod creates one pod from rs's template, retrying name clashes.
func (r *replicaSetController) createPod(ctx context.Context, rs *api.ReplicaSet) error {
	tmpl := api.Clone(rs).Spec.Template
	for attempt := 0; ; attempt++ {
		p := &api.Pod{
			TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Pod"},
			Metadata: api.ObjectMeta{
				Name:            rs.Metadata.Name + "-" + randomSuffix(),
				Tenant:          rs.Metadata.Tenant,
				Labels:          tmpl.Metadata.Labels,
				Annotations:     tmpl.Metadata.Annotations,
				OwnerReferences: []api.OwnerReference{ownerRefTo(rsKind, rs)},
			},
			Spec: tmpl.Spec,
		}
		_, err := r.c.Create(ctx, p)
		if errdefs.IsAlreadyExists(err) && attempt < 5 {
			continue
		}
		if err != nil {
			return fmt.Errorf("create pod for replica set %s/%s: %w", rs.Metadata.Tenant, rs.Metadata.Name, err)
		}
		r.log.Info("created pod", "tenant", rs.Metadata.Tenant, "replicaset", rs.Metadata.Name, "pod", p.Metadata.Name)
		return nil
	}
}

// suffixAlphabet avoids vowels (no words) and look-alike characters, as
// Kubernetes' generated names do.
const suffixAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// randomSuffix returns five random characters of suffixAlphabet.
func randomSuffix() string {
	b := make([]byte, 5)
	rand.Read(b)
	for i := range b {
		b[i] = suffixAlphabet[int(b[i])%len(suffixAlphabet)]
	}
	return string(b)
}

// deletionOrder sorts the pods a scale-down deletes first to the front:
// unscheduled before scheduled, pending before running, not ready before
// ready, newer before older.
func deletionOrder(a, b *api.Pod) int {
	rank := func(p *api.Pod) []int {
		r := make([]int, 3)
		if p.Spec.NodeName != "" {
			r[0] = 1
		}
		switch p.Status.Phase {
		case api.PodPending, "":
			r[1] = 0
		case api.PodUnknown:
			r[1] = 1
		default:
			r[1] = 2
		}
		if podReady(p) {
			r[2] = 1
		}
		return r
	}
	if c := slices.Compare(rank(a), rank(b)); c != 0 {
		return c
	}
	return timeOf(b.Metadata.CreationTimestamp).Compare(timeOf(a.Metadata.CreationTimestamp))
}

func timeOf(t *api.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

// replicaSetStatus counts rs's active pods; wait, when positive, is when
// a ready pod becomes available.
func replicaSetStatus(rs *api.ReplicaSet, pods []*api.Pod, now time.Time) (api.ReplicaSetStatus, time.Duration) {
	s := api.ReplicaSetStatus{ObservedGeneration: rs.Metadata.Generation, Replicas: int32(len(pods))}
	minReady := time.Duration(rs.Spec.MinReadySeconds) * time.Second
	var wait time.Duration
	for _, p := range pods {
		if selects(&api.LabelSelector{MatchLabels: rs.Spec.Template.Metadata.Labels}, p.Metadata.Labels) || len(rs.Spec.Template.Metadata.Labels) == 0 {
			s.FullyLabeledReplicas++
		}
		if podReady(p) {
			s.ReadyReplicas++
		}
		ok, w := podAvailable(p, minReady, now)
		if ok {
			s.AvailableReplicas++
		} else if w > 0 && (wait == 0 || w < wait) {
			wait = w
		}
	}
	return s, wait
}
