package controller

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// controllerRef returns m's controlling owner reference, or nil.
func controllerRef(m *api.ObjectMeta) *api.OwnerReference {
	for i := range m.OwnerReferences {
		if m.OwnerReferences[i].Controller {
			return &m.OwnerReferences[i]
		}
	}
	return nil
}

// ownerRefTo returns a controlling owner reference to obj of kind k.
func ownerRefTo(k *api.Kind, obj api.Object) api.OwnerReference {
	m := obj.GetObjectMeta()
	return api.OwnerReference{APIVersion: api.Version, Kind: k.Kind, Name: m.Name, UID: m.UID, Controller: true}
}

// ownedBy reports whether obj's controller is the object of kind k with
// uid.
func ownedBy(obj api.Object, k *api.Kind, uid string) bool {
	ref := controllerRef(obj.GetObjectMeta())
	return ref != nil && ref.Kind == k.Kind && ref.UID == uid
}

// ownerKey returns the informer key of obj's controller when it is of
// kind k.
func ownerKey(obj api.Object, k *api.Kind) (string, bool) {
	m := obj.GetObjectMeta()
	ref := controllerRef(m)
	if ref == nil || ref.Kind != k.Kind {
		return "", false
	}
	return m.Tenant + "/" + ref.Name, true
}

// enqueueController queues o's controller when it is of kind k or, when
// o has no controller, every object of candidates in o's tenant whose
// selector (selectorOf) matches o's labels, which may adopt it.
func enqueueController(ctl *Controller, o api.Object, k *api.Kind, candidates *client.Informer, selectorOf func(api.Object) *api.LabelSelector) {
	if key, ok := ownerKey(o, k); ok {
		ctl.Enqueue(key)
		return
	}
	m := o.GetObjectMeta()
	if controllerRef(m) != nil {
		return
	}
	for _, c := range candidates.List() {
		if c.GetObjectMeta().Tenant == m.Tenant && selects(selectorOf(c), m.Labels) {
			ctl.EnqueueObject(c)
		}
	}
}

// adopt makes owner (of kind k) the controller of the orphan o, with
// compare-and-swap. It returns nil when o is gone.
func adopt[T api.Object](ctx context.Context, c *client.Client, o T, k *api.Kind, owner api.Object) (T, error) {
	var zero T
	next := api.Clone(o)
	m := next.GetObjectMeta()
	m.OwnerReferences = append(m.OwnerReferences, ownerRefTo(k, owner))
	out, err := c.Update(ctx, next)
	if errdefs.IsNotFound(err) {
		return zero, nil
	}
	if err != nil {
		return zero, fmt.Errorf("adopt %s/%s: %w", m.Tenant, m.Name, err)
	}
	return out.(T), nil
}

// selects reports whether sel selects labels. A nil or empty selector
// selects nothing.
func selects(sel *api.LabelSelector, labels map[string]string) bool {
	if sel == nil || len(sel.MatchLabels) == 0 {
		return false
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// podActive reports whether p counts as a replica: neither finished nor
// terminating.
func podActive(p *api.Pod) bool {
	return !api.PodFinished(p) && p.Metadata.DeletionTimestamp == nil
}

// findCondition returns the condition of type t in conds, or nil.
func findCondition(conds []api.Condition, t string) *api.Condition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// podReady reports whether p's Ready condition is True.
func podReady(p *api.Pod) bool {
	c := findCondition(p.Status.Conditions, "Ready")
	return c != nil && c.Status == "True"
}

// podAvailable reports whether p has been ready for minReady at now; if
// it is ready but not yet available, wait is how long until it is.
func podAvailable(p *api.Pod, minReady time.Duration, now time.Time) (ok bool, wait time.Duration) {
	if !podReady(p) {
		return false, 0
	}
	if minReady <= 0 {
		return true, 0
	}
	c := findCondition(p.Status.Conditions, "Ready")
	if c.LastTransitionTime == nil {
		return true, 0
	}
	since := now.Sub(c.LastTransitionTime.Time)
	if since >= minReady {
		return true, 0
	}
	return false, minReady - since
}

// copyLabels returns a copy of m with extra set (nil when both are empty).
func copyLabels(m map[string]string, extra ...string) map[string]string {
	if len(m) == 0 && len(extra) == 0 {
		return nil
	}
	out := maps.Clone(m)
	if out == nil {
		out = map[string]string{}
	}
	for i := 0; i+1 < len(extra); i += 2 {
		out[extra[i]] = extra[i+1]
	}
	return out
}
