package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/spf13/cobra"
)

// deleteOptions are the flags of delete.
type deleteOptions struct {
	files          fileFlags
	selector       string
	ignoreNotFound bool
	gracePeriod    int64
	force          bool
}

// clientOptions turns --grace-period and --force into the API's options.
func (o *deleteOptions) clientOptions() (client.DeleteOptions, error) {
	switch {
	case o.force && o.gracePeriod > 0:
		return client.DeleteOptions{}, fmt.Errorf("--force removes pods at once; it cannot be combined with --grace-period %d", o.gracePeriod)
	case o.force:
		zero := int64(0)
		return client.DeleteOptions{GracePeriodSeconds: &zero}, nil
	case o.gracePeriod < -1:
		return client.DeleteOptions{}, fmt.Errorf("--grace-period %d: want seconds (0 or more), or -1 for each pod's own", o.gracePeriod)
	case o.gracePeriod >= 0:
		g := o.gracePeriod
		return client.DeleteOptions{GracePeriodSeconds: &g}, nil
	}
	return client.DeleteOptions{}, nil
}

func newDeleteCmd(g *globals) *cobra.Command {
	var o deleteOptions
	cmd := &cobra.Command{
		Use:   "delete KIND NAME... | KIND/NAME... | KIND -l SELECTOR | -f FILE",
		Short: "Delete objects by name, by label selector or as named in manifests",
		Long: `Delete objects: named on the command line, every object of a kind in the
tenant that matches -l, or the objects of manifests (-f). Deleting a tenant
deletes every object in it. A pod running on a node terminates gracefully:
its containers get SIGTERM and --grace-period seconds (default: the pod's
terminationGracePeriodSeconds) before SIGKILL, and it is gone once its node
has stopped them; --force removes it at once.`,
		Example: `  paddock delete pod web -t acme
  paddock delete pod/web svc/web
  paddock delete pods -l app=web
  paddock delete -f manifests/
  paddock delete pod web --grace-period 5`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runDelete(cmd, &o, args)
		},
	}
	o.files.register(cmd, "manifests whose objects to delete")
	cmd.Flags().StringVarP(&o.selector, "selector", "l", "", "delete every object of the kind in the tenant that matches this label selector")
	cmd.Flags().BoolVar(&o.ignoreNotFound, "ignore-not-found", false, "treat objects that do not exist as deleted")
	cmd.Flags().Int64Var(&o.gracePeriod, "grace-period", -1, "seconds a pod gets to stop after SIGTERM (-1: the pod's own terminationGracePeriodSeconds)")
	cmd.Flags().BoolVar(&o.force, "force", false, "remove pods at once, without waiting for their node to stop them")
	return cmd
}

// deleteTarget is one object to delete.
type deleteTarget struct {
	kind   *api.Kind
	tenant string
	name   string
}

func (g *globals) runDelete(cmd *cobra.Command, o *deleteOptions, args []string) error {
	ctx := cmd.Context()
	opts, err := o.clientOptions()
	if err != nil {
		return err
	}
	if len(o.files.files) > 0 {
		if len(args) > 0 || o.selector != "" {
			return errors.New("-f cannot be combined with KIND NAME arguments or --selector")
		}
		manifests, err := readManifests(o.files.files, cmd.InOrStdin(), o.files.recursive)
		if err != nil {
			return err
		}
		c, cfg, err := g.client()
		if err != nil {
			return err
		}
		var targets []deleteTarget
		for _, m := range manifests {
			for _, d := range m.docs {
				k, _ := api.KindOf(d.Object)
				meta := d.Object.GetObjectMeta()
				t := deleteTarget{kind: k, tenant: meta.Tenant, name: meta.Name}
				if t.name == "" {
					return fmt.Errorf("%s: document at line %d (%s): metadata.name: required to delete", m.name, d.Line, k.Singular)
				}
				if k.TenantScoped && t.tenant == "" {
					if t.tenant = g.tenantFor(cfg); t.tenant == "" {
						return fmt.Errorf("%s: document at line %d (%s): metadata.tenant: required: %s are tenant-scoped; set metadata.tenant or pass -t TENANT", m.name, d.Line, objectRef(k, t.name), k.Resource)
					}
				}
				targets = append(targets, t)
			}
		}
		return g.deleteAll(ctx, c, targets, o.ignoreNotFound, opts)
	}

	groups, err := parseResourceArgs(args)
	if err != nil {
		return err
	}
	if _, err := api.ParseSelector(o.selector); err != nil {
		return fmt.Errorf("--selector: %v", err)
	}
	for _, gr := range groups {
		switch {
		case len(gr.names) == 0 && o.selector == "":
			return fmt.Errorf("delete %s: name the objects (%s NAME...), select them with -l SELECTOR, or give manifests with -f", gr.kind.Resource, gr.kind.Resource)
		case len(gr.names) > 0 && o.selector != "":
			return errors.New("names cannot be given together with --selector")
		}
	}
	c, cfg, err := g.client()
	if err != nil {
		return err
	}
	var targets []deleteTarget
	for _, gr := range groups {
		tenant, err := g.requireTenant(gr.kind, cfg)
		if err != nil {
			return err
		}
		if o.selector != "" {
			list, err := c.ListAll(ctx, gr.kind, tenant, client.ListOptions{LabelSelector: o.selector, Limit: 500})
			if err != nil {
				return err
			}
			if len(list.Items) == 0 {
				g.noResources(gr.kind, cfg, false)
			}
			for _, obj := range list.Items {
				targets = append(targets, deleteTarget{kind: gr.kind, tenant: obj.GetObjectMeta().Tenant, name: obj.GetObjectMeta().Name})
			}
			continue
		}
		for _, name := range gr.names {
			targets = append(targets, deleteTarget{kind: gr.kind, tenant: tenant, name: name})
		}
	}
	return g.deleteAll(ctx, c, targets, o.ignoreNotFound, opts)
}

// deleteAll deletes targets in order, going on after an error, and prints
// `pod "web" deleted` for each.
func (g *globals) deleteAll(ctx context.Context, c *client.Client, targets []deleteTarget, ignoreNotFound bool, opts client.DeleteOptions) error {
	errs := newErrorSink(g.errOut, len(targets))
	for _, t := range targets {
		out, err := c.DeleteWith(ctx, t.kind, t.tenant, t.name, opts)
		switch {
		case err == nil && out != nil && out.GetObjectMeta().DeletionTimestamp != nil:
			fmt.Fprintf(g.out, "%s %q terminating\n", t.kind.Singular, t.name)
		case err == nil:
			fmt.Fprintf(g.out, "%s %q deleted\n", t.kind.Singular, t.name)
		case errdefs.IsNotFound(err) && ignoreNotFound:
			err = nil
		case ctx.Err() != nil:
			return err
		}
		errs.done(err)
	}
	return errs.err()
}
