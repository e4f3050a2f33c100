package cli

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseResourceArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    map[string][]string // resource -> names, in order of want keys listed in order
		order   []string
		wantErr string
	}{
		{name: "kind", args: []string{"pods"}, order: []string{"pods"}, want: map[string][]string{"pods": nil}},
		{name: "short name and names", args: []string{"po", "web", "db"}, order: []string{"pods"}, want: map[string][]string{"pods": {"web", "db"}}},
		{name: "kind name", args: []string{"Deployment"}, order: []string{"deployments"}, want: map[string][]string{"deployments": nil}},
		{name: "several kinds", args: []string{"svc,cm,svc"}, order: []string{"services", "configmaps"}, want: map[string][]string{"services": nil, "configmaps": nil}},
		{name: "kind/name", args: []string{"pod/web"}, order: []string{"pods"}, want: map[string][]string{"pods": {"web"}}},
		{name: "kind/name of several kinds", args: []string{"pod/web", "svc/web", "po/db"}, order: []string{"pods", "services"},
			want: map[string][]string{"pods": {"web", "db"}, "services": {"web"}}},
		{name: "nothing", args: nil, wantErr: "want a resource type, one of tenants, nodes"},
		{name: "unknown kind", args: []string{"podz"}, wantErr: `unknown resource type "podz": want one of tenants, nodes, runtimeclasses, tokens, leases, pods`},
		{name: "unknown kind in kind/name", args: []string{"podz/web"}, wantErr: `unknown resource type "podz"`},
		{name: "unknown kind in a list", args: []string{"pods,podz"}, wantErr: `unknown resource type "podz"`},
		{name: "empty name", args: []string{"pod/"}, wantErr: `"pod/": want KIND/NAME such as pod/web`},
		{name: "two slashes", args: []string{"pod/a/b"}, wantErr: `"pod/a/b": want KIND/NAME`},
		{name: "mixed after kind", args: []string{"pods", "svc/web"}, wantErr: `"svc/web": a NAME after the resource type cannot contain "/"`},
		{name: "mixed after kind/name", args: []string{"pod/web", "db"}, wantErr: `"db": after a KIND/NAME argument every argument must be KIND/NAME`},
		{name: "empty name argument", args: []string{"pods", ""}, wantErr: "empty NAME argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			groups, err := parseResourceArgs(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("parseResourceArgs(%q) error = %v, want one starting %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseResourceArgs(%q) error = %v", tt.args, err)
			}
			var order []string
			got := map[string][]string{}
			for _, g := range groups {
				order = append(order, g.kind.Resource)
				got[g.kind.Resource] = g.names
			}
			if !reflect.DeepEqual(order, tt.order) {
				t.Errorf("parseResourceArgs(%q) kinds = %v, want %v", tt.args, order, tt.order)
			}
			for k, names := range tt.want {
				if len(names) == 0 && len(got[k]) == 0 {
					continue
				}
				if !reflect.DeepEqual(got[k], names) {
					t.Errorf("parseResourceArgs(%q) names of %s = %q, want %q", tt.args, k, got[k], names)
				}
			}
		})
	}
}

func TestErrorSink(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name     string
		outcomes []error
		wantOut  string
		wantErr  string
	}{
		{"all fine", []error{nil, nil}, "", ""},
		{"last fails", []error{nil, boom}, "", "boom"},
		{"first fails", []error{boom, nil}, "error: boom\n", "one of the objects failed: see the error above"},
		{"two of three fail", []error{boom, boom, nil}, "error: boom\nerror: boom\n", "2 of the objects failed: see the errors above"},
		{"all fail", []error{boom, boom}, "error: boom\n", "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			s := newErrorSink(&b, len(tt.outcomes))
			for _, e := range tt.outcomes {
				s.done(e)
			}
			if b.String() != tt.wantOut {
				t.Errorf("printed %q, want %q", b.String(), tt.wantOut)
			}
			got := ""
			if err := s.err(); err != nil {
				got = err.Error()
			}
			if got != tt.wantErr {
				t.Errorf("err() = %q, want %q", got, tt.wantErr)
			}
		})
	}
}
