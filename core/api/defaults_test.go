package api

import (
	"reflect"
	"testing"
)

func TestKeepAssigned(t *testing.T) {
	cur := &Pod{Spec: PodSpec{NodeName: "n1", RuntimeClassName: "runc", NodeSelector: map[string]string{"pool": "acme"}}}
	sent := &Pod{Spec: PodSpec{NodeSelector: map[string]string{"disk": "ssd"}}}
	KeepAssigned(sent, cur)
	if sent.Spec.NodeName != "n1" || sent.Spec.RuntimeClassName != "runc" || !reflect.DeepEqual(sent.Spec.NodeSelector, map[string]string{"disk": "ssd", "pool": "acme"}) {
		t.Errorf("KeepAssigned(pod) = %+v", sent.Spec)
	}
	explicit := &Pod{Spec: PodSpec{RuntimeClassName: "gvisor", NodeSelector: map[string]string{"pool": "other"}}}
	KeepAssigned(explicit, cur)
	if explicit.Spec.RuntimeClassName != "gvisor" || explicit.Spec.NodeSelector["pool"] != "other" {
		t.Errorf("KeepAssigned(pod) overwrote fields the manifest sets: %+v", explicit.Spec)
	}

	curSvc := &Service{Spec: ServiceSpec{Type: ServiceNodePort, ClusterIP: "10.96.0.9", Ports: []ServicePort{
		{Port: 80, Protocol: ProtocolTCP, NodePort: 30080}, {Port: 53, Protocol: ProtocolUDP, NodePort: 30053},
	}}}
	svc := &Service{Spec: ServiceSpec{Type: ServiceNodePort, Ports: []ServicePort{{Port: 53}, {Port: 80}, {Port: 53, Protocol: ProtocolUDP}, {Port: 443, NodePort: 30443}}}}
	KeepAssigned(svc, curSvc)
	var got []int32
	for _, p := range svc.Spec.Ports {
		got = append(got, p.NodePort)
	}
	if want := []int32{0, 30080, 30053, 30443}; svc.Spec.ClusterIP != "10.96.0.9" || !reflect.DeepEqual(got, want) {
		t.Errorf("KeepAssigned(service) = %s %v, want 10.96.0.9 %v", svc.Spec.ClusterIP, got, want)
	}
}
