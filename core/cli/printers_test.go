package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
)

// fixedNow is the clock of every printer test.
var fixedNow = time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)

func clock() time.Time { return fixedNow }

// ago returns the API time d before fixedNow.
func ago(d time.Duration) *api.Time { return api.NewTime(fixedNow.Add(-d)) }

func mustKind(t *testing.T, name string) *api.Kind {
	t.Helper()
	k, ok := api.KindFor(name)
	if !ok {
		t.Fatalf("KindFor(%q) = false", name)
	}
	return k
}

func ptrTo[T any](v T) *T { return &v }

func TestHumanDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{-time.Second, "0s"},
		{-5 * time.Second, "<invalid>"},
		{45 * time.Second, "45s"},
		{119 * time.Second, "119s"},
		{2 * time.Minute, "2m"},
		{5*time.Minute + 30*time.Second, "5m30s"},
		{5 * time.Minute, "5m"},
		{15*time.Minute + 59*time.Second, "15m"},
		{150 * time.Minute, "150m"},
		{3 * time.Hour, "3h"},
		{3*time.Hour + 20*time.Minute, "3h20m"},
		{10*time.Hour + 5*time.Minute, "10h"},
		{47 * time.Hour, "47h"},
		{48 * time.Hour, "2d"},
		{53 * time.Hour, "2d5h"},
		{30 * 24 * time.Hour, "30d"},
		{(2*365 + 10) * 24 * time.Hour, "2y10d"},
		{9 * 365 * 24 * time.Hour, "9y"},
	}
	for _, tt := range tests {
		t.Run(tt.d.String(), func(t *testing.T) {
			if got := humanDuration(tt.d); got != tt.want {
				t.Errorf("humanDuration(%v) = %q, want %q", tt.d, got, tt.want)
			}
		})
	}
}

func TestAge(t *testing.T) {
	tests := []struct {
		name string
		in   *api.Time
		want string
	}{
		{"unset", nil, "<unknown>"},
		{"zero", &api.Time{}, "<unknown>"},
		{"seconds", ago(45 * time.Second), "45s"},
		{"days", ago(50 * time.Hour), "2d2h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := age(tt.in, fixedNow); got != tt.want {
				t.Errorf("age(%v) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestServicePorts(t *testing.T) {
	tests := []struct {
		name  string
		ports []api.ServicePort
		want  string
	}{
		{"none", nil, "<none>"},
		{"default protocol", []api.ServicePort{{Port: 80}}, "80/TCP"},
		{"node port", []api.ServicePort{{Port: 80, NodePort: 30080, Protocol: api.ProtocolTCP}}, "80:30080/TCP"},
		{"several", []api.ServicePort{{Port: 53, Protocol: api.ProtocolUDP}, {Port: 53}, {Port: 443, NodePort: 30443}}, "53/UDP,53/TCP,443:30443/TCP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := servicePorts(tt.ports); got != tt.want {
				t.Errorf("servicePorts(%v) = %q, want %q", tt.ports, got, tt.want)
			}
		})
	}
}

func TestTenantUsageColumns(t *testing.T) {
	used := api.TenantStatus{Used: api.TenantUsage{Pods: 3, CPU: api.MustParseQuantity("1500m"), Memory: api.MustParseQuantity("1Gi")}}
	cpu, mem := api.MustParseQuantity("4"), api.MustParseQuantity("8Gi")
	tests := []struct {
		name                string
		tenant              *api.Tenant
		pods, cpuS, memoryS string
	}{
		{"no quota", &api.Tenant{Status: used}, "3", "1500m", "1Gi"},
		{"full quota", &api.Tenant{
			Spec:   api.TenantSpec{Quota: &api.TenantQuota{Pods: ptrTo[int64](10), CPU: &cpu, Memory: &mem}},
			Status: used,
		}, "3/10", "1500m/4", "1Gi/8Gi"},
		{"pods only", &api.Tenant{
			Spec:   api.TenantSpec{Quota: &api.TenantQuota{Pods: ptrTo[int64](5)}},
			Status: used,
		}, "3/5", "1500m", "1Gi"},
		{"nothing used", &api.Tenant{
			Spec: api.TenantSpec{Quota: &api.TenantQuota{CPU: &cpu}},
		}, "0", "0/4", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tenantPods(tt.tenant); got != tt.pods {
				t.Errorf("tenantPods() = %q, want %q", got, tt.pods)
			}
			if got := tenantCPU(tt.tenant); got != tt.cpuS {
				t.Errorf("tenantCPU() = %q, want %q", got, tt.cpuS)
			}
			if got := tenantMemory(tt.tenant); got != tt.memoryS {
				t.Errorf("tenantMemory() = %q, want %q", got, tt.memoryS)
			}
		})
	}
}

func TestPodStatus(t *testing.T) {
	waiting := func(reason string) api.ContainerStatus {
		return api.ContainerStatus{State: api.ContainerState{Waiting: &api.ContainerStateWaiting{Reason: reason}}}
	}
	tests := []struct {
		name string
		pod  api.Pod
		want string
	}{
		{"no status", api.Pod{}, "Pending"},
		{"phase", api.Pod{Status: api.PodStatus{Phase: api.PodRunning}}, "Running"},
		{"pod reason", api.Pod{Status: api.PodStatus{Phase: api.PodFailed, Reason: "Evicted"}}, "Evicted"},
		{"waiting container", api.Pod{Status: api.PodStatus{Phase: api.PodRunning, ContainerStatuses: []api.ContainerStatus{
			{Ready: true, State: api.ContainerState{Running: &api.ContainerStateRunning{}}},
			waiting("CrashLoopBackOff"),
		}}}, "CrashLoopBackOff"},
		{"first container wins", api.Pod{Status: api.PodStatus{Phase: api.PodPending, ContainerStatuses: []api.ContainerStatus{
			waiting("ImagePullBackOff"), waiting("ContainerCreating"),
		}}}, "ImagePullBackOff"},
		{"exit code", api.Pod{Status: api.PodStatus{Phase: api.PodFailed, ContainerStatuses: []api.ContainerStatus{
			{State: api.ContainerState{Terminated: &api.ContainerStateTerminated{ExitCode: 2}}},
		}}}, "ExitCode:2"},
		{"signal", api.Pod{Status: api.PodStatus{Phase: api.PodFailed, ContainerStatuses: []api.ContainerStatus{
			{State: api.ContainerState{Terminated: &api.ContainerStateTerminated{ExitCode: 137, Signal: 9}}},
		}}}, "Signal:9"},
		{"completed", api.Pod{Status: api.PodStatus{Phase: api.PodSucceeded, ContainerStatuses: []api.ContainerStatus{
			{State: api.ContainerState{Terminated: &api.ContainerStateTerminated{Reason: "Completed"}}},
		}}}, "Completed"},
		{"terminating", api.Pod{
			Metadata: api.ObjectMeta{DeletionTimestamp: ago(time.Second)},
			Status:   api.PodStatus{Phase: api.PodRunning},
		}, "Terminating"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := podStatus(&tt.pod); got != tt.want {
				t.Errorf("podStatus() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNodeStatus(t *testing.T) {
	ready := func(status string) []api.Condition { return []api.Condition{{Type: "Ready", Status: status}} }
	tests := []struct {
		name string
		node api.Node
		want string
	}{
		{"no conditions", api.Node{}, "Unknown"},
		{"ready", api.Node{Status: api.NodeStatus{Conditions: ready("True")}}, "Ready"},
		{"not ready", api.Node{Status: api.NodeStatus{Conditions: ready("False")}}, "NotReady"},
		{"unknown", api.Node{Status: api.NodeStatus{Conditions: ready("Unknown")}}, "Unknown"},
		{"cordoned", api.Node{Spec: api.NodeSpec{Unschedulable: true}, Status: api.NodeStatus{Conditions: ready("True")}}, "Ready,SchedulingDisabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nodeStatus(&tt.node); got != tt.want {
				t.Errorf("nodeStatus() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEndpointsString(t *testing.T) {
	addrs := func(ips ...string) []api.EndpointAddress {
		var out []api.EndpointAddress
		for _, ip := range ips {
			out = append(out, api.EndpointAddress{IP: ip})
		}
		return out
	}
	tests := []struct {
		name    string
		subsets []api.EndpointSubset
		want    string
	}{
		{"none", nil, "<none>"},
		{"not ready only", []api.EndpointSubset{{NotReadyAddresses: addrs("10.0.0.1"), Ports: []api.EndpointPort{{Port: 80}}}}, "<none>"},
		{"two", []api.EndpointSubset{{Addresses: addrs("10.0.0.1", "10.0.0.2"), Ports: []api.EndpointPort{{Port: 80}}}}, "10.0.0.1:80,10.0.0.2:80"},
		{"no ports", []api.EndpointSubset{{Addresses: addrs("10.0.0.1")}}, "10.0.0.1"},
		{"cut", []api.EndpointSubset{{Addresses: addrs("10.0.0.1", "10.0.0.2", "10.0.0.3"), Ports: []api.EndpointPort{{Port: 80}, {Port: 443}}}},
			"10.0.0.1:80,10.0.0.1:443,10.0.0.2:80 + 3 more..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := endpointsString(tt.subsets, 3); got != tt.want {
				t.Errorf("endpointsString() = %q, want %q", got, tt.want)
			}
		})
	}
}

func testPods() []api.Object {
	running := api.ContainerState{Running: &api.ContainerStateRunning{}}
	return []api.Object{
		&api.Pod{
			Metadata: api.ObjectMeta{Name: "web", Tenant: "acme", CreationTimestamp: ago(45 * time.Second)},
			Spec:     api.PodSpec{Containers: []api.Container{{Name: "a"}, {Name: "b"}}, NodeName: "n1", RuntimeClassName: "runc"},
			Status: api.PodStatus{Phase: api.PodRunning, PodIP: "10.42.0.7", ContainerStatuses: []api.ContainerStatus{
				{Ready: true, RestartCount: 1, State: running},
				{Ready: true, RestartCount: 2, State: running},
			}},
		},
		&api.Pod{
			Metadata: api.ObjectMeta{Name: "db-0", Tenant: "globex", CreationTimestamp: ago(3 * time.Hour)},
			Spec:     api.PodSpec{Containers: []api.Container{{Name: "db"}}},
			Status: api.PodStatus{Phase: api.PodRunning, ContainerStatuses: []api.ContainerStatus{
				{RestartCount: 5, State: api.ContainerState{Waiting: &api.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}},
			}},
		},
	}
}

func TestTablePrinter(t *testing.T) {
	cpu := api.MustParseQuantity("4")
	tenants := []api.Object{
		&api.Tenant{
			Metadata: api.ObjectMeta{Name: "acme", CreationTimestamp: ago(2 * 24 * time.Hour)},
			Spec: api.TenantSpec{Isolation: api.IsolationShared, DefaultRuntimeClass: "runc",
				Quota: &api.TenantQuota{Pods: ptrTo[int64](10), CPU: &cpu}},
			Status: api.TenantStatus{Used: api.TenantUsage{Pods: 2, CPU: api.MustParseQuantity("500m")}},
		},
		&api.Tenant{
			Metadata: api.ObjectMeta{Name: "secure", CreationTimestamp: ago(5 * time.Minute)},
			Spec: api.TenantSpec{Isolation: api.IsolationSandboxed, DefaultRuntimeClass: "gvisor",
				AllowedRuntimeClasses: []string{"gvisor", "kata"}, NodeSelector: map[string]string{"zone": "a", "pool": "x"}},
		},
	}
	tests := []struct {
		name       string
		kind       string
		objs       []api.Object
		wide       bool
		noHeaders  bool
		withTenant bool
		want       string
	}{
		{
			name: "pods",
			kind: "pods",
			objs: testPods(),
			want: "" +
				"NAME   READY   STATUS             RESTARTS   AGE\n" +
				"web    2/2     Running            3          45s\n" +
				"db-0   0/1     CrashLoopBackOff   5          3h\n",
		},
		{
			name: "pods wide",
			kind: "pods",
			objs: testPods(),
			wide: true,
			want: "" +
				"NAME   READY   STATUS             RESTARTS   AGE   IP          NODE     RUNTIME\n" +
				"web    2/2     Running            3          45s   10.42.0.7   n1       runc\n" +
				"db-0   0/1     CrashLoopBackOff   5          3h    <none>      <none>   <none>\n",
		},
		{
			name:       "pods of every tenant without headers",
			kind:       "pods",
			objs:       testPods(),
			noHeaders:  true,
			withTenant: true,
			want: "" +
				"acme     web    2/2   Running            3   45s\n" +
				"globex   db-0   0/1   CrashLoopBackOff   5   3h\n",
		},
		{
			name: "tenants",
			kind: "tenants",
			objs: tenants,
			want: "" +
				"NAME     ISOLATION   PODS   CPU      MEMORY   AGE\n" +
				"acme     shared      2/10   500m/4   0        2d\n" +
				"secure   sandboxed   0      0        0        5m\n",
		},
		{
			name:       "tenants wide ignore the tenant column",
			kind:       "tenants",
			objs:       tenants,
			wide:       true,
			withTenant: true,
			want: "" +
				"NAME     ISOLATION   PODS   CPU      MEMORY   AGE   DEFAULT-RUNTIME   ALLOWED-RUNTIMES   NODE-SELECTOR\n" +
				"acme     shared      2/10   500m/4   0        2d    runc              <any>              <none>\n" +
				"secure   sandboxed   0      0        0        5m    gvisor            gvisor,kata        pool=x,zone=a\n",
		},
		{
			name: "services",
			kind: "svc",
			objs: []api.Object{
				&api.Service{
					Metadata: api.ObjectMeta{Name: "web", CreationTimestamp: ago(90 * time.Second)},
					Spec: api.ServiceSpec{Type: api.ServiceNodePort, ClusterIP: "10.96.0.10",
						Ports: []api.ServicePort{{Port: 80, NodePort: 30080}, {Port: 443, NodePort: 30443}}},
				},
				&api.Service{
					Metadata: api.ObjectMeta{Name: "db", CreationTimestamp: ago(90 * time.Second)},
					Spec:     api.ServiceSpec{Ports: []api.ServicePort{{Port: 5432}}},
				},
			},
			want: "" +
				"NAME   TYPE        CLUSTER-IP   PORT(S)                      AGE\n" +
				"web    NodePort    10.96.0.10   80:30080/TCP,443:30443/TCP   90s\n" +
				"db     ClusterIP   <none>       5432/TCP                     90s\n",
		},
		{
			name: "endpoints",
			kind: "ep",
			objs: []api.Object{
				&api.Endpoints{
					Metadata: api.ObjectMeta{Name: "web", CreationTimestamp: ago(90 * time.Second)},
					Subsets: []api.EndpointSubset{{
						Addresses:         []api.EndpointAddress{{IP: "10.244.0.5"}, {IP: "10.244.1.7"}},
						NotReadyAddresses: []api.EndpointAddress{{IP: "10.244.0.9"}},
						Ports:             []api.EndpointPort{{Port: 8080}},
					}},
				},
				&api.Endpoints{Metadata: api.ObjectMeta{Name: "idle", CreationTimestamp: ago(90 * time.Second)}},
			},
			want: "" +
				"NAME   ENDPOINTS                         AGE\n" +
				"web    10.244.0.5:8080,10.244.1.7:8080   90s\n" +
				"idle   <none>                            90s\n",
		},
		{
			name: "network policies",
			kind: "netpol",
			objs: []api.Object{
				&api.NetworkPolicy{
					Metadata: api.ObjectMeta{Name: "db-from-web", CreationTimestamp: ago(3 * time.Minute)},
					Spec: api.NetworkPolicySpec{PodSelector: api.LabelSelector{MatchLabels: map[string]string{"tier": "db", "app": "shop"}},
						Ingress: []api.NetworkPolicyIngressRule{{Ports: []api.NetworkPolicyPort{{Port: 5432}}}}},
				},
				&api.NetworkPolicy{Metadata: api.ObjectMeta{Name: "deny-all", CreationTimestamp: ago(3 * time.Minute)}},
			},
			want: "" +
				"NAME          POD-SELECTOR       AGE\n" +
				"db-from-web   app=shop,tier=db   3m\n" +
				"deny-all      <all>              3m\n",
		},
		{
			name: "events sorted by last seen",
			kind: "events",
			objs: []api.Object{
				&api.Event{Type: "Warning", Reason: "BackOff", Message: "back-off\trestarting",
					InvolvedObject: api.ObjectReference{Kind: "Pod", Name: "web"}, LastTimestamp: ago(10 * time.Second)},
				&api.Event{Type: "Normal", Reason: "Scheduled", Message: "assigned to n1",
					InvolvedObject: api.ObjectReference{Kind: "Pod", Name: "web"}, FirstTimestamp: ago(4 * time.Minute)},
			},
			want: "" +
				"LAST SEEN   TYPE      REASON      OBJECT    MESSAGE\n" +
				"4m          Normal    Scheduled   pod/web   assigned to n1\n" +
				"10s         Warning   BackOff     pod/web   back-off restarting\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			p := newTablePrinter(mustKind(t, tt.kind), tt.wide, tt.noHeaders, tt.withTenant, clock)
			if err := p.print(&b, tt.objs); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("table =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestTablePrinterKeepsWidths checks that rows printed later (a watch)
// line up with the table printed before them.
func TestTablePrinterKeepsWidths(t *testing.T) {
	pods := testPods()
	var b bytes.Buffer
	p := newTablePrinter(mustKind(t, "pods"), false, false, false, clock)
	if err := p.print(&b, pods[:1]); err != nil {
		t.Fatal(err)
	}
	if err := p.print(&b, pods[1:]); err != nil {
		t.Fatal(err)
	}
	short := &api.Pod{Metadata: api.ObjectMeta{Name: "x", CreationTimestamp: ago(time.Second)}, Status: api.PodStatus{Phase: api.PodPending}}
	if err := p.print(&b, []api.Object{short}); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAME   READY   STATUS    RESTARTS   AGE\n" +
		"web    2/2     Running   3          45s\n" +
		"db-0   0/1     CrashLoopBackOff   5          3h\n" +
		"x      0/0     Pending            0          1s\n"
	if got := b.String(); got != want {
		t.Errorf("rows =\n%s\nwant\n%s", got, want)
	}
}

func TestParseOutput(t *testing.T) {
	tests := []struct {
		in      string
		want    outputFormat
		wantErr string
	}{
		{"", outputTable, ""},
		{"wide", outputWide, ""},
		{"json", outputJSON, ""},
		{"yaml", outputYAML, ""},
		{"name", outputName, ""},
		{"xml", "", `--output "xml": want one of table, wide, json, yaml, name`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseOutput(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("parseOutput(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("parseOutput(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestPrintDocument(t *testing.T) {
	cm := func(name string) api.Object {
		return &api.ConfigMap{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "ConfigMap"}, Metadata: api.ObjectMeta{Name: name}}
	}
	tests := []struct {
		name     string
		format   outputFormat
		objs     []api.Object
		single   bool
		wantKind string
		wantLen  int
	}{
		{"one object by name", outputJSON, []api.Object{cm("a")}, true, "ConfigMap", 0},
		{"a list of one", outputJSON, []api.Object{cm("a")}, false, "List", 1},
		{"several", outputYAML, []api.Object{cm("a"), cm("b")}, false, "List", 2},
		{"empty list", outputJSON, nil, false, "List", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := printDocument(&b, tt.format, tt.objs, tt.single); err != nil {
				t.Fatal(err)
			}
			out := b.Bytes()
			if tt.format == outputYAML {
				if !strings.Contains(string(out), "kind: List\n") {
					t.Errorf("yaml output lacks kind: List:\n%s", out)
				}
				return
			}
			var doc struct {
				APIVersion string            `json:"apiVersion"`
				Kind       string            `json:"kind"`
				Items      []json.RawMessage `json:"items"`
			}
			if err := json.Unmarshal(out, &doc); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out)
			}
			if doc.Kind != tt.wantKind || doc.APIVersion != api.Version || len(doc.Items) != tt.wantLen {
				t.Errorf("printDocument() = kind %q apiVersion %q with %d items, want kind %q with %d items", doc.Kind, doc.APIVersion, len(doc.Items), tt.wantKind, tt.wantLen)
			}
			if tt.wantKind == "List" && !strings.Contains(string(out), `"items": [`) {
				t.Errorf("a list must print items as an array, even when empty:\n%s", out)
			}
		})
	}
}
