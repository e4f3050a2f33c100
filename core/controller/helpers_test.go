package controller_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
	"github.com/paddock-dev/paddock/core/client"
	"github.com/paddock-dev/paddock/core/controller"
	"github.com/paddock-dev/paddock/core/controller/controllertest"
	"github.com/paddock-dev/paddock/core/errdefs"
	"github.com/paddock-dev/paddock/internal/testcluster"
)

// testLog logs to stderr with -v and PADDOCK_TEST_LOG=1, else nowhere.
func testLog() *slog.Logger {
	if os.Getenv("PADDOCK_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// manager is a controller manager run by a test.
type manager struct {
	identity string
	cancel   context.CancelFunc
	done     chan struct{}

	mu      sync.Mutex
	leading bool
	started []time.Time // when it started leading
	stopped []time.Time // when it stopped
}

// fastConfig is a Config with lease timings short enough for tests.
func fastConfig(c *client.Client, identity string) controller.Config {
	return controller.Config{
		Client: c, Identity: identity, Log: testLog().With("identity", identity),
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RenewPeriod: 500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond,
		Workers: 2,
	}
}

// startManager runs the controllers with cfg (fastConfig when mutate
// only adjusts it) until the test ends or stop is called.
func startManager(t *testing.T, c *client.Client, identity string, mutate ...func(*controller.Config)) *manager {
	t.Helper()
	cfg := fastConfig(c, identity)
	for _, m := range mutate {
		m(&cfg)
	}
	m := &manager{identity: identity, done: make(chan struct{})}
	cfg.LeadingChanged = func(leading bool) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.leading = leading
		if leading {
			m.started = append(m.started, time.Now())
		} else {
			m.stopped = append(m.stopped, time.Now())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		if err := controller.Run(ctx, cfg); err != nil {
			t.Errorf("controller.Run(%s): %v", identity, err)
		}
	}()
	t.Cleanup(m.stop)
	return m
}

// stop stops the manager and waits for Run to return.
func (m *manager) stop() {
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		panic("controller.Run did not return within 30s of its context ending")
	}
}

func (m *manager) isLeading() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leading
}

func (m *manager) history() (started, stopped []time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]time.Time{}, m.started...), append([]time.Time{}, m.stopped...)
}

// eventually polls cond until it holds or timeout passes; cond's message
// says what was seen last.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last seen: %s", what, timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func createTenant(t *testing.T, cl *testcluster.Cluster, name string) {
	t.Helper()
	_, err := cl.Admin.Create(context.Background(), &api.Tenant{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Tenant"},
		Metadata: api.ObjectMeta{Name: name},
	})
	if err != nil {
		t.Fatalf("create tenant %s: %v", name, err)
	}
}

// podTemplate is a template of one container running image, labelled
// app=app.
func podTemplate(app, image string) api.PodTemplateSpec {
	return api.PodTemplateSpec{
		Metadata: api.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec:     api.PodSpec{Containers: []api.Container{{Name: "main", Image: image}}},
	}
}

func newReplicaSet(tenant, name string, replicas int32) *api.ReplicaSet {
	return &api.ReplicaSet{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "ReplicaSet"},
		Metadata: api.ObjectMeta{Name: name, Tenant: tenant},
		Spec: api.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &api.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name, "busybox"),
		},
	}
}

// listPods returns the tenant's pods matching selector.
func listPods(t *testing.T, c *client.Client, tenant, selector string) []*api.Pod {
	t.Helper()
	l, err := c.ListAll(context.Background(), podKind, tenant, client.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	out := make([]*api.Pod, len(l.Items))
	for i, o := range l.Items {
		out[i] = o.(*api.Pod)
	}
	return out
}

// activePods returns the pods that count as replicas.
func activePods(pods []*api.Pod) []*api.Pod {
	var out []*api.Pod
	for _, p := range pods {
		if p.Metadata.DeletionTimestamp == nil && !api.PodFinished(p) {
			out = append(out, p)
		}
	}
	return out
}

func names(pods []*api.Pod) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = p.Metadata.Name
	}
	return out
}

// getAs reads one object or fails the test.
func getAs[T api.Object](t *testing.T, c *client.Client, tenant, name string) T {
	t.Helper()
	o, err := client.GetAs[T](context.Background(), c, tenant, name)
	if err != nil {
		t.Fatalf("get %s/%s: %v", tenant, name, err)
	}
	return o
}

func describeRS(rs *api.ReplicaSet) string {
	return fmt.Sprintf("spec.replicas=%d status=%+v generation=%d", *rs.Spec.Replicas, rs.Status, rs.Metadata.Generation)
}

// update reads an object, changes it and writes it back, retrying
// conflicts with writers such as the controllers.
func update[T api.Object](t *testing.T, c *client.Client, tenant, name string, change func(T)) T {
	t.Helper()
	for attempt := 0; ; attempt++ {
		o := getAs[T](t, c, tenant, name)
		change(o)
		out, err := c.Update(context.Background(), o)
		if err == nil {
			return out.(T)
		}
		if attempt > 20 || !errdefs.IsConflict(err) {
			t.Fatalf("update %s/%s: %v", tenant, name, err)
		}
	}
}

var (
	podKind, _   = api.KindFor("pods")
	rsKind, _    = api.KindFor("replicasets")
	leaseKind, _ = api.KindFor("leases")
)

// controllerOf returns the controlling owner reference of m, or nil.
func controllerOf(m *api.ObjectMeta) *api.OwnerReference {
	for i, r := range m.OwnerReferences {
		if r.Controller {
			return &m.OwnerReferences[i]
		}
	}
	return nil
}

// ownedBy reports whether obj's controller has uid.
func ownedBy(obj api.Object, uid string) bool {
	ref := controllerOf(obj.GetObjectMeta())
	return ref != nil && ref.UID == uid
}

// startCluster starts a control plane with tenant acme, a controller
// manager and a stand-in node n1.
func startCluster(t *testing.T) *testcluster.Cluster {
	t.Helper()
	cl := testcluster.Start(t)
	createTenant(t, cl, "acme")
	startManager(t, cl.Admin, "m1")
	controllertest.Node(t, cl, "n1")
	return cl
}

// newPod returns a pod labelled app=app with owners.
func newPod(tenant, name, app string, owners ...api.OwnerReference) *api.Pod {
	return &api.Pod{
		TypeMeta: api.TypeMeta{APIVersion: api.Version, Kind: "Pod"},
		Metadata: api.ObjectMeta{Name: name, Tenant: tenant, Labels: map[string]string{"app": app}, OwnerReferences: owners},
		Spec:     podTemplate(app, "busybox").Spec,
	}
}
