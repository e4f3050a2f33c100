package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// deploymentController rolls each deployment's template out through
// ReplicaSets: one per template hash, named DEPLOY-HASH. A rolling update
// scales the new ReplicaSet up and the old ones down within maxSurge and
// maxUnavailable; Recreate scales the old ones to zero and waits for
// their pods to be gone first. Old ReplicaSets at zero replicas beyond
// revisionHistoryLimit are deleted.
type deploymentController struct {
	c      *client.Client
	dInf   *client.Informer
	rsInf  *client.Informer
	podInf *client.Informer
	ctl    *Controller
	log    *slog.Logger
}

func newDeploymentController(c *client.Client, inf *Informers, workers int, log *slog.Logger) *deploymentController {
	d := &deploymentController{
		c: c, dInf: inf.For(deployKind), rsInf: inf.For(rsKind), podInf: inf.For(podKind),
		log: log.With("controller", "deployment"),
	}
	d.ctl = New("deployment", workers, log, d.reconcile)
	d.dInf.AddHandler(d.ctl.ObjectHandler())
	d.rsInf.AddHandler(client.Handler{
		OnAdd:    d.enqueueForRS,
		OnUpdate: func(old, o api.Object) { d.enqueueForRS(old); d.enqueueForRS(o) },
		OnDelete: d.enqueueForRS,
	})
	// Recreate waits for the old pods to be gone.
	d.podInf.AddHandler(client.Handler{OnDelete: func(o api.Object) {
		if key, ok := ownerKey(o, rsKind); ok {
			if rs, ok := d.rsInf.Get(key); ok {
				d.enqueueForRS(rs)
			}
		}
	}})
	return d
}

// Run implements the controller's lifecycle.
func (d *deploymentController) Run(ctx context.Context) { d.ctl.Run(ctx) }

// enqueueForRS queues the deployment that owns rs or, for an orphan,
// those of its tenant that select it.
func (d *deploymentController) enqueueForRS(o api.Object) {
	enqueueController(d.ctl, o, deployKind, d.dInf, func(x api.Object) *api.LabelSelector { return x.(*api.Deployment).Spec.Selector })
}

// rollout is one reconcile's view of a deployment.
type rollout struct {
	d      *api.Deployment
	newRS  *api.ReplicaSet   // nil until created
	old    []*api.ReplicaSet // oldest revision first
	maxRev int64
}

func (r *rollout) all() []*api.ReplicaSet {
	if r.newRS == nil {
		return r.old
	}
	return append(append([]*api.ReplicaSet{}, r.old...), r.newRS)
}

func (d *deploymentController) reconcile(ctx context.Context, key string) error {
	o, ok := d.dInf.Get(key)
	if !ok {
		return nil
	}
	dep := o.(*api.Deployment)
	r, err := d.load(ctx, dep)
	if err != nil {
		return err
	}
	if dep.Spec.Paused {
		return d.syncStatus(ctx, r, true)
	}
	if r.newRS == nil {
		if r.newRS, err = d.createNewRS(ctx, r); err != nil {
			return err
		}
	} else if Revision(r.newRS) < r.maxRev {
		// A rollback to an older template: it becomes the newest revision.
		if r.newRS, err = d.updateRS(ctx, r.newRS, func(rs *api.ReplicaSet) {
			rs.Metadata.Annotations = copyLabels(rs.Metadata.Annotations, RevisionAnnotation, strconv.FormatInt(r.maxRev+1, 10))
		}); err != nil {
			return err
		}
	}
	for _, rs := range r.all() {
		if rs.Status.ObservedGeneration < rs.Metadata.Generation {
			// Act only on counts that reflect the last scaling; the
			// replica set's status update queues the deployment again.
			return d.syncStatus(ctx, r, false)
		}
	}
	if dep.Spec.Strategy.Type == api.Recreate {
		err = d.recreate(ctx, r)
	} else {
		err = d.rollingUpdate(ctx, r)
	}
	if err != nil {
		return err
	}
	if err := d.cleanup(ctx, r); err != nil {
		return err
	}
	return d.syncStatus(ctx, r, true)
}

// load reads the deployment's replica sets, adopting orphans it selects.
func (d *deploymentController) load(ctx context.Context, dep *api.Deployment) (*rollout, error) {
	r := &rollout{d: dep}
	var mine []*api.ReplicaSet
	for _, x := range d.rsInf.List() {
		rs := x.(*api.ReplicaSet)
		if rs.Metadata.Tenant != dep.Metadata.Tenant {
			continue
		}
		ref := controllerRef(&rs.Metadata)
		switch {
		case ref != nil && ref.UID == dep.Metadata.UID:
			mine = append(mine, rs)
		case ref == nil && selects(dep.Spec.Selector, rs.Metadata.Labels):
			adopted, err := adopt(ctx, d.c, rs, deployKind, dep)
			if err != nil {
				return nil, err
			}
			if adopted != nil {
				mine = append(mine, adopted)
			}
		}
	}
	SortByRevision(mine)
	for _, rs := range mine {
		r.maxRev = max(r.maxRev, Revision(rs))
		if r.newRS == nil && TemplatesEqual(&rs.Spec.Template, &dep.Spec.Template) {
			r.newRS = rs
			continue
		}
		r.old = append(r.old, rs)
	}
	return r, nil
}

// createNewRS creates the replica set of the deployment's template, at
// zero replicas (the strategy scales it).
func (d *deploymentController) createNewRS(ctx context.Context, r *rollout) (*api.ReplicaSet, error) {
	dep := r.d
	tmpl := WithoutHash(&dep.Spec.Template)
	hash := TemplateHash(&tmpl)
	tmpl.Metadata.Labels = copyLabels(tmpl.Metadata.Labels, TemplateHashLabel, hash)
	zero := int32(0)
	rs := &api.ReplicaSet{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "ReplicaSet"},
		Metadata: api.ObjectMeta{
			Name:            dep.Metadata.Name + "-" + hash,
			Tenant:          dep.Metadata.Tenant,
			Labels:          copyLabels(tmpl.Metadata.Labels),
			Annotations:     map[string]string{RevisionAnnotation: strconv.FormatInt(r.maxRev+1, 10)},
			OwnerReferences: []api.OwnerReference{ownerRefTo(deployKind, dep)},
		},
		Spec: api.ReplicaSetSpec{
			Replicas:        &zero,
			Selector:        &api.LabelSelector{MatchLabels: copyLabels(dep.Spec.Selector.MatchLabels, TemplateHashLabel, hash)},
			Template:        tmpl,
			MinReadySeconds: dep.Spec.MinReadySeconds,
		},
	}
	out, err := d.c.Create(ctx, rs)
	if errdefs.IsAlreadyExists(err) {
		// Created by an earlier pass whose event has not arrived yet; the
		// informer will bring it.
		return nil, fmt.Errorf("replica set %s/%s exists but is not in the local copy yet: %w", rs.Metadata.Tenant, rs.Metadata.Name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("create replica set for deployment %s/%s: %w", dep.Metadata.Tenant, dep.Metadata.Name, err)
	}
	d.log.Info("created replica set", "tenant", dep.Metadata.Tenant, "deployment", dep.Metadata.Name, "replicaset", rs.Metadata.Name, "revision", r.maxRev+1)
	r.maxRev++
	return out.(*api.ReplicaSet), nil
}

// updateRS changes a replica set with compare-and-swap.
func (d *deploymentController) updateRS(ctx context.Context, rs *api.ReplicaSet, change func(*api.ReplicaSet)) (*api.ReplicaSet, error) {
	next := api.Clone(rs)
	change(next)
	out, err := d.c.Update(ctx, next)
	if err != nil {
		return nil, fmt.Errorf("update replica set %s/%s: %w", rs.Metadata.Tenant, rs.Metadata.Name, err)
	}
	return out.(*api.ReplicaSet), nil
}

// scaleRS sets *rs's replicas to n (and its minReadySeconds to the
// deployment's), reporting whether it changed anything.
func (d *deploymentController) scaleRS(ctx context.Context, dep *api.Deployment, rs **api.ReplicaSet, n int32) (bool, error) {
	cur := *rs
	if *cur.Spec.Replicas == n && cur.Spec.MinReadySeconds == dep.Spec.MinReadySeconds {
		return false, nil
	}
	out, err := d.updateRS(ctx, cur, func(x *api.ReplicaSet) {
		x.Spec.Replicas = &n
		x.Spec.MinReadySeconds = dep.Spec.MinReadySeconds
	})
	if err != nil {
		return false, err
	}
	d.log.Info("scaled replica set", "tenant", dep.Metadata.Tenant, "deployment", dep.Metadata.Name, "replicaset", cur.Metadata.Name, "from", *cur.Spec.Replicas, "to", n)
	*rs = out
	return true, nil
}

// rollingUpdate takes one step of a rolling update: scale the new
// replica set up as far as maxSurge allows or, if it cannot grow, the
// old ones down as far as maxUnavailable allows.
func (d *deploymentController) rollingUpdate(ctx context.Context, r *rollout) error {
	dep := r.d
	want := *dep.Spec.Replicas
	surge, unavail := rollingBounds(dep)
	if n := newRSReplicas(want, surge, r.all(), r.newRS); n != *r.newRS.Spec.Replicas {
		_, err := d.scaleRS(ctx, dep, &r.newRS, n)
		return err
	}
	for _, step := range scaleDownOld(want, unavail, r.newRS, r.old) {
		if _, err := d.scaleRS(ctx, dep, &r.old[step.index], step.replicas); err != nil {
			return err
		}
	}
	return nil
}

// rollingBounds resolves maxSurge (rounded up) and maxUnavailable
// (rounded down) against the desired replicas; they are never both 0.
func rollingBounds(dep *api.Deployment) (surge, unavail int32) {
	want := *dep.Spec.Replicas
	if ru := dep.Spec.Strategy.RollingUpdate; ru != nil {
		if ru.MaxSurge != nil {
			surge, _ = ru.MaxSurge.Scaled(want, true)
		}
		if ru.MaxUnavailable != nil {
			unavail, _ = ru.MaxUnavailable.Scaled(want, false)
		}
	}
	if surge == 0 && unavail == 0 {
		unavail = 1
	}
	return surge, min(unavail, want)
}

// newRSReplicas is what the new replica set may grow (or must shrink) to:
// at most want, and all replica sets together at most want+surge.
func newRSReplicas(want, surge int32, all []*api.ReplicaSet, newRS *api.ReplicaSet) int32 {
	cur := *newRS.Spec.Replicas
	if cur >= want {
		return want
	}
	total := sumReplicas(all)
	if total >= want+surge {
		return cur
	}
	return cur + min(want+surge-total, want-cur)
}

// scaleStep sets old[index] to replicas.
type scaleStep struct {
	index    int
	replicas int32
}

// scaleDownOld returns how far the old replica sets (oldest first) may
// shrink while at least want-unavail pods stay available: first their
// unavailable pods, then available ones.
func scaleDownOld(want, unavail int32, newRS *api.ReplicaSet, old []*api.ReplicaSet) []scaleStep {
	all := append(append([]*api.ReplicaSet{}, old...), newRS)
	minAvailable := want - unavail
	newUnavailable := *newRS.Spec.Replicas - available(newRS)
	budget := sumReplicas(all) - minAvailable - newUnavailable
	if sumReplicas(old) == 0 || budget <= 0 {
		return nil
	}
	replicas := make([]int32, len(old))
	for i, rs := range old {
		replicas[i] = *rs.Spec.Replicas
	}
	// Unavailable pods of old replica sets help no one: drop them first.
	for i, rs := range old {
		if budget <= 0 {
			break
		}
		n := min(replicas[i]-available(rs), budget)
		if n > 0 {
			replicas[i] -= n
			budget -= n
		}
	}
	// Then available ones, keeping minAvailable.
	avail := int32(0)
	for _, rs := range all {
		avail += available(rs)
	}
	for i, rs := range old {
		if avail <= minAvailable {
			break
		}
		n := min(replicas[i], avail-minAvailable, available(rs))
		replicas[i] -= n
		avail -= n
	}
	var steps []scaleStep
	for i, rs := range old {
		if replicas[i] != *rs.Spec.Replicas {
			steps = append(steps, scaleStep{i, replicas[i]})
		}
	}
	return steps
}

// available is rs's available pods, never more than it will keep.
func available(rs *api.ReplicaSet) int32 {
	return min(rs.Status.AvailableReplicas, *rs.Spec.Replicas)
}

func sumReplicas(rss []*api.ReplicaSet) int32 {
	n := int32(0)
	for _, rs := range rss {
		n += *rs.Spec.Replicas
	}
	return n
}

// recreate scales the old replica sets to zero and, once their pods are
// gone, the new one to the desired replicas.
func (d *deploymentController) recreate(ctx context.Context, r *rollout) error {
	for i := range r.old {
		if _, err := d.scaleRS(ctx, r.d, &r.old[i], 0); err != nil {
			return err
		}
	}
	for _, x := range d.podInf.List() {
		p := x.(*api.Pod)
		if p.Metadata.Tenant != r.d.Metadata.Tenant || api.PodFinished(p) {
			continue
		}
		for _, rs := range r.old {
			if ownedBy(p, rsKind, rs.Metadata.UID) {
				return nil // the pod's deletion queues the deployment again
			}
		}
	}
	_, err := d.scaleRS(ctx, r.d, &r.newRS, *r.d.Spec.Replicas)
	return err
}

// cleanup deletes the oldest replica sets at zero replicas beyond
// revisionHistoryLimit.
func (d *deploymentController) cleanup(ctx context.Context, r *rollout) error {
	limit := int32(api.DefaultRevisionHistoryLimit)
	if l := r.d.Spec.RevisionHistoryLimit; l != nil {
		limit = *l
	}
	var idle []*api.ReplicaSet
	for _, rs := range r.old {
		if *rs.Spec.Replicas == 0 && rs.Status.Replicas == 0 && rs.Status.ObservedGeneration >= rs.Metadata.Generation {
			idle = append(idle, rs)
		}
	}
	for i := 0; i < len(idle)-int(limit); i++ {
		rs := idle[i]
		if _, err := d.c.Delete(ctx, rsKind, rs.Metadata.Tenant, rs.Metadata.Name); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete old replica set %s/%s: %w", rs.Metadata.Tenant, rs.Metadata.Name, err)
		}
		d.log.Info("deleted old replica set", "tenant", rs.Metadata.Tenant, "deployment", r.d.Metadata.Name, "replicaset", rs.Metadata.Name, "revision", Revision(rs))
	}
	return nil
}

// syncStatus writes the deployment's status; observed says whether this
// pass acted on the current generation.
func (d *deploymentController) syncStatus(ctx context.Context, r *rollout, observed bool) error {
	dep := r.d
	st := deploymentStatus(r, time.Now())
	if !observed {
		st.ObservedGeneration = dep.Status.ObservedGeneration
	}
	if statusEqual(st, dep.Status) {
		return nil
	}
	next := api.Clone(dep)
	next.Status = st
	_, err := d.c.UpdateStatus(ctx, next)
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

func statusEqual(a, b api.DeploymentStatus) bool {
	if reflect.DeepEqual(a, b) {
		return true
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// Deployment condition types and reasons, as in Kubernetes.
const (
	ConditionAvailable   = "Available"
	ConditionProgressing = "Progressing"
)

// deploymentStatus computes a deployment's status from its replica sets.
func deploymentStatus(r *rollout, now time.Time) api.DeploymentStatus {
	dep := r.d
	want := *dep.Spec.Replicas
	st := api.DeploymentStatus{ObservedGeneration: dep.Metadata.Generation}
	for _, rs := range r.all() {
		st.Replicas += rs.Status.Replicas
		st.ReadyReplicas += rs.Status.ReadyReplicas
		st.AvailableReplicas += rs.Status.AvailableReplicas
	}
	newName := ""
	if r.newRS != nil {
		st.UpdatedReplicas = r.newRS.Status.Replicas
		newName = r.newRS.Metadata.Name
	}
	st.UnavailableReplicas = max(want-st.AvailableReplicas, 0)
	_, unavail := rollingBounds(dep)
	if dep.Spec.Strategy.Type == api.Recreate {
		unavail = 0
	}
	avail := condition(ConditionAvailable, "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
	if st.AvailableReplicas >= want-unavail {
		avail = condition(ConditionAvailable, "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
	}
	prog := condition(ConditionProgressing, "True", "ReplicaSetUpdated", fmt.Sprintf("ReplicaSet %q is progressing.", newName))
	switch {
	case dep.Spec.Paused:
		prog = condition(ConditionProgressing, "Unknown", "DeploymentPaused", "Deployment is paused.")
	case st.UpdatedReplicas == want && st.Replicas == want && st.AvailableReplicas == want:
		prog = condition(ConditionProgressing, "True", "NewReplicaSetAvailable", fmt.Sprintf("ReplicaSet %q has successfully progressed.", newName))
	}
	st.Conditions = []api.Condition{
		keepTransition(avail, dep.Status.Conditions, now),
		keepTransition(prog, dep.Status.Conditions, now),
	}
	return st
}

func condition(t, status, reason, msg string) api.Condition {
	return api.Condition{Type: t, Status: status, Reason: reason, Message: msg}
}

// keepTransition stamps c with now as its transition time, or with the
// previous one when the previous condition of its type had the same
// status and reason.
func keepTransition(c api.Condition, prev []api.Condition, now time.Time) api.Condition {
	for _, p := range prev {
		if p.Type == c.Type && p.Status == c.Status && p.Reason == c.Reason {
			c.LastTransitionTime = p.LastTransitionTime
			return c
		}
	}
	c.LastTransitionTime = api.NewTime(now)
	return c
}
