package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

func newDescribeCmd(g *globals) *cobra.Command {
	var selector string
	cmd := &cobra.Command{
		Use:   "describe KIND [NAME...] | KIND/NAME...",
		Short: "Show objects in detail, with their events",
		Long: `Show objects in detail: their metadata, spec and status and, for tenant-scoped
objects, the events recorded about them. Without a NAME every object of the
kind in the tenant is described.`,
		Example: `  paddock describe pod web -t acme
  paddock describe tenant/acme
  paddock describe pods -l app=web`,
		RunE: func(cmd *cobra.Command, args []string) error {
			groups, err := parseResourceArgs(args)
			if err != nil {
				return err
			}
			if _, err := api.ParseSelector(selector); err != nil {
				return fmt.Errorf("--selector: %v", err)
			}
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			return g.describe(cmd.Context(), c, cfg, groups, selector, time.Now())
		},
	}
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "describe the objects matching this label selector")
	return cmd
}

func (g *globals) describe(ctx context.Context, c *client.Client, cfg *client.Config, groups []resourceArgs, selector string, now time.Time) error {
	errs := newErrorSink(g.errOut, countNames(groups))
	first := true
	for _, gr := range groups {
		var objs []api.Object
		if len(gr.names) == 0 {
			tenant, all := g.scope(gr.kind, cfg, false)
			list, err := c.ListAll(ctx, gr.kind, tenant, client.ListOptions{LabelSelector: selector, Limit: 500})
			if err != nil {
				return err
			}
			if len(list.Items) == 0 {
				g.noResources(gr.kind, cfg, all)
			}
			objs = list.Items
		} else {
			if selector != "" {
				return fmt.Errorf("names cannot be given together with --selector")
			}
			tenant, err := g.requireTenant(gr.kind, cfg)
			if err != nil {
				return err
			}
			for _, name := range gr.names {
				o, err := c.Get(ctx, gr.kind, tenant, name)
				if err != nil && ctx.Err() != nil {
					return err
				}
				errs.done(err)
				if err == nil {
					objs = append(objs, o)
				}
			}
		}
		for _, o := range objs {
			if !first {
				fmt.Fprintln(g.out)
			}
			first = false
			var events []api.Object
			var eventsErr error
			if hasEvents(gr.kind) {
				events, eventsErr = listEvents(ctx, c, gr.kind, o)
			}
			if err := describeObject(g.out, gr.kind, o, events, eventsErr, now); err != nil {
				return err
			}
		}
	}
	return errs.err()
}

// hasEvents reports whether describe lists events for objects of kind k:
// events live in tenants, so only tenant-scoped objects have them.
func hasEvents(k *api.Kind) bool {
	return k.TenantScoped && k.Resource != "events"
}

// listEvents lists the events about obj in its tenant.
func listEvents(ctx context.Context, c *client.Client, k *api.Kind, obj api.Object) ([]api.Object, error) {
	m := obj.GetObjectMeta()
	evKind, _ := api.KindFor("events")
	list, err := c.ListAll(ctx, evKind, m.Tenant, client.ListOptions{
		FieldSelector: "involvedObject.kind=" + k.Kind + ",involvedObject.name=" + m.Name,
		Limit:         500,
	})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// describeObject writes the description of obj: its metadata, a few
// highlighted fields, its other fields as indented YAML and its events.
func describeObject(w io.Writer, k *api.Kind, obj api.Object, events []api.Object, eventsErr error, now time.Time) error {
	m := obj.GetObjectMeta()
	var b bytes.Buffer
	field := func(label, value string) {
		fmt.Fprintf(&b, "%-18s%s\n", label+":", value)
	}
	multi := func(label string, values []string) {
		if len(values) == 0 {
			field(label, none)
			return
		}
		field(label, values[0])
		for _, v := range values[1:] {
			fmt.Fprintf(&b, "%-18s%s\n", "", v)
		}
	}
	field("Name", m.Name)
	if k.TenantScoped {
		field("Tenant", m.Tenant)
	}
	field("Kind", k.Kind)
	multi("Labels", keyValues(m.Labels))
	multi("Annotations", keyValues(m.Annotations))
	created := none
	if m.CreationTimestamp != nil {
		created = fmt.Sprintf("%s (%s ago)", m.CreationTimestamp.UTC().Format(time.RFC3339), age(m.CreationTimestamp, now))
	}
	field("Created", created)
	if m.DeletionTimestamp != nil {
		field("Deleting Since", m.DeletionTimestamp.UTC().Format(time.RFC3339))
	}
	field("UID", orNone(m.UID))
	field("ResourceVersion", orNone(m.ResourceVersion))
	for _, o := range m.OwnerReferences {
		if o.Controller {
			field("Controlled By", o.Kind+"/"+o.Name)
		}
	}
	for _, h := range highlights(obj) {
		field(h[0], h[1])
	}
	if err := describeBody(&b, obj); err != nil {
		return err
	}
	if hasEvents(k) {
		describeEvents(&b, events, eventsErr, now)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// keyValues renders a map as sorted "key=value" strings.
func keyValues(m map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// highlights are the fields describe shows first for some kinds, rendered
// as in get's table.
func highlights(obj api.Object) [][2]string {
	switch o := obj.(type) {
	case *api.Pod:
		return [][2]string{
			{"State", podStatus(o)},
			{"Ready", podReady(o)},
			{"Restarts", podRestarts(o)},
			{"Node", orNone(o.Spec.NodeName)},
			{"IP", orNone(o.Status.PodIP)},
			{"Runtime Class", orNone(o.Spec.RuntimeClassName)},
		}
	case *api.Tenant:
		return [][2]string{
			{"Isolation", orNone(string(o.Spec.Isolation))},
			{"Pods", tenantPods(o)},
			{"CPU", tenantCPU(o)},
			{"Memory", tenantMemory(o)},
			{"Default Runtime", orNone(o.Spec.DefaultRuntimeClass)},
		}
	case *api.Node:
		return [][2]string{{"Node Status", nodeStatus(o)}}
	}
	return nil
}

// describeBody writes the object's fields other than its metadata, spec
// and status first, each as "Key:" followed by indented YAML (or the
// value, when it is a scalar). Secret values are replaced by their sizes.
func describeBody(b *bytes.Buffer, obj api.Object) error {
	js, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	var fields map[string]any
	if err := json.Unmarshal(js, &fields); err != nil {
		return err
	}
	for _, k := range []string{"apiVersion", "kind", "metadata"} {
		delete(fields, k)
	}
	if _, ok := obj.(*api.Secret); ok {
		hideValues(fields, "data", true)
		hideValues(fields, "stringData", false)
	}
	if _, ok := obj.(*api.ConfigMap); ok {
		hideValues(fields, "binaryData", true)
	}
	keys := slices.Sorted(maps.Keys(fields))
	slices.SortStableFunc(keys, func(a, b string) int { return sectionRank(a) - sectionRank(b) })
	for _, key := range keys {
		title := strings.ToUpper(key[:1]) + key[1:] + ":"
		switch v := fields[key].(type) {
		case map[string]any, []any:
			if isEmpty(v) {
				fmt.Fprintf(b, "%-18s%s\n", title, none)
				continue
			}
			y, err := yaml.Marshal(v)
			if err != nil {
				return err
			}
			fmt.Fprintln(b, title)
			for _, line := range strings.Split(strings.TrimRight(string(y), "\n"), "\n") {
				fmt.Fprintf(b, "  %s\n", line)
			}
		default:
			fmt.Fprintf(b, "%-18s%v\n", title, v)
		}
	}
	return nil
}

// sectionRank puts spec and status before the other sections.
func sectionRank(key string) int {
	switch key {
	case "spec":
		return 0
	case "status":
		return 1
	}
	return 2
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}

// hideValues replaces the values of the map at fields[key] by their sizes;
// base64 says whether they are base64-encoded.
func hideValues(fields map[string]any, key string, base64Encoded bool) {
	m, ok := fields[key].(map[string]any)
	if !ok {
		return
	}
	for k, v := range m {
		s, _ := v.(string)
		n := len(s)
		if base64Encoded {
			if raw, err := base64.StdEncoding.DecodeString(s); err == nil {
				n = len(raw)
			}
		}
		m[k] = fmt.Sprintf("<%d bytes>", n)
	}
}

// describeEvents writes the Events section in kubectl's layout.
func describeEvents(b *bytes.Buffer, events []api.Object, err error, now time.Time) {
	if err != nil {
		fmt.Fprintf(b, "%-18s<cannot list: %s>\n", "Events:", FormatError(err))
		return
	}
	if len(events) == 0 {
		fmt.Fprintf(b, "%-18s%s\n", "Events:", none)
		return
	}
	evs := slices.Clone(events)
	slices.SortStableFunc(evs, func(x, y api.Object) int {
		return timeOf(eventLastSeen(x.(*api.Event))).Compare(timeOf(eventLastSeen(y.(*api.Event))))
	})
	fmt.Fprintln(b, "Events:")
	tw := tabwriter.NewWriter(b, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  Type\tReason\tAge\tFrom\tMessage")
	fmt.Fprintln(tw, "  ----\t------\t----\t----\t-------")
	for _, o := range evs {
		e := o.(*api.Event)
		when := age(eventLastSeen(e), now)
		if e.Count > 1 && e.FirstTimestamp != nil {
			when = fmt.Sprintf("%s (x%d over %s)", when, e.Count, age(e.FirstTimestamp, now))
		}
		from := e.Source.Component
		if e.Source.Host != "" {
			from += ", " + e.Source.Host
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", orNone(e.Type), orNone(e.Reason), when, orNone(from), cleanCell(e.Message))
	}
	tw.Flush()
}
