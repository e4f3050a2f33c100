package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-dev/paddock/core/api"
)

// The kinds the storage tests use most.
var (
	cmKind     = mustKind("configmaps")
	podKind    = mustKind("pods")
	nodeKind   = mustKind("nodes")
	tenantKind = mustKind("tenants")
)

func mustKind(name string) *api.Kind {
	k, ok := api.KindFor(name)
	if !ok {
		panic("no kind " + name)
	}
	return k
}

// eventTimeout bounds every wait for something etcd does asynchronously.
const eventTimeout = 5 * time.Second

// newMember starts a fresh embedded etcd member in a temporary directory
// and returns it with a Store on it. The member is closed when the test
// (or benchmark) ends. A member per test keeps tests independent: one
// test's compaction cannot expire another's revisions.
func newMember(tb testing.TB) (*Embedded, *Store) {
	tb.Helper()
	// A directory of its own: StartEmbedded makes it private (0700).
	dir := filepath.Join(tb.TempDir(), "etcd")
	e, err := StartEmbedded(context.Background(), EmbeddedConfig{Dir: dir, Logger: tbLogger(tb)})
	if err != nil {
		tb.Fatalf("StartEmbedded() = %v", err)
	}
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Errorf("Close() = %v", err)
		}
	})
	return e, New(e.Client())
}

// newStore is newMember for tests that need only the Store.
func newStore(tb testing.TB) *Store {
	tb.Helper()
	_, s := newMember(tb)
	return s
}

// tbLogger sends etcd's warnings and errors to the test log.
func tbLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// configMap returns a new ConfigMap, TypeMeta set, as a client sends it.
func configMap(tenant, name string, labels map[string]string) *api.ConfigMap {
	cm := cmKind.New().(*api.ConfigMap)
	cm.Metadata = api.ObjectMeta{Name: name, Tenant: tenant, Labels: labels}
	cm.Data = map[string]string{"name": name}
	return cm
}

// pod returns a new Pod bound to node (none when "") in phase.
func pod(tenant, name, node string, phase api.PodPhase) *api.Pod {
	p := podKind.New().(*api.Pod)
	p.Metadata = api.ObjectMeta{Name: name, Tenant: tenant}
	p.Spec.Containers = []api.Container{{Name: "main", Image: "busybox"}}
	p.Spec.NodeName = node
	p.Status.Phase = phase
	return p
}

// mustCreate creates obj and returns the stored object.
func mustCreate[T api.Object](tb testing.TB, s *Store, obj T) T {
	tb.Helper()
	out, err := s.Create(context.Background(), obj)
	if err != nil {
		m := obj.GetObjectMeta()
		tb.Fatalf("Create(%s/%s) = %v", m.Tenant, m.Name, err)
	}
	return out.(T)
}

// mustGet reads an object that must exist.
func mustGet(tb testing.TB, s *Store, k *api.Kind, tenant, name string) api.Object {
	tb.Helper()
	obj, err := s.Get(context.Background(), k, tenant, name)
	if err != nil {
		tb.Fatalf("Get(%s, %q, %q) = %v", k.Resource, tenant, name, err)
	}
	return obj
}

// mustList lists and fails the test on error.
func mustList(tb testing.TB, s *Store, k *api.Kind, tenant string, opts ListOptions) *api.List {
	tb.Helper()
	l, err := s.List(context.Background(), k, tenant, opts)
	if err != nil {
		tb.Fatalf("List(%s, %q, %+v) = %v", k.Resource, tenant, opts, err)
	}
	return l
}

// mustRevision returns etcd's current revision.
func mustRevision(tb testing.TB, s *Store) int64 {
	tb.Helper()
	rev, err := s.Revision(context.Background())
	if err != nil {
		tb.Fatalf("Revision() = %v", err)
	}
	return rev
}

// rvOf returns obj's resourceVersion as a number.
func rvOf(tb testing.TB, obj api.Object) int64 {
	tb.Helper()
	m := obj.GetObjectMeta()
	rv, err := strconv.ParseInt(m.ResourceVersion, 10, 64)
	if err != nil || rv <= 0 {
		tb.Fatalf("%s/%s has resourceVersion %q, want a positive integer", m.Tenant, m.Name, m.ResourceVersion)
	}
	return rv
}

// names returns the tenant/name of each object, in order.
func names(objs []api.Object) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		m := o.GetObjectMeta()
		out[i] = m.Tenant + "/" + m.Name
	}
	return out
}

// qualified returns tenant/name for each name.
func qualified(tenant string, ns ...string) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = tenant + "/" + n
	}
	return out
}

// labelSelector parses a label selector that must be valid.
func labelSelector(tb testing.TB, s string) api.Selector {
	tb.Helper()
	sel, err := api.ParseSelector(s)
	if err != nil {
		tb.Fatalf("ParseSelector(%q) = %v", s, err)
	}
	return sel
}

// fieldSelector parses a field selector that must be valid.
func fieldSelector(tb testing.TB, s string) api.FieldSelector {
	tb.Helper()
	sel, err := api.ParseFieldSelector(s)
	if err != nil {
		tb.Fatalf("ParseFieldSelector(%q) = %v", s, err)
	}
	return sel
}

// wantErr fails the test unless err is of class want.
func wantErr(tb testing.TB, op string, err, want error) {
	tb.Helper()
	if !errors.Is(err, want) {
		tb.Fatalf("%s = %v, want an error of class %q", op, err, want)
	}
}

// sameObject fails the test unless got and want are deeply equal.
func sameObject(tb testing.TB, op string, got, want api.Object) {
	tb.Helper()
	if !reflect.DeepEqual(got, want) {
		tb.Errorf("%s = %s, want %s", op, mustJSON(got), mustJSON(want))
	}
}

// withRV returns a copy of obj with resourceVersion rv.
func withRV[T api.Object](obj T, rv int64) T {
	c := api.Clone(obj)
	c.GetObjectMeta().ResourceVersion = strconv.FormatInt(rv, 10)
	return c
}

func mustJSON(obj api.Object) string {
	b, err := api.Encode(obj)
	if err != nil {
		return fmt.Sprintf("%#v (unencodable: %v)", obj, err)
	}
	return string(b)
}

// next returns the next event of a watch, failing the test if none comes
// within eventTimeout or the channel closes.
func next(tb testing.TB, ch <-chan api.WatchEvent) api.WatchEvent {
	tb.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			tb.Fatalf("watch channel closed, want an event")
		}
		return ev
	case <-time.After(eventTimeout):
		tb.Fatalf("no watch event within %v", eventTimeout)
	}
	return api.WatchEvent{}
}

// eventString describes an event for failure messages: TYPE tenant/name@rv.
func eventString(ev api.WatchEvent) string {
	if ev.Object == nil {
		return string(ev.Type) + " <nil>"
	}
	m := ev.Object.GetObjectMeta()
	return fmt.Sprintf("%s %s/%s@%s", ev.Type, m.Tenant, m.Name, m.ResourceVersion)
}

// wantEvents reads len(want) events and compares their descriptions.
func wantEvents(tb testing.TB, ch <-chan api.WatchEvent, want ...string) []api.WatchEvent {
	tb.Helper()
	return readEvents(tb, ch, false, want)
}

// wantEventsSkippingBookmarks is wantEvents for a watch with Bookmarks
// set, which may get a BOOKMARK between any two events.
func wantEventsSkippingBookmarks(tb testing.TB, ch <-chan api.WatchEvent, want ...string) []api.WatchEvent {
	tb.Helper()
	return readEvents(tb, ch, true, want)
}

func readEvents(tb testing.TB, ch <-chan api.WatchEvent, skipBookmarks bool, want []string) []api.WatchEvent {
	tb.Helper()
	var got []api.WatchEvent
	var gotS []string
	for range want {
		ev := next(tb, ch)
		for skipBookmarks && ev.Type == api.Bookmark {
			ev = next(tb, ch)
		}
		got = append(got, ev)
		gotS = append(gotS, eventString(ev))
	}
	if !slices.Equal(gotS, want) {
		tb.Fatalf("watch events = %q, want %q", gotS, want)
	}
	return got
}

// evt formats an expected event like eventString.
func evt(typ api.EventType, tenant, name string, rv int64) string {
	return fmt.Sprintf("%s %s/%s@%d", typ, tenant, name, rv)
}

// waitClosed fails the test unless ch is closed within eventTimeout,
// draining whatever events are still buffered.
func waitClosed(tb testing.TB, ch <-chan api.WatchEvent) {
	tb.Helper()
	deadline := time.After(eventTimeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			tb.Fatalf("watch channel still open %v after its context ended", eventTimeout)
		}
	}
}
