package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/spf13/cobra"
)

// getOptions are the flags of get (and of token list).
type getOptions struct {
	allTenants    bool
	selector      string
	fieldSelector string
	output        string
	watch         bool
	noHeaders     bool
	chunkSize     int64
}

func (o *getOptions) register(cmd *cobra.Command, withWatch bool) {
	fl := cmd.Flags()
	fl.BoolVarP(&o.allTenants, "all-tenants", "A", false, "list tenant-scoped objects of every tenant (cluster admins)")
	fl.StringVarP(&o.selector, "selector", "l", "", "label selector, e.g. app=web,tier!=db")
	fl.StringVar(&o.fieldSelector, "field-selector", "", "field selector, e.g. status.phase=Running,spec.nodeName=n1")
	fl.StringVarP(&o.output, "output", "o", "table", "output format: table, wide, json, yaml or name")
	fl.BoolVar(&o.noHeaders, "no-headers", false, "print tables without the header line")
	fl.Int64Var(&o.chunkSize, "chunk-size", 500, "read lists in pages of this many objects (0 = in one answer)")
	if withWatch {
		fl.BoolVarP(&o.watch, "watch", "w", false, "after listing, print a row for every change until interrupted")
	}
}

func newGetCmd(g *globals) *cobra.Command {
	var o getOptions
	cmd := &cobra.Command{
		Use:   "get KIND [NAME...] | KIND/NAME...",
		Short: "List objects or show some by name",
		Long: `List objects of a kind, or show the named ones, as a table or as JSON or YAML.

KIND is any name of a resource type: its plural (pods), singular (pod), short
name (po) or kind (Pod). Tenant-scoped kinds are read in the tenant of -t or
the client config; a cluster admin without a tenant sees every tenant, as
with -A, in a table with a TENANT column.`,
		Example: `  paddock get tenants
  paddock get pods -t acme -o wide
  paddock get pod/web svc/web -o yaml
  paddock get pods -A -l app=web --field-selector status.phase=Running
  paddock get pods -w`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runGet(cmd.Context(), &o, args)
		},
	}
	o.register(cmd, true)
	return cmd
}

// getRequest is a parsed get command.
type getRequest struct {
	opts   *getOptions
	format outputFormat
	groups []resourceArgs
	list   client.ListOptions
}

func parseGetRequest(o *getOptions, args []string) (*getRequest, error) {
	format, err := parseOutput(o.output)
	if err != nil {
		return nil, err
	}
	groups, err := parseResourceArgs(args)
	if err != nil {
		return nil, err
	}
	if o.chunkSize < 0 {
		return nil, fmt.Errorf("--chunk-size %d: want 0 (no paging) or more", o.chunkSize)
	}
	if _, err := api.ParseSelector(o.selector); err != nil {
		return nil, fmt.Errorf("--selector: %v", err)
	}
	if _, err := api.ParseFieldSelector(o.fieldSelector); err != nil {
		return nil, fmt.Errorf("--field-selector: %v", err)
	}
	named := false
	for _, gr := range groups {
		named = named || len(gr.names) > 0
	}
	if named && (o.selector != "" || o.fieldSelector != "") {
		return nil, errors.New("names cannot be given together with --selector or --field-selector")
	}
	if o.watch {
		if len(groups) != 1 || len(groups[0].names) > 1 {
			return nil, errors.New("--watch takes one resource type and at most one NAME")
		}
	}
	return &getRequest{
		opts: o, format: format, groups: groups,
		list: client.ListOptions{LabelSelector: o.selector, FieldSelector: o.fieldSelector, Limit: o.chunkSize},
	}, nil
}

func (g *globals) runGet(ctx context.Context, o *getOptions, args []string) error {
	req, err := parseGetRequest(o, args)
	if err != nil {
		return err
	}
	c, cfg, err := g.client()
	if err != nil {
		return err
	}
	if o.watch {
		return g.watch(ctx, c, cfg, req)
	}
	errs := newErrorSink(g.errOut, countNames(req.groups))
	var docs []api.Object // for -o json and yaml
	single := len(req.groups) == 1 && len(req.groups[0].names) == 1
	for i, gr := range req.groups {
		objs, all, err := g.fetch(ctx, c, cfg, req, gr, errs)
		if err != nil {
			return err
		}
		switch req.format {
		case outputJSON, outputYAML:
			docs = append(docs, objs...)
			continue
		case outputName:
			if err := printNames(g.out, gr.kind, objs); err != nil {
				return err
			}
		default:
			if i > 0 && len(objs) > 0 {
				fmt.Fprintln(g.out)
			}
			p := newTablePrinter(gr.kind, req.format == outputWide, o.noHeaders, all, time.Now)
			if err := p.print(g.out, objs); err != nil {
				return err
			}
		}
		if len(objs) == 0 && len(gr.names) == 0 {
			g.noResources(gr.kind, cfg, all)
		}
	}
	if req.format == outputJSON || req.format == outputYAML {
		if !single || len(docs) == 1 {
			if err := printDocument(g.out, req.format, docs, single); err != nil {
				return err
			}
		}
	}
	return errs.err()
}

// noResources prints kubectl's notice about an empty list.
func (g *globals) noResources(k *api.Kind, cfg *client.Config, all bool) {
	if t, _ := g.scope(k, cfg, all); t != "" {
		fmt.Fprintf(g.errOut, "No resources found in tenant %s.\n", t)
		return
	}
	fmt.Fprintln(g.errOut, "No resources found.")
}

// fetch reads the objects of one group: every matching object of the kind,
// or the named ones. Errors about single names go to errs so that the
// others are still shown; all says whether the objects span tenants.
func (g *globals) fetch(ctx context.Context, c *client.Client, cfg *client.Config, req *getRequest, gr resourceArgs, errs *errorSink) (objs []api.Object, all bool, err error) {
	if len(gr.names) == 0 {
		tenant, all := g.scope(gr.kind, cfg, req.opts.allTenants)
		list, err := c.ListAll(ctx, gr.kind, tenant, req.list)
		if err != nil {
			return nil, false, err
		}
		return list.Items, all, nil
	}
	if req.opts.allTenants && gr.kind.TenantScoped {
		return nil, false, fmt.Errorf("%s cannot be read by name across all tenants: drop -A and pass -t TENANT", gr.kind.Resource)
	}
	tenant, err := g.requireTenant(gr.kind, cfg)
	if err != nil {
		return nil, false, err
	}
	for _, name := range gr.names {
		o, err := c.Get(ctx, gr.kind, tenant, name)
		if err != nil && ctx.Err() != nil {
			return nil, false, err
		}
		errs.done(err)
		if err == nil {
			objs = append(objs, o)
		}
	}
	return objs, false, nil
}

// watch lists one kind (or one object), prints it and then prints every
// change until ctx ends. A watch whose resourceVersion has been compacted
// away lists again and carries on.
func (g *globals) watch(ctx context.Context, c *client.Client, cfg *client.Config, req *getRequest) error {
	gr := req.groups[0]
	k := gr.kind
	var tenant string
	all := false
	lo := req.list
	if len(gr.names) == 1 {
		if req.opts.allTenants && k.TenantScoped {
			return fmt.Errorf("%s cannot be watched by name across all tenants: drop -A and pass -t TENANT", k.Resource)
		}
		t, err := g.requireTenant(k, cfg)
		if err != nil {
			return err
		}
		tenant = t
		lo.FieldSelector = "metadata.name=" + gr.names[0]
	} else {
		tenant, all = g.scope(k, cfg, req.opts.allTenants)
	}
	w := &watchPrinter{
		g: g, format: req.format, kind: k,
		table: newTablePrinter(k, req.format == outputWide, req.opts.noHeaders, all, time.Now),
		seen:  map[string]api.Object{},
	}

	list, err := c.ListAll(ctx, k, tenant, lo)
	if err != nil {
		return ignoreCanceled(ctx, err)
	}
	if len(list.Items) == 0 && len(gr.names) == 1 {
		msg := fmt.Sprintf("%s %q not found", k.Singular, gr.names[0])
		if tenant != "" {
			msg += fmt.Sprintf(" in tenant %q", tenant)
		}
		return errdefs.New(errdefs.ErrNotFound, msg)
	}
	if err := w.initial(list.Items); err != nil {
		return err
	}
	if len(list.Items) == 0 && len(gr.names) == 0 && req.format.humanReadable() {
		g.noResources(k, cfg, all)
	}
	rv := list.Metadata.ResourceVersion
	wo := client.WatchOptions{ListOptions: client.ListOptions{LabelSelector: lo.LabelSelector, FieldSelector: lo.FieldSelector}, Bookmarks: true}
	for {
		wo.ResourceVersion = rv
		wt, err := c.Watch(ctx, k, tenant, wo)
		if errdefs.IsGone(err) {
			if rv, err = w.relist(ctx, c, tenant, lo); err != nil {
				return ignoreCanceled(ctx, err)
			}
			continue
		}
		if err != nil {
			return ignoreCanceled(ctx, err)
		}
		next, gone, err := w.stream(ctx, wt, rv)
		wt.Stop()
		if err != nil || ctx.Err() != nil {
			return ignoreCanceled(ctx, err)
		}
		rv = next
		if gone {
			if rv, err = w.relist(ctx, c, tenant, lo); err != nil {
				return ignoreCanceled(ctx, err)
			}
		}
	}
}

// ignoreCanceled turns the error of a call cut by Ctrl-C into a clean end.
func ignoreCanceled(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// watchPrinter prints the rows of get --watch and remembers the last
// version of every object it printed, so that a relist after a compaction
// prints only what changed.
type watchPrinter struct {
	g      *globals
	format outputFormat
	kind   *api.Kind
	table  *tablePrinter
	seen   map[string]api.Object // by tenant/name
}

func objectKey(o api.Object) string {
	m := o.GetObjectMeta()
	return m.Tenant + "/" + m.Name
}

// initial prints the first list: a table, or one line or document per
// object for the other formats.
func (w *watchPrinter) initial(objs []api.Object) error {
	for _, o := range objs {
		w.seen[objectKey(o)] = o
	}
	switch w.format {
	case outputTable, outputWide:
		return w.table.print(w.g.out, objs)
	}
	for _, o := range objs {
		if err := w.event(o); err != nil {
			return err
		}
	}
	return nil
}

// event prints one object that changed.
func (w *watchPrinter) event(o api.Object) error {
	switch w.format {
	case outputJSON:
		b, err := json.Marshal(o)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w.g.out, "%s\n", b)
		return err
	case outputYAML:
		b, err := encode(outputYAML, o)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w.g.out, "---\n%s", b)
		return err
	case outputName:
		return printNames(w.g.out, w.kind, []api.Object{o})
	}
	return w.table.print(w.g.out, []api.Object{o})
}

// stream prints a watch's events until it ends. It returns the
// resourceVersion to resume from and whether the server said that it is
// gone (410), which calls for a relist.
func (w *watchPrinter) stream(ctx context.Context, wt *client.Watcher, rv string) (next string, gone bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return rv, false, nil
		case ev, ok := <-wt.Events():
			if !ok {
				// The server ended the stream (timeout, restart): resume.
				return rv, false, wt.Err()
			}
			switch ev.Type {
			case api.Bookmark:
				rv = ev.Object.GetObjectMeta().ResourceVersion
			case api.Error:
				st, _ := ev.Object.(*api.Status)
				if st == nil {
					return rv, false, errors.New("the watch failed with an unreadable error")
				}
				if st.Code == http.StatusGone {
					return rv, true, nil
				}
				return rv, false, &errdefs.Error{Class: errdefs.FromHTTP(st.Code, st.Reason), Field: st.Field, Message: st.Message}
			default:
				rv = ev.Object.GetObjectMeta().ResourceVersion
				if ev.Type == api.Deleted {
					delete(w.seen, objectKey(ev.Object))
				} else {
					w.seen[objectKey(ev.Object)] = ev.Object
				}
				if err := w.event(ev.Object); err != nil {
					return rv, false, err
				}
			}
		}
	}
}

// relist lists again after the watch's history was compacted, prints the
// objects that changed or went away in the gap and returns the list's
// resourceVersion.
func (w *watchPrinter) relist(ctx context.Context, c *client.Client, tenant string, lo client.ListOptions) (string, error) {
	list, err := c.ListAll(ctx, w.kind, tenant, lo)
	if err != nil {
		return "", err
	}
	current := make(map[string]bool, len(list.Items))
	for _, o := range list.Items {
		key := objectKey(o)
		current[key] = true
		if old, ok := w.seen[key]; ok && old.GetObjectMeta().ResourceVersion == o.GetObjectMeta().ResourceVersion {
			continue
		}
		w.seen[key] = o
		if err := w.event(o); err != nil {
			return "", err
		}
	}
	for key, o := range w.seen {
		if !current[key] {
			delete(w.seen, key)
			if err := w.event(o); err != nil {
				return "", err
			}
		}
	}
	return list.Metadata.ResourceVersion, nil
}
