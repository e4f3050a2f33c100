package controller

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// endpointsController keeps, for every service with a selector, an
// Endpoints object of the same name and tenant listing the tenant's pods
// the selector matches that have an IP and are not terminating: ready
// pods (Ready=True) in addresses, the others in notReadyAddresses, with
// the service's ports translated to target ports. The Endpoints object is
// controlled by its service (owner reference) and deleted by this
// controller once the service is gone. Services without a selector are
// left alone: their endpoints, if any, are a cluster admin's.
//
// It is level-based: each pass computes the whole object from the
// informers' view and writes only when that differs from what is stored.
type endpointsController struct {
	c      *client.Client
	svcInf *client.Informer
	podInf *client.Informer
	epInf  *client.Informer
	ctl    *Controller
	log    *slog.Logger
}

func newEndpointsController(c *client.Client, inf *Informers, workers int, log *slog.Logger) *endpointsController {
	e := &endpointsController{
		c: c, svcInf: inf.For(serviceKind), podInf: inf.For(podKind), epInf: inf.For(endpointsKind),
		log: log.With("controller", "endpoints"),
	}
	e.ctl = New("endpoints", workers, log, e.reconcile)
	// An Endpoints object is keyed like its service: changes to either
	// (and the deletion of a stray one) queue the same key.
	e.svcInf.AddHandler(e.ctl.ObjectHandler())
	e.epInf.AddHandler(e.ctl.ObjectHandler())
	e.podInf.AddHandler(client.Handler{
		OnAdd: e.podChanged,
		OnUpdate: func(old, obj api.Object) {
			e.podChanged(old)
			e.podChanged(obj)
		},
		OnDelete: e.podChanged,
	})
	return e
}

// Run implements the controller's lifecycle.
func (e *endpointsController) Run(ctx context.Context) { e.ctl.Run(ctx) }

// podChanged queues the services of the pod's tenant that select it.
func (e *endpointsController) podChanged(o api.Object) {
	m := o.GetObjectMeta()
	for _, so := range e.svcInf.List() {
		s := so.(*api.Service)
		if s.Metadata.Tenant == m.Tenant && selectsPod(s.Spec.Selector, m.Labels) {
			e.ctl.EnqueueObject(s)
		}
	}
}

// selectsPod reports whether a service selector selects labels; an empty
// selector selects no pods.
func selectsPod(sel, labels map[string]string) bool {
	return selects(&api.LabelSelector{MatchLabels: sel}, labels)
}

func (e *endpointsController) reconcile(ctx context.Context, key string) error {
	tenant, name := splitKey(key)
	so, haveSvc := e.svcInf.Get(key)
	eo, haveEp := e.epInf.Get(key)
	if !haveSvc {
		if haveEp && controlledByService(eo) {
			return e.deleteEndpoints(ctx, eo.(*api.Endpoints))
		}
		return nil
	}
	svc := so.(*api.Service)
	if len(svc.Spec.Selector) == 0 {
		return nil
	}
	want := e.desired(svc)
	if !haveEp {
		_, err := e.c.Create(ctx, want)
		if errdefs.IsAlreadyExists(err) {
			return err // the informer is behind: retry with what is stored
		}
		if err != nil {
			return fmt.Errorf("create endpoints %s/%s: %w", tenant, name, err)
		}
		return nil
	}
	cur := eo.(*api.Endpoints)
	if sameEndpoints(cur, want) {
		return nil
	}
	next := api.Clone(cur)
	next.Subsets = want.Subsets
	next.Metadata.OwnerReferences = want.Metadata.OwnerReferences
	if _, err := e.c.Update(ctx, next); err != nil {
		return fmt.Errorf("update endpoints %s/%s: %w", tenant, name, err)
	}
	return nil
}

// controlledByService reports whether an Endpoints object is one this
// controller keeps.
func controlledByService(o api.Object) bool {
	ref := controllerRef(o.GetObjectMeta())
	return ref != nil && ref.Kind == serviceKind.Kind
}

// deleteEndpoints deletes the endpoints of a service that is gone.
func (e *endpointsController) deleteEndpoints(ctx context.Context, ep *api.Endpoints) error {
	m := ep.Metadata
	_, err := e.c.Delete(ctx, endpointsKind, m.Tenant, m.Name)
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete endpoints %s/%s of a deleted service: %w", m.Tenant, m.Name, err)
	}
	e.log.Debug("deleted endpoints of a deleted service", "tenant", m.Tenant, "service", m.Name)
	return nil
}

// desired computes the Endpoints object of svc from the pods the
// informer holds.
func (e *endpointsController) desired(svc *api.Service) *api.Endpoints {
	var ready, notReady []api.EndpointAddress
	for _, o := range e.podInf.List() {
		p := o.(*api.Pod)
		if p.Metadata.Tenant != svc.Metadata.Tenant || !selectsPod(svc.Spec.Selector, p.Metadata.Labels) {
			continue
		}
		if p.Status.PodIP == "" || p.Metadata.DeletionTimestamp != nil || api.PodFinished(p) {
			continue
		}
		a := api.EndpointAddress{
			IP:        p.Status.PodIP,
			NodeName:  p.Spec.NodeName,
			TargetRef: &api.ObjectReference{Kind: podKind.Kind, Tenant: p.Metadata.Tenant, Name: p.Metadata.Name, UID: p.Metadata.UID},
		}
		if podReady(p) {
			ready = append(ready, a)
		} else {
			notReady = append(notReady, a)
		}
	}
	ep := &api.Endpoints{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: endpointsKind.Kind},
		Metadata: api.ObjectMeta{
			Name: svc.Metadata.Name, Tenant: svc.Metadata.Tenant,
			OwnerReferences: []api.OwnerReference{ownerRefTo(serviceKind, svc)},
		},
	}
	if len(ready)+len(notReady) == 0 {
		return ep
	}
	byIP := func(a, b api.EndpointAddress) int {
		return cmp.Or(cmp.Compare(a.IP, b.IP), cmp.Compare(a.TargetRef.Name, b.TargetRef.Name))
	}
	slices.SortFunc(ready, byIP)
	slices.SortFunc(notReady, byIP)
	ports := make([]api.EndpointPort, len(svc.Spec.Ports))
	for i, sp := range svc.Spec.Ports {
		ports[i] = api.EndpointPort{Name: sp.Name, Port: cmp.Or(sp.TargetPort, sp.Port), Protocol: cmp.Or(sp.Protocol, api.ProtocolTCP)}
	}
	ep.Subsets = []api.EndpointSubset{{Addresses: ready, NotReadyAddresses: notReady, Ports: ports}}
	return ep
}

// sameEndpoints reports whether the stored endpoints already say what
// want says.
func sameEndpoints(cur, want *api.Endpoints) bool {
	a, b := api.Clone(cur), api.Clone(want)
	a.Metadata, b.Metadata = api.ObjectMeta{OwnerReferences: a.Metadata.OwnerReferences}, api.ObjectMeta{OwnerReferences: b.Metadata.OwnerReferences}
	a.TypeMeta, b.TypeMeta = api.TypeMeta{}, api.TypeMeta{}
	ja, err1 := api.Encode(a)
	jb, err2 := api.Encode(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}
