package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
)

// These tests extend TestTenantIsolation (e2e_test.go): every verb on
// every kind of another tenant's objects, existing or not, answered with
// the same 403 and each refusal in the audit log; and the pod fields that
// would give a tenant the node, refused at admission through the CLI.

// probe is one request tenant alpha's admin sends at something not its
// own, with what the audit log must record for it.
type probe struct {
	method, path string
	query        url.Values
	body         api.Object
	// What the audit line says.
	verb, resource, subresource, tenant, name string
}

func (p probe) String() string {
	s := p.method + " " + p.path
	if len(p.query) > 0 {
		s += "?" + p.query.Encode()
	}
	return s
}

// victim returns a valid object of kind k named name in tenant (empty for
// cluster-scoped kinds): what a request would store were it not refused.
func victim(t *testing.T, k *api.Kind, tenant, name string) api.Object {
	t.Helper()
	spec := api.PodSpec{Containers: []api.Container{{Name: "main", Image: "busybox"}}}
	labels := map[string]string{"app": name}
	var obj api.Object
	switch k.Resource {
	case "pods":
		obj = &api.Pod{Spec: spec}
	case "deployments":
		obj = &api.Deployment{Spec: api.DeploymentSpec{Template: api.PodTemplateSpec{Metadata: api.ObjectMeta{Labels: labels}, Spec: spec}}}
	case "services":
		obj = &api.Service{Spec: api.ServiceSpec{Selector: labels, Ports: []api.ServicePort{{Port: 80}}}}
	case "secrets":
		obj = &api.Secret{StringData: map[string]string{"password": "hunter2"}}
	case "configmaps":
		obj = &api.ConfigMap{Data: map[string]string{"k": "v"}}
	case "nodes":
		obj = &api.Node{}
	case "runtimeclasses":
		obj = &api.RuntimeClass{Spec: api.RuntimeClassSpec{Plugin: "runc", Isolation: api.IsolationNamespace}}
	case "tenants":
		obj = &api.Tenant{Spec: api.TenantSpec{Isolation: api.IsolationShared}}
	default:
		t.Fatalf("no victim for %s", k.Resource)
	}
	obj.GetTypeMeta().Kind = k.Kind
	obj.GetTypeMeta().APIVersion = api.Version
	*obj.GetObjectMeta() = api.ObjectMeta{Name: name, Tenant: tenant}
	return obj
}

// objectProbes are the requests on one object of kind k, named name:
// get, watch, update and delete, and for pods also status, log and exec.
func objectProbes(t *testing.T, k *api.Kind, tenant, name string) []probe {
	path := client.Path(k, tenant, name)
	obj := victim(t, k, tenant, name)
	ps := []probe{
		{method: http.MethodGet, path: path, verb: "get"},
		{method: http.MethodGet, path: path, query: url.Values{"watch": {"true"}}, verb: "watch"},
		{method: http.MethodPut, path: path, body: obj, verb: "update"},
		{method: http.MethodDelete, path: path, verb: "delete"},
	}
	if k.Resource == "pods" {
		ps = append(ps,
			probe{method: http.MethodPut, path: path + "/status", body: obj, verb: "update", subresource: "status"},
			probe{method: http.MethodGet, path: path + "/log", verb: "get", subresource: "log"},
			probe{method: http.MethodGet, path: path + "/exec", query: url.Values{"command": {"cat", "/etc/hostname"}}, verb: "create", subresource: "exec"},
		)
	}
	for i := range ps {
		ps[i].resource, ps[i].tenant, ps[i].name = k.Resource, tenant, name
	}
	return ps
}

// collectionProbes are list, watch and create on kind k in tenant.
func collectionProbes(t *testing.T, k *api.Kind, tenant, newName string) []probe {
	path := client.Path(k, tenant, "")
	ps := []probe{
		{method: http.MethodPost, path: path, body: victim(t, k, tenant, newName), verb: "create"},
	}
	if k.TenantScoped {
		ps = append(ps,
			probe{method: http.MethodGet, path: path, verb: "list"},
			probe{method: http.MethodGet, path: path, query: url.Values{"watch": {"true"}}, verb: "watch"},
		)
	}
	for i := range ps {
		ps[i].resource, ps[i].tenant = k.Resource, tenant
	}
	return ps
}

// send sends p as c and returns the error answer, failing the test on
// success.
func (p probe) send(t *testing.T, c *client.Client) error {
	t.Helper()
	var body []byte
	if p.body != nil {
		b, err := api.Encode(p.body)
		if err != nil {
			t.Fatal(err)
		}
		body = b
	}
	resp, err := c.Do(t.Context(), p.method, p.path, p.query, body)
	if err == nil {
		resp.Body.Close()
		t.Errorf("%s succeeded (%s), want 403", p, resp.Status)
		return nil
	}
	return err
}

// auditKey is what identifies a refusal in the audit log.
type auditKey struct {
	user, verb, resource, subresource, tenant, name string
	status                                          int
}

func TestTenantIsolationEveryVerb(t *testing.T) {
	s := startServer(t, "")
	mustPaddock(t, s.admin, "", "tenant", "create", "alpha")
	mustPaddock(t, s.admin, "", "tenant", "create", "bravo")
	admin := apiClient(t, s.admin)
	ctx := t.Context()

	// Bravo's objects, one of each kind a tenant writes, and a node.
	tenantKinds := []*api.Kind{kind(t, "pods"), kind(t, "secrets"), kind(t, "configmaps"), kind(t, "deployments"), kind(t, "services")}
	for _, k := range tenantKinds {
		if _, err := admin.Create(ctx, victim(t, k, "bravo", "secret-work")); err != nil {
			t.Fatalf("create bravo's %s: %v", k.Resource, err)
		}
	}
	if _, err := admin.Create(ctx, victim(t, kind(t, "nodes"), "", "node-1")); err != nil {
		t.Fatal(err)
	}
	bravoToken, err := admin.Create(ctx, &api.Token{Spec: api.TokenSpec{Role: api.RoleAdmin, Tenant: "bravo"}})
	if err != nil {
		t.Fatal(err)
	}
	bravoTokenID := bravoToken.GetObjectMeta().Name

	alphaConf := tenantConfig(t, s, "alpha", "admin")
	alpha := apiClient(t, alphaConf)
	cfg, err := client.LoadConfig(alphaConf)
	if err != nil {
		t.Fatal(err)
	}
	id, _, _ := strings.Cut(cfg.Token, ".")
	alphaUser := "token:" + id

	// existing and missing are the same requests on an object that exists
	// and on one that does not; their answers must not tell them apart.
	var existing, missing, others []probe
	for _, k := range tenantKinds {
		existing = append(existing, objectProbes(t, k, "bravo", "secret-work")...)
		missing = append(missing, objectProbes(t, k, "bravo", "no-such-thing")...)
		others = append(others, collectionProbes(t, k, "bravo", "intruder")...)
	}
	others = append(others, probe{method: http.MethodGet, path: "/api/v1/pods", verb: "list", resource: "pods"})

	// Cluster-scoped writes: nodes, runtime classes, tenants (another's and
	// its own), tokens of another tenant and of higher roles.
	write := func(ps []probe) []probe {
		var out []probe
		for _, p := range ps {
			if p.verb != "get" && p.verb != "watch" && p.verb != "list" {
				out = append(out, p)
			}
		}
		return out
	}
	for _, c := range []struct{ resource, name string }{{"nodes", "node-1"}, {"runtimeclasses", "runc"}, {"tenants", "bravo"}} {
		k := kind(t, c.resource)
		existing = append(existing, write(objectProbes(t, k, "", c.name))...)
		missing = append(missing, write(objectProbes(t, k, "", "no-such-thing"))...)
		others = append(others, collectionProbes(t, k, "", "intruder")...)
	}
	others = append(others, write(objectProbes(t, kind(t, "tenants"), "", "alpha"))...)
	tokens := kind(t, "tokens")
	tokenPath := client.Path(tokens, "", "")
	for _, spec := range []api.TokenSpec{
		{Role: api.RoleAdmin, Tenant: "bravo"},
		{Role: api.RoleClusterAdmin},
		{Role: api.RoleNode, Node: "node-1"},
	} {
		tok := &api.Token{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Token"}, Spec: spec}
		others = append(others, probe{method: http.MethodPost, path: tokenPath, body: tok, verb: "create", resource: "tokens"})
	}
	for _, m := range []struct {
		list *[]probe
		name string
	}{{&existing, bravoTokenID}, {&missing, "abcdefgh"}} {
		p := client.Path(tokens, "", m.name)
		*m.list = append(*m.list,
			probe{method: http.MethodGet, path: p, verb: "get", resource: "tokens", name: m.name},
			probe{method: http.MethodDelete, path: p, verb: "delete", resource: "tokens", name: m.name})
	}

	tokensBefore := tokenNames(t, admin)
	t.Run("403 on every verb, existing or not", func(t *testing.T) {
		answer := func(p probe) (int, string) {
			err := p.send(t, alpha)
			if err == nil {
				return 0, ""
			}
			code, reason := errdefs.HTTPStatus(err)
			if code != http.StatusForbidden || reason != "Forbidden" {
				t.Errorf("%s = %d %s (%v), want 403 Forbidden", p, code, reason, err)
			}
			return code, err.Error()
		}
		for _, p := range others {
			answer(p)
		}
		for i := range existing {
			e, m := existing[i], missing[i]
			_, got := answer(e)
			_, gotMissing := answer(m)
			// The same words, name aside: nothing says which one exists.
			if strings.ReplaceAll(got, e.name, "NAME") != strings.ReplaceAll(gotMissing, m.name, "NAME") {
				t.Errorf("answers tell an existing object from a missing one:\n  %s: %s\n  %s: %s", e, got, m, gotMissing)
			}
		}
	})

	t.Run("nothing changed", func(t *testing.T) {
		type ref struct{ tenant, name string }
		for _, k := range tenantKinds {
			for _, r := range []ref{{"bravo", "secret-work"}, {"bravo", "intruder"}} {
				o, err := admin.Get(ctx, k, r.tenant, r.name)
				if r.name == "intruder" && !errdefs.IsNotFound(err) {
					t.Errorf("%s %s after a refused create: %v, want not found", k.Resource, r.name, err)
				}
				if r.name == "secret-work" && (err != nil || o.GetObjectMeta().Generation != 1) {
					t.Errorf("bravo's %s %s after the refusals: %v, generation %d; want it unchanged", k.Resource, r.name, err, generation(o))
				}
			}
		}
		for _, c := range []struct{ resource, name string }{{"nodes", "node-1"}, {"runtimeclasses", "runc"}, {"tenants", "bravo"}, {"tokens", bravoTokenID}} {
			if _, err := admin.Get(ctx, kind(t, c.resource), "", c.name); err != nil {
				t.Errorf("%s %s after the refusals: %v", c.resource, c.name, err)
			}
		}
		for _, c := range []struct{ resource, name string }{{"tenants", "intruder"}, {"runtimeclasses", "intruder"}, {"nodes", "intruder"}} {
			if _, err := admin.Get(ctx, kind(t, c.resource), "", c.name); !errdefs.IsNotFound(err) {
				t.Errorf("%s %s after a refused create: %v, want not found", c.resource, c.name, err)
			}
		}
		if after := tokenNames(t, admin); after != tokensBefore {
			t.Errorf("tokens after the refusals = %s, want %s as before", after, tokensBefore)
		}
	})

	t.Run("every refusal is audited", func(t *testing.T) {
		want := map[auditKey]int{}
		for _, ps := range [][]probe{existing, missing, others} {
			for _, p := range ps {
				want[auditKey{alphaUser, p.verb, p.resource, p.subresource, p.tenant, p.name, http.StatusForbidden}]++
			}
		}
		// The server writes the line once the answer is out: poll.
		var lacking []string
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := auditRefusals(t, s.dataDir, alphaUser)
			lacking = lacking[:0]
			for k, n := range want {
				if got[k] < n {
					lacking = append(lacking, fmt.Sprintf("%+v: %d of %d", k, got[k], n))
				}
			}
			if len(lacking) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(lacking) > 0 {
			t.Errorf("audit log lacks %d refusals (user, verb, resource, subresource, tenant, name, status):\n%s", len(lacking), strings.Join(lacking, "\n"))
		}
	})

	t.Run("cli logs and exec", func(t *testing.T) {
		for _, name := range []string{"secret-work", "no-such-thing"} {
			failPaddock(t, alphaConf, "", []string{"Forbidden", `tenant "bravo"`}, "logs", name, "--tenant", "bravo")
			failPaddock(t, alphaConf, "", []string{"Forbidden", `tenant "bravo"`}, "exec", name, "--tenant", "bravo", "--", "cat", "/etc/hostname")
		}
	})
}

// tokenNames lists every token's name, sorted, as one string.
func tokenNames(t *testing.T, admin *client.Client) string {
	t.Helper()
	list, err := admin.List(t.Context(), kind(t, "tokens"), "", client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range list.Items {
		names = append(names, o.GetObjectMeta().Name)
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

func generation(o api.Object) int64 {
	if o == nil {
		return 0
	}
	return o.GetObjectMeta().Generation
}

// auditRefusals counts the audit log's lines of user by what they record.
func auditRefusals(t *testing.T, dataDir, user string) map[auditKey]int {
	t.Helper()
	f, err := os.Open(filepath.Join(dataDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[auditKey]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct {
			User, Verb, Resource, Subresource, Tenant, Name string
			Status                                          int
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line is not JSON: %q", sc.Text())
		}
		if e.User == user {
			got[auditKey{e.User, e.Verb, e.Resource, e.Subresource, e.Tenant, e.Name, e.Status}]++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// securityManifest is a Pod (or, with template set, a Deployment whose
// template is that pod) named name, with spec lines added to its spec and
// container lines to its one container, both written as for a Pod.
func securityManifest(name, spec, container string, template bool) string {
	podSpec := "spec:\n" + spec + "\n  containers:\n  - name: main\n    image: busybox\n" + container + "\n"
	if !template {
		return "apiVersion: paddock.dev/v1\nkind: Pod\nmetadata: {name: " + name + "}\n" + podSpec
	}
	indented := strings.TrimRight(strings.ReplaceAll("    "+podSpec, "\n", "\n    "), " ")
	return "apiVersion: paddock.dev/v1\nkind: Deployment\nmetadata: {name: " + name + "}\nspec:\n  template:\n    metadata: {labels: {app: x}}\n" + indented
}

// TestIsolationAdmission: the pod fields that would give a tenant the
// node (or that the node agent would ignore) are refused through
// `paddock apply`, for pods and deployment templates, whoever applies
// them, naming the field and saying why; and nothing is stored.
func TestIsolationAdmission(t *testing.T) {
	s := startServer(t, "")
	mustPaddock(t, s.admin, "", "tenant", "create", "acme")
	acme := tenantConfig(t, s, "acme", "admin")

	cases := []struct {
		name, spec, container string
		wants                 []string
	}{
		{"privileged", "", "    securityContext: {privileged: true}",
			[]string{"Forbidden", "spec.containers[0].securityContext.privileged: a tenant's pods may not run privileged"}},
		{"host-network", "  hostNetwork: true", "",
			[]string{"Forbidden", "spec.hostNetwork", "may not share the node's namespaces"}},
		{"host-pid", "  hostPID: true", "",
			[]string{"Forbidden", "spec.hostPID", "processes"}},
		{"host-ipc", "  hostIPC: true", "",
			[]string{"Forbidden", "spec.hostIPC"}},
		{"host-path", "  volumes: [{name: root, hostPath: {path: /}}]", "    volumeMounts: [{name: root, mountPath: /host}]",
			[]string{"Forbidden", "spec.volumes[0].hostPath", `may not mount the node's files ("/")`}},
		{"sys-admin", "", "    securityContext: {capabilities: {add: [SYS_ADMIN]}}",
			[]string{"Forbidden", "spec.containers[0].securityContext.capabilities.add[0]", "SYS_ADMIN", "NET_BIND_SERVICE"}},
		{"escalation", "", "    securityContext: {allowPrivilegeEscalation: true}",
			[]string{"Forbidden", "spec.containers[0].securityContext.allowPrivilegeEscalation"}},
		// CVE-2024-21626: a working directory under /proc/self/fd.
		{"proc-fd-cwd", "", "    workingDir: /proc/self/fd/7",
			[]string{"Invalid", "spec.containers[0].workingDir", "CVE-2024-21626"}},
		{"proc-dotdot-cwd", "", "    workingDir: /tmp/../proc/self/fd/8",
			[]string{"Invalid", "spec.containers[0].workingDir", "/proc"}},
		// Not carried out by the node agent yet: refused, not ignored.
		{"empty-dir", "  volumes: [{name: scratch, emptyDir: {}}]", "    volumeMounts: [{name: scratch, mountPath: /scratch}]",
			[]string{"Invalid", "spec.volumes[0]", "not supported yet"}},
		{"run-as-user", "", "    securityContext: {runAsUser: 1000}",
			[]string{"Invalid", "spec.containers[0].securityContext.runAsUser", "not supported yet"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := securityManifest(tc.name, tc.spec, tc.container, false)
			failPaddock(t, acme, pod, tc.wants, "apply", "-f", "-")
			failPaddock(t, s.admin, pod, tc.wants, "apply", "-t", "acme", "-f", "-")

			// The same pod as a deployment's template.
			dep := securityManifest(tc.name, tc.spec, tc.container, true)
			var depWants []string
			for _, w := range tc.wants {
				depWants = append(depWants, strings.ReplaceAll(w, "spec.", "spec.template.spec."))
			}
			failPaddock(t, acme, dep, depWants, "apply", "-f", "-")
		})
	}

	for _, k := range []string{"pods", "deployments"} {
		if out := mustPaddock(t, acme, "", "get", k, "-o", "name").stdout; strings.TrimSpace(out) != "" {
			t.Errorf("refused %s were stored:\n%s", k, out)
		}
	}
	// Safe settings of the same fields are admitted: the refusals above
	// are about what was asked, not about the fields being there.
	safe := "    workingDir: /tmp\n    securityContext: {privileged: false, allowPrivilegeEscalation: false, capabilities: {add: [NET_BIND_SERVICE]}}"
	mustPaddock(t, acme, securityManifest("safe", "  hostNetwork: false", safe, false), "apply", "-f", "-")
	mustPaddock(t, acme, securityManifest("safe", "  hostNetwork: false", safe, true), "apply", "-f", "-")
}
