package controller_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/controller"
	"github.com/paddock-dev/paddock/core/controller/controllertest"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

var deployKind, _ = api.KindFor("deployments")

func newDeployment(tenant, name string, replicas int32, image string) *api.Deployment {
	return &api.Deployment{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Deployment"},
		Metadata: api.ObjectMeta{Name: name, Tenant: tenant},
		Spec: api.DeploymentSpec{
			Replicas: &replicas,
			Selector: &api.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name, image),
		},
	}
}

// replicaSetsOf returns the deployment's replica sets, oldest revision
// first.
func replicaSetsOf(t *testing.T, c *client.Client, d *api.Deployment) []*api.ReplicaSet {
	t.Helper()
	l, err := c.ListAll(context.Background(), rsKind, d.Metadata.Tenant, client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*api.ReplicaSet
	for _, o := range l.Items {
		if ownedBy(o, d.Metadata.UID) {
			out = append(out, o.(*api.ReplicaSet))
		}
	}
	controller.SortByRevision(out)
	return out
}

// waitRolledOut waits until the deployment's current template runs on
// exactly spec.replicas ready pods and its status says so.
func waitRolledOut(t *testing.T, cl *testcluster.Cluster, tenant, name string) *api.Deployment {
	t.Helper()
	var d *api.Deployment
	eventually(t, 60*time.Second, "deployment "+name+" rolled out", func() (bool, string) {
		d = getAs[*api.Deployment](t, cl.Admin, tenant, name)
		want := *d.Spec.Replicas
		hash := controller.TemplateHash(&d.Spec.Template)
		pods := activePods(listPods(t, cl.Admin, tenant, "app="+name))
		for _, p := range pods {
			if p.Metadata.Labels[controller.TemplateHashLabel] != hash || !controllertest.Ready(p) {
				return false, fmt.Sprintf("pod %s of template %s (ready %v), want template %s", p.Metadata.Name, p.Metadata.Labels[controller.TemplateHashLabel], controllertest.Ready(p), hash)
			}
		}
		st := d.Status
		ok := len(pods) == int(want) && st.ObservedGeneration >= d.Metadata.Generation &&
			st.Replicas == want && st.UpdatedReplicas == want && st.ReadyReplicas == want && st.AvailableReplicas == want
		return ok, fmt.Sprintf("%d active pods; generation %d; status %+v", len(pods), d.Metadata.Generation, st)
	})
	return d
}

// podWatch follows a tenant's pods and records the extremes of the
// active and ready counts.
type podWatch struct {
	mu               sync.Mutex
	pods             map[string]*api.Pod
	maxActive        int
	minReady         int
	bothTemplates    bool // active pods of two templates at once
	activeAtMaxDescr string
}

func watchPods(t *testing.T, c *client.Client, tenant string) *podWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := c.ListAll(ctx, podKind, tenant, client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := &podWatch{pods: map[string]*api.Pod{}, minReady: 1 << 30}
	for _, o := range l.Items {
		w.pods[o.GetObjectMeta().Name] = o.(*api.Pod)
	}
	w.record()
	wt, err := c.Watch(ctx, podKind, tenant, client.WatchOptions{ResourceVersion: l.Metadata.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range wt.Events() {
			p, ok := ev.Object.(*api.Pod)
			if !ok {
				continue
			}
			w.mu.Lock()
			if ev.Type == api.Deleted {
				delete(w.pods, p.Metadata.Name)
			} else {
				w.pods[p.Metadata.Name] = p
			}
			w.mu.Unlock()
			w.record()
		}
	}()
	t.Cleanup(func() { cancel(); wt.Stop(); <-done })
	return w
}

func (w *podWatch) record() {
	w.mu.Lock()
	defer w.mu.Unlock()
	active, ready := 0, 0
	hashes := map[string]bool{}
	var descr []string
	for _, p := range w.pods {
		if p.Metadata.DeletionTimestamp != nil || api.PodFinished(p) {
			continue
		}
		active++
		hashes[p.Metadata.Labels[controller.TemplateHashLabel]] = true
		descr = append(descr, p.Metadata.Name)
		if controllertest.Ready(p) {
			ready++
		}
	}
	if active > w.maxActive {
		w.maxActive, w.activeAtMaxDescr = active, strings.Join(descr, " ")
	}
	w.minReady = min(w.minReady, ready)
	if len(hashes) > 1 {
		w.bothTemplates = true
	}
}

func (w *podWatch) extremes() (maxActive, minReady int, both bool, descr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxActive, w.minReady, w.bothTemplates, w.activeAtMaxDescr
}

func setImage(t *testing.T, cl *testcluster.Cluster, tenant, name, image string) {
	t.Helper()
	update(t, cl.Admin, tenant, name, func(d *api.Deployment) { d.Spec.Template.Spec.Containers[0].Image = image })
}

func TestDeploymentRollingUpdate(t *testing.T) {
	cl := testcluster.Start(t)
	startManager(t, cl.Admin, "m1")
	controllertest.Node(t, cl, "n1")
	tests := []struct {
		name             string
		replicas         int32
		surge, unavail   *api.IntOrString
		maxPods, minPods int // replicas+maxSurge, replicas-maxUnavailable
	}{
		{"surge 1 unavailable 0", 4, api.FromInt(1), api.FromInt(0), 5, 4},
		{"surge 0 unavailable 1", 4, api.FromInt(0), api.FromInt(1), 4, 3},
		{"percentages", 5, api.FromString("25%"), api.FromString("25%"), 7, 4}, // 25% of 5: surge up to 2, unavailable down to 1
		{"surge 2 unavailable 2", 3, api.FromInt(2), api.FromInt(2), 5, 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tenant := fmt.Sprintf("t%d", i)
			createTenant(t, cl, tenant)
			d := newDeployment(tenant, "web", tt.replicas, "busybox:v1")
			d.Spec.Strategy = api.DeploymentStrategy{Type: api.RollingUpdate, RollingUpdate: &api.RollingUpdateDeployment{MaxSurge: tt.surge, MaxUnavailable: tt.unavail}}
			if _, err := cl.Admin.Create(context.Background(), d); err != nil {
				t.Fatal(err)
			}
			d = waitRolledOut(t, cl, tenant, "web")
			w := watchPods(t, cl.Admin, tenant)
			setImage(t, cl, tenant, "web", "busybox:v2")
			d = waitRolledOut(t, cl, tenant, "web")

			maxActive, minReady, both, descr := w.extremes()
			if maxActive > tt.maxPods {
				t.Errorf("%d pods at once during the rollout (%s), want at most replicas+maxSurge = %d", maxActive, descr, tt.maxPods)
			}
			if minReady < tt.minPods {
				t.Errorf("%d ready pods at one point of the rollout, want at least replicas-maxUnavailable = %d", minReady, tt.minPods)
			}
			if !both {
				t.Errorf("old and new pods never ran side by side: not a rolling update")
			}
			rss := replicaSetsOf(t, cl.Admin, d)
			if len(rss) != 2 {
				t.Fatalf("%d replica sets, want 2 (old and new)", len(rss))
			}
			for i, rs := range rss {
				if got, want := rs.Metadata.Annotations[controller.RevisionAnnotation], fmt.Sprint(i+1); got != want {
					t.Errorf("replica set %s revision %q, want %q", rs.Metadata.Name, got, want)
				}
			}
			if n := *rss[0].Spec.Replicas; n != 0 {
				t.Errorf("old replica set at %d replicas, want 0", n)
			}
			if want := "web-" + controller.TemplateHash(&d.Spec.Template); rss[1].Metadata.Name != want {
				t.Errorf("new replica set named %s, want %s", rss[1].Metadata.Name, want)
			}
			conds := map[string]string{}
			for _, c := range d.Status.Conditions {
				conds[c.Type] = c.Status + "/" + c.Reason
			}
			if conds["Available"] != "True/MinimumReplicasAvailable" || conds["Progressing"] != "True/NewReplicaSetAvailable" {
				t.Errorf("conditions %v, want Available=True/MinimumReplicasAvailable and Progressing=True/NewReplicaSetAvailable", conds)
			}
		})
	}
}

func TestDeploymentScaleRollbackAndHistory(t *testing.T) {
	cl := startCluster(t)
	d := newDeployment("acme", "web", 2, "busybox:v1")
	limit := int32(1)
	d.Spec.RevisionHistoryLimit = &limit
	if _, err := cl.Admin.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	d = waitRolledOut(t, cl, "acme", "web")
	v1 := replicaSetsOf(t, cl.Admin, d)[0]

	t.Run("scale", func(t *testing.T) {
		update(t, cl.Admin, "acme", "web", func(d *api.Deployment) { *d.Spec.Replicas = 4 })
		waitRolledOut(t, cl, "acme", "web")
		update(t, cl.Admin, "acme", "web", func(d *api.Deployment) { *d.Spec.Replicas = 1 })
		d = waitRolledOut(t, cl, "acme", "web")
		if rss := replicaSetsOf(t, cl.Admin, d); len(rss) != 1 {
			t.Errorf("scaling made %d replica sets, want 1", len(rss))
		}
	})
	t.Run("rollback reuses the old replica set", func(t *testing.T) {
		setImage(t, cl, "acme", "web", "busybox:v2")
		d = waitRolledOut(t, cl, "acme", "web")
		// What `paddock rollout undo` does: copy the old template back.
		update(t, cl.Admin, "acme", "web", func(d *api.Deployment) { d.Spec.Template = controller.WithoutHash(&v1.Spec.Template) })
		d = waitRolledOut(t, cl, "acme", "web")
		rss := replicaSetsOf(t, cl.Admin, d)
		if len(rss) != 2 {
			t.Fatalf("%d replica sets after the rollback, want 2", len(rss))
		}
		cur := rss[1]
		if cur.Metadata.UID != v1.Metadata.UID {
			t.Errorf("the rollback runs on replica set %s, want the first one, %s", cur.Metadata.Name, v1.Metadata.Name)
		}
		if got := controller.Revision(cur); got != 3 {
			t.Errorf("revision of the rolled-back replica set = %d, want 3", got)
		}
	})
	t.Run("history limit", func(t *testing.T) {
		setImage(t, cl, "acme", "web", "busybox:v3")
		d = waitRolledOut(t, cl, "acme", "web")
		eventually(t, 30*time.Second, "old replica sets beyond the history limit deleted", func() (bool, string) {
			rss := replicaSetsOf(t, cl.Admin, d)
			var revs []int64
			for _, rs := range rss {
				revs = append(revs, controller.Revision(rs))
			}
			return slices.Equal(revs, []int64{3, 4}), fmt.Sprintf("revisions %v, want [3 4]", revs)
		})
	})
}

func TestDeploymentRecreate(t *testing.T) {
	cl := startCluster(t)
	d := newDeployment("acme", "web", 3, "busybox:v1")
	d.Spec.Strategy = api.DeploymentStrategy{Type: api.Recreate}
	if _, err := cl.Admin.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, cl, "acme", "web")
	w := watchPods(t, cl.Admin, "acme")
	setImage(t, cl, "acme", "web", "busybox:v2")
	waitRolledOut(t, cl, "acme", "web")
	maxActive, _, both, descr := w.extremes()
	if both {
		t.Errorf("old and new pods ran at the same time; Recreate stops the old ones first")
	}
	if maxActive > 3 {
		t.Errorf("%d pods at once (%s), want at most 3", maxActive, descr)
	}
}
