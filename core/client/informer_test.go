package client_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

// recorder records what an informer's handler is told.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, s)
}

func (r *recorder) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e == s {
			return true
		}
	}
	return false
}

func (r *recorder) handler() client.Handler {
	return client.Handler{
		OnAdd:    func(o api.Object) { r.add("add " + client.Key(o)) },
		OnUpdate: func(_, o api.Object) { r.add("update " + client.Key(o) + " " + o.GetObjectMeta().Labels["v"]) },
		OnDelete: func(o api.Object) { r.add("delete " + client.Key(o)) },
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func configMap(name, v string) *api.ConfigMap {
	return &api.ConfigMap{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "ConfigMap"}, Metadata: api.ObjectMeta{Name: name, Tenant: "t1", Labels: map[string]string{"v": v}}}
}

// The informer lists, then follows adds, updates and deletes, and after
// a compaction of the history it missed relists and reports the
// difference.
func TestInformer(t *testing.T) {
	cl := testcluster.Start(t)
	ctx := t.Context()
	admin := cl.Admin
	if _, err := admin.Create(ctx, &api.Tenant{TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Tenant"}, Metadata: api.ObjectMeta{Name: "t1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Create(ctx, configMap("before", "1")); err != nil {
		t.Fatal(err)
	}
	k, _ := api.KindFor("ConfigMap")
	inf := client.NewInformer(admin, k, "t1", client.ListOptions{}, nil)
	rec := &recorder{}
	inf.AddHandler(rec.handler())
	ictx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { inf.Run(ictx); close(stopped) }()
	if err := inf.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := inf.Get("t1/before"); !ok || !rec.has("add t1/before") {
		t.Fatalf("after sync: Get(before) = %v, events %v", ok, rec.events)
	}
	obj, err := admin.Create(ctx, configMap("a", "1"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "add of a", func() bool { return rec.has("add t1/a") })
	cm := obj.(*api.ConfigMap)
	cm.Metadata.Labels["v"] = "2"
	if _, err := admin.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	eventually(t, "update of a", func() bool { return rec.has("update t1/a 2") })
	if _, err := admin.Delete(ctx, k, "t1", "before"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delete of before", func() bool { return rec.has("delete t1/before") })
	if _, ok := inf.Get("t1/before"); ok {
		t.Error("deleted object still in the local copy")
	}
	if n := len(inf.List()); n != 1 {
		t.Errorf("List has %d objects, want 1", n)
	}
	for i := range 3 {
		if _, err := admin.Create(ctx, configMap(fmt.Sprint("n", i), "1")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "three more adds", func() bool { return len(inf.List()) == 4 })

	// Stopped, it misses changes; the history is compacted; run again, it
	// relists and reports the difference.
	cancel()
	<-stopped
	if _, err := admin.Delete(ctx, k, "t1", "n0"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Create(ctx, configMap("later", "1")); err != nil {
		t.Fatal(err)
	}
	got, err := admin.Get(ctx, k, "t1", "n1")
	if err != nil {
		t.Fatal(err)
	}
	got.GetObjectMeta().Labels["v"] = "3"
	if _, err := admin.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	resp, err := admin.Do(ctx, http.MethodPost, "/api/v1/etcd/compact", nil, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ictx, cancel = context.WithCancel(ctx)
	defer cancel()
	go inf.Run(ictx)
	eventually(t, "relist after compaction", func() bool {
		return rec.has("delete t1/n0") && rec.has("add t1/later") && rec.has("update t1/n1 3")
	})
	if _, ok := inf.Get("t1/n0"); ok {
		t.Error("an object deleted while the informer was stopped is still in its copy")
	}
}
