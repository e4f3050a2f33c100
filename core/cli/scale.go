package cli

import (
	"context"
	"fmt"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/spf13/cobra"
)

func newScaleCmd(g *globals) *cobra.Command {
	var (
		replicas int32
		output   string
	)
	cmd := &cobra.Command{
		Use:   "scale (deployment|replicaset) NAME... --replicas N",
		Short: "Set the number of replicas of deployments or replica sets",
		Example: `  paddock scale deployment web --replicas 5
  paddock scale deploy/web deploy/api --replicas 0`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("replicas") {
				return fmt.Errorf("--replicas is required: the number of replicas to scale to, e.g. --replicas 3")
			}
			if replicas < 0 {
				return fmt.Errorf("--replicas %d: want 0 or more", replicas)
			}
			format, err := parseOutput(output)
			if err != nil {
				return err
			}
			groups, err := parseResourceArgs(args)
			if err != nil {
				return err
			}
			for _, gr := range groups {
				if gr.kind != deploymentKind && gr.kind != replicaSetKind {
					return fmt.Errorf("cannot scale %s: only deployments and replicasets have replicas", gr.kind.Resource)
				}
				if len(gr.names) == 0 {
					return fmt.Errorf("name the %s to scale: paddock scale %s NAME --replicas N", gr.kind.Resource, gr.kind.Singular)
				}
			}
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			errs := newErrorSink(g.errOut, countNames(groups))
			for _, gr := range groups {
				tenant, err := g.requireTenant(gr.kind, cfg)
				if err != nil {
					return err
				}
				for _, name := range gr.names {
					out, err := scale(cmd.Context(), c, gr.kind, tenant, name, replicas)
					if err == nil {
						err = g.printChanged(format, out, "scaled")
					}
					errs.done(err)
				}
			}
			return errs.err()
		},
	}
	cmd.Flags().Int32Var(&replicas, "replicas", 0, "the number of replicas (required)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "print the scaled objects as json, yaml or name instead of a message")
	return cmd
}

var replicaSetKind, _ = api.KindFor("replicasets")

// scale sets the replicas of one deployment or replica set, re-reading
// it when someone else (a controller) changed it in between.
func scale(ctx context.Context, c *client.Client, k *api.Kind, tenant, name string, n int32) (api.Object, error) {
	return updateObject(ctx, c, k, tenant, name, func(o api.Object) error {
		switch x := o.(type) {
		case *api.Deployment:
			x.Spec.Replicas = &n
		case *api.ReplicaSet:
			x.Spec.Replicas = &n
		}
		return nil
	})
}

// updateObject reads an object, changes it and writes it back with
// compare-and-swap, retrying when it was changed in between.
func updateObject(ctx context.Context, c *client.Client, k *api.Kind, tenant, name string, change func(api.Object) error) (api.Object, error) {
	for attempt := 0; ; attempt++ {
		o, err := c.Get(ctx, k, tenant, name)
		if err != nil {
			return nil, err
		}
		if err := change(o); err != nil {
			return nil, err
		}
		out, err := c.Update(ctx, o)
		if errdefs.IsConflict(err) && attempt < 5 {
			continue
		}
		return out, err
	}
}
