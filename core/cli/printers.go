package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/paddock-dev/paddock/core/api"
	"sigs.k8s.io/yaml"
)

// outputFormat is what -o asks for.
type outputFormat string

// Output formats.
const (
	outputTable outputFormat = "table"
	outputWide  outputFormat = "wide"
	outputJSON  outputFormat = "json"
	outputYAML  outputFormat = "yaml"
	outputName  outputFormat = "name"
)

var outputFormats = []outputFormat{outputTable, outputWide, outputJSON, outputYAML, outputName}

// parseOutput checks the value of -o; "" is a table.
func parseOutput(s string) (outputFormat, error) {
	if s == "" {
		return outputTable, nil
	}
	f := outputFormat(s)
	if !slices.Contains(outputFormats, f) {
		names := make([]string, len(outputFormats))
		for i, o := range outputFormats {
			names[i] = string(o)
		}
		return "", fmt.Errorf("--output %q: want one of %s", s, strings.Join(names, ", "))
	}
	return f, nil
}

// humanReadable reports whether f is meant for people (and so wants the
// "No resources found" notice).
func (f outputFormat) humanReadable() bool {
	return f == outputTable || f == outputWide || f == outputName
}

// ---- Tables ----------------------------------------------------------------

// column is one column of a kind's table.
type column struct {
	header string
	// wide columns are shown only with -o wide.
	wide bool
	// value renders the cell of obj; now is the time ages are counted to.
	value func(obj api.Object, now time.Time) string
}

// tableDef is how a kind prints as a table.
type tableDef struct {
	columns []column
	// order sorts rows (cmp-style); nil keeps the server's order, by name.
	order func(a, b api.Object) int
}

// none is what an empty cell shows, as in kubectl.
const none = "<none>"

// col is a column computed from an object of type T alone.
func col[T api.Object](header string, f func(T) string) column {
	return column{header: header, value: func(o api.Object, _ time.Time) string {
		t, ok := o.(T)
		if !ok {
			return "<unknown>"
		}
		return f(t)
	}}
}

// wideCol is col shown only with -o wide.
func wideCol[T api.Object](header string, f func(T) string) column {
	c := col(header, f)
	c.wide = true
	return c
}

// timeCol is a column showing how long ago the time f returns was.
func timeCol[T api.Object](header string, f func(T) *api.Time) column {
	return column{header: header, value: func(o api.Object, now time.Time) string {
		t, ok := o.(T)
		if !ok {
			return "<unknown>"
		}
		return age(f(t), now)
	}}
}

var (
	nameColumn = column{header: "NAME", value: func(o api.Object, _ time.Time) string { return o.GetObjectMeta().Name }}
	ageColumn  = column{header: "AGE", value: func(o api.Object, now time.Time) string {
		return age(o.GetObjectMeta().CreationTimestamp, now)
	}}
	tenantColumn = column{header: "TENANT", value: func(o api.Object, _ time.Time) string { return o.GetObjectMeta().Tenant }}
)

// tables holds every kind's table columns, by resource name. Kinds missing
// here print NAME and AGE.
var tables = map[string]tableDef{
	"tenants": {columns: []column{
		nameColumn,
		col("ISOLATION", func(t *api.Tenant) string { return orNone(string(t.Spec.Isolation)) }),
		col("PODS", tenantPods),
		col("CPU", tenantCPU),
		col("MEMORY", tenantMemory),
		ageColumn,
		wideCol("DEFAULT-RUNTIME", func(t *api.Tenant) string { return orNone(t.Spec.DefaultRuntimeClass) }),
		wideCol("ALLOWED-RUNTIMES", func(t *api.Tenant) string {
			if len(t.Spec.AllowedRuntimeClasses) == 0 {
				return "<any>"
			}
			return strings.Join(t.Spec.AllowedRuntimeClasses, ",")
		}),
		wideCol("NODE-SELECTOR", func(t *api.Tenant) string { return labelsString(t.Spec.NodeSelector) }),
	}},
	"nodes": {columns: []column{
		nameColumn,
		col("STATUS", nodeStatus),
		col("RUNTIMES", func(n *api.Node) string { return joinOrNone(n.Status.RuntimeClasses) }),
		ageColumn,
		col("VERSION", func(n *api.Node) string { return orNone(n.Status.NodeInfo.AgentVersion) }),
		wideCol("INTERNAL-IP", func(n *api.Node) string {
			for _, a := range n.Status.Addresses {
				if a.Type == "InternalIP" {
					return a.Address
				}
			}
			return none
		}),
		wideCol("KERNEL", func(n *api.Node) string { return orNone(n.Status.NodeInfo.KernelVersion) }),
		wideCol("POD-CIDR", func(n *api.Node) string { return orNone(n.Spec.PodCIDR) }),
	}},
	"runtimeclasses": {columns: []column{
		nameColumn,
		col("PLUGIN", func(r *api.RuntimeClass) string { return orNone(r.Spec.Plugin) }),
		col("HANDLER", func(r *api.RuntimeClass) string { return orNone(r.Spec.Handler) }),
		col("ISOLATION", func(r *api.RuntimeClass) string { return orNone(string(r.Spec.Isolation)) }),
		ageColumn,
	}},
	"leases": {columns: []column{
		nameColumn,
		col("HOLDER", func(l *api.Lease) string { return orNone(l.Spec.HolderIdentity) }),
		col("RENEWED", func(l *api.Lease) string { return age(l.Spec.RenewTime, time.Now()) + " ago" }),
		ageColumn,
	}},
	"tokens": {columns: []column{
		nameColumn,
		col("ROLE", func(t *api.Token) string { return orNone(string(t.Spec.Role)) }),
		col("TENANT", func(t *api.Token) string { return orNone(t.Spec.Tenant) }),
		col("NODE", func(t *api.Token) string { return orNone(t.Spec.Node) }),
		col("DESCRIPTION", func(t *api.Token) string { return orNone(t.Spec.Description) }),
		ageColumn,
		wideCol("EXPIRES", func(t *api.Token) string {
			if t.Spec.ExpirationTimestamp == nil || t.Spec.ExpirationTimestamp.IsZero() {
				return "<never>"
			}
			return t.Spec.ExpirationTimestamp.UTC().Format(time.RFC3339)
		}),
	}},
	"pods": {columns: []column{
		nameColumn,
		col("READY", podReady),
		col("STATUS", podStatus),
		col("RESTARTS", podRestarts),
		ageColumn,
		wideCol("IP", func(p *api.Pod) string { return orNone(p.Status.PodIP) }),
		wideCol("NODE", func(p *api.Pod) string { return orNone(p.Spec.NodeName) }),
		wideCol("RUNTIME", func(p *api.Pod) string { return orNone(p.Spec.RuntimeClassName) }),
	}},
	"deployments": {columns: []column{
		nameColumn,
		col("READY", func(d *api.Deployment) string {
			return fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, replicas(d.Spec.Replicas))
		}),
		col("UP-TO-DATE", func(d *api.Deployment) string { return strconv.Itoa(int(d.Status.UpdatedReplicas)) }),
		col("AVAILABLE", func(d *api.Deployment) string { return strconv.Itoa(int(d.Status.AvailableReplicas)) }),
		ageColumn,
		wideCol("CONTAINERS", func(d *api.Deployment) string { return containerNames(d.Spec.Template.Spec) }),
		wideCol("IMAGES", func(d *api.Deployment) string { return containerImages(d.Spec.Template.Spec) }),
		wideCol("SELECTOR", func(d *api.Deployment) string { return selectorString(d.Spec.Selector) }),
	}},
	"replicasets": {columns: []column{
		nameColumn,
		col("DESIRED", func(r *api.ReplicaSet) string { return strconv.Itoa(int(replicas(r.Spec.Replicas))) }),
		col("CURRENT", func(r *api.ReplicaSet) string { return strconv.Itoa(int(r.Status.Replicas)) }),
		col("READY", func(r *api.ReplicaSet) string { return strconv.Itoa(int(r.Status.ReadyReplicas)) }),
		ageColumn,
		wideCol("CONTAINERS", func(r *api.ReplicaSet) string { return containerNames(r.Spec.Template.Spec) }),
		wideCol("IMAGES", func(r *api.ReplicaSet) string { return containerImages(r.Spec.Template.Spec) }),
		wideCol("SELECTOR", func(r *api.ReplicaSet) string { return selectorString(r.Spec.Selector) }),
	}},
	"services": {columns: []column{
		nameColumn,
		col("TYPE", func(s *api.Service) string { return string(cmp.Or(s.Spec.Type, api.ServiceClusterIP)) }),
		col("CLUSTER-IP", func(s *api.Service) string { return orNone(s.Spec.ClusterIP) }),
		col("PORT(S)", func(s *api.Service) string { return servicePorts(s.Spec.Ports) }),
		ageColumn,
		wideCol("SELECTOR", func(s *api.Service) string { return labelsString(s.Spec.Selector) }),
	}},
	"endpoints": {columns: []column{
		nameColumn,
		col("ENDPOINTS", func(e *api.Endpoints) string { return endpointsString(e.Subsets, 3) }),
		ageColumn,
	}},
	"networkpolicies": {columns: []column{
		nameColumn,
		col("POD-SELECTOR", func(n *api.NetworkPolicy) string {
			if len(n.Spec.PodSelector.MatchLabels) == 0 {
				return "<all>" // an empty selector protects every pod of the tenant
			}
			return labelsString(n.Spec.PodSelector.MatchLabels)
		}),
		ageColumn,
	}},
	"secrets": {columns: []column{
		nameColumn,
		col("TYPE", func(s *api.Secret) string { return cmp.Or(s.Type, "Opaque") }),
		col("DATA", func(s *api.Secret) string {
			n := len(s.Data)
			for k := range s.StringData {
				if _, dup := s.Data[k]; !dup {
					n++
				}
			}
			return strconv.Itoa(n)
		}),
		ageColumn,
	}},
	"configmaps": {columns: []column{
		nameColumn,
		col("DATA", func(c *api.ConfigMap) string { return strconv.Itoa(len(c.Data) + len(c.BinaryData)) }),
		ageColumn,
	}},
	"events": {
		columns: []column{
			timeCol("LAST SEEN", eventLastSeen),
			col("TYPE", func(e *api.Event) string { return orNone(e.Type) }),
			col("REASON", func(e *api.Event) string { return orNone(e.Reason) }),
			col("OBJECT", func(e *api.Event) string {
				return strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
			}),
			col("MESSAGE", func(e *api.Event) string { return e.Message }),
		},
		order: func(a, b api.Object) int {
			return timeOf(eventLastSeen(a.(*api.Event))).Compare(timeOf(eventLastSeen(b.(*api.Event))))
		},
	},
}

// tableFor returns the table definition of kind k.
func tableFor(k *api.Kind) tableDef {
	if t, ok := tables[k.Resource]; ok {
		return t
	}
	return tableDef{columns: []column{nameColumn, ageColumn}}
}

// tablePrinter prints objects of one kind as an aligned table. It can be
// called again with more rows (a watch); later rows keep at least the
// column widths of earlier ones.
type tablePrinter struct {
	noHeaders bool
	// now returns the time ages are counted to.
	now func() time.Time

	columns       []column
	order         func(a, b api.Object) int
	widths        []int
	headerPrinted bool
}

// newTablePrinter returns a printer of kind k's table: with the wide
// columns when wide is set, and a TENANT column first when withTenant is
// set and k is tenant-scoped.
func newTablePrinter(k *api.Kind, wide, noHeaders, withTenant bool, now func() time.Time) *tablePrinter {
	def := tableFor(k)
	var cols []column
	if withTenant && k.TenantScoped {
		cols = append(cols, tenantColumn)
	}
	for _, c := range def.columns {
		if !c.wide || wide {
			cols = append(cols, c)
		}
	}
	return &tablePrinter{noHeaders: noHeaders, now: now, columns: cols, order: def.order}
}

// print writes rows for objs (sorted when the kind has an order), with the
// header before the first row ever printed.
func (p *tablePrinter) print(w io.Writer, objs []api.Object) error {
	if len(objs) == 0 {
		return nil
	}
	if p.order != nil {
		objs = slices.Clone(objs)
		slices.SortStableFunc(objs, p.order)
	}
	now := p.now()
	var rows [][]string
	if !p.headerPrinted && !p.noHeaders {
		h := make([]string, len(p.columns))
		for i, c := range p.columns {
			h[i] = c.header
		}
		rows = append(rows, h)
	}
	p.headerPrinted = true
	for _, o := range objs {
		r := make([]string, len(p.columns))
		for i, c := range p.columns {
			r[i] = cleanCell(c.value(o, now))
		}
		rows = append(rows, r)
	}
	if p.widths == nil {
		p.widths = make([]int, len(p.columns))
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	for _, r := range rows {
		for i, cell := range r {
			if i < len(r)-1 {
				// Pad to the widths of rows printed before, so that a
				// watch's rows line up with the list above them.
				fmt.Fprintf(tw, "%s%s\t", cell, strings.Repeat(" ", max(0, p.widths[i]-utf8.RuneCountInString(cell))))
			} else {
				fmt.Fprint(tw, cell)
			}
		}
		fmt.Fprintln(tw)
	}
	for _, r := range rows {
		for i, cell := range r {
			p.widths[i] = max(p.widths[i], utf8.RuneCountInString(cell))
		}
	}
	return tw.Flush()
}

// cleanCell keeps a cell on one line and free of tabs, which would break
// the alignment.
func cleanCell(s string) string {
	if !strings.ContainsAny(s, "\t\n\r") {
		return s
	}
	return strings.NewReplacer("\t", " ", "\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// ---- Cell helpers ----------------------------------------------------------

// age renders how long ago t was, as kubectl does ("45s", "5m", "3h",
// "2d"); "<unknown>" when t is not set.
func age(t *api.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "<unknown>"
	}
	return humanDuration(now.Sub(t.Time))
}

// humanDuration renders d like kubectl's AGE column: precise for short
// durations and coarser the longer they are.
func humanDuration(d time.Duration) string {
	if seconds := int(d.Seconds()); seconds < -1 {
		return "<invalid>"
	} else if seconds < 0 {
		return "0s" // a clock a little ahead of ours
	} else if seconds < 60*2 {
		return fmt.Sprintf("%ds", seconds)
	}
	minutes := int(d / time.Minute)
	if minutes < 10 {
		if s := int(d/time.Second) % 60; s != 0 {
			return fmt.Sprintf("%dm%ds", minutes, s)
		}
		return fmt.Sprintf("%dm", minutes)
	} else if minutes < 60*3 {
		return fmt.Sprintf("%dm", minutes)
	}
	hours := int(d / time.Hour)
	if hours < 8 {
		if m := minutes % 60; m != 0 {
			return fmt.Sprintf("%dh%dm", hours, m)
		}
		return fmt.Sprintf("%dh", hours)
	} else if hours < 48 {
		return fmt.Sprintf("%dh", hours)
	} else if hours < 24*8 {
		if h := hours % 24; h != 0 {
			return fmt.Sprintf("%dd%dh", hours/24, h)
		}
		return fmt.Sprintf("%dd", hours/24)
	} else if hours < 24*365*2 {
		return fmt.Sprintf("%dd", hours/24)
	} else if hours < 24*365*8 {
		if dy := (hours / 24) % 365; dy != 0 {
			return fmt.Sprintf("%dy%dd", hours/24/365, dy)
		}
		return fmt.Sprintf("%dy", hours/24/365)
	}
	return fmt.Sprintf("%dy", hours/24/365)
}

func orNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

func joinOrNone(s []string) string {
	if len(s) == 0 {
		return none
	}
	return strings.Join(s, ",")
}

// labelsString renders a label map as "a=1,b=2", sorted by key.
func labelsString(m map[string]string) string {
	if len(m) == 0 {
		return none
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func selectorString(s *api.LabelSelector) string {
	if s == nil {
		return none
	}
	return labelsString(s.MatchLabels)
}

// replicas is a replica count with the API's default of 1.
func replicas(n *int32) int32 {
	if n == nil {
		return 1
	}
	return *n
}

func containerNames(s api.PodSpec) string {
	names := make([]string, len(s.Containers))
	for i, c := range s.Containers {
		names[i] = c.Name
	}
	return joinOrNone(names)
}

func containerImages(s api.PodSpec) string {
	images := make([]string, len(s.Containers))
	for i, c := range s.Containers {
		images[i] = c.Image
	}
	return joinOrNone(images)
}

// usage renders "used/quota", or "used" when there is no quota.
func usage(used string, quota *string) string {
	if quota == nil {
		return used
	}
	return used + "/" + *quota
}

func tenantPods(t *api.Tenant) string {
	var q *string
	if t.Spec.Quota != nil && t.Spec.Quota.Pods != nil {
		s := strconv.FormatInt(*t.Spec.Quota.Pods, 10)
		q = &s
	}
	return usage(strconv.FormatInt(t.Status.Used.Pods, 10), q)
}

func tenantCPU(t *api.Tenant) string {
	var q *string
	if t.Spec.Quota != nil && t.Spec.Quota.CPU != nil {
		s := t.Spec.Quota.CPU.String()
		q = &s
	}
	return usage(t.Status.Used.CPU.String(), q)
}

func tenantMemory(t *api.Tenant) string {
	var q *string
	if t.Spec.Quota != nil && t.Spec.Quota.Memory != nil {
		s := t.Spec.Quota.Memory.String()
		q = &s
	}
	return usage(t.Status.Used.Memory.String(), q)
}

// nodeStatus renders the Ready condition (Ready, NotReady or Unknown),
// with ",SchedulingDisabled" when the node is cordoned.
func nodeStatus(n *api.Node) string {
	s := "Unknown"
	for _, c := range n.Status.Conditions {
		if c.Type != "Ready" {
			continue
		}
		switch c.Status {
		case "True":
			s = "Ready"
		case "False":
			s = "NotReady"
		}
	}
	if n.Spec.Unschedulable {
		s += ",SchedulingDisabled"
	}
	return s
}

// podReady renders ready/total containers.
func podReady(p *api.Pod) string {
	ready := 0
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Ready {
			ready++
		}
	}
	return fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers))
}

// podRestarts sums the restarts of a pod's containers.
func podRestarts(p *api.Pod) string {
	var n int64
	for _, cs := range p.Status.ContainerStatuses {
		n += int64(cs.RestartCount)
	}
	return strconv.FormatInt(n, 10)
}

// podStatus is kubectl's STATUS of a pod: the phase, overridden by the
// pod's reason, then by the first container that waits or ended with a
// reason (CrashLoopBackOff, ImagePullBackOff, Completed), and by
// Terminating while the pod is being deleted.
func podStatus(p *api.Pod) string {
	reason := string(p.Status.Phase)
	if reason == "" {
		reason = string(api.PodPending)
	}
	if p.Status.Reason != "" {
		reason = p.Status.Reason
	}
	running := false
	for i := len(p.Status.ContainerStatuses) - 1; i >= 0; i-- {
		st := p.Status.ContainerStatuses[i].State
		switch {
		case st.Waiting != nil && st.Waiting.Reason != "":
			reason = st.Waiting.Reason
		case st.Terminated != nil && st.Terminated.Reason != "":
			reason = st.Terminated.Reason
		case st.Terminated != nil && st.Terminated.Signal != 0:
			reason = fmt.Sprintf("Signal:%d", st.Terminated.Signal)
		case st.Terminated != nil:
			reason = fmt.Sprintf("ExitCode:%d", st.Terminated.ExitCode)
		case st.Running != nil && p.Status.ContainerStatuses[i].Ready:
			running = true
		}
	}
	if reason == "Completed" && running {
		reason = string(api.PodRunning)
	}
	if p.Metadata.DeletionTimestamp != nil {
		reason = "Terminating"
	}
	return reason
}

// servicePorts renders ports as kubectl does: "80/TCP", "80:30080/TCP".
func servicePorts(ports []api.ServicePort) string {
	if len(ports) == 0 {
		return none
	}
	parts := make([]string, len(ports))
	for i, p := range ports {
		proto := cmp.Or(p.Protocol, api.ProtocolTCP)
		if p.NodePort != 0 {
			parts[i] = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, proto)
		} else {
			parts[i] = fmt.Sprintf("%d/%s", p.Port, proto)
		}
	}
	return strings.Join(parts, ",")
}

// endpointsString lists the ready ip:port pairs, cut to max with
// " + N more...".
func endpointsString(subsets []api.EndpointSubset, limit int) string {
	var list []string
	for _, ss := range subsets {
		for _, a := range ss.Addresses {
			if len(ss.Ports) == 0 {
				list = append(list, a.IP)
				continue
			}
			for _, p := range ss.Ports {
				list = append(list, fmt.Sprintf("%s:%d", a.IP, p.Port))
			}
		}
	}
	if len(list) == 0 {
		return none
	}
	if len(list) > limit {
		return strings.Join(list[:limit], ",") + fmt.Sprintf(" + %d more...", len(list)-limit)
	}
	return strings.Join(list, ",")
}

// eventLastSeen is when an event last happened: lastTimestamp, else
// firstTimestamp, else its creation.
func eventLastSeen(e *api.Event) *api.Time {
	switch {
	case e.LastTimestamp != nil && !e.LastTimestamp.IsZero():
		return e.LastTimestamp
	case e.FirstTimestamp != nil && !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp
	}
	return e.Metadata.CreationTimestamp
}

func timeOf(t *api.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

// ---- Other formats ---------------------------------------------------------

// listDoc is what -o json and -o yaml print for several objects.
type listDoc struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Items      []api.Object `json:"items"`
}

// printDocument prints objs as JSON or YAML: the object itself when single
// is set (one object asked for by name), else a List.
func printDocument(w io.Writer, format outputFormat, objs []api.Object, single bool) error {
	var v any
	if single && len(objs) == 1 {
		v = objs[0]
	} else {
		v = listDoc{APIVersion: api.Version, Kind: "List", Items: append([]api.Object{}, objs...)}
	}
	b, err := encode(format, v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// encode renders v as indented JSON or as YAML, ending in a newline.
func encode(format outputFormat, v any) ([]byte, error) {
	js, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return nil, err
	}
	if format == outputYAML {
		return yaml.JSONToYAML(js)
	}
	return append(js, '\n'), nil
}

// printNames prints "kind/name" lines.
func printNames(w io.Writer, k *api.Kind, objs []api.Object) error {
	for _, o := range objs {
		if _, err := fmt.Fprintln(w, objectRef(k, o.GetObjectMeta().Name)); err != nil {
			return err
		}
	}
	return nil
}
