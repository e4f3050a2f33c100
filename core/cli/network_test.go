package cli

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

// TestServerNetworkFlags checks that bad network flags stop `paddock
// server` before it starts anything, naming the flag.
func TestServerNetworkFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster-cidr", "10.244.0.0"}, "--cluster-cidr"},
		{[]string{"--cluster-cidr", "fd00::/48"}, "only IPv4"},
		{[]string{"--service-cidr", "10.244.0.0/20"}, "--service-cidr 10.244.0.0/20 overlaps --cluster-cidr"},
		{[]string{"--node-cidr-mask-size", "8"}, "--node-cidr-mask-size 8"},
		{[]string{"--service-node-port-range", "30000"}, "--service-node-port-range"},
		{[]string{"--service-node-port-range", "3-2"}, "--service-node-port-range"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			root := NewRoot(&out, &errOut)
			dir := t.TempDir()
			root.SetArgs(append([]string{"server", "--data-dir", dir, "--listen", "127.0.0.1:0"}, tc.args...))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := root.ExecuteContext(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("paddock server %s = %v, want an error containing %q", strings.Join(tc.args, " "), err, tc.want)
			}
		})
	}
}

// TestGetNetworkObjects drives `paddock get` for services, endpoints and
// network policies against a real server.
func TestGetNetworkObjects(t *testing.T) {
	cl := testcluster.Start(t)
	ctx := t.Context()
	if _, err := cl.Admin.Create(ctx, &api.Tenant{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Tenant"}, Metadata: api.ObjectMeta{Name: "acme"}}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []api.Object{
		&api.Service{
			TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Service"},
			Metadata: api.ObjectMeta{Name: "web", Tenant: "acme"},
			Spec:     api.ServiceSpec{Type: api.ServiceNodePort, Selector: map[string]string{"app": "web"}, Ports: []api.ServicePort{{Port: 80}}},
		},
		&api.NetworkPolicy{
			TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "NetworkPolicy"},
			Metadata: api.ObjectMeta{Name: "db-from-web", Tenant: "acme"},
			Spec: api.NetworkPolicySpec{PodSelector: api.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
				Ingress: []api.NetworkPolicyIngressRule{{Ports: []api.NetworkPolicyPort{{Port: 5432}}}}},
		},
	} {
		if _, err := cl.Admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	svc := mustPaddock(t, cl, "get", "svc", "-t", "acme")
	if !regexp.MustCompile(`(?m)^web\s+NodePort\s+10\.96\.\d+\.\d+\s+80:3\d{4}/TCP\s+\d+s$`).MatchString(svc) {
		t.Errorf("paddock get svc =\n%s\nwant web with a cluster IP of 10.96.0.0/16 and a node port", svc)
	}
	np := mustPaddock(t, cl, "get", "netpol", "-t", "acme")
	if !regexp.MustCompile(`(?s)NAME\s+POD-SELECTOR\s+AGE\n.*db-from-web\s+app=db\s+\d+s`).MatchString(np) {
		t.Errorf("paddock get netpol =\n%s\nwant the policy and its pod selector", np)
	}
	yaml := mustPaddock(t, cl, "get", "networkpolicy", "db-from-web", "-t", "acme", "-o", "yaml")
	if !strings.Contains(yaml, "protocol: TCP") || !strings.Contains(yaml, "port: 5432") {
		t.Errorf("paddock get networkpolicy -o yaml =\n%s\nwant the defaulted protocol TCP and port 5432", yaml)
	}
}
