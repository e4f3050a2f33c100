// Package e2e tests Paddock through its real binary: a `paddock server`
// process on embedded (or external) etcd, driven by the `paddock` CLI and,
// where a test needs an exact HTTP status, by core/client.
package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/core/store"
)

const podYAML = `apiVersion: paddock.dev/v1
kind: Pod
metadata:
  name: %s
spec:
  containers:
  - name: main
    image: busybox
    resources:
      requests: {cpu: %s, memory: 64Mi}
`

func kind(t *testing.T, name string) *api.Kind {
	t.Helper()
	k, ok := api.KindFor(name)
	if !ok {
		t.Fatalf("no kind %q", name)
	}
	return k
}

// wantClass asserts that err is of class want.
func wantClass(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want class %v", what, err, want)
	}
}

func TestTenantIsolation(t *testing.T) {
	s := startServer(t, "")
	mustPaddock(t, s.admin, "", "tenant", "create", "alpha")
	mustPaddock(t, s.admin, "", "tenant", "create", "bravo")
	mustPaddock(t, s.admin, fmt.Sprintf(podYAML, "secret-work", "100m"), "apply", "-t", "bravo", "-f", "-")

	alphaAdmin := tenantConfig(t, s, "alpha", "admin")
	alphaView := tenantConfig(t, s, "alpha", "view")

	t.Run("cli refuses tenant A on tenant B", func(t *testing.T) {
		for _, args := range [][]string{
			{"get", "pods", "-t", "bravo"},
			{"get", "pod", "secret-work", "-t", "bravo"},
			{"get", "pod", "no-such-pod", "-t", "bravo"},
			{"delete", "pod", "secret-work", "-t", "bravo"},
			{"describe", "pod", "secret-work", "-t", "bravo"},
		} {
			failPaddock(t, alphaAdmin, "", []string{"Forbidden"}, args...)
		}
		failPaddock(t, alphaAdmin, fmt.Sprintf(podYAML, "intruder", "100m"), []string{"Forbidden"}, "apply", "-t", "bravo", "-f", "-")
		failPaddock(t, alphaAdmin, "", []string{"Forbidden"}, "tenant", "create", "charlie")
	})

	// Every verb of the API on the other tenant: TestTenantIsolationEveryVerb.

	t.Run("view cannot write", func(t *testing.T) {
		failPaddock(t, alphaView, fmt.Sprintf(podYAML, "viewer-pod", "100m"), []string{"Forbidden", "read-only"}, "apply", "-f", "-")
		failPaddock(t, alphaView, "", []string{"Forbidden"}, "delete", "pod", "own")
		mustPaddock(t, alphaView, "", "get", "pods")
		c := apiClient(t, alphaView)
		_, err := c.Create(t.Context(), &api.ConfigMap{Metadata: api.ObjectMeta{Name: "cm", Tenant: "alpha"}})
		wantClass(t, "view create configmap", err, errdefs.ErrPermissionDenied)
		_, err = c.List(t.Context(), kind(t, "secrets"), "alpha", client.ListOptions{})
		wantClass(t, "view list secrets", err, errdefs.ErrPermissionDenied)
	})

	t.Run("no or bad token is 401", func(t *testing.T) {
		cfg, err := client.LoadConfig(alphaAdmin)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Token = "abcdefgh.0123456789abcdefghijklmnopqrstuv"
		c, err := client.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.List(t.Context(), kind(t, "pods"), "alpha", client.ListOptions{})
		wantClass(t, "forged token", err, errdefs.ErrUnauthenticated)
	})

	t.Run("revoked token stops working", func(t *testing.T) {
		r := mustPaddock(t, s.admin, "", "token", "create", "--tenant", "alpha", "--role", "edit")
		tok := strings.TrimSpace(r.stdout)
		id, _, _ := strings.Cut(tok, ".")
		cfg, _ := client.LoadConfig(alphaAdmin)
		cfg.Token = tok
		c, _ := client.New(cfg)
		if _, err := c.List(t.Context(), kind(t, "pods"), "alpha", client.ListOptions{}); err != nil {
			t.Fatalf("fresh token: %v", err)
		}
		mustPaddock(t, s.admin, "", "token", "revoke", id)
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := c.List(t.Context(), kind(t, "pods"), "alpha", client.ListOptions{})
			if errors.Is(err, errdefs.ErrUnauthenticated) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("revoked token still accepted after 10s: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

func TestQuota(t *testing.T) {
	s := startServer(t, "")
	mustPaddock(t, s.admin, "", "tenant", "create", "q", "--quota", "pods=2,cpu=1,memory=1Gi")
	mustPaddock(t, s.admin, fmt.Sprintf(podYAML, "p1", "400m"), "apply", "-t", "q", "-f", "-")
	mustPaddock(t, s.admin, fmt.Sprintf(podYAML, "p2", "400m"), "apply", "-t", "q", "-f", "-")
	failPaddock(t, s.admin, fmt.Sprintf(podYAML, "p3", "100m"), []string{"exceeded quota", `"q"`, "pods", "used 2 of 2", "0 left"}, "apply", "-t", "q", "-f", "-")
	mustPaddock(t, s.admin, "", "delete", "pod", "p2", "-t", "q")
	failPaddock(t, s.admin, fmt.Sprintf(podYAML, "p3", "700m"), []string{"exceeded quota", "cpu", "requested 700m", "600m left"}, "apply", "-t", "q", "-f", "-")
	mustPaddock(t, s.admin, fmt.Sprintf(podYAML, "p3", "600m"), "apply", "-t", "q", "-f", "-")

	// Memory: podYAML requests 64Mi; a pod asking more than is left is
	// refused with the quota named, one that fits is admitted.
	mustPaddock(t, s.admin, "", "tenant", "create", "qm", "--quota", "memory=256Mi")
	withMemory := func(name, memory string) string {
		return strings.Replace(fmt.Sprintf(podYAML, name, "100m"), "memory: 64Mi", "memory: "+memory, 1)
	}
	mustPaddock(t, s.admin, withMemory("m1", "64Mi"), "apply", "-t", "qm", "-f", "-")
	failPaddock(t, s.admin, withMemory("m2", "256Mi"), []string{"exceeded quota", `"qm"`, "memory", "requested 256Mi", "used 64Mi of 256Mi", "192Mi left"}, "apply", "-t", "qm", "-f", "-")
	mustPaddock(t, s.admin, withMemory("m2", "192Mi"), "apply", "-t", "qm", "-f", "-")
	failPaddock(t, s.admin, withMemory("m3", "1Mi"), []string{"exceeded quota", "memory", "requested 1Mi", "0 left"}, "apply", "-t", "qm", "-f", "-")

	// Concurrent creates never overshoot the quota.
	mustPaddock(t, s.admin, "", "tenant", "create", "race", "--quota", "pods=5")
	c := apiClient(t, s.admin)
	errs := make(chan error, 20)
	for i := range 20 {
		go func() {
			_, err := c.Create(t.Context(), &api.Pod{Metadata: api.ObjectMeta{Name: fmt.Sprintf("r%d", i), Tenant: "race"}, Spec: api.PodSpec{Containers: []api.Container{{Name: "x", Image: "x"}}}})
			errs <- err
		}()
	}
	ok := 0
	for range 20 {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, errdefs.ErrResourceExhausted):
			t.Errorf("concurrent create: %v", err)
		}
	}
	list, err := c.List(t.Context(), kind(t, "pods"), "race", client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ok != 5 || len(list.Items) != 5 {
		t.Errorf("20 concurrent creates under pods=5: %d succeeded, %d stored; want 5 and 5", ok, len(list.Items))
	}
	tn, err := client.GetAs[*api.Tenant](t.Context(), c, "", "race")
	if err != nil {
		t.Fatal(err)
	}
	if tn.Status.Used.Pods != 5 {
		t.Errorf("tenant race status.used.pods = %d, want 5", tn.Status.Used.Pods)
	}
}

func TestWatchResumeAndCompaction(t *testing.T) {
	s := startServer(t, "")
	mustPaddock(t, s.admin, "", "tenant", "create", "w")
	c := apiClient(t, s.admin)
	ctx := t.Context()
	cms := kind(t, "configmaps")
	create := func(name string) api.Object {
		t.Helper()
		o, err := c.Create(ctx, &api.ConfigMap{Metadata: api.ObjectMeta{Name: name, Tenant: "w"}, Data: map[string]string{"k": name}})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	first := create("one")
	w, err := c.Watch(ctx, cms, "w", client.WatchOptions{ResourceVersion: first.GetObjectMeta().ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	create("two")
	ev := nextEvent(t, w)
	if ev.Type != api.Added || ev.Object.GetObjectMeta().Name != "two" {
		t.Fatalf("first event = %s %s, want ADDED two", ev.Type, ev.Object.GetObjectMeta().Name)
	}
	lastRV := ev.Object.GetObjectMeta().ResourceVersion
	w.Stop()

	// While disconnected: three changes.
	create("three")
	if _, err := c.Delete(ctx, cms, "w", "one"); err != nil {
		t.Fatal(err)
	}
	create("four")

	w2, err := c.Watch(ctx, cms, "w", client.WatchOptions{ResourceVersion: lastRV})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 3 {
		ev := nextEvent(t, w2)
		got = append(got, string(ev.Type)+" "+ev.Object.GetObjectMeta().Name)
	}
	want := []string{"ADDED three", "DELETED one", "ADDED four"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("resumed watch = %v, want %v", got, want)
	}
	w2.Stop()

	mustPaddock(t, s.admin, "", "etcd", "compact")
	_, err = c.Watch(ctx, cms, "w", client.WatchOptions{ResourceVersion: lastRV})
	wantClass(t, "watch from compacted revision", err, errdefs.ErrGone)

	// The raw answer is HTTP 410 with a Status body.
	resp, err := c.Do(ctx, http.MethodGet, "/api/v1/tenants/w/configmaps", map[string][]string{"watch": {"true"}, "resourceVersion": {lastRV}}, nil)
	if err == nil {
		resp.Body.Close()
		t.Fatal("raw watch from compacted revision succeeded")
	}
	if code, _ := errdefs.HTTPStatus(err); code != http.StatusGone {
		t.Errorf("raw watch status = %d, want 410", code)
	}
}

func nextEvent(t *testing.T, w *client.Watcher) api.WatchEvent {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatalf("watch closed: %v", w.Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
	}
	return api.WatchEvent{}
}

func TestBadInput(t *testing.T) {
	s := startServer(t, "")
	mustPaddock(t, s.admin, "", "tenant", "create", "bad")
	cases := []struct {
		name     string
		manifest string
		wants    []string
	}{
		{"malformed yaml names the line", "apiVersion: paddock.dev/v1\nkind: Pod\nmetadata:\n  name: x\n spec: [\n", []string{"line"}},
		{"unknown field names its path", "apiVersion: paddock.dev/v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - name: c\n    imagee: busybox\n", []string{"spec.containers[0].imagee", "unknown field"}},
		{"unknown kind", "apiVersion: paddock.dev/v1\nkind: Pud\nmetadata: {name: x}\n", []string{"kind", "Pud"}},
		{"invalid name", "apiVersion: paddock.dev/v1\nkind: Pod\nmetadata: {name: Not_Valid}\nspec:\n  containers: [{name: c, image: busybox}]\n", []string{"metadata.name", "Invalid"}},
		{"invalid quantity", "apiVersion: paddock.dev/v1\nkind: Pod\nmetadata: {name: q}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources: {limits: {memory: 64MB}}\n", []string{"spec.containers[0].resources.limits", "64MB"}},
		{"limit below request", "apiVersion: paddock.dev/v1\nkind: Pod\nmetadata: {name: l}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources: {requests: {cpu: 500m}, limits: {cpu: 250m}}\n", []string{"spec.containers[0].resources.requests.cpu", "limit"}},
		{"wrong type", "apiVersion: paddock.dev/v1\nkind: Pod\nmetadata: {name: t}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    ports: [{containerPort: eighty}]\n", []string{"spec.containers[0].ports[0].containerPort", "integer"}},
		{"second document is named", "apiVersion: paddock.dev/v1\nkind: ConfigMap\nmetadata: {name: fine}\n---\napiVersion: paddock.dev/v1\nkind: ConfigMap\nmetadata: {name: broken}\ndata: {k: [1]}\n", []string{"line 5", "data"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := failPaddock(t, s.admin, tc.manifest, tc.wants, "apply", "-t", "bad", "-f", "-")
			if lines := strings.Count(strings.TrimSpace(r.stderr), "\n"); lines > 1 {
				t.Errorf("stderr has %d lines, want one readable error line:\n%s", lines+1, r.stderr)
			}
		})
	}

	c := apiClient(t, s.admin)
	ctx := t.Context()
	codes := []struct {
		name string
		body string
		want int
	}{
		{"malformed json", `{"kind":"ConfigMap",`, http.StatusBadRequest},
		{"unknown field", `{"kind":"ConfigMap","metadata":{"name":"x"},"dta":{}}`, http.StatusBadRequest},
		{"invalid name", `{"kind":"ConfigMap","metadata":{"name":"UPPER"}}`, http.StatusUnprocessableEntity},
		{"wrong kind for url", `{"kind":"Secret","metadata":{"name":"x"}}`, http.StatusBadRequest},
		{"over 3 MiB", `{"kind":"ConfigMap","metadata":{"name":"big"},"data":{"k":"` + strings.Repeat("x", 3<<20) + `"}}`, http.StatusRequestEntityTooLarge},
		{"empty body", ``, http.StatusBadRequest},
		{"array body", `[1,2]`, http.StatusBadRequest},
	}
	for _, tc := range codes {
		t.Run("http "+tc.name, func(t *testing.T) {
			resp, err := c.Do(ctx, http.MethodPost, "/api/v1/tenants/bad/configmaps", nil, []byte(tc.body))
			if err == nil {
				resp.Body.Close()
				t.Fatalf("POST %s succeeded, want %d", tc.name, tc.want)
			}
			if code, _ := errdefs.HTTPStatus(err); code != tc.want {
				t.Errorf("POST %s: status %d (%v), want %d", tc.name, code, err, tc.want)
			}
		})
	}
	// Nothing of that was stored and the server still serves.
	list, err := c.List(ctx, kind(t, "configmaps"), "bad", client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range list.Items {
		if o.GetObjectMeta().Name != "fine" {
			t.Errorf("bad input stored %s", o.GetObjectMeta().Name)
		}
	}
	if !s.ready() {
		t.Error("server not ready after bad input")
	}
	failPaddock(t, s.admin, "", []string{"unknown resource"}, "get", "podz")
	failPaddock(t, s.admin, "", []string{"quota"}, "tenant", "create", "x", "--quota", "pods=ten")
}

func TestSnapshotSaveRestore(t *testing.T) {
	s := startServer(t, "")
	mustPaddock(t, s.admin, "", "tenant", "create", "before")
	snap := filepath.Join(t.TempDir(), "snap.db")
	r := mustPaddock(t, s.admin, "", "etcd", "snapshot", "save", snap)
	if !strings.Contains(r.stdout, snap) {
		t.Errorf("snapshot save output %q does not name the file", r.stdout)
	}
	mustPaddock(t, s.admin, "", "tenant", "create", "after")
	s.stop(t)

	restored := t.TempDir()
	mustPaddock(t, "", "", "etcd", "snapshot", "restore", snap, "--data-dir", restored)
	s2 := startServer(t, restored)
	out := mustPaddock(t, s2.admin, "", "get", "tenants", "-o", "name").stdout
	if !strings.Contains(out, "before") || strings.Contains(out, "after") {
		t.Errorf("tenants after restore = %q, want before and not after", out)
	}
	// Restoring over existing data is refused.
	failPaddock(t, "", "", []string{"etcd"}, "etcd", "snapshot", "restore", snap, "--data-dir", restored)
}

func TestExternalEtcd(t *testing.T) {
	e, err := store.StartEmbedded(t.Context(), store.EmbeddedConfig{Dir: t.TempDir(), ClientURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	s := startServer(t, "", "--etcd-endpoints", e.ClientURL())
	mustPaddock(t, s.admin, "", "tenant", "create", "ext")
	resp, err := e.Client().Get(t.Context(), "/paddock/tenants/ext")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("tenant not in the external etcd: %d keys", len(resp.Kvs))
	}
	if _, err := os.Stat(filepath.Join(s.dataDir, "etcd")); err == nil {
		t.Error("server with --etcd-endpoints also made an embedded etcd")
	}
}

func TestAuditHealthMetrics(t *testing.T) {
	s := startServer(t, "")
	mustPaddock(t, s.admin, "", "tenant", "create", "aud")
	view := tenantConfig(t, s, "aud", "view")
	failPaddock(t, view, "", []string{"Forbidden"}, "delete", "tenant", "aud")

	c := apiClient(t, view)
	ctx := t.Context()
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := c.Do(ctx, http.MethodGet, p, nil, nil)
		if err != nil {
			t.Errorf("GET %s: %v", p, err)
			continue
		}
		resp.Body.Close()
	}
	_, err := c.Do(ctx, http.MethodGet, "/metrics", nil, nil)
	wantClass(t, "metrics as tenant viewer", err, errdefs.ErrPermissionDenied)
	admin := apiClient(t, s.admin)
	resp, err := admin.Do(ctx, http.MethodGet, "/metrics", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if !strings.Contains(body, `paddock_apiserver_requests_total{code="403",resource="tenants",verb="delete"}`) {
		t.Errorf("metrics lack the refused delete:\n%.2000s", body)
	}

	// The audit log has one JSON line per request, the refusal among them.
	f, err := os.Open(filepath.Join(s.dataDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line is not JSON: %q", sc.Text())
		}
		for _, k := range []string{"time", "verb", "status"} {
			if _, ok := e[k]; !ok {
				t.Errorf("audit line lacks %q: %s", k, sc.Text())
			}
		}
		if e["verb"] == "delete" && e["resource"] == "tenants" && e["name"] == "aud" && e["status"] == float64(403) && e["role"] == "view" && e["userTenant"] == "aud" {
			found = true
		}
	}
	if !found {
		t.Error("audit log has no line for the refused tenant delete")
	}
}

// paddock up prints its progress and what to try, and links
// ~/.paddock/config to admin.conf so the CLI works without flags.
func TestUp(t *testing.T) {
	u := clusterUp(t)
	for _, want := range []string{"starting Paddock", "API server ready", "admin.conf", "node e2e-node ready with runtimes runc", "Next:"} {
		if !strings.Contains(u.logs.String(), want) {
			t.Errorf("paddock up output lacks %q:\n%s", want, u.logs)
		}
	}
	get := execCommand(t.Context(), binary, "get", "runtimeclasses")
	get.Env = append(os.Environ(), "HOME="+u.home, "PADDOCK_CONFIG=")
	b, err := get.CombinedOutput()
	if err != nil {
		t.Fatalf("paddock get runtimeclasses after up: %v\n%s", err, b)
	}
	for _, want := range []string{"runc", "gvisor", "userspace-kernel"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("runtime classes lack %q:\n%s", want, b)
		}
	}
}
