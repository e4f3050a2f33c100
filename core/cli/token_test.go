package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
)

func TestTokenCreateOptions(t *testing.T) {
	tests := []struct {
		name     string
		opts     tokenCreateOptions
		tenant   string
		explicit bool
		want     api.TokenSpec
		wantErr  string
	}{
		{name: "tenant role from config", opts: tokenCreateOptions{role: "edit", description: "ci"}, tenant: "acme",
			want: api.TokenSpec{Role: api.RoleEdit, Tenant: "acme", Description: "ci"}},
		{name: "ttl", opts: tokenCreateOptions{role: "view", ttl: 24 * time.Hour}, tenant: "acme", explicit: true,
			want: api.TokenSpec{Role: api.RoleView, Tenant: "acme", ExpirationTimestamp: api.NewTime(fixedNow.Add(24 * time.Hour))}},
		{name: "cluster-admin ignores the config tenant", opts: tokenCreateOptions{role: "cluster-admin"}, tenant: "acme",
			want: api.TokenSpec{Role: api.RoleClusterAdmin}},
		{name: "node", opts: tokenCreateOptions{role: "node", node: "n1"}, want: api.TokenSpec{Role: api.RoleNode, Node: "n1"}},
		{name: "no role", opts: tokenCreateOptions{}, wantErr: "--role is required: want one of admin, edit, view, cluster-admin, node"},
		{name: "bad role", opts: tokenCreateOptions{role: "root"}, wantErr: `--role "root": want one of admin, edit, view, cluster-admin, node`},
		{name: "tenant role without tenant", opts: tokenCreateOptions{role: "admin"}, wantErr: "role admin is bound to a tenant: pass --tenant TENANT (or -t)"},
		{name: "explicit tenant for cluster-admin", opts: tokenCreateOptions{role: "cluster-admin"}, tenant: "acme", explicit: true,
			wantErr: "--tenant acme: role cluster-admin is not bound to a tenant"},
		{name: "node without node", opts: tokenCreateOptions{role: "node"}, wantErr: "role node needs --node NODE"},
		{name: "node for a tenant role", opts: tokenCreateOptions{role: "edit", node: "n1"}, tenant: "acme", wantErr: "--node n1: only role node is bound to a node"},
		{name: "negative ttl", opts: tokenCreateOptions{role: "edit", ttl: -time.Hour}, tenant: "acme", wantErr: "--ttl -1h0m0s: want a positive duration"},
		{name: "bad output", opts: tokenCreateOptions{role: "edit", output: "xml"}, tenant: "acme", wantErr: `--output "xml": want one of token, config, yaml, json`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.output == "" {
				tt.opts.output = "token"
			}
			tok, err := tt.opts.token(tt.tenant, tt.explicit, fixedNow)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("token() error = %v, want one starting %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("token() error = %v", err)
			}
			got, want := tok.Spec, tt.want
			if got.Role != want.Role || got.Tenant != want.Tenant || got.Node != want.Node || got.Description != want.Description ||
				(got.ExpirationTimestamp == nil) != (want.ExpirationTimestamp == nil) ||
				(got.ExpirationTimestamp != nil && !got.ExpirationTimestamp.Equal(want.ExpirationTimestamp.Time)) {
				t.Errorf("token() spec = %+v, want %+v", got, want)
			}
			if tok.Kind != "Token" || tok.APIVersion != api.Version {
				t.Errorf("token() type = %+v", tok.TypeMeta)
			}
		})
	}
}
