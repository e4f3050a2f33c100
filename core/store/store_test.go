package store

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/errdefs"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestCreate(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()

	// creationTimestamp has second precision.
	before := time.Now().Add(-time.Second)
	var lastRV int64
	uids := map[string]bool{}
	for _, name := range []string{"one", "two", "three"} {
		in := configMap("a", name, map[string]string{"app": "web"})
		in.Metadata.ResourceVersion = "999999" // ignored: the store owns it
		got := mustCreate(t, s, in)
		m := got.Metadata
		if !uuidRe.MatchString(m.UID) {
			t.Errorf("Create(a/%s) uid = %q, want a version 4 UUID", name, m.UID)
		}
		if uids[m.UID] {
			t.Errorf("Create(a/%s) uid = %q, want a new one: it was given before", name, m.UID)
		}
		uids[m.UID] = true
		if ts := m.CreationTimestamp; ts == nil || ts.Before(before) || ts.After(time.Now()) {
			t.Errorf("Create(a/%s) creationTimestamp = %v, want about now (%v)", name, ts, before.Add(time.Second))
		}
		if m.Generation != 1 {
			t.Errorf("Create(a/%s) generation = %d, want 1", name, m.Generation)
		}
		rv := rvOf(t, got)
		if rv <= lastRV {
			t.Errorf("Create(a/%s) resourceVersion = %d, want > %d (the previous create's)", name, rv, lastRV)
		}
		if cur := mustRevision(t, s); rv != cur {
			t.Errorf("Create(a/%s) resourceVersion = %d, want the etcd revision %d", name, rv, cur)
		}
		lastRV = rv
		sameObject(t, fmt.Sprintf("Get(a/%s)", name), mustGet(t, s, cmKind, "a", name), got)
	}

	t.Run("name taken", func(t *testing.T) {
		orig := mustGet(t, s, cmKind, "a", "one")
		rev := mustRevision(t, s)
		_, err := s.Create(ctx, configMap("a", "one", nil))
		wantErr(t, "second Create(a/one)", err, errdefs.ErrAlreadyExists)
		for _, want := range []string{`configmap "one"`, `tenant "a"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("second Create(a/one) = %q, want it to name %s", err, want)
			}
		}
		sameObject(t, "Get(a/one) after the refused Create", mustGet(t, s, cmKind, "a", "one"), orig)
		if got := mustRevision(t, s); got != rev {
			t.Errorf("Revision() after the refused Create = %d, want %d (nothing written)", got, rev)
		}
	})

	t.Run("same name in another tenant", func(t *testing.T) {
		b := mustCreate(t, s, configMap("b", "one", nil))
		if a := mustGet(t, s, cmKind, "a", "one"); a.GetObjectMeta().UID == b.Metadata.UID {
			t.Errorf("Create(b/one) uid = a/one's uid %q, want distinct objects", b.Metadata.UID)
		}
	})

	t.Run("keeps metadata the caller set", func(t *testing.T) {
		in := configMap("a", "preset", nil)
		ts := api.NewTime(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
		in.Metadata.UID, in.Metadata.CreationTimestamp, in.Metadata.Generation = "fixed-uid", ts, 7
		got := mustCreate(t, s, in)
		if got.Metadata.UID != "fixed-uid" || !got.Metadata.CreationTimestamp.Equal(ts.Time) || got.Metadata.Generation != 7 {
			t.Errorf("Create(preset metadata) = uid %q, created %v, generation %d; want fixed-uid, %v, 7",
				got.Metadata.UID, got.Metadata.CreationTimestamp, got.Metadata.Generation, ts)
		}
	})

	t.Run("cluster-scoped", func(t *testing.T) {
		n := nodeKind.New().(*api.Node)
		n.Metadata.Name = "n1"
		got := mustCreate(t, s, n)
		sameObject(t, "Get(nodes, n1)", mustGet(t, s, nodeKind, "", "n1"), got)
		// The tenant argument means nothing for a cluster-scoped kind.
		sameObject(t, "Get(nodes, tenant x, n1)", mustGet(t, s, nodeKind, "x", "n1"), got)
	})

	t.Run("stored form", func(t *testing.T) {
		for _, tt := range []struct {
			k            *api.Kind
			tenant, name string
			want         string
		}{
			{cmKind, "a", "one", "/paddock/configmaps/a/one"},
			{nodeKind, "", "n1", "/paddock/nodes/n1"},
		} {
			if got := s.Key(tt.k, tt.tenant, tt.name); got != tt.want {
				t.Errorf("Key(%s, %q, %q) = %q, want %q", tt.k.Resource, tt.tenant, tt.name, got, tt.want)
			}
			resp, err := s.Client().Get(ctx, tt.want)
			if err != nil || len(resp.Kvs) != 1 {
				t.Fatalf("etcd Get(%q) = %v, %v; want one key", tt.want, resp, err)
			}
			if v := string(resp.Kvs[0].Value); strings.Contains(v, "resourceVersion") {
				t.Errorf("stored value of %s = %s, want it without resourceVersion (that is the key's revision)", tt.want, v)
			}
		}
	})

	t.Run("invalid", func(t *testing.T) {
		tests := []struct {
			name string
			obj  api.Object
			want error
		}{
			{"no name", configMap("a", "", nil), errdefs.ErrInvalidArgument},
			{"no tenant", configMap("", "x", nil), errdefs.ErrInvalidArgument},
			{"slash in name", configMap("a", "x/y", nil), errdefs.ErrInvalidArgument},
			{"slash in tenant", configMap("a/../b", "x", nil), errdefs.ErrInvalidArgument},
			{"cluster-scoped without name", nodeKind.New(), errdefs.ErrInvalidArgument},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				rev := mustRevision(t, s)
				_, err := s.Create(ctx, tt.obj)
				wantErr(t, fmt.Sprintf("Create(%s)", mustJSON(tt.obj)), err, tt.want)
				if got := mustRevision(t, s); got != rev {
					t.Errorf("Revision() after a refused Create = %d, want %d", got, rev)
				}
			})
		}
		if _, err := s.Create(ctx, &api.Status{}); err == nil {
			t.Errorf("Create(*api.Status) = nil error, want one: Status is no stored kind")
		}
	})
}

func TestGetNotFound(t *testing.T) {
	s := newStore(t)
	mustCreate(t, s, configMap("a", "x", nil))
	tests := []struct {
		name         string
		k            *api.Kind
		tenant, obj  string
		want, unwant []string
	}{
		{"missing name", cmKind, "a", "nope", []string{`configmap "nope"`, `tenant "a"`, "not found"}, nil},
		{"name of another tenant", cmKind, "b", "x", []string{`configmap "x"`, `tenant "b"`}, nil},
		{"missing tenant", cmKind, "zz", "x", []string{`configmap "x"`, `tenant "zz"`}, nil},
		{"cluster-scoped", nodeKind, "", "n9", []string{`node "n9"`, "not found"}, []string{"tenant"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Get(t.Context(), tt.k, tt.tenant, tt.obj)
			op := fmt.Sprintf("Get(%s, %q, %q)", tt.k.Resource, tt.tenant, tt.obj)
			if got != nil {
				t.Errorf("%s = %s, want nil", op, mustJSON(got))
			}
			wantErr(t, op, err, errdefs.ErrNotFound)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s = %q, want it to contain %s", op, err, w)
				}
			}
			for _, w := range tt.unwant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("%s = %q, want it without %q", op, err, w)
				}
			}
		})
	}
}

func TestUpdate(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	created := mustCreate(t, s, configMap("a", "x", nil))

	upd := api.Clone(created)
	upd.Data["k"] = "v1"
	out, err := s.Update(ctx, upd)
	if err != nil {
		t.Fatalf("Update(a/x at its resourceVersion) = %v", err)
	}
	if rv, old := rvOf(t, out), rvOf(t, created); rv <= old {
		t.Errorf("Update(a/x) resourceVersion = %d, want > %d", rv, old)
	}
	if rv, cur := rvOf(t, out), mustRevision(t, s); rv != cur {
		t.Errorf("Update(a/x) resourceVersion = %d, want the etcd revision %d", rv, cur)
	}
	current := mustGet(t, s, cmKind, "a", "x")
	sameObject(t, "Get(a/x) after Update", current, out)

	tests := []struct {
		name   string
		obj    func() *api.ConfigMap
		want   error
		inText string
	}{
		{"stale resourceVersion", func() *api.ConfigMap {
			c := api.Clone(created) // at the create's revision
			c.Data["k"] = "stale"
			return c
		}, errdefs.ErrConflict, `configmap "x"`},
		{"no resourceVersion", func() *api.ConfigMap {
			c := api.Clone(current.(*api.ConfigMap))
			c.Metadata.ResourceVersion = ""
			return c
		}, errdefs.ErrInvalidArgument, "metadata.resourceVersion"},
		{"malformed resourceVersion", func() *api.ConfigMap {
			c := api.Clone(current.(*api.ConfigMap))
			c.Metadata.ResourceVersion = "12abc"
			return c
		}, errdefs.ErrBadRequest, "resourceVersion"},
		{"future resourceVersion", func() *api.ConfigMap {
			return withRV(current.(*api.ConfigMap), rvOf(t, current)+1000)
		}, errdefs.ErrConflict, `configmap "x"`},
		{"missing object", func() *api.ConfigMap {
			return withRV(configMap("a", "ghost", nil), rvOf(t, current))
		}, errdefs.ErrNotFound, `configmap "ghost" not found in tenant "a"`},
		{"missing tenant", func() *api.ConfigMap {
			return withRV(configMap("b", "x", nil), rvOf(t, current))
		}, errdefs.ErrNotFound, `tenant "b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rev := mustRevision(t, s)
			obj := tt.obj()
			_, err := s.Update(ctx, obj)
			op := fmt.Sprintf("Update(%s/%s at %q)", obj.Metadata.Tenant, obj.Metadata.Name, obj.Metadata.ResourceVersion)
			wantErr(t, op, err, tt.want)
			if !strings.Contains(err.Error(), tt.inText) {
				t.Errorf("%s = %q, want it to contain %s", op, err, tt.inText)
			}
			sameObject(t, "Get(a/x) after a refused Update", mustGet(t, s, cmKind, "a", "x"), current)
			if got := mustRevision(t, s); got != rev {
				t.Errorf("Revision() after a refused Update = %d, want %d (nothing written)", got, rev)
			}
			if _, err := s.Get(ctx, cmKind, obj.Metadata.Tenant, obj.Metadata.Name); obj.Metadata.Name == "ghost" && !errdefs.IsNotFound(err) {
				t.Errorf("Get(a/ghost) after Update of a missing object = %v, want NotFound: Update must not create", err)
			}
		})
	}
}

func TestGuaranteedUpdate(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()

	t.Run("contention", func(t *testing.T) {
		mustCreate(t, s, configMap("a", "counter", map[string]string{"n": "0"}))
		const workers, perWorker = 8, 20
		var calls atomic.Int64
		incr := func(cur api.Object) (api.Object, error) {
			calls.Add(1)
			m := cur.GetObjectMeta()
			n, err := strconv.Atoi(m.Labels["n"])
			if err != nil {
				return nil, err
			}
			m.Labels["n"] = strconv.Itoa(n + 1)
			return cur, nil
		}
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Go(func() {
				for range perWorker {
					if _, err := s.GuaranteedUpdate(ctx, cmKind, "a", "counter", incr); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("GuaranteedUpdate(a/counter, +1) = %v, want nil", err)
		}
		got := mustGet(t, s, cmKind, "a", "counter").GetObjectMeta().Labels["n"]
		if want := strconv.Itoa(workers * perWorker); got != want {
			t.Errorf("counter after %d×%d GuaranteedUpdate(+1) = %s, want %s (updates lost)", workers, perWorker, got, want)
		}
		t.Logf("%d calls of the update function for %d updates", calls.Load(), workers*perWorker)
	})

	t.Run("retries after a conflicting write", func(t *testing.T) {
		mustCreate(t, s, configMap("a", "race", nil))
		calls := 0
		out, err := s.GuaranteedUpdate(ctx, cmKind, "a", "race", func(cur api.Object) (api.Object, error) {
			calls++
			if calls == 1 {
				// Someone else writes between our read and our write.
				other := api.Clone(cur.(*api.ConfigMap))
				other.Data["other"] = "1"
				if _, err := s.Update(ctx, other); err != nil {
					t.Fatalf("concurrent Update = %v", err)
				}
			}
			cur.(*api.ConfigMap).Data["mine"] = "1"
			return cur, nil
		})
		if err != nil {
			t.Fatalf("GuaranteedUpdate(a/race) = %v", err)
		}
		if calls != 2 {
			t.Errorf("GuaranteedUpdate(a/race) called its function %d times, want 2 (one retry)", calls)
		}
		got := mustGet(t, s, cmKind, "a", "race").(*api.ConfigMap)
		if got.Data["other"] != "1" || got.Data["mine"] != "1" {
			t.Errorf("Get(a/race).data = %v, want both the concurrent and the retried change", got.Data)
		}
		sameObject(t, "GuaranteedUpdate(a/race)", out, got)
	})

	t.Run("function error aborts", func(t *testing.T) {
		before := mustCreate(t, s, configMap("a", "abort", nil))
		boom := errors.New("boom")
		_, err := s.GuaranteedUpdate(ctx, cmKind, "a", "abort", func(cur api.Object) (api.Object, error) {
			cur.(*api.ConfigMap).Data["x"] = "y"
			return nil, boom
		})
		if !errors.Is(err, boom) {
			t.Errorf("GuaranteedUpdate(fn fails) = %v, want %v", err, boom)
		}
		sameObject(t, "Get(a/abort) after an aborted GuaranteedUpdate", mustGet(t, s, cmKind, "a", "abort"), before)
	})

	t.Run("name and tenant are pinned", func(t *testing.T) {
		mustCreate(t, s, configMap("a", "pinned", nil))
		_, err := s.GuaranteedUpdate(ctx, cmKind, "a", "pinned", func(cur api.Object) (api.Object, error) {
			c := configMap("b", "elsewhere", nil)
			c.Data["moved"] = "no"
			return c, nil
		})
		if err != nil {
			t.Fatalf("GuaranteedUpdate(a/pinned) = %v", err)
		}
		if got := mustGet(t, s, cmKind, "a", "pinned").(*api.ConfigMap); got.Data["moved"] != "no" {
			t.Errorf("Get(a/pinned).data = %v, want the function's result written to a/pinned", got.Data)
		}
		if _, err := s.Get(ctx, cmKind, "b", "elsewhere"); !errdefs.IsNotFound(err) {
			t.Errorf("Get(b/elsewhere) = %v, want NotFound: GuaranteedUpdate must write only the object it read", err)
		}
	})

	t.Run("missing", func(t *testing.T) {
		_, err := s.GuaranteedUpdate(ctx, cmKind, "a", "ghost", func(cur api.Object) (api.Object, error) {
			t.Error("update function called for a missing object")
			return cur, nil
		})
		wantErr(t, "GuaranteedUpdate(a/ghost)", err, errdefs.ErrNotFound)
	})
}

func TestDelete(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	created := mustCreate(t, s, configMap("a", "x", map[string]string{"app": "web"}))
	last := api.Clone(created)
	last.Data["k"] = "last"
	if _, err := s.Update(ctx, last); err != nil {
		t.Fatalf("Update(a/x) = %v", err)
	}

	_, err := s.Delete(ctx, cmKind, "a", "x", rvOf(t, created))
	wantErr(t, "Delete(a/x, stale rv)", err, errdefs.ErrConflict)
	sameObject(t, "Get(a/x) after a refused Delete", mustGet(t, s, cmKind, "a", "x"), last)

	got, err := s.Delete(ctx, cmKind, "a", "x", rvOf(t, last))
	if err != nil {
		t.Fatalf("Delete(a/x, current rv) = %v", err)
	}
	delRev := mustRevision(t, s)
	if rv := rvOf(t, got); rv != delRev || rv <= rvOf(t, last) {
		t.Errorf("Delete(a/x) resourceVersion = %d, want the deletion revision %d (> %d)", rv, delRev, rvOf(t, last))
	}
	// The last stored object, at the revision of its deletion.
	sameObject(t, "Delete(a/x)", got, withRV(last, delRev))
	if _, err := s.Get(ctx, cmKind, "a", "x"); !errdefs.IsNotFound(err) {
		t.Errorf("Get(a/x) after Delete = %v, want NotFound", err)
	}

	t.Run("unconditional", func(t *testing.T) {
		y := mustCreate(t, s, configMap("a", "y", nil))
		got, err := s.Delete(ctx, cmKind, "a", "y", 0)
		if err != nil {
			t.Fatalf("Delete(a/y, 0) = %v", err)
		}
		sameObject(t, "Delete(a/y, 0)", got, withRV(y, mustRevision(t, s)))
	})

	for _, tt := range []struct {
		desc, tenant, name string
		rv                 int64
	}{
		{"deleted", "a", "x", 0},
		{"deleted at its last rv", "a", "x", rvOf(t, last)},
		{"never existed", "a", "ghost", 0},
		{"other tenant", "b", "x", 0},
	} {
		t.Run("missing/"+tt.desc, func(t *testing.T) {
			rev := mustRevision(t, s)
			_, err := s.Delete(ctx, cmKind, tt.tenant, tt.name, tt.rv)
			op := fmt.Sprintf("Delete(%s/%s, %d)", tt.tenant, tt.name, tt.rv)
			wantErr(t, op, err, errdefs.ErrNotFound)
			if !strings.Contains(err.Error(), strconv.Quote(tt.name)) {
				t.Errorf("%s = %q, want it to name %q", op, err, tt.name)
			}
			if got := mustRevision(t, s); got != rev {
				t.Errorf("Revision() after %s = %d, want %d", op, got, rev)
			}
		})
	}
}

func TestTenantIsolation(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	tenants := []string{"a", "ab", "b"}
	for _, tn := range tenants {
		for _, n := range []string{"x1", "x2", "x3"} {
			mustCreate(t, s, configMap(tn, n, nil))
		}
	}
	// A cluster-scoped object named like a tenant must not show up either.
	n := nodeKind.New().(*api.Node)
	n.Metadata.Name = "a"
	mustCreate(t, s, n)

	for _, tn := range tenants {
		got := names(mustList(t, s, cmKind, tn, ListOptions{}).Items)
		if want := qualified(tn, "x1", "x2", "x3"); !slices.Equal(got, want) {
			t.Errorf("List(configmaps, %q) = %v, want %v", tn, got, want)
		}
	}
	all := names(mustList(t, s, cmKind, "", ListOptions{}).Items)
	want := slices.Concat(qualified("a", "x1", "x2", "x3"), qualified("ab", "x1", "x2", "x3"), qualified("b", "x1", "x2", "x3"))
	if !slices.Equal(all, want) {
		t.Errorf("List(configmaps, every tenant) = %v, want %v", all, want)
	}

	rev := mustRevision(t, s)
	token := func(rv int64, start string) string {
		b, err := json.Marshal(map[string]any{"rv": rv, "start": start})
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	forged := []string{
		"../b/x1", "../ab/", "/../b/x1", "../../configmaps/b/x1", "../../nodes/a",
		"x1/../../b/x1", "\x00", "\xff\xff", "", "x2", "b/x1", "%2e%2e/b/x1",
	}
	for _, start := range forged {
		t.Run(fmt.Sprintf("forged continue %q", start), func(t *testing.T) {
			for _, limit := range []int64{0, 1, 100} {
				l, err := s.List(ctx, cmKind, "a", ListOptions{Limit: limit, Continue: token(rev, start)})
				if err != nil {
					// Refusing a forged token is fine; reading outside the prefix is not.
					t.Logf("List(a, limit %d, forged continue) = %v", limit, err)
					continue
				}
				for _, o := range l.Items {
					if m := o.GetObjectMeta(); m.Tenant != "a" {
						t.Errorf("List(a, limit %d, continue {start: %q}) returned %s/%s of another tenant", limit, start, m.Tenant, m.Name)
					}
				}
			}
		})
	}

	t.Run("continue token of another tenant", func(t *testing.T) {
		page := mustList(t, s, cmKind, "b", ListOptions{Limit: 1})
		if page.Metadata.Continue == "" {
			t.Fatalf("List(b, limit 1) has no continue token")
		}
		got := names(mustList(t, s, cmKind, "a", ListOptions{Continue: page.Metadata.Continue}).Items)
		for _, n := range got {
			if !strings.HasPrefix(n, "a/") {
				t.Errorf("List(a, continue of b's list) = %v, want only tenant a's objects", got)
				break
			}
		}
	})
}

// seedPods creates pods in tenant t for the field selector tests.
func seedPods(t *testing.T, s *Store, tenant string) {
	t.Helper()
	for _, p := range []*api.Pod{
		pod(tenant, "p1", "n1", api.PodRunning),
		pod(tenant, "p2", "n1", api.PodPending),
		pod(tenant, "p3", "n2", api.PodRunning),
		pod(tenant, "p4", "", api.PodPending),
	} {
		if p.Metadata.Name == "p1" || p.Metadata.Name == "p3" {
			p.Metadata.Labels = map[string]string{"app": "web"}
		}
		mustCreate(t, s, p)
	}
}

func TestListSelectors(t *testing.T) {
	s := newStore(t)
	for _, cm := range []*api.ConfigMap{
		configMap("t", "cache-1", map[string]string{"app": "cache"}),
		configMap("t", "db-1", map[string]string{"app": "db", "tier": "back"}),
		configMap("t", "plain", nil),
		configMap("t", "web-1", map[string]string{"app": "web", "tier": "front"}),
		configMap("t", "web-2", map[string]string{"app": "web", "tier": "back"}),
		configMap("other", "web-1", map[string]string{"app": "web", "tier": "front"}),
	} {
		mustCreate(t, s, cm)
	}
	seedPods(t, s, "t")
	seedPods(t, s, "other")

	labelTests := []struct {
		sel  string
		want []string
	}{
		{"", []string{"cache-1", "db-1", "plain", "web-1", "web-2"}},
		{"app=web", []string{"web-1", "web-2"}},
		{"app==web", []string{"web-1", "web-2"}},
		{"app!=web", []string{"cache-1", "db-1", "plain"}},
		{"app in (web,db)", []string{"db-1", "web-1", "web-2"}},
		{"app notin (web,db)", []string{"cache-1", "plain"}},
		{"tier", []string{"db-1", "web-1", "web-2"}},
		{"!tier", []string{"cache-1", "plain"}},
		{"app=web,tier=back", []string{"web-2"}},
		{"app,!tier", []string{"cache-1"}},
		{"app=nothing", []string{}},
	}
	for _, tt := range labelTests {
		t.Run(fmt.Sprintf("labels %q", tt.sel), func(t *testing.T) {
			l := mustList(t, s, cmKind, "t", ListOptions{Labels: labelSelector(t, tt.sel)})
			if got, want := names(l.Items), qualified("t", tt.want...); !slices.Equal(got, want) {
				t.Errorf("List(configmaps, t, labels %q) = %v, want %v", tt.sel, got, want)
			}
			if l.Items == nil {
				t.Errorf("List(configmaps, t, labels %q).Items = nil, want an empty slice (it encodes as [])", tt.sel)
			}
			if l.Metadata.Continue != "" || l.Metadata.RemainingItemCount != nil {
				t.Errorf("List(labels %q) without limit has continue %q, remaining %v; want neither", tt.sel, l.Metadata.Continue, l.Metadata.RemainingItemCount)
			}
		})
	}

	fieldTests := []struct {
		labels, fields string
		want           []string
	}{
		{"", "metadata.name=p1", []string{"p1"}},
		{"", "metadata.name!=p1", []string{"p2", "p3", "p4"}},
		{"", "metadata.tenant=t", []string{"p1", "p2", "p3", "p4"}},
		{"", "metadata.tenant=other", []string{}},
		{"", "spec.nodeName=n1", []string{"p1", "p2"}},
		{"", "spec.nodeName==n1", []string{"p1", "p2"}},
		{"", "spec.nodeName=", []string{"p4"}},
		{"", "spec.nodeName!=n1", []string{"p3", "p4"}},
		{"", "status.phase=Running", []string{"p1", "p3"}},
		{"", "status.phase!=Running", []string{"p2", "p4"}},
		{"", "spec.nodeName=n1,status.phase=Running", []string{"p1"}},
		{"", "spec.noSuchField=x", []string{}},
		{"", "spec.noSuchField!=x", []string{"p1", "p2", "p3", "p4"}},
		{"app=web", "spec.nodeName=n1", []string{"p1"}},
		{"app=web", "status.phase!=Running", []string{}},
		{"!app", "status.phase=Pending", []string{"p2", "p4"}},
	}
	for _, tt := range fieldTests {
		t.Run(fmt.Sprintf("labels %q fields %q", tt.labels, tt.fields), func(t *testing.T) {
			opts := ListOptions{Labels: labelSelector(t, tt.labels), Fields: fieldSelector(t, tt.fields)}
			got := names(mustList(t, s, podKind, "t", opts).Items)
			if want := qualified("t", tt.want...); !slices.Equal(got, want) {
				t.Errorf("List(pods, t, labels %q, fields %q) = %v, want %v", tt.labels, tt.fields, got, want)
			}
		})
	}

	t.Run("every tenant", func(t *testing.T) {
		got := names(mustList(t, s, podKind, "", ListOptions{Fields: fieldSelector(t, "spec.nodeName=n2")}).Items)
		if want := []string{"other/p3", "t/p3"}; !slices.Equal(got, want) {
			t.Errorf("List(pods, every tenant, spec.nodeName=n2) = %v, want %v", got, want)
		}
	})
}

// page is one page of a paged list as the test saw it.
type page struct {
	items     []api.Object
	names     []string
	rv        string
	cont      string
	remaining *int64
}

// listPages lists with limit until the list ends, calling between (when
// not nil) after every page but the last. It fails the test after max
// pages.
func listPages(t *testing.T, s *Store, k *api.Kind, tenant string, opts ListOptions, maxPages int, between func(i int)) []page {
	t.Helper()
	var pages []page
	for {
		l := mustList(t, s, k, tenant, opts)
		if opts.Limit > 0 && int64(len(l.Items)) > opts.Limit {
			t.Fatalf("List(limit %d) page %d has %d items, want at most %d", opts.Limit, len(pages), len(l.Items), opts.Limit)
		}
		pages = append(pages, page{l.Items, names(l.Items), l.Metadata.ResourceVersion, l.Metadata.Continue, l.Metadata.RemainingItemCount})
		if l.Metadata.Continue == "" {
			return pages
		}
		if len(pages) == maxPages {
			t.Fatalf("List(limit %d) still has a continue token after %d pages", opts.Limit, maxPages)
		}
		if between != nil {
			between(len(pages) - 1)
		}
		opts.Continue = l.Metadata.Continue
	}
}

func allNames(pages []page) []string {
	var out []string
	for _, p := range pages {
		out = append(out, p.names...)
	}
	return out
}

func TestListPaging(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	const n = 25
	var want []string
	rvs := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("cm-%02d", i)
		cm := mustCreate(t, s, configMap("t", name, map[string]string{"parity": []string{"even", "odd"}[i%2]}))
		want = append(want, "t/"+name)
		rvs["t/"+name] = cm.Metadata.ResourceVersion
	}
	mustCreate(t, s, configMap("u", "cm-00", nil)) // another tenant, after t in key order

	for _, limit := range []int64{1, 7, 24, 25, 26, 500} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			pages := listPages(t, s, cmKind, "t", ListOptions{Limit: limit}, n+1, nil)
			if got := allNames(pages); !slices.Equal(got, want) {
				t.Fatalf("List(t, limit %d) over all pages = %v, want %v", limit, got, want)
			}
			if wantPages := int((n + limit - 1) / limit); len(pages) != wantPages {
				t.Errorf("List(t, limit %d) took %d pages, want %d", limit, len(pages), wantPages)
			}
			seen := 0
			for i, p := range pages {
				seen += len(p.names)
				if p.rv != pages[0].rv {
					t.Errorf("page %d resourceVersion = %s, want the first page's %s", i, p.rv, pages[0].rv)
				}
				last := i == len(pages)-1
				switch {
				case last && p.remaining != nil:
					t.Errorf("last page remainingItemCount = %d, want none", *p.remaining)
				case !last && (p.remaining == nil || *p.remaining != int64(n-seen)):
					t.Errorf("page %d remainingItemCount = %v, want %d", i, p.remaining, n-seen)
				}
			}
		})
	}

	t.Run("every tenant", func(t *testing.T) {
		pages := listPages(t, s, cmKind, "", ListOptions{Limit: 10}, n+1, nil)
		if got, want := allNames(pages), append(slices.Clone(want), "u/cm-00"); !slices.Equal(got, want) {
			t.Errorf("List(every tenant, limit 10) over all pages = %v, want %v", got, want)
		}
	})

	t.Run("consistent snapshot", func(t *testing.T) {
		var addedRVs []int64
		pages := listPages(t, s, cmKind, "t", ListOptions{Limit: 7}, n+1, func(i int) {
			// Writes between pages: none may show in the list.
			for _, name := range []string{fmt.Sprintf("cm-%02da", 7*(i+1)), fmt.Sprintf("cm-99-%d", i), "aa-" + strconv.Itoa(i)} {
				addedRVs = append(addedRVs, rvOf(t, mustCreate(t, s, configMap("t", name, nil))))
			}
			if i == 0 {
				if _, err := s.GuaranteedUpdate(ctx, cmKind, "t", "cm-20", func(cur api.Object) (api.Object, error) {
					cur.GetObjectMeta().Labels["changed"] = "yes"
					return cur, nil
				}); err != nil {
					t.Fatalf("GuaranteedUpdate(t/cm-20) = %v", err)
				}
				if _, err := s.Delete(ctx, cmKind, "t", "cm-24", 0); err != nil {
					t.Fatalf("Delete(t/cm-24) = %v", err)
				}
			}
		})
		if got := allNames(pages); !slices.Equal(got, want) {
			t.Fatalf("List(t, limit 7) with writes between pages = %v, want exactly the %d objects at the first page's revision %v", got, n, want)
		}
		listRV, _ := strconv.ParseInt(pages[0].rv, 10, 64)
		for _, rv := range addedRVs {
			if rv <= listRV {
				t.Fatalf("object created between pages at %d, want after the list's revision %d", rv, listRV)
			}
		}
		// Later pages hold the objects as they were at the first page's
		// revision: t/cm-20 without the later change, t/cm-24 not deleted.
		for _, p := range pages {
			for _, o := range p.items {
				m := o.GetObjectMeta()
				if want := rvs["t/"+m.Name]; m.ResourceVersion != want {
					t.Errorf("paged t/%s resourceVersion = %s, want %s (as of the first page)", m.Name, m.ResourceVersion, want)
				}
				if m.Labels["changed"] != "" {
					t.Errorf("paged t/%s has a label set after the first page was read", m.Name)
				}
			}
		}
	})
}

func TestListPagingWithSelectors(t *testing.T) {
	s := newStore(t)
	const n = 25
	var even, notFour []string
	for i := range n {
		name := fmt.Sprintf("cm-%02d", i)
		mustCreate(t, s, configMap("t", name, map[string]string{"parity": []string{"even", "odd"}[i%2]}))
		if i%2 == 0 {
			even = append(even, "t/"+name)
		}
		if i != 4 {
			notFour = append(notFour, "t/"+name)
		}
	}
	tests := []struct {
		labels, fields string
		want           []string
	}{
		{"parity=even", "", even},
		{"parity!=odd", "", even},
		{"", "metadata.name!=cm-04", notFour},
		{"parity=even", "metadata.name!=cm-04", slices.DeleteFunc(slices.Clone(even), func(s string) bool { return s == "t/cm-04" })},
		{"parity=none", "", nil},
	}
	for _, tt := range tests {
		for _, limit := range []int64{1, 4, 13, 50} {
			t.Run(fmt.Sprintf("labels %q fields %q limit %d", tt.labels, tt.fields, limit), func(t *testing.T) {
				opts := ListOptions{Labels: labelSelector(t, tt.labels), Fields: fieldSelector(t, tt.fields), Limit: limit}
				pages := listPages(t, s, cmKind, "t", opts, n+1, nil)
				if got := allNames(pages); !slices.Equal(got, tt.want) {
					t.Errorf("List(t, labels %q, fields %q, limit %d) over all pages = %v, want %v", tt.labels, tt.fields, limit, got, tt.want)
				}
				for i, p := range pages {
					if p.rv != pages[0].rv {
						t.Errorf("page %d resourceVersion = %s, want the first page's %s", i, p.rv, pages[0].rv)
					}
					if p.remaining != nil {
						t.Errorf("page %d of a filtered list has remainingItemCount %d, want none (unknown)", i, *p.remaining)
					}
					if i < len(pages)-1 && int64(len(p.names)) != limit {
						t.Errorf("page %d has %d items, want a full page of %d before the last", i, len(p.names), limit)
					}
				}
			})
		}
	}
}

// TestListLarge lists more keys than one etcd range read (pageSize) takes.
func TestListLarge(t *testing.T) {
	s := newStore(t)
	const n, batch = 1100, 100
	var all, third []string
	for i := 0; i < n; i += batch {
		var ops []Op
		for j := i; j < i+batch; j++ {
			name := fmt.Sprintf("cm-%04d", j)
			ops = append(ops, OpCreate(configMap("t", name, map[string]string{"mod3": strconv.Itoa(j % 3)})))
			all = append(all, "t/"+name)
			if j%3 == 0 {
				third = append(third, "t/"+name)
			}
		}
		if _, err := s.Commit(t.Context(), ops...); err != nil {
			t.Fatalf("Commit(%d creates) = %v", batch, err)
		}
	}
	tests := []struct {
		labels string
		limit  int64
		want   []string
	}{
		{"", 0, all},
		{"", 700, all},
		{"mod3=0", 0, third},
		{"mod3=0", 300, third},
		{"mod3=0", 1000, third},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("labels %q limit %d", tt.labels, tt.limit), func(t *testing.T) {
			pages := listPages(t, s, cmKind, "t", ListOptions{Labels: labelSelector(t, tt.labels), Limit: tt.limit}, 10, nil)
			got := allNames(pages)
			if !slices.Equal(got, tt.want) {
				t.Errorf("List(t, labels %q, limit %d) = %d items, want %d in key order", tt.labels, tt.limit, len(got), len(tt.want))
			}
			if tt.labels == "" && len(pages) > 1 {
				if r := pages[0].remaining; r == nil || *r != int64(n)-tt.limit {
					t.Errorf("first page remainingItemCount = %v, want %d", r, int64(n)-tt.limit)
				}
			}
		})
	}
}

func TestListContinueErrors(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	for i := range 5 {
		mustCreate(t, s, configMap("t", fmt.Sprint("cm-", i), nil))
	}
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	rev := mustRevision(t, s)

	for _, tt := range []struct{ name, token string }{
		{"not base64", "!!not base64!!"},
		{"padded base64", base64.URLEncoding.EncodeToString([]byte(`{"rv":1,"start":"x"}`))},
		{"not json", enc("not json")},
		{"json of another shape", enc(`["rv", 1]`)},
		{"no rv", enc(`{"start":"cm-1"}`)},
		{"zero rv", enc(`{"rv":0,"start":"cm-1"}`)},
		{"negative rv", enc(`{"rv":-3,"start":"cm-1"}`)},
		{"rv as a string", enc(`{"rv":"5","start":"cm-1"}`)},
	} {
		t.Run("bad request/"+tt.name, func(t *testing.T) {
			_, err := s.List(ctx, cmKind, "t", ListOptions{Limit: 2, Continue: tt.token})
			wantErr(t, fmt.Sprintf("List(continue %q)", tt.token), err, errdefs.ErrBadRequest)
			if f := errdefs.FieldOf(err); f != "continue" {
				t.Errorf("List(continue %q) error field = %q, want %q", tt.token, f, "continue")
			}
		})
	}

	t.Run("future revision", func(t *testing.T) {
		_, err := s.List(ctx, cmKind, "t", ListOptions{Continue: enc(fmt.Sprintf(`{"rv":%d,"start":"cm-1"}`, rev+1000))})
		wantErr(t, "List(continue at a future revision)", err, errdefs.ErrGone)
	})

	t.Run("compacted", func(t *testing.T) {
		first := mustList(t, s, cmKind, "t", ListOptions{Limit: 2})
		if first.Metadata.Continue == "" {
			t.Fatal("List(limit 2) of 5 has no continue token")
		}
		mustCreate(t, s, configMap("t", "after", nil))
		if _, err := s.Compact(ctx, 0); err != nil {
			t.Fatalf("Compact(0) = %v", err)
		}
		_, err := s.List(ctx, cmKind, "t", ListOptions{Limit: 2, Continue: first.Metadata.Continue})
		wantErr(t, "List(continue at a compacted revision)", err, errdefs.ErrGone)
		// A new list works.
		if got := len(mustList(t, s, cmKind, "t", ListOptions{}).Items); got != 6 {
			t.Errorf("List(t) after Compact = %d items, want 6", got)
		}
	})
}

func TestCompact(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	mustCreate(t, s, configMap("t", "x", nil))
	cur := mustRevision(t, s)
	got, err := s.Compact(ctx, 0)
	if err != nil || got != cur {
		t.Fatalf("Compact(0) = %d, %v; want %d (the current revision), nil", got, err, cur)
	}
	// Compacting again, or to an older revision, is not an error.
	for _, rev := range []int64{0, cur, cur - 1} {
		if _, err := s.Compact(ctx, rev); err != nil {
			t.Errorf("Compact(%d) after Compact(%d) = %v, want nil", rev, cur, err)
		}
	}
	_, err = s.Compact(ctx, cur+100)
	wantErr(t, "Compact(future revision)", err, errdefs.ErrGone)
	if err := s.Ready(ctx); err != nil {
		t.Errorf("Ready() = %v", err)
	}
}

// commitFixture is a tenant with two objects, each updated once so that
// its creation revision is stale.
type commitFixture struct {
	tenant         string
	x, y           *api.ConfigMap
	xStale, yStale *api.ConfigMap
}

func newCommitFixture(t *testing.T, s *Store, tenant string) commitFixture {
	t.Helper()
	f := commitFixture{tenant: tenant}
	for _, p := range []struct {
		name       string
		cur, stale **api.ConfigMap
	}{{"x", &f.x, &f.xStale}, {"y", &f.y, &f.yStale}} {
		c := mustCreate(t, s, configMap(tenant, p.name, nil))
		*p.stale = api.Clone(c)
		c.Data["v"] = "2"
		if _, err := s.Update(t.Context(), c); err != nil {
			t.Fatalf("Update(%s/%s) = %v", tenant, p.name, err)
		}
		*p.cur = c
	}
	return f
}

func TestCommit(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()

	t.Run("create and update", func(t *testing.T) {
		f := newCommitFixture(t, s, "ok")
		upd := api.Clone(f.x)
		upd.Data["v"] = "3"
		out, err := s.Commit(ctx, OpCreate(configMap("ok", "new", nil)), OpUpdate(upd), OpCheckExists(cmKind, "ok", "y"))
		if err != nil {
			t.Fatalf("Commit(create ok/new, update ok/x, check ok/y) = %v", err)
		}
		rev := mustRevision(t, s)
		if got := names(out); !slices.Equal(got, []string{"ok/new", "ok/x"}) {
			t.Fatalf("Commit() = %v, want [ok/new ok/x]", got)
		}
		for _, o := range out {
			if rv := rvOf(t, o); rv != rev {
				t.Errorf("Commit() %s resourceVersion = %d, want the commit's revision %d", o.GetObjectMeta().Name, rv, rev)
			}
			m := o.GetObjectMeta()
			sameObject(t, "Get("+m.Name+") after Commit", mustGet(t, s, cmKind, m.Tenant, m.Name), o)
		}
		created := out[0].GetObjectMeta()
		if !uuidRe.MatchString(created.UID) || created.Generation != 1 || created.CreationTimestamp == nil {
			t.Errorf("Commit(create) metadata = %+v, want uid, generation 1 and creationTimestamp set", created)
		}
	})

	t.Run("delete", func(t *testing.T) {
		f := newCommitFixture(t, s, "del")
		if _, err := s.Commit(ctx, OpDelete(cmKind, "del", "x", rvOf(t, f.x)), OpDelete(cmKind, "del", "y", 0)); err != nil {
			t.Fatalf("Commit(delete del/x at its rv, delete del/y) = %v", err)
		}
		if got := mustList(t, s, cmKind, "del", ListOptions{}).Items; len(got) != 0 {
			t.Errorf("List(del) after Commit(delete both) = %v, want none", names(got))
		}
	})

	t.Run("check exists", func(t *testing.T) {
		tn := tenantKind.New().(*api.Tenant)
		tn.Metadata.Name = "real"
		mustCreate(t, s, tn)
		if _, err := s.Commit(ctx, OpCheckExists(tenantKind, "", "real"), OpCreate(configMap("real", "p", nil))); err != nil {
			t.Fatalf("Commit(check tenant real, create real/p) = %v", err)
		}
		mustGet(t, s, cmKind, "real", "p")
	})

	failures := []struct {
		name   string
		ops    func(f commitFixture) []Op
		want   error
		inText string
	}{
		{"create of a taken name", func(f commitFixture) []Op {
			upd := api.Clone(f.y)
			upd.Data["v"] = "changed"
			return []Op{OpUpdate(upd), OpCreate(configMap(f.tenant, "fresh", nil)), OpCreate(configMap(f.tenant, "x", nil))}
		}, errdefs.ErrAlreadyExists, `configmap "x" already exists in tenant "%s"`},
		{"stale update", func(f commitFixture) []Op {
			return []Op{OpCreate(configMap(f.tenant, "fresh", nil)), OpUpdate(f.xStale)}
		}, errdefs.ErrConflict, `configmap "x" was changed`},
		{"update of a missing object", func(f commitFixture) []Op {
			return []Op{OpCreate(configMap(f.tenant, "fresh", nil)), OpUpdate(withRV(configMap(f.tenant, "ghost", nil), rvOf(t, f.x)))}
		}, errdefs.ErrNotFound, `configmap "ghost" not found in tenant "%s"`},
		{"update without resourceVersion", func(f commitFixture) []Op {
			return []Op{OpCreate(configMap(f.tenant, "fresh", nil)), OpUpdate(configMap(f.tenant, "ghost", nil))}
		}, errdefs.ErrInvalidArgument, "metadata.resourceVersion"},
		{"update of an existing object without resourceVersion", func(f commitFixture) []Op {
			c := api.Clone(f.x)
			c.Metadata.ResourceVersion = ""
			return []Op{OpCreate(configMap(f.tenant, "fresh", nil)), OpUpdate(c)}
		}, errdefs.ErrInvalidArgument, "metadata.resourceVersion"},
		{"delete of a missing object", func(f commitFixture) []Op {
			return []Op{OpCreate(configMap(f.tenant, "fresh", nil)), OpDelete(cmKind, f.tenant, "ghost", 0)}
		}, errdefs.ErrNotFound, `configmap "ghost" not found`},
		{"delete at a stale revision", func(f commitFixture) []Op {
			return []Op{OpCreate(configMap(f.tenant, "fresh", nil)), OpDelete(cmKind, f.tenant, "y", rvOf(t, f.yStale))}
		}, errdefs.ErrConflict, `configmap "y"`},
		{"missing tenant", func(f commitFixture) []Op {
			return []Op{OpCheckExists(tenantKind, "", f.tenant), OpCreate(configMap(f.tenant, "fresh", nil))}
		}, errdefs.ErrNotFound, `tenant "%s" not found`},
		{"first failing op is named", func(f commitFixture) []Op {
			return []Op{OpCreate(configMap(f.tenant, "fresh", nil)), OpDeleteAll(podKind, f.tenant), OpUpdate(f.yStale), OpCreate(configMap(f.tenant, "x", nil))}
		}, errdefs.ErrConflict, `configmap "y"`},
	}
	for i, tt := range failures {
		t.Run("fails/"+tt.name, func(t *testing.T) {
			f := newCommitFixture(t, s, fmt.Sprint("f", i))
			mustCreate(t, s, pod(f.tenant, "p", "", api.PodPending))
			rev := mustRevision(t, s)
			_, err := s.Commit(ctx, tt.ops(f)...)
			wantErr(t, "Commit("+tt.name+")", err, tt.want)
			inText := tt.inText
			if strings.Contains(inText, "%s") {
				inText = fmt.Sprintf(inText, f.tenant)
			}
			if !strings.Contains(err.Error(), inText) {
				t.Errorf("Commit(%s) = %q, want it to contain %s", tt.name, err, inText)
			}
			// Nothing was written.
			if got := mustRevision(t, s); got != rev {
				t.Errorf("Revision() after a failed Commit = %d, want %d", got, rev)
			}
			for _, name := range []string{"fresh", "ghost"} {
				if _, err := s.Get(ctx, cmKind, f.tenant, name); !errdefs.IsNotFound(err) {
					t.Errorf("Get(%s/%s) after a failed Commit = %v, want NotFound", f.tenant, name, err)
				}
			}
			sameObject(t, "Get(x) after a failed Commit", mustGet(t, s, cmKind, f.tenant, "x"), f.x)
			sameObject(t, "Get(y) after a failed Commit", mustGet(t, s, cmKind, f.tenant, "y"), f.y)
			mustGet(t, s, podKind, f.tenant, "p")
		})
	}

	t.Run("delete all", func(t *testing.T) {
		for _, tn := range []string{"da", "dab", "db"} {
			for _, n := range []string{"c1", "c2"} {
				mustCreate(t, s, configMap(tn, n, nil))
			}
			mustCreate(t, s, pod(tn, "p", "", api.PodPending))
		}
		n := nodeKind.New().(*api.Node)
		n.Metadata.Name = "da"
		mustCreate(t, s, n)
		out, err := s.Commit(ctx, OpDeleteAll(cmKind, "da"), OpCreate(configMap("db", "added", nil)))
		if err != nil {
			t.Fatalf("Commit(delete all configmaps of da, create db/added) = %v", err)
		}
		if got := names(out); !slices.Equal(got, []string{"db/added"}) {
			t.Errorf("Commit() = %v, want [db/added]", got)
		}
		for _, tt := range []struct {
			k      *api.Kind
			tenant string
			want   []string
		}{
			{cmKind, "da", nil},
			{cmKind, "dab", qualified("dab", "c1", "c2")},
			{cmKind, "db", qualified("db", "added", "c1", "c2")},
			{podKind, "da", qualified("da", "p")},
		} {
			if got := names(mustList(t, s, tt.k, tt.tenant, ListOptions{}).Items); !slices.Equal(got, tt.want) {
				t.Errorf("List(%s, %s) after OpDeleteAll(configmaps, da) = %v, want %v", tt.k.Resource, tt.tenant, got, tt.want)
			}
		}
		mustGet(t, s, nodeKind, "", "da")
		// Deleting nothing is no failure.
		if _, err := s.Commit(ctx, OpDeleteAll(cmKind, "da")); err != nil {
			t.Errorf("Commit(OpDeleteAll of an empty tenant) = %v, want nil", err)
		}
	})

	t.Run("invalid object", func(t *testing.T) {
		rev := mustRevision(t, s)
		_, err := s.Commit(ctx, OpCreate(configMap("ok", "", nil)))
		wantErr(t, "Commit(create without a name)", err, errdefs.ErrInvalidArgument)
		if got := mustRevision(t, s); got != rev {
			t.Errorf("Revision() after a refused Commit = %d, want %d", got, rev)
		}
	})
}

func TestSteps(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	done := func(step string) bool {
		t.Helper()
		ok, err := s.StepDone(ctx, step)
		if err != nil {
			t.Fatalf("StepDone(%q) = %v", step, err)
		}
		return ok
	}
	if done("builtin-runtimeclasses") {
		t.Fatalf("StepDone(builtin-runtimeclasses) = true on a new store, want false")
	}
	for range 2 { // marking twice is harmless
		if err := s.MarkStepDone(ctx, "builtin-runtimeclasses"); err != nil {
			t.Fatalf("MarkStepDone(builtin-runtimeclasses) = %v", err)
		}
	}
	if !done("builtin-runtimeclasses") {
		t.Errorf("StepDone(builtin-runtimeclasses) after MarkStepDone = false, want true")
	}
	if !func() bool { ok, _ := New(s.Client()).StepDone(ctx, "builtin-runtimeclasses"); return ok }() {
		t.Errorf("StepDone on another Store of the same etcd = false, want true: steps are stored, not remembered")
	}
	for _, other := range []string{"builtin", "builtin-runtimeclasses-v2", "other"} {
		if done(other) {
			t.Errorf("StepDone(%q) = true, want false: only builtin-runtimeclasses was marked", other)
		}
	}
	// Step records are no objects of any kind.
	for _, k := range api.Kinds {
		if l := mustList(t, s, k, "", ListOptions{}); len(l.Items) != 0 {
			t.Errorf("List(%s) = %v, want none: step records leaked into a kind's prefix", k.Resource, names(l.Items))
		}
	}
	resp, err := s.Client().Get(ctx, DefaultPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil || resp.Count != 1 {
		t.Errorf("etcd keys under %s = %v, %v; want the one step record", DefaultPrefix, resp, err)
	}
}

// TestUnavailable checks that the errors of a store whose etcd is gone are
// ErrUnavailable, not mistaken for the caller giving up (context.Canceled).
func TestUnavailable(t *testing.T) {
	e, s := newMember(t)
	if err := e.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	ctx := t.Context()
	_, err := s.Get(ctx, cmKind, "a", "x")
	wantErr(t, "Get() on a closed member", err, errdefs.ErrUnavailable)
	_, err = s.List(ctx, cmKind, "a", ListOptions{})
	wantErr(t, "List() on a closed member", err, errdefs.ErrUnavailable)
	_, err = s.Create(ctx, configMap("a", "x", nil))
	wantErr(t, "Create() on a closed member", err, errdefs.ErrUnavailable)
}
