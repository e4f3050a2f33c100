package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

var (
	svcKind, _ = api.KindFor("services")
	epKind, _  = api.KindFor("endpoints")
)

// placedPod creates a pod labelled app=app bound to node n1 and writes
// the status an agent would: ip (none when empty) and Ready as ready.
func placedPod(t *testing.T, admin *client.Client, tenant, name, app, ip string, ready bool) *api.Pod {
	t.Helper()
	p := newPod(tenant, name, app)
	p.Spec.NodeName = "n1"
	o, err := admin.Create(t.Context(), p)
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", tenant, name, err)
	}
	return setPodStatus(t, admin, o.(*api.Pod), ip, ready)
}

func setPodStatus(t *testing.T, admin *client.Client, p *api.Pod, ip string, ready bool) *api.Pod {
	t.Helper()
	next := api.Clone(p)
	status := "False"
	if ready {
		status = "True"
	}
	next.Status = api.PodStatus{Phase: api.PodRunning, PodIP: ip, HostIP: "192.0.2.1",
		Conditions: []api.Condition{{Type: "Ready", Status: status}}}
	out, err := admin.UpdateStatus(t.Context(), next)
	if err != nil {
		t.Fatalf("write status of pod %s: %v", p.Metadata.Name, err)
	}
	return out.(*api.Pod)
}

// endpointsSummary renders what an Endpoints object says, for comparing.
func endpointsSummary(e *api.Endpoints) string {
	b, _ := json.Marshal(e.Subsets)
	return string(b)
}

func wantEndpoints(t *testing.T, c *client.Client, tenant, name string, want []api.EndpointSubset) *api.Endpoints {
	t.Helper()
	wb, _ := json.Marshal(want)
	var got *api.Endpoints
	eventually(t, 20*time.Second, "endpoints "+tenant+"/"+name, func() (bool, string) {
		e, err := client.GetAs[*api.Endpoints](context.Background(), c, tenant, name)
		if err != nil {
			return false, err.Error()
		}
		got = e
		return endpointsSummary(e) == string(wb), endpointsSummary(e) + " want " + string(wb)
	})
	return got
}

func addr(ip string, p *api.Pod) api.EndpointAddress {
	return api.EndpointAddress{IP: ip, NodeName: "n1", TargetRef: &api.ObjectReference{Kind: "Pod", Tenant: p.Metadata.Tenant, Name: p.Metadata.Name, UID: p.Metadata.UID}}
}

func TestEndpoints(t *testing.T) {
	cl := testcluster.Start(t)
	admin := cl.Admin
	ctx := t.Context()
	createTenant(t, cl, "acme")
	createTenant(t, cl, "globex")
	startManager(t, admin, "m1")

	svc := &api.Service{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Service"},
		Metadata: api.ObjectMeta{Name: "web", Tenant: "acme"},
		Spec: api.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []api.ServicePort{
			{Name: "http", Port: 80, TargetPort: 8080},
			{Name: "dns", Port: 53, Protocol: api.ProtocolUDP},
		}},
	}
	so, err := admin.Create(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	ports := []api.EndpointPort{{Name: "http", Port: 8080, Protocol: api.ProtocolTCP}, {Name: "dns", Port: 53, Protocol: api.ProtocolUDP}}

	// No pods yet: an empty Endpoints object controlled by the service.
	e := wantEndpoints(t, admin, "acme", "web", nil)
	if ref := controllerOf(&e.Metadata); ref == nil || ref.Kind != "Service" || ref.UID != so.GetObjectMeta().UID {
		t.Errorf("endpoints owner = %+v, want the service (uid %s)", ref, so.GetObjectMeta().UID)
	}

	ready := placedPod(t, admin, "acme", "web-1", "web", "10.244.0.5", true)
	notReady := placedPod(t, admin, "acme", "web-2", "web", "10.244.0.6", false)
	placedPod(t, admin, "acme", "web-noip", "web", "", true)
	placedPod(t, admin, "acme", "db", "db", "10.244.0.7", true)
	placedPod(t, admin, "globex", "web-x", "web", "10.244.0.8", true) // another tenant
	term := placedPod(t, admin, "acme", "web-term", "web", "10.244.0.9", true)
	wantEndpoints(t, admin, "acme", "web", []api.EndpointSubset{{
		Addresses:         []api.EndpointAddress{addr("10.244.0.5", ready), addr("10.244.0.9", term)},
		NotReadyAddresses: []api.EndpointAddress{addr("10.244.0.6", notReady)},
		Ports:             ports,
	}})

	// A terminating pod leaves; a pod turning ready moves over. Changes
	// that do not touch the endpoints write nothing: exactly one write
	// brings each change.
	cur, err := client.GetAs[*api.Endpoints](ctx, admin, "acme", "web")
	if err != nil {
		t.Fatal(err)
	}
	w, err := admin.Watch(ctx, epKind, "acme", client.WatchOptions{Name: "web", ResourceVersion: cur.Metadata.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := admin.Delete(ctx, podKind, "acme", "web-term"); err != nil { // bound to a node: graceful, stays terminating
		t.Fatal(err)
	}
	step1 := []api.EndpointSubset{{
		Addresses:         []api.EndpointAddress{addr("10.244.0.5", ready)},
		NotReadyAddresses: []api.EndpointAddress{addr("10.244.0.6", notReady)},
		Ports:             ports,
	}}
	waitWrite(t, w, step1)
	update(t, admin, "acme", "web", func(s *api.Service) { s.Metadata.Annotations = map[string]string{"note": "no endpoint change"} })
	update(t, admin, "acme", "db", func(p *api.Pod) { p.Metadata.Annotations = map[string]string{"note": "not selected"} })
	setPodStatus(t, admin, notReady, "10.244.0.6", true)
	waitWrite(t, w, []api.EndpointSubset{{
		Addresses: []api.EndpointAddress{addr("10.244.0.5", ready), addr("10.244.0.6", notReady)},
		Ports:     ports,
	}})

	// The other tenant's service sees only its own pod.
	mustCreateService(t, admin, "globex", "web", map[string]string{"app": "web"})
	wantEndpoints(t, admin, "globex", "web", []api.EndpointSubset{{
		Addresses: []api.EndpointAddress{{IP: "10.244.0.8", NodeName: "n1", TargetRef: &api.ObjectReference{Kind: "Pod", Tenant: "globex", Name: "web-x", UID: getAs[*api.Pod](t, admin, "globex", "web-x").Metadata.UID}}},
		Ports:     []api.EndpointPort{{Port: 80, Protocol: api.ProtocolTCP}},
	}})

	// A service without a selector gets no endpoints from the controller.
	mustCreateService(t, admin, "acme", "manual", nil)
	mustCreateService(t, admin, "acme", "after", map[string]string{"app": "none"})
	wantEndpoints(t, admin, "acme", "after", nil)
	if _, err := admin.Get(ctx, epKind, "acme", "manual"); !errdefs.IsNotFound(err) {
		t.Errorf("endpoints of a service without selector: %v, want none", err)
	}

	// Deleting the service deletes its endpoints.
	if _, err := admin.Delete(ctx, svcKind, "acme", "web"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "endpoints of the deleted service gone", func() (bool, string) {
		_, err := admin.Get(ctx, epKind, "acme", "web")
		return errdefs.IsNotFound(err), fmt.Sprint(err)
	})
}

// waitWrite waits for the next write of the watched endpoints and checks
// that it says want: one write per change, none in between.
func waitWrite(t *testing.T, w *client.Watcher, want []api.EndpointSubset) {
	t.Helper()
	wb, _ := json.Marshal(want)
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatalf("watch ended: %v", w.Err())
		}
		e, isEp := ev.Object.(*api.Endpoints)
		if ev.Type != api.Modified || !isEp || endpointsSummary(e) != string(wb) {
			t.Fatalf("next endpoints write = %s %v, want MODIFIED to %s", ev.Type, ev.Object, wb)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no endpoints write within 20s; want one to %s", wb)
	}
}

func mustCreateService(t *testing.T, c *client.Client, tenant, name string, selector map[string]string) {
	t.Helper()
	_, err := c.Create(t.Context(), &api.Service{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Service"},
		Metadata: api.ObjectMeta{Name: name, Tenant: tenant},
		Spec:     api.ServiceSpec{Selector: selector, Ports: []api.ServicePort{{Port: 80}}},
	})
	if err != nil {
		t.Fatalf("create service %s/%s: %v", tenant, name, err)
	}
}

// TestEndpointsOfAGoneService checks that endpoints left behind by a
// service deleted while no controller ran are deleted.
func TestEndpointsOfAGoneService(t *testing.T) {
	cl := testcluster.Start(t)
	createTenant(t, cl, "acme")
	stray := &api.Endpoints{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Endpoints"},
		Metadata: api.ObjectMeta{Name: "gone", Tenant: "acme", OwnerReferences: []api.OwnerReference{{APIVersion: api.Version, Kind: "Service", Name: "gone", UID: "1234", Controller: true}}},
	}
	manual := &api.Endpoints{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Endpoints"},
		Metadata: api.ObjectMeta{Name: "manual", Tenant: "acme"},
		Subsets:  []api.EndpointSubset{{Addresses: []api.EndpointAddress{{IP: "192.0.2.9"}}, Ports: []api.EndpointPort{{Port: 80}}}},
	}
	for _, e := range []*api.Endpoints{stray, manual} {
		if _, err := cl.Admin.Create(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	startManager(t, cl.Admin, "m1")
	eventually(t, 20*time.Second, "stray endpoints deleted", func() (bool, string) {
		_, err := cl.Admin.Get(t.Context(), epKind, "acme", "gone")
		return errdefs.IsNotFound(err), fmt.Sprint(err)
	})
	if _, err := cl.Admin.Get(t.Context(), epKind, "acme", "manual"); err != nil {
		t.Errorf("endpoints no service controls: %v, want them left alone", err)
	}
}
