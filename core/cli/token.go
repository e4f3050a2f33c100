package cli

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/spf13/cobra"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Issue, list and revoke API tokens",
	}
	cmd.AddCommand(newTokenCreateCmd(g), newTokenListCmd(g), newTokenRevokeCmd(g))
	return cmd
}

// tokenRoles are the roles token create accepts, in the order help shows.
var tokenRoles = []api.Role{api.RoleAdmin, api.RoleEdit, api.RoleView, api.RoleClusterAdmin, api.RoleNode}

// tokenOutputs are the formats of token create -o.
var tokenOutputs = []string{"token", "config", "yaml", "json"}

// tokenCreateOptions are the flags of token create.
type tokenCreateOptions struct {
	role        string
	node        string
	description string
	ttl         time.Duration
	output      string
}

// token returns the Token to create. tenant is the tenant of -t or the
// client config; explicit says it came from -t.
func (o *tokenCreateOptions) token(tenant string, explicit bool, now time.Time) (*api.Token, error) {
	role := api.Role(o.role)
	if o.role == "" {
		return nil, fmt.Errorf("--role is required: want one of %s", roleNames())
	}
	if !slices.Contains(tokenRoles, role) {
		return nil, fmt.Errorf("--role %q: want one of %s", o.role, roleNames())
	}
	if !slices.Contains(tokenOutputs, o.output) {
		return nil, fmt.Errorf("--output %q: want one of %s", o.output, strings.Join(tokenOutputs, ", "))
	}
	if o.ttl < 0 {
		return nil, fmt.Errorf("--ttl %s: want a positive duration such as 24h, or 0 for a token that does not expire", o.ttl)
	}
	t := &api.Token{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Token"},
		Spec:     api.TokenSpec{Role: role, Description: o.description},
	}
	switch role {
	case api.RoleAdmin, api.RoleEdit, api.RoleView:
		if tenant == "" {
			return nil, fmt.Errorf("role %s is bound to a tenant: pass --tenant TENANT (or -t)", role)
		}
		t.Spec.Tenant = tenant
	default:
		if explicit {
			return nil, fmt.Errorf("--tenant %s: role %s is not bound to a tenant; only admin, edit and view are", tenant, role)
		}
	}
	switch {
	case role == api.RoleNode && o.node == "":
		return nil, errors.New("role node needs --node NODE: the node the agent runs on")
	case role != api.RoleNode && o.node != "":
		return nil, fmt.Errorf("--node %s: only role node is bound to a node", o.node)
	}
	t.Spec.Node = o.node
	if o.ttl > 0 {
		t.Spec.ExpirationTimestamp = api.NewTime(now.Add(o.ttl))
	}
	return t, nil
}

func roleNames() string {
	names := make([]string, len(tokenRoles))
	for i, r := range tokenRoles {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}

func newTokenCreateCmd(g *globals) *cobra.Command {
	var o tokenCreateOptions
	cmd := &cobra.Command{
		Use:   "create --role ROLE [--tenant TENANT] [--node NODE]",
		Short: "Issue an API token and print it (it is shown only once)",
		Long: `Issue an API token. Roles admin, edit and view are bound to a tenant (--tenant
or -t, default: the client config's tenant); role node to a node (--node);
cluster-admin to neither. The bearer token is shown only in this answer.

-o token prints the bearer token; -o config prints a complete client config
for it, ready to save and use with --config or PADDOCK_CONFIG.`,
		Example: `  paddock token create --tenant acme --role edit --description ci
  paddock token create -t acme --role admin --ttl 720h -o config > acme.conf
  paddock token create --role node --node n1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			t, err := o.token(g.tenantFor(cfg), g.tenant != "", time.Now())
			if err != nil {
				return err
			}
			out, err := c.Create(cmd.Context(), t)
			if err != nil {
				return err
			}
			created := out.(*api.Token)
			if created.Status.Token == "" {
				return errors.New("the server created the token but did not return its secret")
			}
			switch o.output {
			case "config":
				conf := &client.Config{
					Server:               cfg.Server,
					CertificateAuthority: cfg.CertificateAuthority,
					Token:                created.Status.Token,
					Tenant:               created.Spec.Tenant,
					Role:                 string(created.Spec.Role),
				}
				b, err := conf.Marshal()
				if err != nil {
					return err
				}
				_, err = g.out.Write(b)
				return err
			case "yaml", "json":
				return printDocument(g.out, outputFormat(o.output), []api.Object{created}, true)
			}
			_, err = fmt.Fprintln(g.out, created.Status.Token)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.role, "role", "", "the token's role: "+roleNames())
	fl.StringVar(&o.node, "node", "", "the node a node token is for")
	fl.StringVar(&o.description, "description", "", "what the token is for, shown by token list")
	fl.DurationVar(&o.ttl, "ttl", 0, "how long the token is valid, e.g. 24h (0 = until revoked)")
	fl.StringVarP(&o.output, "output", "o", "token", "what to print: token, config, yaml or json")
	return cmd
}

func newTokenListCmd(g *globals) *cobra.Command {
	var o getOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tokens (the same as get tokens)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runGet(cmd.Context(), &o, []string{"tokens"})
		},
	}
	o.register(cmd, false)
	return cmd
}

func newTokenRevokeCmd(g *globals) *cobra.Command {
	var ignoreNotFound bool
	cmd := &cobra.Command{
		Use:   "revoke ID...",
		Short: "Revoke tokens by id (the NAME column of token list)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("%s takes the ids of the tokens to revoke; see paddock token list", cmd.CommandPath())
			}
			c, _, err := g.client()
			if err != nil {
				return err
			}
			k, _ := api.KindFor("tokens")
			errs := newErrorSink(g.errOut, len(args))
			for _, id := range args {
				id, _, _ = strings.Cut(id, ".") // accept a whole bearer token too
				_, err := c.Delete(cmd.Context(), k, "", id)
				switch {
				case err == nil:
					fmt.Fprintf(g.out, "token %q revoked\n", id)
				case errdefs.IsNotFound(err) && ignoreNotFound:
					err = nil
				case cmd.Context().Err() != nil:
					return err
				}
				errs.done(err)
			}
			return errs.err()
		},
	}
	cmd.Flags().BoolVar(&ignoreNotFound, "ignore-not-found", false, "treat tokens that do not exist as revoked")
	return cmd
}
