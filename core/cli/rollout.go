package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/controller"
	"github.com/spf13/cobra"
)

func newRolloutCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Follow, list and undo the rollouts of a deployment",
	}
	cmd.AddCommand(newRolloutStatusCmd(g), newRolloutUndoCmd(g), newRolloutHistoryCmd(g))
	return cmd
}

// deploymentArg returns the name of the one deployment args name
// ("deployment/web" or "deployment web").
func deploymentArg(args []string) (string, error) {
	groups, err := parseResourceArgs(args)
	if err != nil {
		return "", err
	}
	if len(groups) != 1 || groups[0].kind != deploymentKind || len(groups[0].names) != 1 {
		return "", fmt.Errorf("want one deployment, as deployment/NAME or deployment NAME (got %q)", strings.Join(args, " "))
	}
	return groups[0].names[0], nil
}

// deploymentTarget resolves a rollout command's client, tenant and
// deployment name.
func (g *globals) deploymentTarget(args []string) (*client.Client, string, string, error) {
	name, err := deploymentArg(args)
	if err != nil {
		return nil, "", "", err
	}
	c, cfg, err := g.client()
	if err != nil {
		return nil, "", "", err
	}
	tenant, err := g.requireTenant(deploymentKind, cfg)
	if err != nil {
		return nil, "", "", err
	}
	return c, tenant, name, nil
}

func newRolloutStatusCmd(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status deployment/NAME",
		Short: "Wait for a deployment's rollout to finish, printing its progress",
		Long: `Wait for a deployment's rollout to finish: every pod runs the current template
and is available. Progress is printed as it changes. Exits non-zero when
--timeout passes first (0 waits for ever).`,
		Example: `  paddock rollout status deployment/web --timeout 2m`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout < 0 {
				return fmt.Errorf("--timeout %s: want a positive duration, or 0 to wait for ever", timeout)
			}
			c, tenant, name, err := g.deploymentTarget(args)
			if err != nil {
				return err
			}
			return g.waitRollout(cmd.Context(), c, tenant, name, timeout)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up after this long (0: never)")
	return cmd
}

// rolloutProgress says how far a deployment's rollout is, in kubectl's
// words, and whether it is complete.
func rolloutProgress(d *api.Deployment) (string, bool) {
	name, st := d.Metadata.Name, d.Status
	want := replicas(d.Spec.Replicas)
	switch {
	case st.ObservedGeneration < d.Metadata.Generation:
		return "Waiting for deployment spec update to be observed...", false
	case st.UpdatedReplicas < want:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...", name, st.UpdatedReplicas, want), false
	case st.Replicas > st.UpdatedReplicas:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...", name, st.Replicas-st.UpdatedReplicas), false
	case st.AvailableReplicas < st.UpdatedReplicas:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...", name, st.AvailableReplicas, st.UpdatedReplicas), false
	}
	return fmt.Sprintf("deployment %q successfully rolled out", name), true
}

// waitRollout watches a deployment until its rollout is complete,
// printing each new progress line.
func (g *globals) waitRollout(ctx context.Context, c *client.Client, tenant, name string, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	last := ""
	report := func(o api.Object) bool {
		msg, done := rolloutProgress(o.(*api.Deployment))
		if msg != last {
			fmt.Fprintln(g.out, msg)
			last = msg
		}
		return done
	}
	timedOut := func(err error) error {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("timed out after %s waiting for the rollout of deployment/%s to finish (--timeout); last: %s", timeout, name, last)
		}
		return err
	}
	for {
		o, err := c.Get(ctx, deploymentKind, tenant, name)
		if err != nil {
			return timedOut(err)
		}
		if report(o) {
			return nil
		}
		w, err := c.Watch(ctx, deploymentKind, tenant, client.WatchOptions{Name: name, ResourceVersion: o.GetObjectMeta().ResourceVersion})
		if err != nil {
			return timedOut(err)
		}
		for ev := range w.Events() {
			switch ev.Type {
			case api.Deleted:
				w.Stop()
				return fmt.Errorf("deployment/%s was deleted during its rollout", name)
			case api.Added, api.Modified:
				if report(ev.Object) {
					w.Stop()
					return nil
				}
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return timedOut(ctx.Err())
		}
		// The stream ended (server timeout, compaction): read and watch again.
	}
}

// ownedReplicaSets returns d's replica sets, oldest revision first.
func ownedReplicaSets(ctx context.Context, c *client.Client, d *api.Deployment) ([]*api.ReplicaSet, error) {
	l, err := c.ListAll(ctx, replicaSetKind, d.Metadata.Tenant, client.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []*api.ReplicaSet
	for _, o := range l.Items {
		rs := o.(*api.ReplicaSet)
		for _, r := range rs.Metadata.OwnerReferences {
			if r.Controller && r.UID == d.Metadata.UID {
				out = append(out, rs)
			}
		}
	}
	controller.SortByRevision(out)
	return out, nil
}

// currentRevision returns the revision whose template d runs (0 when none
// has been made yet).
func currentRevision(d *api.Deployment, rss []*api.ReplicaSet) int64 {
	for _, rs := range rss {
		if controller.TemplatesEqual(&rs.Spec.Template, &d.Spec.Template) {
			return controller.Revision(rs)
		}
	}
	return 0
}

// pickRollback returns the replica set whose template `rollout undo`
// restores: revision to, or with to 0 the newest one before the current.
func pickRollback(d *api.Deployment, rss []*api.ReplicaSet, to int64) (*api.ReplicaSet, error) {
	ref := objectRef(deploymentKind, d.Metadata.Name)
	if to > 0 {
		var revs []string
		for _, rs := range rss {
			if controller.Revision(rs) == to {
				return rs, nil
			}
			revs = append(revs, strconv.FormatInt(controller.Revision(rs), 10))
		}
		return nil, fmt.Errorf("--to-revision %d: %s has no such revision (it has: %s)", to, ref, orNone(strings.Join(revs, ", ")))
	}
	cur := currentRevision(d, rss)
	for i := len(rss) - 1; i >= 0; i-- {
		if r := controller.Revision(rss[i]); r != cur && (cur == 0 || r < cur) {
			return rss[i], nil
		}
	}
	return nil, fmt.Errorf("%s has no revision before the current one to roll back to", ref)
}

func newRolloutUndoCmd(g *globals) *cobra.Command {
	var to int64
	cmd := &cobra.Command{
		Use:   "undo deployment/NAME [--to-revision N]",
		Short: "Roll a deployment back to its previous (or a given) revision",
		Long: `Roll a deployment back: copy the pod template of the previous revision (or of
--to-revision N, as 'paddock rollout history' lists them) into the deployment.
The rollback is a new rollout, which reuses the old revision's replica set.`,
		Example: `  paddock rollout undo deployment/web
  paddock rollout undo deployment/web --to-revision 2`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if to < 0 {
				return fmt.Errorf("--to-revision %d: want a revision number from 'paddock rollout history', or 0 for the previous one", to)
			}
			c, tenant, name, err := g.deploymentTarget(args)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var target *api.ReplicaSet
			unchanged := false
			_, err = updateObject(ctx, c, deploymentKind, tenant, name, func(o api.Object) error {
				d := o.(*api.Deployment)
				rss, err := ownedReplicaSets(ctx, c, d)
				if err != nil {
					return err
				}
				if target, err = pickRollback(d, rss, to); err != nil {
					return err
				}
				unchanged = controller.TemplatesEqual(&target.Spec.Template, &d.Spec.Template)
				d.Spec.Template = controller.WithoutHash(&target.Spec.Template)
				return nil
			})
			if err != nil {
				return err
			}
			rev := controller.Revision(target)
			if unchanged {
				fmt.Fprintf(g.out, "deployment/%s skipped rollback: it already runs revision %d\n", name, rev)
				return nil
			}
			fmt.Fprintf(g.out, "deployment/%s rolled back to revision %d\n", name, rev)
			return nil
		},
	}
	cmd.Flags().Int64Var(&to, "to-revision", 0, "revision to roll back to (0: the previous one)")
	return cmd
}

func newRolloutHistoryCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "history deployment/NAME",
		Short:   "List a deployment's revisions",
		Example: `  paddock rollout history deployment/web`,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := parseOutput(output)
			if err != nil {
				return err
			}
			c, tenant, name, err := g.deploymentTarget(args)
			if err != nil {
				return err
			}
			o, err := c.Get(cmd.Context(), deploymentKind, tenant, name)
			if err != nil {
				return err
			}
			d := o.(*api.Deployment)
			rss, err := ownedReplicaSets(cmd.Context(), c, d)
			if err != nil {
				return err
			}
			objs := make([]api.Object, len(rss))
			for i, rs := range rss {
				objs[i] = rs
			}
			switch format {
			case outputJSON, outputYAML:
				return printDocument(g.out, format, objs, false)
			case outputName:
				return printNames(g.out, replicaSetKind, objs)
			}
			return printHistory(g.out, d, rss)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: table, json, yaml (the replica sets) or name")
	return cmd
}

// printHistory prints one line per revision, the current one marked.
func printHistory(w interface{ Write([]byte) (int, error) }, d *api.Deployment, rss []*api.ReplicaSet) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tREPLICASET\tPODS\tIMAGES\tCURRENT")
	cur := currentRevision(d, rss)
	for _, rs := range rss {
		mark := ""
		if controller.Revision(rs) == cur {
			mark = "*"
		}
		fmt.Fprintf(tw, "%d\t%s\t%d/%d\t%s\t%s\n", controller.Revision(rs), rs.Metadata.Name, rs.Status.ReadyReplicas, replicas(rs.Spec.Replicas),
			cleanCell(containerImages(rs.Spec.Template.Spec)), mark)
	}
	return tw.Flush()
}
