package api

import (
	"errors"
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/errdefs"
)

func TestDecodeErrorsNameTheField(t *testing.T) {
	cases := []struct {
		name  string
		in    string
		class error
		field string
		msg   string
	}{
		{"unknown top-level field", `{"kind":"Pod","metadata":{"name":"p"},"sepc":{}}`, errdefs.ErrBadRequest, "sepc", "unknown field"},
		{"unknown nested field", "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    imag: x\n", errdefs.ErrBadRequest, "spec.containers[0].imag", "valid fields here"},
		{"case matters", `{"kind":"Pod","metadata":{"Name":"p"}}`, errdefs.ErrBadRequest, "metadata.Name", "unknown field"},
		{"wrong type", "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x, ports: [{containerPort: '80'}]}]}\n", errdefs.ErrBadRequest, "spec.containers[0].ports[0].containerPort", "want an integer"},
		{"overflow", `{"kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"x","ports":[{"containerPort":99999999999}]}]}}`, errdefs.ErrBadRequest, "spec.containers[0].ports[0].containerPort", "32 bits"},
		{"bad quantity", "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x, resources: {limits: {memory: 64MB}}}]}\n", errdefs.ErrBadRequest, `spec.containers[0].resources.limits["memory"]`, "64MB"},
		{"bad base64", `{"kind":"Secret","metadata":{"name":"s"},"data":{"k":"not base64!"}}`, errdefs.ErrBadRequest, `data["k"]`, "base64"},
		{"unknown kind", `{"kind":"Pud"}`, errdefs.ErrBadRequest, "kind", "unknown kind"},
		{"missing kind", `{"metadata":{"name":"x"}}`, errdefs.ErrBadRequest, "kind", "missing"},
		{"wrong apiVersion", `{"apiVersion":"v1","kind":"Pod"}`, errdefs.ErrBadRequest, "apiVersion", "paddock.dev/v1"},
		{"not an object", `[1]`, errdefs.ErrBadRequest, "", "want an object"},
		{"bad timestamp", `{"kind":"Pod","metadata":{"name":"p","creationTimestamp":"yesterday"}}`, errdefs.ErrBadRequest, "metadata.creationTimestamp", "RFC 3339"},
		{"trailing data", `{"kind":"Pod"} {"kind":"Pod"}`, errdefs.ErrBadRequest, "", ""},
		{"malformed yaml", "kind: Pod\nmetadata:\n  name: [\n", errdefs.ErrBadRequest, "", "line"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			if !errors.Is(err, tc.class) {
				t.Fatalf("Decode(%q) = %v, want class %v", tc.in, err, tc.class)
			}
			if got := errdefs.FieldOf(err); got != tc.field {
				t.Errorf("Decode(%q) field = %q, want %q (err %v)", tc.in, got, tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Decode(%q) = %q, want it to contain %q", tc.in, err, tc.msg)
			}
		})
	}
}

func TestDecodeDocuments(t *testing.T) {
	in := `# a comment
apiVersion: paddock.dev/v1
kind: ConfigMap
metadata: {name: a}
---
---
kind: List
items:
- {kind: ConfigMap, metadata: {name: b}}
- {kind: Secret, metadata: {name: c}, stringData: {k: v}}
---
kind: Tenant
metadata: {name: d}
`
	docs, err := DecodeDocuments([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range docs {
		got = append(got, d.Object.GetTypeMeta().Kind+"/"+d.Object.GetObjectMeta().Name)
	}
	want := "ConfigMap/a Secret/c Tenant/d"
	if g := strings.Join(got, " "); g != "ConfigMap/a ConfigMap/b "+want[len("ConfigMap/a "):] {
		t.Errorf("DecodeDocuments kinds = %q, want %q", g, "ConfigMap/a ConfigMap/b Secret/c Tenant/d")
	}
	if docs[3].Line != 12 {
		t.Errorf("tenant document line = %d, want 12", docs[3].Line)
	}

	stream := `{"kind":"ConfigMap","metadata":{"name":"x"}}
[{"kind":"ConfigMap","metadata":{"name":"y"}}]`
	docs, err = DecodeDocuments([]byte(stream))
	if err != nil || len(docs) != 2 || docs[1].Line != 2 {
		t.Fatalf("DecodeDocuments(json stream) = %v docs, %v; want 2 with the second on line 2", len(docs), err)
	}

	_, err = DecodeDocuments([]byte("kind: ConfigMap\nmetadata: {name: a}\n---\nkind: ConfigMap\nmetadata: {name: b}\nbogus: 1\n"))
	if err == nil || !strings.Contains(err.Error(), "line 4") || errdefs.FieldOf(err) != "bogus" {
		t.Errorf("DecodeDocuments(bad second doc) = %v, want an error at line 4 naming bogus", err)
	}
	_, err = DecodeDocuments([]byte("kind: ConfigMap\n---\nkind: ConfigMap\nmetadata:\n  name: [\n"))
	if err == nil || !strings.Contains(err.Error(), "line 5") {
		t.Errorf("DecodeDocuments(malformed second doc) = %v, want an error naming line 5", err)
	}
}

func TestValidate(t *testing.T) {
	pod := func(mut func(*Pod)) *Pod {
		p := &Pod{Metadata: ObjectMeta{Name: "web", Tenant: "acme"}, Spec: PodSpec{Containers: []Container{{Name: "c", Image: "busybox"}}}}
		mut(p)
		Default(p)
		return p
	}
	q := MustParseQuantity
	cases := []struct {
		name  string
		obj   Object
		field string
	}{
		{"valid pod", pod(func(*Pod) {}), ""},
		{"bad name", pod(func(p *Pod) { p.Metadata.Name = "Web_1" }), "metadata.name"},
		{"missing tenant", pod(func(p *Pod) { p.Metadata.Tenant = "" }), "metadata.tenant"},
		{"no containers", pod(func(p *Pod) { p.Spec.Containers = nil }), "spec.containers"},
		{"duplicate container", pod(func(p *Pod) { p.Spec.Containers = append(p.Spec.Containers, p.Spec.Containers[0]) }), "spec.containers[1].name"},
		{"no image", pod(func(p *Pod) { p.Spec.Containers[0].Image = "" }), "spec.containers[0].image"},
		{"limit below request", pod(func(p *Pod) {
			p.Spec.Containers[0].Resources = ResourceRequirements{Requests: ResourceList{ResourceCPU: q("500m")}, Limits: ResourceList{ResourceCPU: q("250m")}}
		}), "spec.containers[0].resources.requests.cpu"},
		{"unknown resource", pod(func(p *Pod) { p.Spec.Containers[0].Resources.Limits = ResourceList{"gpu": q("1")} }), "spec.containers[0].resources.limits"},
		{"bad port", pod(func(p *Pod) { p.Spec.Containers[0].Ports = []ContainerPort{{ContainerPort: 70000}} }), "spec.containers[0].ports[0].containerPort"},
		{"bad restart policy", pod(func(p *Pod) { p.Spec.RestartPolicy = "Sometimes" }), "spec.restartPolicy"},
		{"two probe handlers", pod(func(p *Pod) {
			p.Spec.Containers[0].LivenessProbe = &Probe{Exec: &ExecAction{Command: []string{"true"}}, TCPSocket: &TCPSocketAction{Port: 80}}
		}), "spec.containers[0].livenessProbe"},
		{"bad label", pod(func(p *Pod) { p.Metadata.Labels = map[string]string{"app": "not ok"} }), "metadata.labels[app]"},
		{"tenant with bad isolation", &Tenant{Metadata: ObjectMeta{Name: "t"}, Spec: TenantSpec{Isolation: "paranoid"}}, "spec.isolation"},
		{"tenant default outside allowed", &Tenant{Metadata: ObjectMeta{Name: "t"}, Spec: TenantSpec{Isolation: IsolationShared, AllowedRuntimeClasses: []string{"gvisor"}, DefaultRuntimeClass: "runc"}}, "spec.defaultRuntimeClass"},
		{"cluster-scoped with tenant", &Tenant{Metadata: ObjectMeta{Name: "t", Tenant: "x"}, Spec: TenantSpec{Isolation: IsolationShared}}, "metadata.tenant"},
		{"token without tenant", &Token{Metadata: ObjectMeta{Name: "abcdefgh"}, Spec: TokenSpec{Role: RoleEdit}}, "spec.tenant"},
		{"service nodePort on ClusterIP", &Service{Metadata: ObjectMeta{Name: "s", Tenant: "a"}, Spec: ServiceSpec{Type: ServiceClusterIP, Ports: []ServicePort{{Port: 80, Protocol: ProtocolTCP, NodePort: 30080}}}}, "spec.ports[0].nodePort"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.obj)
			if tc.field == "" {
				if err != nil {
					t.Errorf("Validate = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) || errdefs.FieldOf(err) != tc.field {
				t.Errorf("Validate = %v (field %q), want invalid %s", err, errdefs.FieldOf(err), tc.field)
			}
		})
	}
}

func TestValidateUpdate(t *testing.T) {
	old := &Pod{Metadata: ObjectMeta{Name: "p", Tenant: "a"}, Spec: PodSpec{Containers: []Container{{Name: "c", Image: "v1"}}}}
	Default(old)
	img := Clone(old)
	img.Spec.Containers[0].Image = "v2"
	if err := ValidateUpdate(img, old); err != nil {
		t.Errorf("image change: %v, want allowed", err)
	}
	cmd := Clone(old)
	cmd.Spec.Containers[0].Command = []string{"sh"}
	if err := ValidateUpdate(cmd, old); errdefs.FieldOf(err) != "spec" {
		t.Errorf("command change: %v, want refused on spec", err)
	}
	if !SpecChanged(img, old) || SpecChanged(Clone(old), old) {
		t.Error("SpecChanged wrong")
	}
}

func TestDefaultIsIdempotent(t *testing.T) {
	for _, k := range Kinds {
		o := k.New()
		Default(o)
		once := Clone(o)
		Default(o)
		if !jsonEqual(o, once) {
			t.Errorf("Default(%s) twice differs from once", k.Kind)
		}
	}
}

// FuzzDecode checks that no input crashes the decoder, that every error is
// a user-facing class, and that a decoded object survives an encode/decode
// round trip.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"paddock.dev/v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"x"}]}}`))
	f.Add([]byte("kind: Tenant\nmetadata: {name: t}\nspec: {quota: {pods: 3, cpu: 500m, memory: 1Gi}}\n"))
	f.Add([]byte("kind: Secret\nmetadata: {name: s}\ndata: {k: dmFsdWU=}\n"))
	f.Add([]byte("kind: Deployment\nmetadata: {name: d}\nspec:\n  strategy: {rollingUpdate: {maxSurge: 25%, maxUnavailable: 1}}\n"))
	f.Add([]byte("kind: List\nitems: [{kind: ConfigMap, metadata: {name: a}}]\n---\nkind: Pod\n"))
	f.Add([]byte("kind: NetworkPolicy\nmetadata: {name: n, tenant: t}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}, {protocol: UDP}]}]\n"))
	f.Add([]byte("{{{"))
	f.Add([]byte("kind: Pod\nmetadata:\n  labels: {a: [1, 2]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := DecodeDocuments(data)
		if err != nil {
			if !errors.Is(err, errdefs.ErrBadRequest) && !errors.Is(err, errdefs.ErrTooLarge) {
				t.Fatalf("DecodeDocuments error %v is not a bad-request class", err)
			}
			return
		}
		for _, d := range docs {
			_ = Validate(d.Object)
			Default(d.Object)
			b, err := Encode(d.Object)
			if err != nil {
				t.Fatalf("Encode(%T) = %v", d.Object, err)
			}
			if _, err := Decode(b); err != nil {
				t.Fatalf("Decode(Encode(obj)) = %v for %s", err, b)
			}
		}
	})
}
