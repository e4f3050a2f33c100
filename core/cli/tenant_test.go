package cli

import (
	"strings"
	"testing"

	"github.com/paddock-dev/paddock/core/api"
)

func TestParseQuota(t *testing.T) {
	tests := []struct {
		in      string
		want    string // pods/cpu/memory, "-" for unset, "nil" for no quota
		wantErr string
	}{
		{in: "", want: "nil"},
		{in: "  ", want: "nil"},
		{in: "pods=10,cpu=4,memory=8Gi", want: "10/4/8Gi"},
		{in: " pods = 3 , memory=512Mi", want: "3/-/512Mi"},
		{in: "cpu=500m", want: "-/500m/-"},
		{in: "pods=0", want: "0/-/-"},
		{in: "gpu=1", wantErr: `--quota: unknown resource "gpu": want one of pods, cpu, memory`},
		{in: "cpu=abc", wantErr: `--quota: cpu: invalid quantity "abc": want a number`},
		{in: "memory=-1Gi", wantErr: `--quota: memory: invalid quantity "-1Gi": must not be negative`},
		{in: "pods=1.5", wantErr: `--quota: pods=1.5: want a whole number of pods, 0 or more`},
		{in: "pods=-2", wantErr: `--quota: pods=-2: want a whole number of pods, 0 or more`},
		{in: "pods", wantErr: `--quota: "pods" is not KEY=VALUE: want e.g. pods=10,cpu=4,memory=8Gi`},
		{in: "=3", wantErr: `--quota: "=3" is not KEY=VALUE`},
		{in: "cpu=", wantErr: `--quota: cpu has no value: want e.g. cpu=4 or cpu=500m`},
		{in: "pods=1,pods=2", wantErr: `--quota: pods is given twice`},
		{in: "pods=1,", wantErr: `--quota: "" is not KEY=VALUE`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			q, err := parseQuota(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("parseQuota(%q) error = %v, want one starting %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseQuota(%q) error = %v", tt.in, err)
			}
			if got := quotaString(q); got != tt.want {
				t.Errorf("parseQuota(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func quotaString(q *api.TenantQuota) string {
	if q == nil {
		return "nil"
	}
	s := func(v *api.Quantity) string {
		if v == nil {
			return "-"
		}
		return v.String()
	}
	pods := "-"
	if q.Pods != nil {
		pods = api.NewQuantity(*q.Pods).String()
	}
	return pods + "/" + s(q.CPU) + "/" + s(q.Memory)
}

func TestParseKeyValues(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]string
		wantErr string
	}{
		{in: "", want: nil},
		{in: "pool=dedicated", want: map[string]string{"pool": "dedicated"}},
		{in: "pool=a, zone=b", want: map[string]string{"pool": "a", "zone": "b"}},
		{in: "empty=", want: map[string]string{"empty": ""}},
		{in: "pool", wantErr: `--node-selector: "pool" is not KEY=VALUE`},
		{in: "a=1,a=2", wantErr: `--node-selector: a is given twice`},
		{in: "bad key=1", wantErr: `--node-selector: invalid key "bad key"`},
		{in: "k=bad value", wantErr: `--node-selector: invalid value "bad value" of k`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseKeyValues("--node-selector", tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("parseKeyValues(%q) error = %v, want one starting %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseKeyValues(%q) error = %v", tt.in, err)
			}
			if labelsString(got) != labelsString(tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("parseKeyValues(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestTenantCreateOptions(t *testing.T) {
	o := tenantCreateOptions{sandboxed: true, quota: "pods=2", runtimeClasses: []string{"gvisor"}, nodeSelector: "pool=x"}
	tn, err := o.tenant("secure")
	if err != nil {
		t.Fatal(err)
	}
	if tn.Metadata.Name != "secure" || tn.Spec.Isolation != api.IsolationSandboxed || *tn.Spec.Quota.Pods != 2 ||
		tn.Spec.NodeSelector["pool"] != "x" || tn.Spec.AllowedRuntimeClasses[0] != "gvisor" || tn.Kind != "Tenant" {
		t.Errorf("tenant() = %+v", tn)
	}
	o = tenantCreateOptions{runtimeClasses: []string{"runc", ""}}
	if _, err := o.tenant("x"); err == nil || !strings.Contains(err.Error(), "--runtime-classes") {
		t.Errorf("tenant() with an empty runtime class: error = %v, want one naming --runtime-classes", err)
	}
}
